"""Step order, declared once as data: which steps may not come after which, and why.

``FORBIDDEN_AFTER[step][earlier]`` is the reason ``step`` cannot follow ``earlier`` (it
says what to do). :func:`check_order` validates a recipe's step list without touching the
passes; a pass that behaves differently after some steps reads ``Pass.previous``, set
when the recipe builds it.

Example::

    check_order(["qat", "cluster"])   # RecipeError: step 'cluster' cannot follow 'qat': ...
"""

from __future__ import annotations

from ..errors import RecipeError


def _quantized(step: str) -> dict[str, str]:
    """The usual rule: nothing that changes float weights after QAT or mixed precision."""
    return {
        "qat": f"the model is already quantization-aware; move '{step}' before 'qat'",
        "mixed_precision": f"the precision plan was measured on the earlier weights; move '{step}' "
                           "before 'mixed_precision'",
    }


FORBIDDEN_AFTER: dict[str, dict[str, str]] = {
    "prune_structured": _quantized("prune_structured"),
    "prune_magnitude": _quantized("prune_magnitude"),
    "cluster": _quantized("cluster"),
    "lowrank": _quantized("lowrank"),
    "distill": {"mixed_precision": "the precision plan was measured on the earlier weights; move 'distill' "
                                   "before 'mixed_precision'"},
    "qat": {"qat": "a model is made quantization-aware once; remove the second 'qat' step",
            "mixed_precision": "mixed precision chooses per-layer post-training precision; use it instead of "
                               "'qat', not before it"},
    "mixed_precision": {"qat": "a QAT model already fixes its quantization; use either 'qat' or 'mixed_precision'",
                        "mixed_precision": "remove the second 'mixed_precision' step"},
}


def check_order(steps: list[str]) -> None:
    """RecipeError for the first step that follows a step it may not follow."""
    for i, step in enumerate(steps):
        blockers = FORBIDDEN_AFTER.get(step, {})
        for prev in steps[:i]:
            if prev in blockers:
                raise RecipeError(f"step '{step}' cannot follow '{prev}': {blockers[prev]}")
