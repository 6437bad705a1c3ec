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

from ..errors import VerificationError
from ..tflm import Tflm, parity

PARITY_SAMPLES = 32  # calibration samples compared TFLM vs LiteRT
RANDOM_PARITY_SAMPLES = 8  # without calibration data: random inputs over the input's quantized range
INT_PARITY_STEPS = 16
FLOAT_PARITY_ABS = 1e-3


def parity_inputs(calibration: Optional[np.ndarray], interp: Tflm) -> tuple[np.ndarray, str]:
    """The samples parity runs on and where they came from ("calibration" or "random")."""
    if calibration is not None and len(calibration):
        return np.asarray(calibration[:PARITY_SAMPLES], dtype=np.float32), "calibration"
    rng = np.random.default_rng(0)
    shape = [RANDOM_PARITY_SAMPLES] + list(interp.input["shape"][1:])
    dtype, (scale, zp) = interp.input["dtype"], interp.input["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = rng.integers(info.min, info.max, size=shape, endpoint=True)
        return ((q - zp) * scale).astype(np.float32), "random"
    return rng.standard_normal(shape).astype(np.float32), "random"


def check_parity(tflite: bytes, calibration: Optional[np.ndarray], arena_bytes: int, model_name: str) -> dict:
    """The parity section; VerificationError when TFLM and LiteRT disagree beyond rounding."""
    interp = Tflm(tflite, arena_size=arena_bytes)
    x, source = parity_inputs(calibration, interp)
    p = parity(tflite, x, arena_size=arena_bytes)
    out = {**p.as_dict(), "data": source}
    integer = np.issubdtype(np.dtype(p.output_dtype), np.integer)
    if (integer and p.max_raw_diff > INT_PARITY_STEPS) or (not integer and p.max_abs_diff > FLOAT_PARITY_ABS):
        unit = "quantization steps" if integer else "(float)"
        raise VerificationError(
            f"TFLM (host) and LiteRT disagree on {model_name}: max output difference {p.max_raw_diff:g} "
            f"{unit} over {p.samples} {source} samples; nothing written. Report the model to edgepack")
    return out


def tflm_parity(build, spec, done) -> dict:
    """Check ``tflm_parity``: TFLM (host, at the planned arena) computes what LiteRT computes."""
    return check_parity(build.tflite, build.calibration, done["arena"].recommended_bytes, build.model_name)
