"""Shared fixtures: repo paths, the bundled MNIST example, ../shared models, an in-process CLI runner."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MLPERF = SHARED / "models" / "mlperf_tiny"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def mlperf_dir() -> Path:
    if not MLPERF.is_dir():
        pytest.skip(f"MLPerf Tiny models not found at {MLPERF} (../shared beside the repo)")
    return MLPERF


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


@dataclass
class CliResult:
    exit_code: int
    out: str
    err: str


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
