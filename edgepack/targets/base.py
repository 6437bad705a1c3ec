"""What a packaging target must implement: its spec (the checks it needs and the device
they run against) and the rendering of its files. Targets check nothing themselves:
:func:`edgepack.verify.run_checks` runs the declared checks before anything is written.

Example::

    class Folder(Target):
        name = "folder"
        def write(self, build, out):
            (out / "model.tflite").write_bytes(build.tflite)
            return ["model.tflite"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..build import Build
from ..verify import TargetSpec


class Target:
    """Base class of packaging targets."""

    name: ClassVar[str] = ""
    # Options this target accepts in Build.options (others are an error).
    option_names: ClassVar[frozenset[str]] = frozenset()
    # Default of the recipe's quantize.dense_per_channel for this target.
    dense_per_channel: ClassVar[bool] = True
    # The kernels the model will run on (edgepack.passes.pruning.channels.KERNELS): pruning rounds
    # channel counts to their preferred multiple so that fewer MACs become less time.
    kernels: ClassVar[str] = "xnnpack"
    # The model runs on TFLite-Micro: converted from edgepack.tflm.prepare.for_tflm (batch 1, GELU's tanh form).
    tflm: ClassVar[bool] = False

    def spec(self, options: dict[str, Any]) -> TargetSpec:
        """The checks this target needs (edgepack.verify.CHECKS names) and what they run against;
        raises UsageError for bad options before any work starts."""
        return TargetSpec(name=self.name)

    def check(self, build: Build) -> None:
        """Run this target's declared checks on ``build`` (sets ``build.checks``; raises on failure)."""
        from ..verify import run_checks

        build.checks = run_checks(build, self.spec(build.options))

    def finalize_model(self, build: Build) -> bytes:
        """The model bytes this target ships (e.g. Android adds TFLite Metadata); must not change outputs.

        Called after verification, before the download package and provenance hashes are made.
        """
        return build.tflite

    def write(self, build: Build, out: Path) -> list[str]:  # pragma: no cover - abstract
        """Write the target's files into ``out`` (a staging folder); return their names."""
        raise NotImplementedError
