"""The quantize stage: a Keras model -> TFLite bytes with the recipe's quantization.

Plain modes go through the TFLite converter (:func:`edgepack.convert.tflite.convert`); a
per-op precision plan (from the mixed_precision step) or the recipe's ``quantize.rules``
go through a float conversion and ai-edge-quantizer (:mod:`.plan`).

Example::

    data = quantize_model(model, QuantizeConfig(mode="int8"), x)
    mixed = quantize_model(model, QuantizeConfig(mode="int8"), x, plan={"model/fc1/MatMul": "int16x8"})
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..convert.tflite import convert
from ..errors import DataError
from .config import QuantizeConfig


def quantize_model(model, quant: QuantizeConfig, calibration: Optional[np.ndarray] = None,
                   plan: Optional[dict[str, str]] = None, dense_per_channel: bool = True) -> bytes:
    """TFLite bytes for ``model`` quantized as ``quant`` says (and per ``plan``, if any)."""
    if not plan and not quant.rules:
        return convert(model, quant, calibration, dense_per_channel=dense_per_channel)
    from .mixed_precision import validate_plan
    from .plan import quantize_plan

    validate_plan(quant)
    if calibration is None or len(calibration) == 0:
        raise DataError("per-op quantization needs calibration data; pass --calibration DATA")
    float_model = convert(model, QuantizeConfig(mode="none"))
    return quantize_plan(float_model, plan or {}, calibration, quant.per_channel, quant.rules,
                         default="int16x8" if quant.mode == "int16x8" else "int8", io=quant.io)
