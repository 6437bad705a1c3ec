"""Keras model -> TFLite flatbuffer bytes with the converter's quantization modes.

Example::

    data = convert(model, QuantizeConfig(mode="int8", io="int8"), calibration=x)
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import ConversionError, DataError
from ..fdcapture import capture_fd2
from ..recipe import QuantizeConfig

_IO_TYPES = {"int8": "int8", "uint8": "uint8", "int16": "int16"}


def representative_dataset(x: np.ndarray):
    """A converter representative dataset over the samples in ``x`` (one per step)."""

    def gen():
        for i in range(x.shape[0]):
            yield [x[i : i + 1].astype(np.float32)]

    return gen


def convert(
    model,
    quant: QuantizeConfig,
    calibration: Optional[np.ndarray] = None,
    hints: Optional[dict[str, Any]] = None,
) -> bytes:
    """Convert a tf_keras model with the quantization in ``quant``.

    ``hints`` may carry ``denylisted_ops`` / ``denylisted_nodes`` (kept in float
    by the mixed-precision pass) and ``experimental_new_quantizer``.
    """
    from ..keras_compat import tf

    t = tf()
    hints = hints or {}
    conv = t.lite.TFLiteConverter.from_keras_model(model)
    ops = t.lite.OpsSet
    if quant.mode != "none":
        conv.optimizations = [t.lite.Optimize.DEFAULT]
    if quant.mode == "float16":
        conv.target_spec.supported_types = [t.float16]
    if quant.needs_calibration:
        if calibration is None or len(calibration) == 0:
            raise DataError(f"quantization mode '{quant.mode}' needs calibration data; pass --calibration DATA")
        conv.representative_dataset = representative_dataset(calibration)
        if quant.mode == "int8":
            conv.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8]
        else:
            conv.target_spec.supported_ops = [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if quant.io != "float":
            conv.inference_input_type = getattr(t, _IO_TYPES[quant.io])
            conv.inference_output_type = getattr(t, _IO_TYPES[quant.io])
        if not quant.per_channel:
            conv._experimental_disable_per_channel = True  # noqa: SLF001 - documented converter flag
    debug = hints.get("debug_options")
    if debug is not None:
        conv._experimental_debug_options = debug  # noqa: SLF001
    for key in ("experimental_new_quantizer", "_experimental_disable_per_channel_quantization_for_dense_layers"):
        if key in hints:
            setattr(conv, key, hints[key])
    try:
        with capture_fd2():
            data = conv.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many unrelated types
        msg = str(e).strip().splitlines()
        raise ConversionError(f"TFLite conversion ({quant.mode}) failed: {msg[0] if msg else type(e).__name__}") from e
    return bytes(data)
