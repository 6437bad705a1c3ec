"""Fixtures of the device tests: an ADB key, the benchmark binary the emulated phones run, the model they push."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgepack.devices.android.adb import ensure_key
from emulators.adb_device import install_benchmark_model


@pytest.fixture
def bench_bin(tmp_path) -> Path:
    """A `benchmark_model` stand-in (this Python running LiteRT) installed where an emulated phone runs it."""
    return install_benchmark_model(tmp_path / "benchmark_model", sys.executable)


@pytest.fixture
def model(mlperf_dir) -> Path:
    """The MLPerf Tiny KWS .tflite: the model the ADB tests push and profile."""
    return mlperf_dir / "kws_ref_model.tflite"


@pytest.fixture
def key(tmp_path) -> Path:
    """A fresh ADB key pair (the host's identity the emulated phones trust or not)."""
    return ensure_key(tmp_path / "keys" / "adbkey")
