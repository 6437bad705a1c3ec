"""Flash CMSIS-DAP, ST-Link and J-Link probes with pyOCD (``pyocd load``), and list probes.

``target`` is pyOCD's target type (``pyocd list --targets``: builtin, or from a CMSIS
pack given as ``options.pack``); ``probe`` is a probe's unique ID (``-u``). pyOCD is
run as its CLI so its own logging and pack handling apply; :func:`list_probes` uses
its Python API.

Example::

    PyOcd().flash(FlashRequest(Path("harness.elf"), target="stm32h743xx"))
    list_probes()   # [{"unique_id": "0670FF...", "description": "STM32 STLink", "vendor": "STMicroelectronics"}]
"""

from __future__ import annotations

from pathlib import Path

from .base import FlashRequest, FlashTool


class PyOcd(FlashTool):
    name = executable = "pyocd"
    install = "install it with `pip install pyocd` (the 'boards' extra of edgepack)"
    image_suffixes = (".elf", ".hex", ".bin")
    failures = (
        (r"No connected debug probe matches unique ID '([^']+)'",
         "no attached probe has unique ID {0}; list the probes with `pyocd list` (or `edgepack devices`)"),
        (r"No (?:connected|available) debug probes",
         "no debug probe is attached; plug in the board's ST-Link/CMSIS-DAP/J-Link USB and check `pyocd list` "
         "(on Linux install the probe's udev rules)"),
        (r"Target type (\S+) not recognized",
         "pyOCD has no target type {0}; install its pack (`pyocd pack install {0}`) or set flash.target to a "
         "name from `pyocd list --targets`"),
        (r"(?:APPROTECT enabled|is locked|locked device|security is enabled|permanently locked)",
         "the target is locked (read/write protection); unlock it with `pyocd erase --chip -O auto_unlock=true` "
         "(this erases the chip) and flash again"),
        (r"(?:mass erase failed|Flash (?:algo|algorithm) (?:failed|error)|FlashFailure|flash.*(?:program|erase).* fail)",
         "programming the flash failed; check the target type matches the chip and that the flash is not "
         "write-protected"),
        (r"(?:TransferFaultError|Memory transfer fault|No ACK received|SWD/JTAG communication failure)",
         "the probe cannot talk to the target (wrong target, unpowered board or bad SWD wiring); check the "
         "target type and the connection"),
    )

    def command(self, exe: str, req: FlashRequest, work: Path) -> list[str]:
        cmd = [exe, "load", "--no-wait", "-t", req.target]
        if req.probe:
            cmd += ["-u", req.probe]
        if req.options.get("pack"):
            cmd += ["--pack", req.options["pack"]]
        if req.options.get("frequency"):
            cmd += ["-f", req.options["frequency"]]
        fmt = {".elf": "elf", ".hex": "hex", ".bin": "bin"}[Path(req.image).suffix]
        cmd += ["--format", fmt]
        if fmt == "bin":
            cmd += ["-a", req.options.get("base_address", hex(req.vector_table))]
        return cmd + [str(req.image)]


def list_probes() -> list[dict[str, str]]:
    """The debug probes pyOCD sees (its Python API), for ``edgepack devices``.

    Returns [] when none is attached; raises ImportError when pyOCD is not installed.
    Example: ``[p["unique_id"] for p in list_probes()]``.
    """
    from pyocd.core.helpers import ConnectHelper

    probes = ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False)
    return [{"unique_id": p.unique_id, "description": p.description, "vendor": p.vendor_name or "",
             "spec": f"board:PROFILE --probe pyocd:{p.unique_id}"} for p in probes]
