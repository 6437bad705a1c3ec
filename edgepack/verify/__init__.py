"""Verification: every check a build must pass before anything is written.

Each check is a function ``check(build, spec, done) -> section`` of the built model
(:class:`edgepack.build.Build`), the target's spec (:class:`TargetSpec`: which checks, which
device) and the sections of the checks before it; it returns its report section or raises
(UnsupportedOpError, BudgetError, VerificationError). Targets declare their checks in
``Target.spec()``; the pipeline runs them with :func:`run_checks`, then the target renders.
The accuracy gate, common to every target, is :func:`edgepack.verify.accuracy.gate`.

Example::

    spec = TargetSpec(name="tflm", checks=("tflm_ops", "arena", "budget"), profile=load_profile("nucleo-l4r5zi"))
    build.checks = run_checks(build, spec)
    build.checks["budget"]["ram"]["headroom"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..registry import load_entry

CHECKS: dict[str, str] = {
    "tflm_ops": "edgepack.verify.ops:tflm_ops",  # every op has a TFLM kernel -> its Add* registrations
    "int8_only": "edgepack.verify.ops:int8_only",  # no float arithmetic on an int8-only board
    "arena": "edgepack.verify.budget:arena",  # the tensor arena TFLM needs (bisection + margin)
    "budget": "edgepack.verify.budget:budget",  # flash and RAM fit the board (needs "arena")
    "tflm_parity": "edgepack.verify.parity:tflm_parity",  # TFLM host == LiteRT (needs "arena")
    "litert_loads": "edgepack.verify.parity:litert_loads",  # the phone runtime loads the model
}


@dataclass
class TargetSpec:
    """What a target's checks run against: their names, in order, and the device profile."""

    name: str
    checks: tuple[str, ...] = ()
    profile: Optional[Any] = None  # edgepack.profiles.DeviceProfile for device targets
    # The target shrinks the model after the checks (Target.finalize_model): the budget check reports
    # "over" instead of raising, and the target raises if its final model still does not fit.
    shrinks: bool = False


def run_checks(build, spec: TargetSpec) -> dict[str, Any]:
    """Run ``spec.checks`` in order; return their sections by name (the first failure raises)."""
    done: dict[str, Any] = {}
    for name in spec.checks:
        check = load_entry(CHECKS, name, what="check", plural="checks")
        done[name] = check(build, spec, done)
    return done
