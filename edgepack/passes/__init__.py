"""Explicit registry of compression passes: recipe ``type`` -> "module:Class".

Modules are imported only when a recipe uses them, so validating a recipe or
running ``--help`` does not import TensorFlow. To add a pass, write one module
with a :class:`~edgepack.passes.base.Pass` subclass and add one line here.
"""

from __future__ import annotations

import importlib

from ..errors import RecipeError
from .base import Context, Labeled, Pass, PassConfig

REGISTRY: dict[str, str] = {
    "prune_structured": "edgepack.passes.prune_structured:StructuredPrune",
    "prune_magnitude": "edgepack.passes.prune_magnitude:MagnitudePrune",
    "qat": "edgepack.passes.qat:QAT",
    "mixed_precision": "edgepack.passes.mixed_precision:MixedPrecision",
    "cluster": "edgepack.passes.cluster:Cluster",
    "lowrank": "edgepack.passes.lowrank:LowRank",
    "distill": "edgepack.passes.distill:Distill",
}


def pass_class(name: str) -> type[Pass]:
    """Return the Pass class registered under ``name``."""
    try:
        target = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise RecipeError(f"unknown recipe step type '{name}'; known types: {known}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["REGISTRY", "pass_class", "Pass", "PassConfig", "Context", "Labeled"]
