"""Fixtures every unit folder shares: repo paths, the bundled MNIST example, ../shared models, the golden tiny
int8 model, an in-process CLI runner. A fixture used by one folder only lives in that folder's conftest.py."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_result import CliResult
from locations import GOLDEN, MLPERF, ROOT


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def mlperf_dir() -> Path:
    if not MLPERF.is_dir():
        pytest.skip(f"MLPerf Tiny models not found at {MLPERF} (../shared beside the repo)")
    return MLPERF


@pytest.fixture(scope="session")
def tiny() -> bytes:
    """tests/golden/tflm/tiny_int8.tflite: the small int8 model whose C array and firmware files are goldens."""
    return (GOLDEN / "tiny_int8.tflite").read_bytes()


@dataclass
class Example:
    model: Path
    recipe: Path
    labels: Path
    calib: Path
    eval: Path
    train: Path


@pytest.fixture(scope="session")
def mnist() -> Example:
    return Example(model=ROOT / "examples/mnist/model.h5", recipe=ROOT / "examples/mnist/recipe.yaml",
                   labels=ROOT / "examples/mnist/labels.txt", calib=ROOT / "calibration_data/mnist/calib.npz",
                   eval=ROOT / "calibration_data/mnist/eval.npz", train=ROOT / "calibration_data/mnist/train.npz")


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run ``edgepack ARGS`` in-process through the real entry point (exit code, stdout, stderr)."""
    from edgepack.cli import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["edgepack", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run
