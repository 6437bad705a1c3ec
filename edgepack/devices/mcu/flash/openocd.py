"""Flash with OpenOCD's ``program`` command (ST-Link, CMSIS-DAP, J-Link and other adapters).

``target`` is OpenOCD's target config (``stm32l4x`` -> ``-f target/stm32l4x.cfg``),
``options.interface`` its adapter config (``stlink``, ``cmsis-dap``, ``jlink``);
``probe`` an adapter serial number (``adapter serial``). ``program FILE verify reset
exit`` erases, writes, reads back and resets.

Example::

    OpenOcd().flash(FlashRequest(Path("harness.elf"), target="stm32l4x", options={"interface": "stlink"}))
"""

from __future__ import annotations

from pathlib import Path

from .base import FlashRequest, FlashTool


class OpenOcd(FlashTool):
    name = executable = "openocd"
    install = "install it with `apt-get install --no-install-recommends openocd`"
    image_suffixes = (".elf", ".hex")
    failures = (
        (r"Can't find (\S+\.cfg)",
         "OpenOCD has no config {0}; set the profile's flash.target/flash.options.interface to a file under "
         "OpenOCD's scripts/target and scripts/interface folders"),
        (r"(?:unable to find a matching CMSIS-DAP device|Error: open failed|No J-Link device found|"
         r"unable to open ftdi device|couldn't open|LIBUSB_ERROR_ACCESS)",
         "no debug adapter found (or no permission to open it); plug in the board's probe USB, install OpenOCD's "
         "udev rules (60-openocd.rules) and check flash.options.interface"),
        (r"(?:device protected|flash memory write protected|is in Read Protection|RDP level|debug interface locked)",
         "the target is locked (flash read/write protection); remove the protection with the vendor tool "
         "(e.g. STM32CubeProgrammer option bytes, which erases the chip) and flash again"),
        (r"\*\* Verify Failed \*\*", "verify failed: the flash contents differ from the image after programming; "
         "check the target config matches the chip and that the flash is not write-protected"),
        (r"\*\* Programming Failed \*\*", "programming failed; check the target config matches the chip "
         "(OpenOCD's output above names the bank) and that the board is powered"),
        (r"(?:UNEXPECTED idcode|JTAG scan chain interrogation failed|Error connecting DP|init mode failed)",
         "the adapter cannot reach the target (wrong target config, unpowered board or bad SWD wiring); check "
         "flash.target and the connection"),
        (r"\*\* OpenOCD init failed \*\*", "OpenOCD could not start (see its first 'Error:' line); check the "
         "adapter and target configs"),
    )

    def command(self, exe: str, req: FlashRequest, work: Path) -> list[str]:
        iface = req.options.get("interface", "cmsis-dap")
        cmd = [exe, "-f", iface if iface.endswith(".cfg") else f"interface/{iface}.cfg"]
        if req.probe:
            cmd += ["-c", f"adapter serial {req.probe}"]
        if req.options.get("transport"):
            cmd += ["-c", f"transport select {req.options['transport']}"]
        tgt = req.target
        cmd += ["-f", tgt if tgt.endswith(".cfg") else f"target/{tgt}.cfg"]
        return cmd + ["-c", f"program {{{req.image}}} verify reset exit"]
