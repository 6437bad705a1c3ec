"""TFLM (host) must compute what LiteRT computes: the parity check of a firmware build.

Both interpreters get the same quantized inputs (calibration samples, or random inputs over
the input's quantized range without them). Integer models are usually bit-exact; a
requantization can round one step differently (seen in FULLY_CONNECTED), which stacked
layers and SOFTMAX widen (seen: 3 steps on the MLPerf autoencoder, 10 on ResNet-8's softmax,
on random full-range inputs). Differences beyond ``INT_PARITY_STEPS`` mean a real kernel
mismatch, not rounding.

Example::

    section = check_parity(tflite, calibration, arena_bytes=8192, model_name="mnist")
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..convert.flatbuffer import TfliteInfo
from ..errors import LiteRTLoadError, VerificationError
from ..samples import Inputs, Samples
from ..tflm import Tflm, parity

PARITY_SAMPLES = 32  # calibration samples compared TFLM vs LiteRT
RANDOM_PARITY_SAMPLES = 8  # without calibration data: random inputs over the input's quantized range
INT_PARITY_STEPS = 16  # also for float outputs of a quantized model, counted in the output's steps
FLOAT_PARITY_ABS = 1e-3  # a float model end to end (no quantized output to count steps of)


def _index_bound(info: Optional[TfliteInfo], k: int) -> int:
    """How many rows the tables input ``k`` indexes have (GATHER params), the fewest; 1 if unknown."""
    if info is None or k >= len(info.inputs):
        return 1
    rows = [info.tensors[op.inputs[0]].shape[0] for op in info.ops
            if op.op == "GATHER" and len(op.inputs) > 1 and op.inputs[1] == info.inputs[k]]
    return max(1, min(rows, default=1))


def parity_inputs(calibration: Optional[Samples], interp: Tflm,
                  info: Optional[TfliteInfo] = None) -> tuple[Samples, str]:
    """The samples parity runs on and where they came from ("calibration" or "random"): every input
    of a several-input model gets its own (random ones in the model's input tensor order; an int32
    input's are indices valid for the tables it indexes)."""
    if calibration is not None and len(calibration):
        return calibration[:PARITY_SAMPLES].astype(np.float32), "calibration"
    rng = np.random.default_rng(0)
    parts = [_random(rng, d, _index_bound(info, k)) for k, d in enumerate(interp.inputs)]
    if len(parts) == 1:
        return parts[0], "random"
    return Inputs(tuple(parts), tuple(f"x{k}" for k in range(len(parts)))), "random"


def _random(rng: np.random.Generator, detail: dict, index_bound: int) -> np.ndarray:
    """Random float samples of one input over its quantized range (standard normal for a float input;
    indices below ``index_bound`` for an int32 input without quantization: token ids)."""
    shape = [RANDOM_PARITY_SAMPLES] + list(detail["shape"][1:])
    dtype, (scale, zp) = detail["dtype"], detail["quantization"]
    if dtype == np.int32 and not scale:
        return rng.integers(0, index_bound, size=shape).astype(np.float32)
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = rng.integers(info.min, info.max, size=shape, endpoint=True)
        return ((q - zp) * scale).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def output_step(info: TfliteInfo, k: int = 0) -> Optional[float]:
    """The quantization step of the model's output ``k``: its own scale if it is an integer tensor, the
    scale of the DEQUANTIZE input feeding it if it is a dequantized float; None for a float model."""
    out = info.tensors[info.outputs[k]]
    if out.scale and out.dtype != "float32":
        return float(out.scale[0])
    producer = next((op for op in info.ops if info.outputs[k] in op.outputs), None)
    if producer is not None and producer.op == "DEQUANTIZE" and producer.inputs and producer.inputs[0] >= 0:
        src = info.tensors[producer.inputs[0]]
        if src.scale:
            return float(src.scale[0])
    return None


def check_parity(tflite: bytes, info: TfliteInfo, calibration: Optional[np.ndarray], arena_bytes: int,
                 model_name: str) -> dict:
    """The parity section; VerificationError when TFLM and LiteRT disagree beyond rounding.

    The tolerance is in quantization steps of the output (``INT_PARITY_STEPS``), also for a
    dequantized float output (its difference divided by the step); ``max_step_diff`` reports
    the worst case. Only an end-to-end float model is compared in absolute float units. A model
    with several outputs: every output is compared, each in its own steps (``outputs``), and the
    worst decides.
    """
    interp = Tflm(tflite, arena_size=arena_bytes)
    x, source = parity_inputs(calibration, interp, info)
    try:
        p = parity(tflite, x, arena_size=arena_bytes)
    except LiteRTLoadError as e:  # TFLM runs it (the arena check did), LiteRT does not: nothing to compare with
        return {"skipped": f"{e}; TFLM runs it, so it packages for TFLM, but TFLM-vs-LiteRT parity cannot be "
                           "checked", "litert_loads": False, "data": source}
    out = {**p.as_dict(), "data": source}
    figures = [_steps(info, k, f) for k, f in enumerate(p.outputs)]
    steps = None if any(s is None for s, _ in figures) else max(s for s, _ in figures)
    step = figures[0][1]
    if len(figures) > 1:
        for f, (s, st) in zip(out["outputs"], figures):
            f.update(max_step_diff=s, output_step=st)
    out.update(max_step_diff=steps, output_step=step,
               tolerance=f"{INT_PARITY_STEPS} output steps" if steps is not None else f"{FLOAT_PARITY_ABS:g} (float)")
    if (steps is not None and steps > INT_PARITY_STEPS) or (steps is None and p.max_abs_diff > FLOAT_PARITY_ABS):
        diff = f"{steps:g} quantization steps" if steps is not None else f"{p.max_abs_diff:g} (float)"
        raise VerificationError(
            f"TFLM (host) and LiteRT disagree on {model_name}: max output difference {diff} over {p.samples} "
            f"{source} samples (tolerance {out['tolerance']}); nothing written. Report the model to edgepack")
    return out


def _steps(info: TfliteInfo, k: int, fig: dict) -> tuple[Optional[float], Optional[float]]:
    """(the difference in output ``k``'s quantization steps or None for a float output, that step)."""
    step = output_step(info, k)
    if np.issubdtype(np.dtype(fig["dtype"]), np.integer):
        return fig["max_raw_diff"], step
    return (round(fig["max_abs_diff"] / step, 4) if step else None), step


def tflm_parity(build, spec, done) -> dict:
    """Check ``tflm_parity``: TFLM (host, at the planned arena) computes what LiteRT computes."""
    return check_parity(build.tflite, build.info, build.calibration, done["arena"].recommended_bytes,
                        build.model_name)


def litert_loads(build, spec, done) -> dict:
    """Check ``litert_loads``: LiteRT (what Android apps run) loads and allocates the model; a model
    only TFLM runs (e.g. 1-D bias tensors with quantized_dimension 3) is refused naming --target tflm."""
    from ..runtime import LiteRT

    try:
        LiteRT(build.tflite)
    except LiteRTLoadError as e:
        raise for_android(e) from None
    return {"loads": True}


def for_android(e: LiteRTLoadError) -> LiteRTLoadError:
    """The refusal of a model LiteRT cannot load, for an Android build: what it means and the way out."""
    return LiteRTLoadError(f"{e}; an Android app could not load it (if TFLite-Micro runs it, package it "
                           "with --target tflm)")
