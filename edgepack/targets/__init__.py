"""Explicit registry of packaging targets: ``--target`` name -> "module:Class".

A target checks a build before anything is written (ops, budgets) and writes
its files into a staging folder that the pipeline renames into place.
"""

from __future__ import annotations

from ..registry import load_entry
from ..build import Build
from .base import Target

TARGETS: dict[str, str] = {
    "android": "edgepack.targets.android:AndroidTarget",
    "tflm": "edgepack.targets.firmware:FirmwareTarget",
}


def target_class(name: str) -> type[Target]:
    return load_entry(TARGETS, name, what="target", plural="targets")


__all__ = ["TARGETS", "target_class", "Build", "Target"]
