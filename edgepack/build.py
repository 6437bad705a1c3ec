"""Build: everything known about one build as it flows from convert through verify to a target.

Example::

    build = Build(tflite=data, info=read_tflite(data), recipe=Recipe(), model_name="mnist")
    build.checks["arena"].recommended_bytes     # after edgepack.verify.run_checks
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .convert.flatbuffer import TfliteInfo
from .recipe import Recipe


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
    # Results of the target's checks (edgepack.verify.run_checks), by check name.
    checks: dict[str, Any] = field(default_factory=dict)
    # The model output each output tensor stands for (tensor order; edgepack.outputs.output_names of the
    # converter's bytes), and the classification output's tensor index (labels, the accuracy gate).
    outputs: list[str] = field(default_factory=list)
    output: int = 0

