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


def layer_errors(model, quant: QuantizeConfig, calibration: Optional[np.ndarray],
                 dense_per_channel: bool = True) -> Optional[dict[str, dict[str, float]]]:
    """{op output tensor name: {metric: value}}, or None when the debugger does not apply
    (not a plain full-integer conversion, no calibration data)."""
    if quant.mode not in ("int8", "int16x8") or quant.rules or calibration is None or not len(calibration):
        return None
    from ..convert.tflite import make_converter
    from ..keras_compat import tf

    x = np.asarray(calibration[:DEBUG_SAMPLES], dtype=np.float32)
    # Float I/O: the debugger compares float values at each op; the model's integer I/O is not an op.
    conv = make_converter(model, quant.model_copy(update={"io": "float"}), x, dense_per_channel)

    def dataset():
        for i in range(x.shape[0]):
            yield [x[i : i + 1]]

    with capture_fd2():
        debugger = tf().lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=dataset)
        debugger.run()
    out: dict[str, dict[str, float]] = {}
    for name, stats in debugger.layer_statistics.items():
        out[name] = {k: round(float(v), 6) for k, v in stats.items() if np.isfinite(v)}
    return out
