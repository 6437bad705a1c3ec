"""What the firmware files are rendered from (:class:`FirmwarePlan`): the firmware target builds it from its
checks' results, :mod:`.firmware_files` renders the project from it.

Example::

    plan = FirmwareTarget().plan(build)     # after the checks ran
    plan.report()["arena"]["total_bytes"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..profiles import DeviceProfile


@dataclass
class FirmwarePlan:
    """What the firmware files are rendered from: the checks' results and the names to use."""

    profile: DeviceProfile
    ident: str
    calls: list[str]
    arena: Any  # tflm.ArenaSize
    parity: dict
    budget: dict
    harness: dict
    advice: list[str]
    compression: Optional[dict] = None  # TFLM DECODE weight compression (finalize_model), per tensor

    def report(self) -> dict:
        out = {"device": self.profile.name, "board": self.profile.board, "array_name": self.ident,
               "op_registrations": self.calls, "arena": self.arena.as_dict(), "parity": self.parity,
               "budget": self.budget, "harness": self.harness, "advice": self.advice}
        if self.compression is not None:
            out["compression"] = self.compression
        return out
