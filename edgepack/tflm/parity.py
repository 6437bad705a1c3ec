"""TFLM (host) vs LiteRT (reference kernels) on the same quantized inputs, and the
output a correct board harness reports.

Example::

    p = parity(model_bytes, x)             # Parity(max_abs_diff=..., bit_exact=True, ...)
    input_sets(model_bytes, x)             # per sample: one array per input, in tensor order
    harness_expectation(model_bytes)["crc32"]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from ..errors import LiteRTLoadError, VerificationError
from ..fdcapture import capture_fd2
from ..runtime import dequantize_output, quantize_input
from ..samples import Inputs, Samples, for_tensors
from .interpreter import Tflm
from .protocol import crc32_hex, input_pattern_array


@dataclass
class Parity:
    """TFLM host vs LiteRT on the same quantized inputs: the worst over every output, and (a model with
    several outputs) each output's own figures in ``outputs`` (output tensor order)."""

    samples: int
    max_abs_diff: float  # in dequantized (float) output units
    max_raw_diff: float  # in the output tensor's own units (int8 steps for int8 outputs)
    bit_exact: bool
    output_dtype: str  # output 0's
    mismatch_pct: float = 0.0  # share of output values that differ at all
    outputs: list[dict] = field(default_factory=list)  # per output: max_abs_diff, max_raw_diff, bit_exact, dtype

    def as_dict(self) -> dict:
        d = asdict(self)
        if len(self.outputs) < 2:
            d.pop("outputs")  # one output: the figures above are its own (report unchanged)
        return d


def _reference_litert(model: bytes):
    """LiteRT with TFLite's reference kernels (no XNNPACK), the arithmetic TFLM also follows; its builtin
    kernels (still without XNNPACK) when the reference resolver lacks an op (it has no ELU)."""
    from ..runtime import interpreter_class

    cls = interpreter_class()
    try:
        from ai_edge_litert.interpreter import OpResolverType

        resolvers = [{"experimental_op_resolver_type": OpResolverType.BUILTIN_REF},
                     {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}]
    except ImportError:  # tflite-runtime fallback: default kernels
        resolvers = [{}]
    for k, kwargs in enumerate(resolvers):
        try:
            with capture_fd2():
                interp = cls(model_content=model, num_threads=1, **kwargs)
                interp.allocate_tensors()
            return interp
        except (ValueError, RuntimeError) as e:
            if k + 1 < len(resolvers) and "Didn't find op" in str(e):
                continue
            raise LiteRTLoadError(f"LiteRT cannot load the model: {str(e).splitlines()[0]}") from e
    raise AssertionError("unreachable")


def input_sets(model: bytes, x: Samples) -> list[list[np.ndarray]]:
    """Each float sample of ``x`` as a list of one array per input, in the model's input tensor order
    (by tensor name: :func:`edgepack.samples.for_tensors`)."""
    if not isinstance(x, Inputs):
        return [[x[i : i + 1]] for i in range(len(x))]
    from ..convert.flatbuffer import read_tflite

    info = read_tflite(model)
    names = [info.tensors[i].name for i in info.inputs]
    shapes = [list(info.tensors[i].shape) for i in info.inputs]
    return [for_tensors(x[i : i + 1], names, shapes) for i in range(len(x))]


def parity(model: bytes, x: Samples, arena_size: Optional[int] = None) -> Parity:
    """Run each float sample of ``x`` in TFLM (host) and LiteRT (reference kernels) and compare.

    Both sides get the same quantized input and start every sample from a reset state
    (variable tensors zeroed). Integer models are usually bit-exact;
    rounding in a requantization can differ by one step (seen in FULLY_CONNECTED),
    which a following SOFTMAX may widen: read ``max_raw_diff``.
    """
    if x is None or len(x) == 0:
        raise VerificationError("TFLM parity needs calibration samples; pass --calibration DATA")
    micro = Tflm(model, arena_size=arena_size)
    lite = _reference_litert(model)
    d_ins, d_outs = lite.get_input_details(), lite.get_output_details()
    per = [{"max_abs_diff": 0.0, "max_raw_diff": 0.0, "bit_exact": True, "dtype": str(d["dtype"])} for d in micro.outputs]
    mismatched, total = 0, 0
    for sample in input_sets(model, x):
        xs = [quantize_input(xk, d) for xk, d in zip(sample, d_ins)]
        got = micro.invoke_all(xs)
        for xk, d in zip(xs, d_ins):
            lite.set_tensor(d["index"], xk.reshape(d["shape"]))
        lite.reset_all_variables()  # each sample from a reset state, as Tflm.invoke_raw does
        lite.invoke()
        for k, (a, d_out, fig) in enumerate(zip(got, d_outs, per)):  # every output, in output tensor order
            b = lite.get_tensor(d_out["index"])
            fig["bit_exact"] &= bool(a.dtype == b.dtype and np.array_equal(a, b))
            mismatched += int(np.count_nonzero(a != b))
            total += int(a.size)
            fig["max_raw_diff"] = max(fig["max_raw_diff"], float(np.max(np.abs(a.astype(np.float64) - b))))
            fa, fb = dequantize_output(a, micro.outputs[k]), dequantize_output(b, d_out)
            fig["max_abs_diff"] = max(fig["max_abs_diff"], float(np.max(np.abs(fa.astype(np.float64) - fb))))
    return Parity(samples=len(x), max_abs_diff=max(f["max_abs_diff"] for f in per),
                  max_raw_diff=max(f["max_raw_diff"] for f in per), bit_exact=all(f["bit_exact"] for f in per),
                  output_dtype=str(micro.output["dtype"]), mismatch_pct=round(100.0 * mismatched / max(total, 1), 4),
                  outputs=per)


def harness_expectation(model: bytes, arena_size: Optional[int] = None) -> dict:
    """What a correct board harness reports for this model: the crc32 of the raw output
    for the protocol's input fill pattern (every input filled from its own first byte), and the
    I/O byte counts (``in_bytes``: all inputs together). A model with several outputs: the crc32 of
    every output's bytes in turn (output tensor order) and ``out_bytes`` their total; ``output`` is
    output 0.

    Example: ``harness_expectation(data)["crc32"]`` -> ``'1c291ca3'``.
    """
    interp = Tflm(model, arena_size=arena_size)
    xs = [input_pattern_array(d["shape"], d["dtype"]) for d in interp.inputs]
    ys = interp.invoke_all(xs)
    raw = b"".join(np.ascontiguousarray(y).astype(y.dtype.newbyteorder("<")).tobytes() for y in ys)
    return {"crc32": crc32_hex(raw), "in_bytes": int(sum(x.nbytes for x in xs)),
            "out_bytes": int(sum(y.nbytes for y in ys)), "output": ys[0]}
