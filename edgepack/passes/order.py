"""Step-order rules shared by the passes: which steps may not come before which.

Example::

    forbid_after("cluster", previous, {"qat": "QAT must be the last training step"})
"""

from __future__ import annotations

from ..errors import RecipeError

#: Steps after which the model is a quantization-aware (fake-quant) model:
#: weights can no longer be reshaped, clustered or factorised.
QUANTIZED_STEPS = ("qat", "mixed_precision")


def forbid_after(step: str, previous: list[str], blockers: dict[str, str]) -> None:
    """Raise RecipeError when a step named in ``blockers`` precedes ``step``.

    ``blockers`` maps a step type to the reason, which should say what to do.
    """
    for prev in previous:
        if prev in blockers:
            raise RecipeError(f"step '{step}' cannot follow '{prev}': {blockers[prev]}")


def quantized_blockers(step: str) -> dict[str, str]:
    """The usual rule: nothing that changes float weights after QAT or mixed precision."""
    return {
        "qat": f"the model is already quantization-aware; move '{step}' before 'qat'",
        "mixed_precision": f"the precision plan was measured on the earlier weights; move '{step}' "
                           "before 'mixed_precision'",
    }
