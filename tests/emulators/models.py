"""Tiny real .tflite models for device tests, built once per process with the real converter."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=None)
def tiny_tflite(quantized: bool = True) -> bytes:
    """A 8x8x1 -> 4 CNN converted by edgepack's converter (int8 I/O when ``quantized``)."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.recipe import QuantizeConfig

    set_seed(0)
    k = keras()
    model = k.Sequential([k.layers.Input((8, 8, 1)), k.layers.Conv2D(4, 3, activation="relu"),
                          k.layers.Flatten(), k.layers.Dense(4)])
    calib = np.random.default_rng(0).standard_normal((16, 8, 8, 1)).astype(np.float32)
    q = QuantizeConfig(mode="int8", io="int8") if quantized else QuantizeConfig(mode="none")
    return convert(model, q, calib if quantized else None)
