"""Read a .tflite flatbuffer through the schema shipped in the tensorflow wheel.

Example::

    info = read_tflite(Path("model.tflite").read_bytes())
    print(info.op_names(), info.macs())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import numpy as np

from ..errors import ModelLoadError


@lru_cache(maxsize=1)
def _schema():
    from ..keras_compat import tf

    tf()
    from tensorflow.lite.python import schema_py_generated as s

    return s


def tflite_schema():
    """The TFLite flatbuffer schema module (flatc-generated classes) shipped in the tensorflow wheel.

    Example::

        model = tflite_schema().Model.GetRootAsModel(data, 0)
    """
    return _schema()


@lru_cache(maxsize=1)
def _enum_names(enum_name: str) -> dict[int, str]:
    enum = getattr(_schema(), enum_name)
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    quantized_dimension: int = 0
    is_constant: bool = False
    nbytes: int = 0

    def as_dict(self) -> dict:
        d = {"index": self.index, "name": self.name, "shape": self.shape, "dtype": self.dtype,
             "constant": self.is_constant, "bytes": self.nbytes}
        if self.scale:
            per_channel = len(self.scale) > 1
            d["quantization"] = {
                "scale": self.scale if per_channel else self.scale[0],
                "zero_point": self.zero_point if per_channel else self.zero_point[0],
                **({"axis": self.quantized_dimension} if per_channel else {}),
            }
        return d


@dataclass
class OpInfo:
    index: int
    op: str  # builtin name, e.g. CONV_2D; custom ops as "CUSTOM:<code>"
    builtin_code: int
    custom_code: Optional[str]
    inputs: list[int]
    outputs: list[int]
    version: int = 1


@dataclass
class TfliteInfo:
    tensors: list[TensorInfo]
    ops: list[OpInfo]
    inputs: list[int]
    outputs: list[int]
    size: int
    description: str = ""

    def op_names(self) -> list[str]:
        """Distinct op names in first-use order."""
        seen: dict[str, None] = {}
        for o in self.ops:
            seen.setdefault(o.op, None)
        return list(seen)

    def op_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.ops:
            out[o.op] = out.get(o.op, 0) + 1
        return out

    def op_macs(self, op: OpInfo) -> int:
        """Multiply-accumulates of one op (0 for ops without a MAC-heavy kernel)."""
        t = self.tensors
        if not op.outputs or op.outputs[0] < 0:
            return 0
        out = t[op.outputs[0]].shape
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV") and len(op.inputs) >= 2:
            w = t[op.inputs[1] if op.op != "TRANSPOSE_CONV" else op.inputs[1]].shape
            if op.op == "CONV_2D":  # w: [out_c, kh, kw, in_c]
                return int(np.prod(out) * w[1] * w[2] * w[3])
            if op.op == "DEPTHWISE_CONV_2D":  # w: [1, kh, kw, out_c]
                return int(np.prod(out) * w[1] * w[2])
            return int(np.prod(t[op.inputs[2]].shape) * w[0] * w[1] * w[2])
        if op.op == "FULLY_CONNECTED" and len(op.inputs) >= 2:
            w = t[op.inputs[1]].shape  # [units, in]
            return int(np.prod(out) * w[1])
        if op.op == "BATCH_MATMUL" and len(op.inputs) >= 2:
            a = t[op.inputs[0]].shape
            return int(np.prod(out) * a[-1])
        return 0

    def macs(self) -> int:
        return sum(self.op_macs(o) for o in self.ops)

    def params(self) -> int:
        """Elements of constant (weight) tensors."""
        return int(sum(np.prod(x.shape) if x.shape else 1 for x in self.tensors if x.is_constant))

    def as_dict(self) -> dict:
        return {
            "size_bytes": self.size,
            "inputs": [self.tensors[i].as_dict() for i in self.inputs],
            "outputs": [self.tensors[i].as_dict() for i in self.outputs],
            "ops": [{"index": o.index, "op": o.op, "inputs": o.inputs, "outputs": o.outputs,
                     "macs": self.op_macs(o)} for o in self.ops],
            "op_counts": self.op_counts(),
            "params": self.params(),
            "macs": self.macs(),
            "tensors": [x.as_dict() for x in self.tensors],
        }


def _tensor(s, sub, model, i: int) -> TensorInfo:
    tt = sub.Tensors(i)
    dtypes = _enum_names("TensorType")
    shape = [int(d) for d in tt.ShapeAsNumpy()] if tt.ShapeLength() else []
    q = tt.Quantization()
    scale, zp, qdim = [], [], 0
    if q is not None and q.ScaleLength():
        scale = [float(v) for v in q.ScaleAsNumpy()]
        zp = [int(v) for v in q.ZeroPointAsNumpy()] if q.ZeroPointLength() else [0] * len(scale)
        qdim = int(q.QuantizedDimension())
    buf = model.Buffers(tt.Buffer()) if tt.Buffer() < model.BuffersLength() else None
    nbytes = 0
    if buf is not None:
        nbytes = int(buf.DataLength()) or int(buf.Size())
    name = tt.Name().decode(errors="replace") if tt.Name() else f"t{i}"
    return TensorInfo(index=i, name=name, shape=shape, dtype=dtypes.get(tt.Type(), str(tt.Type())).lower(),
                      scale=scale, zero_point=zp, quantized_dimension=qdim, is_constant=nbytes > 0,
                      nbytes=nbytes)


def read_tflite(data: bytes, source: str = "model") -> TfliteInfo:
    """Parse the first subgraph's tensors and operators (raises ModelLoadError if invalid)."""
    s = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError(f"{source}: not a TFLite flatbuffer (no TFL3 identifier); give a .tflite file")
    try:
        model = s.Model.GetRootAsModel(data, 0)
        sub = model.Subgraphs(0)
        builtins = _enum_names("BuiltinOperator")
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            custom = oc.CustomCode().decode() if oc.CustomCode() else None
            name = f"CUSTOM:{custom}" if custom is not None else builtins.get(code, f"BUILTIN_{code}")
            codes.append((name, code, custom, int(oc.Version())))
        tensors = [_tensor(s, sub, model, i) for i in range(sub.TensorsLength())]
        ops = []
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            name, code, custom, ver = codes[op.OpcodeIndex()]
            ops.append(OpInfo(index=i, op=name, builtin_code=code, custom_code=custom,
                              inputs=[int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else [],
                              outputs=[int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else [],
                              version=ver))
        desc = model.Description().decode(errors="replace") if model.Description() else ""
        return TfliteInfo(tensors=tensors, ops=ops,
                          inputs=[int(v) for v in sub.InputsAsNumpy()],
                          outputs=[int(v) for v in sub.OutputsAsNumpy()], size=len(data), description=desc)
    except (IndexError, ValueError, TypeError, AttributeError) as e:
        raise ModelLoadError(f"{source}: corrupt TFLite flatbuffer ({e}); rebuild the model") from e
