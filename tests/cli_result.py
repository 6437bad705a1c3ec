"""What an in-process ``edgepack`` run returned (the ``run_cli`` fixture's result)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CliResult:
    exit_code: int
    out: str
    err: str
