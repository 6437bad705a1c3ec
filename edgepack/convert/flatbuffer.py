"""Read a .tflite flatbuffer through the schema shipped in the tensorflow wheel.

Example::

    info = read_tflite(Path("model.tflite").read_bytes())
    print(info.op_names(), info.macs())
"""

from __future__ import annotations

import struct
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


def inline_buffers(data: bytes) -> bytes:
    """``data`` with every buffer's bytes inside the flatbuffer: buffers stored after it at an ``offset``
    (the large-model layout ai-edge-quantizer writes for big models) are moved in. Tools that rebuild the
    flatbuffer through the object API (metadata writing, ``--compact``, TFLM rewrites) drop such data.

    Example::

        data = inline_buffers(quantized)   # the same model; unchanged when nothing sits outside
    """
    model = tflite_schema().Model.GetRootAs(data, 0)
    if not any(model.Buffers(i).Offset() > 1 for i in range(model.BuffersLength())):
        return data
    import numpy as np
    from tensorflow.lite.tools import flatbuffer_utils as fu  # tflite_schema() imported TensorFlow already

    obj = fu.convert_bytearray_to_object(bytearray(data))
    for buf in obj.buffers:
        if buf.offset > 1:
            buf.data = np.frombuffer(data[buf.offset : buf.offset + buf.size], dtype=np.uint8)
            buf.offset, buf.size = 0, 0
    return bytes(fu.convert_object_to_bytearray(obj))


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


_MIN_RANKS = {"CONV_2D": (0, 4), "DEPTHWISE_CONV_2D": (0, 4), "TRANSPOSE_CONV": (0, 3, 0),
              "FULLY_CONNECTED": (0, 2), "BATCH_MATMUL": (1,)}


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
        need = _MIN_RANKS.get(op.op, ())  # least rank of each input the formula reads
        used = op.inputs[: len(need)]
        if len(used) < len(need) or any(i < 0 or len(t[i].shape) < k for i, k in zip(used, need)):
            return 0  # malformed: a missing input or weights of the wrong rank
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
        if len(zp) != len(scale):
            raise ValueError(f"tensor {i} has {len(scale)} scales but {len(zp)} zero points")
        qdim = int(q.QuantizedDimension())
    buf = model.Buffers(tt.Buffer()) if tt.Buffer() < model.BuffersLength() else None
    nbytes = 0
    if buf is not None:
        if buf.DataLength() > len(model._tab.Bytes):
            raise ValueError(f"buffer {tt.Buffer()} claims {buf.DataLength():,} bytes")
        nbytes = int(buf.DataLength()) or int(buf.Size())
    name = tt.Name().decode(errors="replace") if tt.Name() else f"t{i}"
    return TensorInfo(index=i, name=name, shape=shape, dtype=dtypes.get(tt.Type(), str(tt.Type())).lower(),
                      scale=scale, zero_point=zp, quantized_dimension=qdim, is_constant=nbytes > 0,
                      nbytes=nbytes)


# what a malformed flatbuffer raises inside the generated accessors (offsets past the end,
# bad UTF-8, absurd vector lengths)
_CORRUPT = (IndexError, ValueError, TypeError, AttributeError, KeyError, OverflowError, struct.error,
            RecursionError, MemoryError)


def _count(n: int, data: bytes, what: str, source: str) -> int:
    """A vector length, refused when its 4-byte elements could not fit in the buffer."""
    if n * 4 > len(data):
        raise ModelLoadError(f"{source}: corrupt TFLite flatbuffer ({what} claims {n:,} entries in "
                             f"{len(data):,} bytes); rebuild the model")
    return n


def _indices(values: list[int], n_tensors: int, what: str, source: str, optional: bool = False) -> list[int]:
    low = -1 if optional else 0
    bad = [v for v in values if not low <= v < n_tensors]
    if bad:
        raise ModelLoadError(f"{source}: corrupt TFLite flatbuffer ({what} names tensor {bad[0]} of "
                             f"{n_tensors}); rebuild the model")
    return values


def _ints(length: int, as_numpy, data: bytes, what: str, source: str) -> list[int]:
    return [int(v) for v in as_numpy()] if _count(length, data, what, source) else []


def _op_codes(model, data: bytes, source: str) -> list[tuple[str, int, Optional[str], int]]:
    builtins = _enum_names("BuiltinOperator")
    codes = []
    for i in range(_count(model.OperatorCodesLength(), data, "operator codes", source)):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        custom = oc.CustomCode().decode() if oc.CustomCode() else None
        name = f"CUSTOM:{custom}" if custom is not None else builtins.get(code, f"BUILTIN_{code}")
        codes.append((name, code, custom, int(oc.Version())))
    return codes


def _read(s, data: bytes, source: str) -> TfliteInfo:
    model = s.Model.GetRootAsModel(data, 0)
    if not _count(model.SubgraphsLength(), data, "subgraphs", source):
        raise ModelLoadError(f"{source}: TFLite flatbuffer holds no subgraph; rebuild the model")
    sub = model.Subgraphs(0)
    codes = _op_codes(model, data, source)
    tensors = [_tensor(s, sub, model, i) for i in range(_count(sub.TensorsLength(), data, "tensors", source))]
    n = len(tensors)
    ops = []
    for i in range(_count(sub.OperatorsLength(), data, "operators", source)):
        op = sub.Operators(i)
        if op.OpcodeIndex() >= len(codes):
            raise ModelLoadError(f"{source}: corrupt TFLite flatbuffer (operator {i} names opcode "
                                 f"{op.OpcodeIndex()} of {len(codes)}); rebuild the model")
        name, code, custom, ver = codes[op.OpcodeIndex()]
        ins = _ints(op.InputsLength(), op.InputsAsNumpy, data, "operator inputs", source)
        outs = _ints(op.OutputsLength(), op.OutputsAsNumpy, data, "operator outputs", source)
        ops.append(OpInfo(index=i, op=name, builtin_code=code, custom_code=custom,
                          inputs=_indices(ins, n, f"operator {i} ({name}) input", source, optional=True),
                          outputs=_indices(outs, n, f"operator {i} ({name}) output", source, optional=True),
                          version=ver))
    desc = model.Description().decode(errors="replace") if model.Description() else ""
    inputs = _ints(sub.InputsLength(), sub.InputsAsNumpy, data, "subgraph inputs", source)
    outputs = _ints(sub.OutputsLength(), sub.OutputsAsNumpy, data, "subgraph outputs", source)
    return TfliteInfo(tensors=tensors, ops=ops, inputs=_indices(inputs, n, "a subgraph input", source),
                      outputs=_indices(outputs, n, "a subgraph output", source), size=len(data), description=desc)


def read_tflite(data: bytes, source: str = "model") -> TfliteInfo:
    """Parse the first subgraph's tensors and operators.

    Any malformed buffer (offsets past the end, bad UTF-8, vector lengths the buffer cannot
    hold, tensor indices out of range) raises ModelLoadError naming ``source``.
    """
    s = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError(f"{source}: not a TFLite flatbuffer (no TFL3 identifier); give a .tflite file")
    try:
        return _read(s, bytes(data), source)
    except _CORRUPT as e:
        kind = "struct.error" if isinstance(e, struct.error) else type(e).__name__
        raise ModelLoadError(f"{source}: corrupt TFLite flatbuffer ({kind}: {e}); rebuild the model") from None


def layer_of(tensor_name: str) -> str:
    """The Keras layer a converter tensor name points at: 'model/conv2d/Relu;...' -> 'conv2d'."""
    first = tensor_name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    if len(parts) >= 2:
        return parts[1]
    return parts[0] if parts else tensor_name
