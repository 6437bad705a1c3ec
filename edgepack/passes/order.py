"""Step order: which steps may not come after which, and why.

Each step declares it on its Pass class (``forbidden_after``: earlier step -> the reason,
which says what to do); :func:`check_order` validates a recipe's step list with them. A
pass that behaves differently after some steps reads ``Pass.previous``, set when the
recipe builds it.

Example::

    check_order(["qat", "cluster"])   # RecipeError: step 'cluster' cannot follow 'qat': ...
"""

from __future__ import annotations

from ..errors import RecipeError


def after_quantization(step: str) -> dict[str, str]:
    """The usual rule: nothing that changes float weights after QAT or mixed precision."""
    return {
        "qat": f"the model is already quantization-aware; move '{step}' before 'qat'",
        "mixed_precision": f"the precision plan was measured on the earlier weights; move '{step}' "
                           "before 'mixed_precision'",
    }


def check_order(steps: list[str]) -> None:
    """RecipeError for the first step that follows a step it may not follow."""
    from . import pass_class

    for i, step in enumerate(steps):
        blockers = pass_class(step).forbidden_after
        for prev in steps[:i]:
            if prev in blockers:
                raise RecipeError(f"step '{step}' cannot follow '{prev}': {blockers[prev]}")
