"""Op support checks: every op has a TFLM kernel (with dtypes TFLM accepts), and an int8-only
board gets no float arithmetic. Each names the op, its index and the Keras layer it came from.

Example::

    info = read_tflite(data)
    check_tflm_ops(info)                  # UnsupportedOpError naming op, index and layer
    check_int8_only(info, "raspberry-pi-pico")
"""

from __future__ import annotations

from ..convert.flatbuffer import OpInfo, TfliteInfo, layer_of
from ..errors import UnsupportedOpError
from ..tflm.ops import add_method

# Ops that carry no arithmetic of their own: float tensors through them still mean float work elsewhere.
_FLOAT_TYPES = ("float32", "float16", "float64")


def _where(info: TfliteInfo, op: OpInfo) -> str:
    if not op.outputs or op.outputs[0] < 0:
        return f"op #{op.index}"
    name = info.tensors[op.outputs[0]].name.split(";")[0]
    if "/" in name:
        return f"op #{op.index} (layer '{layer_of(name)}', tensor '{name}')"
    feeds = [info.tensors[i].name for i in op.inputs if i >= 0 and "/" in info.tensors[i].name]
    after = f", right after layer '{layer_of(feeds[0])}'" if feeds else ""
    return f"op #{op.index} (output tensor '{name}'{after})"


def check_tflm_ops(info: TfliteInfo) -> list[str]:
    """The sorted, distinct ``Add*`` calls the model needs; UnsupportedOpError for the first op TFLM lacks."""
    calls: set[str] = set()
    for op in info.ops:
        m = add_method(op)
        if m is None:
            kind = (f"custom op '{op.custom_code}'" + (" (a TensorFlow Flex op)" if op.custom_code.startswith("Flex")
                                                       else "")) if op.custom_code is not None else f"op {op.op}"
            raise UnsupportedOpError(
                f"TFLite-Micro has no kernel for {kind} at {_where(info, op)}; replace that layer with "
                "TFLM-supported ops (see edgepack.tflm.ops.TFLM_BUILTINS) or use --target android")
        _check_dtypes(info, op)
        calls.add(m)
    return sorted(calls)


# Ops whose kernel in the pinned TFLM tree takes float32 input only (their Prepare: TF_LITE_ENSURE_TYPES_EQ
# (input->type, kTfLiteFloat32)), though the TFLite converter quantizes some of them (EXP) to int8.
TFLM_FLOAT_ONLY = ("CEIL", "EXP", "FLOOR", "L2_POOL_2D", "ROUND")


def _check_dtypes(info: TfliteInfo, op: OpInfo) -> None:
    """Type combinations TFLM's kernels reject at Prepare, named before the interpreter is built."""
    ins = [info.tensors[i].dtype for i in op.inputs if i >= 0]
    if op.op in TFLM_FLOAT_ONLY and ins and ins[0] != "float32":
        raise UnsupportedOpError(
            f"TFLite-Micro runs {op.op} in float32 only, but {op.op} at {_where(info, op)} is {ins[0]}; "
            "package with --quantize none (or keep that op float) for --target tflm, or use --target android")
    if op.op == "DEQUANTIZE" and ins and ins[0] == "float16":
        raise UnsupportedOpError(
            f"TFLite-Micro cannot dequantize float16 weights ({op.op} at {_where(info, op)}); "
            "package with --quantize int8 (or none) for --target tflm")


def float_ops(info: TfliteInfo) -> list[OpInfo]:
    """Ops that read or write a float tensor (they run float arithmetic on the core)."""
    out = []
    for op in info.ops:
        idx = [i for i in op.inputs + op.outputs if i >= 0]
        if any(info.tensors[i].dtype in _FLOAT_TYPES for i in idx):
            out.append(op)
    return out


def check_int8_only(info: TfliteInfo, device: str) -> None:
    """UnsupportedOpError when a model for an int8-only device has float ops (names the first)."""
    bad = float_ops(info)
    if bad:
        op = bad[0]
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise UnsupportedOpError(
            f"device '{device}' runs int8 only, but {op.op} at {_where(info, op)}{more} computes in float; "
            "package with --quantize int8 and integer I/O (recipe quantize: {mode: int8, io: int8})")


def tflm_ops(build, spec, done) -> list[str]:
    """Check ``tflm_ops``: the model's ``Add*`` registrations (all ops have TFLM kernels)."""
    return check_tflm_ops(build.info)


def int8_only(build, spec, done) -> bool:
    """Check ``int8_only``: an int8-only board gets no float arithmetic; returns whether it applied."""
    if spec.profile is not None and spec.profile.int8_only:
        check_int8_only(build.info, spec.profile.name)
        return True
    return False
