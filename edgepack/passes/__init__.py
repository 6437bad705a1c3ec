"""Explicit registry of compression passes: recipe ``type`` -> "module:Class".

Modules are imported only when a recipe uses them, so validating a recipe or
running ``--help`` does not import TensorFlow. To add a pass, write one module
with a :class:`~edgepack.passes.base.Pass` subclass and add one line here.
"""

from __future__ import annotations

from ..errors import RecipeError
from ..registry import load_entry
from .base import Context, Labeled, Pass, PassConfig

REGISTRY: dict[str, str] = {
    "prune_structured": "edgepack.passes.prune_structured:StructuredPrune",
    "prune_magnitude": "edgepack.passes.prune_magnitude:MagnitudePrune",
    "qat": "edgepack.passes.qat:QAT",
    "mixed_precision": "edgepack.quantize.mixed_precision:MixedPrecision",
    "cluster": "edgepack.passes.cluster:Cluster",
    "lowrank": "edgepack.passes.lowrank:LowRank",
    "distill": "edgepack.passes.distill:Distill",
}


def pass_class(name: str) -> type[Pass]:
    """Return the Pass class registered under ``name``."""
    return load_entry(REGISTRY, name, what="recipe step type", plural="types", error=RecipeError)


__all__ = ["REGISTRY", "pass_class", "Pass", "PassConfig", "Context", "Labeled"]
