"""Where the tests' material lives: the repo, this folder's data and goldens, and ../shared beside the repo.

Test files in every unit folder import these (``from locations import GOLDEN``) instead of counting
``Path(__file__).parents``, so a test can move between folders unchanged.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
GOLDEN = TESTS / "golden" / "tflm"
DATA = TESTS / "data"
SHARED = ROOT.parent / "shared"
MLPERF = SHARED / "models" / "mlperf_tiny"
TFLM_TREE = SHARED / "third_party" / "tflite-micro"
