"""Tiny models for the firmware tests, built inline and converted for real."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from edgepack.recipe import QuantizeConfig, Recipe


def tiny_keras(seed: int = 0, units: int = 3):
    """A small conv net on 8x8x1 inputs with fixed weights."""
    from edgepack.keras_compat import keras, set_seed

    set_seed(seed)
    k = keras()
    model = k.Sequential([
        k.layers.Input((8, 8, 1), name="image"),
        k.layers.Conv2D(4, 3, activation="relu", name="conv"),
        k.layers.MaxPooling2D(2, name="pool"),
        k.layers.Flatten(name="flat"),
        k.layers.Dense(units, activation="softmax", name="head"),
    ], name="tiny")
    return model


def calib(n: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 8, 8, 1), dtype=np.float32)


def convert_tiny(mode: str = "int8", io: str = "int8", seed: int = 0) -> bytes:
    from edgepack.convert.tflite import convert

    q = QuantizeConfig(mode=mode, io=io if mode in ("int8", "int16x8") else "float")
    return convert(tiny_keras(seed), q, calib() if q.needs_calibration else None)


def build_for(data: bytes, name: str = "tiny", options: dict | None = None, calibration=None, mode: str = "int8"):
    """A packaging Build over ``data`` (what the pipeline hands a target)."""
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.build import Build

    recipe = Recipe.from_dict({"quantize": {"mode": mode, "io": "int8" if mode == "int8" else "float"}})
    return Build(tflite=data, info=read_tflite(data), recipe=recipe, model_name=name,
                 calibration=calibration, options=dict(options or {}))


# The QEMU (Cortex-M4) tests: a TFLM tree (EDGEPACK_TFLM_ROOT, e.g. ../shared/third_party/tflite-micro), the Arm
# GNU toolchain and qemu-system-arm; skipped, saying what to install, otherwise.
TFLM_ROOT = os.environ.get("EDGEPACK_TFLM_ROOT")
needs_tree = pytest.mark.skipif(
    not (TFLM_ROOT and shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="set EDGEPACK_TFLM_ROOT to a TFLM tree and install gcc-arm-none-eabi, libnewlib-arm-none-eabi, "
           "libstdc++-arm-none-eabi-newlib and qemu-system-arm")
