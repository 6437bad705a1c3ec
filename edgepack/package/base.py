"""What a packaging target receives (Build) and must implement (Target)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from ..convert.flatbuffer import TfliteInfo
from ..recipe import Recipe


@dataclass
class Build:
    """Everything known about one build when the target runs.

    ``report`` is the report.json dict under construction; targets add their own
    section (e.g. ``report["firmware"] = {...}``). ``options`` carries
    target-specific CLI options (e.g. ``device``, ``array_name``).
    """

    tflite: bytes
    info: TfliteInfo
    recipe: Recipe
    model_name: str
    float_model: Any = None  # the tf_keras model before compression (None for .tflite input)
    calibration: Optional[np.ndarray] = None  # preprocessed float samples
    labels: Optional[list[str]] = None
    report: dict[str, Any] = field(default_factory=dict)
    download_package: Optional[bytes] = None  # entropy-coded .tflite (edgepack.epk), for OTA
    options: dict[str, Any] = field(default_factory=dict)


class Target:
    """Base class of packaging targets."""

    name: ClassVar[str] = ""
    # Options this target accepts in Build.options (others are an error).
    option_names: ClassVar[frozenset[str]] = frozenset()
    # Default of the recipe's quantize.dense_per_channel for this target.
    dense_per_channel: ClassVar[bool] = True

    def check(self, build: Build) -> None:
        """Raise (UnsupportedOpError, BudgetError, ...) before anything is written."""

    def write(self, build: Build, out: Path) -> list[str]:  # pragma: no cover - abstract
        """Write the target's files into ``out`` (a staging folder); return their names."""
        raise NotImplementedError
