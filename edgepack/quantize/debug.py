"""Per-layer quantization error, measured by TensorFlow's QuantizationDebugger.

The debugger replays the same converter settings with numeric-verify ops after every
quantized op and reports, per op output tensor, the error of the quantized value against
the float one on the calibration samples (``mean_squared_error``, ``max_abs_error``,
``mean_error``, ``stddev``); :func:`edgepack.verify.layers.layer_table` turns the MSE into
RMS error in quantization steps of each op's output (about 0.29 is the rounding floor).

Example::

    errors = layer_errors(model, QuantizeConfig(mode="int8"), calibration[:64])
    errors["NumericVerify/sequential/fc1/MatMul;sequential/fc1/Relu:12"]["mean_squared_error"]
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..fdcapture import capture_fd2
from .config import QuantizeConfig

DEBUG_SAMPLES = 32  # calibration samples the debugger replays (it runs the model twice per sample)


def _fake_quantized(model) -> bool:
    """True for a quantization-aware-trained model (tfmot's QuantizeWrapper / QuantizeLayer)."""
    layers = getattr(model, "layers", None) or []
    return any(type(lyr).__name__.startswith(("QuantizeWrapper", "QuantizeLayer")) for lyr in layers)


def layer_errors(model, quant: QuantizeConfig, calibration: Optional[np.ndarray],
                 dense_per_channel: bool = True) -> tuple[Optional[dict[str, dict[str, float]]], Optional[str]]:
    """({op output tensor name: {metric: value}}, None), or (None, why the figures are absent).

    The figures are a diagnostic: a model the debugger cannot replay (a QAT model, whose
    fake-quant ops already fix the int8 ranges; an op it refuses) gives no figures and a
    reason, never a failed build."""
    if quant.mode not in ("int8", "int16x8") or quant.rules:
        return None, f"per-op error figures are measured for plain int8/int16x8 only (mode {quant.mode}" + (
            ", per-op rules)" if quant.rules else ")")
    if calibration is None or not len(calibration):
        return None, "per-op error figures need calibration data (--calibration)"
    if not isinstance(calibration, np.ndarray):  # an edgepack.samples.Inputs: the debugger feeds by position
        return None, "per-op error figures are measured for single-input models (TensorFlow's QuantizationDebugger"\
                     " feeds inputs by position)"
    if _fake_quantized(model):
        return None, ("per-op error figures are not measured after qat: TensorFlow's QuantizationDebugger "
                      "cannot replay a quantization-aware-trained model (its ranges come from training)")
    from ..convert.tflite import make_converter
    from ..keras_compat import tf

    x = np.asarray(calibration[:DEBUG_SAMPLES], dtype=np.float32)
    # Float I/O: the debugger compares float values at each op; the model's integer I/O is not an op.
    conv = make_converter(model, quant.model_copy(update={"io": "float"}), x, dense_per_channel)

    def dataset():
        for i in range(x.shape[0]):
            yield [x[i : i + 1]]

    try:
        with capture_fd2():
            debugger = tf().lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=dataset)
            debugger.run()
    except (ValueError, RuntimeError, TypeError) as e:  # the debugger's own refusals
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return None, f"per-op error figures skipped: TensorFlow's QuantizationDebugger failed ({first})"
    out: dict[str, dict[str, float]] = {}
    for name, stats in debugger.layer_statistics.items():
        out[name] = {k: round(float(v), 6) for k, v in stats.items() if np.isfinite(v)}
    return out, None
