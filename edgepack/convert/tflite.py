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


def _convert_plan(model, quant: QuantizeConfig, calibration, hints: dict[str, Any]) -> bytes:
    """Float conversion, then the mixed-precision plan applied per op."""
    from ..passes.mixed_precision import quantize_plan, validate_plan_hint

    validate_plan_hint(hints["precision_plan"], quant)
    if calibration is None or len(calibration) == 0:
        raise DataError("the mixed-precision plan needs calibration data; pass --calibration DATA")
    rest = {k: v for k, v in hints.items() if k != "precision_plan"}
    float_model = convert(model, QuantizeConfig(mode="none"), None, rest)
    return quantize_plan(float_model, hints["precision_plan"], calibration, quant.per_channel)


def convert(
    model,
    quant: QuantizeConfig,
    calibration: Optional[np.ndarray] = None,
    hints: Optional[dict[str, Any]] = None,
) -> bytes:
    """Convert a tf_keras model with the quantization in ``quant``.

    ``hints`` may carry ``precision_plan`` ({op output tensor: int8 | int16x8 |
    float}, set by the mixed_precision step and applied with ai-edge-quantizer),
    ``debug_options`` and ``experimental_new_quantizer``.
    """
    from ..keras_compat import tf

    if (hints or {}).get("precision_plan"):
        return _convert_plan(model, quant, calibration, hints)

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
