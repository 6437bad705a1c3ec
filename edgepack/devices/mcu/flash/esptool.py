"""Flash ESP32 boards with esptool (``esptool --chip esp32s3 --port P write-flash ...``).

The image is ESP-IDF's: edgepack's arm-none-eabi build does not target the Xtensa/RISC-V
cores, so build the harness with ESP-IDF (``idf.py build`` then ``idf.py merge-bin`` or
``esptool merge-bin``) and flash the merged image at ``options.offset`` (default 0x0).
``target`` is esptool's chip name; ``probe`` the serial port. ``write-flash`` verifies
each block's MD5 itself.

Example::

    Esptool().flash(FlashRequest(Path("build/merged.bin"), target="esp32s3", probe="/dev/ttyUSB0"))
"""

from __future__ import annotations

from pathlib import Path

from .base import FlashRequest, FlashTool


class Esptool(FlashTool):
    name = executable = "esptool"
    alternatives = ("esptool.py",)
    install = "install it with `pip install esptool` (the 'boards' extra of edgepack)"
    version_args = ("version",)
    image_suffixes = (".bin",)
    failures = (
        (r"Could not open (\S+), the port is busy or doesn't exist",
         "cannot open serial port {0} (busy or absent); check the board's USB port with `edgepack devices` and "
         "close serial monitors"),
        (r"(?:Could not connect to an Espressif device|Failed to connect to \S+: No serial data received)",
         "no Espressif chip answered; hold BOOT while pressing RESET (download mode), check --port, and retry"),
        (r"Wrong boot mode detected \(([^)]*)\)",
         "the chip is not in download mode (boot mode {0}); hold BOOT while pressing RESET and retry"),
        (r"This chip is (\S+), not (\S+)\. Wrong chip argument\?",
         "the board has a {0}, not the profile's {1}: pick the right device profile or fix flash.target"),
        (r"(?:Secure Download Mode|flash encryption is enabled|Flash encryption)",
         "the chip has secure download mode or flash encryption enabled; esptool cannot write plain images - "
         "flash it with ESP-IDF's secure flow"),
        (r"(?:MD5 of file does not match data in flash|Write verify failed at \S+|Verification failed)",
         "verify failed: the flash contents differ from the image; check the power supply and retry at a lower "
         "baud rate (flash.options.baud)"),
        (r"No such file or\W+directory: '([^']+)'", "image {0} does not exist; build it with ESP-IDF first"),
    )

    def command(self, exe: str, req: FlashRequest, work: Path) -> list[str]:
        cmd = [exe, "--chip", req.target]
        if req.probe:
            cmd += ["--port", req.probe]
        if req.options.get("baud"):
            cmd += ["--baud", req.options["baud"]]
        return cmd + ["write-flash", req.options.get("offset", "0x0"), str(req.image)]
