"""Explicit registry of packaging targets: ``--target`` name -> "module:Class".

A target checks a build before anything is written (ops, budgets) and writes
its files into a staging folder that the pipeline renames into place.
"""

from __future__ import annotations

import importlib

from ..errors import UsageError
from .base import Build, Target

TARGETS: dict[str, str] = {
    "android": "edgepack.package.android:AndroidTarget",
    "tflm": "edgepack.package.firmware:FirmwareTarget",
}


def target_class(name: str) -> type[Target]:
    try:
        module, cls = TARGETS[name].split(":")
    except KeyError:
        raise UsageError(f"unknown target '{name}'; known targets: {', '.join(sorted(TARGETS))}") from None
    return getattr(importlib.import_module(module), cls)


__all__ = ["TARGETS", "target_class", "Build", "Target"]
