"""What every flashing tool shares: the request, the report, running the tool, failure lines.

A tool subclass gives its executable, how to install it, its command line
(:meth:`FlashTool.command`) and a table of failure patterns: (regex over the tool's
output, the one-line message with the fix). :meth:`FlashTool.flash` runs the command
with a timeout; a matching pattern, a non-zero exit or a timeout is a FlashError
naming the tool, so a board whose flash failed is never profiled.

Example::

    class MyTool(FlashTool):
        name = executable = "mytool"
        failures = ((r"no probe", "no probe attached: plug one in"),)
        def command(self, exe, req, work): return [exe, "flash", str(req.image)]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional

from ....errors import DeviceError


class FlashError(DeviceError):
    """Flashing failed (tool missing, no probe, locked or wrong target, verify failed)."""


@dataclass(frozen=True)
class FlashRequest:
    """One flash: ``image`` (ELF, or the tool's own format), ``target`` (the tool's name for the
    chip or board: pyOCD target type, OpenOCD target config, esptool chip, Arduino FQBN, GDB
    server HOST:PORT), ``probe`` (probe serial number, serial port or address; None = the only
    one attached), ``options`` (tool-specific, from the device profile), ``vector_table`` (where
    the image's vector table sits: GDB loads set SP/PC from it)."""

    image: Path
    target: str = ""
    probe: Optional[str] = None
    options: dict[str, str] = field(default_factory=dict)
    vector_table: int = 0
    timeout_s: float = 120.0


@dataclass(frozen=True)
class FlashReport:
    """What was run: the tool, its version and path, the command line and its last output lines."""

    tool: str
    version: str
    executable: str
    command: tuple[str, ...]
    output_tail: str


class FlashTool:
    """Base of the flashing tools; see the module docstring for what a subclass provides."""

    name: ClassVar[str] = ""
    executable: ClassVar[str] = ""
    alternatives: ClassVar[tuple[str, ...]] = ()  # other executable names tried in order
    install: ClassVar[str] = ""  # how to install it (one clause)
    failures: ClassVar[tuple[tuple[str, str], ...]] = ()  # (regex, message with the fix)
    version_args: ClassVar[tuple[str, ...]] = ("--version",)
    image_suffixes: ClassVar[tuple[str, ...]] = (".elf",)

    def find(self) -> str:
        """Path of the executable (on PATH, or beside this Python: pip-installed tools in a venv);
        FlashError saying how to install it."""
        for exe in (self.executable, *self.alternatives):
            path = shutil.which(exe) or shutil.which(exe, path=str(Path(sys.executable).parent))
            if path:
                return path
        raise FlashError(f"{self.name}: '{self.executable}' is not installed or not on PATH; {self.install}")

    def version(self, exe: str) -> str:
        """The tool's version line ("unknown" when it prints none)."""
        try:
            out = subprocess.run([exe, *self.version_args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return parse_version(out.stdout + out.stderr)

    def command(self, exe: str, req: FlashRequest, work: Path) -> list[str]:  # pragma: no cover - abstract
        """The command line; ``work`` is a scratch folder for files the tool needs (scripts)."""
        raise NotImplementedError

    def diagnose(self, returncode: int, output: str) -> Optional[str]:
        """The failure message for a run's output, or None when the run succeeded."""
        for pattern, message in self.failures:
            m = re.search(pattern, output, re.M | re.I)
            if m:
                return message.format(*m.groups(), **m.groupdict())
        if returncode != 0:
            last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "no output")
            return f"exited with status {returncode} ({last[:160]}); run the command by hand to see why"
        return None

    def check_image(self, req: FlashRequest) -> None:
        if not Path(req.image).is_file():
            raise FlashError(f"{self.name}: image {req.image} does not exist; build the firmware first")
        if Path(req.image).suffix not in self.image_suffixes:
            raise FlashError(f"{self.name} flashes {'/'.join(self.image_suffixes)} images, not {req.image}")

    def flash(self, req: FlashRequest) -> FlashReport:
        """Run the tool; FlashError (one line naming the tool and the fix) unless it succeeded."""
        self.check_image(req)
        exe = self.find()
        with tempfile.TemporaryDirectory(prefix=f"edgepack-{self.name}-") as work:
            cmd = self.command(exe, req, Path(work))
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=req.timeout_s,
                                     stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise FlashError(f"{self.name} did not finish within {req.timeout_s:g} s; check the probe "
                                 "connection and that the board is powered, then retry") from None
        output = (out.stdout or "") + (out.stderr or "")
        problem = self.diagnose(out.returncode, output)
        if problem:
            raise FlashError(f"{self.name}: {problem}")
        tail = "\n".join(output.strip().splitlines()[-5:])
        return FlashReport(self.name, self.version(exe), exe, tuple(cmd), tail)


def parse_version(text: str) -> str:
    """The first version-looking token of a tool's --version output."""
    m = re.search(r"\bv?(\d+\.\d+(?:\.\d+)?(?:[-+.][\w.]+)?)", text)
    return m.group(1) if m else (text.strip().splitlines() or ["unknown"])[0][:60]
