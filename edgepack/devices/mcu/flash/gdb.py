"""Flash through any GDB server over the GDB remote protocol (``gdb-multiarch``).

Works with every server that speaks it: OpenOCD (:3333), pyOCD gdbserver (:3333),
SEGGER JLinkGDBServer (:2331), st-util (:4242), Black Magic Probe, and QEMU's
``-gdb tcp::PORT`` stub (what the tests use). The script connects, optionally runs
a reset-halt monitor command (``options.reset: "monitor reset halt"``), loads the ELF,
compares the read-only sections with the target (``compare-sections -r``), sets SP and
PC from the vector table and detaches, which resumes the core.

Example::

    GdbRemote().flash(FlashRequest(Path("harness.elf"), target="127.0.0.1:3333"))
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import FlashError, FlashRequest, FlashTool

_SERVERS = "openocd, pyocd gdbserver, JLinkGDBServer, st-util or qemu-system-arm -gdb tcp::PORT"


class GdbRemote(FlashTool):
    name = "gdb"
    executable = "gdb-multiarch"
    alternatives = ("arm-none-eabi-gdb", "gdb")
    install = "install it with `apt-get install --no-install-recommends gdb-multiarch`"
    image_suffixes = (".elf",)
    failures = (
        (r"^(\S+): No such file or directory", "{0} does not exist; build the firmware first"),
        (r"^(\S+:\d+): Connection (?:timed out|refused)",
         "no GDB server answers at {0}: start one (" + _SERVERS + ") or pass --probe gdb:HOST:PORT"),
        (r"Remote connection closed|Remote communication error",
         "the GDB server closed the connection; check the probe's USB cable and the server's log"),
        (r"Remote 'g' packet reply is too long|Truncated register|Architecture of file not recognized",
         "the GDB server's target is not the ELF's Cortex-M core; point the server at the right target"),
        (r"Section (\S+), range \S+ -- \S+: MIS-MATCHED",
         "verify failed: section {0} on the target differs from the ELF after loading (flash locked or "
         "write-protected, or a wrong memory map): unlock/mass-erase the chip and check the profile's flash_origin"),
        (r"[Tt]arget not halted",
         "the GDB server's target is running: halt it first (profile flash.options.reset: \"monitor reset halt\" "
         "for OpenOCD/pyOCD/J-Link servers)"),
        (r"(Load failed|Error (?:erasing|writing) flash[^\n]*|Cannot access memory at address \S+)",
         "{0}: the load did not complete (locked flash or wrong memory map); unlock the chip with the vendor tool "
         "and check the profile's flash_origin"),
    )

    def script(self, req: FlashRequest) -> str:
        """The GDB command file: errors stop it (gdb -batch exits 1)."""
        if not re.fullmatch(r"[\w.\-]+:\d{1,5}|/[\w./\-]+", req.target or ""):
            raise FlashError(f"gdb: '{req.target}' is not a GDB server address; pass --probe gdb:HOST:PORT "
                             "(or a serial device path for a Black Magic Probe)")
        vt = req.vector_table
        lines = ["set confirm off", "set pagination off",
                 f"set tcp connect-timeout {int(req.options.get('connect_timeout', '5'))}",
                 f"target remote {req.target}"]
        if req.options.get("reset"):
            lines.append(req.options["reset"])
        lines += ["load", "compare-sections -r",
                  f"set $sp = *(unsigned int *){vt:#x}", f"set $pc = *(unsigned int *){vt + 4:#x}", "detach"]
        return "\n".join(lines) + "\n"

    def command(self, exe: str, req: FlashRequest, work: Path) -> list[str]:
        script = work / "flash.gdb"
        script.write_text(self.script(req))
        return [exe, "-nx", "-batch", "-x", str(script), str(req.image)]
