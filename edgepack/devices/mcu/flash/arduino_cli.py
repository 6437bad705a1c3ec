"""Build and upload the packaged Arduino sketch with arduino-cli (Arduino boards).

The firmware package holds an Arduino library (``arduino/<lib>/``) whose example
``Profile`` is the profiling harness (Arduino ``Serial`` + the core's cycle counter).
arduino-cli compiles it for the board (``target`` = the FQBN, e.g.
``arduino:mbed_nano:nano33ble``; the core and the TFLM Arduino library must be
installed: ``arduino-cli core install arduino:mbed_nano``), and uploads the build
(``probe`` = the serial port) with the core's own uploader (bossac, dfu-util ...).

Example::

    tool = ArduinoCli()
    elf = tool.build(Path("build/firmware"), "arduino:mbed_nano:nano33ble", Path("/tmp/w"))
    tool.flash(FlashRequest(elf, target="arduino:mbed_nano:nano33ble", probe="/dev/ttyACM0"))
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .base import FlashError, FlashRequest, FlashTool


class ArduinoCli(FlashTool):
    name = executable = "arduino-cli"
    install = "install it from arduino.github.io/arduino-cli (a single binary) and put it on PATH"
    version_args = ("version",)
    image_suffixes = (".elf", ".bin", ".hex")
    builds_firmware = True
    failures = (
        (r"Platform '([^']+)' not found",
         "the Arduino core {0} is not installed; run `arduino-cli core install {0}`"),
        (r"Invalid FQBN|not an FQBN|Error parsing FQBN",
         "the profile's flash.target is not a valid FQBN (vendor:arch:board); see `arduino-cli board listall`"),
        (r"no upload port provided|Port monitor error|No device found on (\S+)|could not open port (\S+)",
         "no board on the serial port; pass --port (see `arduino-cli board list`) and double-press RESET for "
         "the bootloader if needed"),
        (r"(?:[Vv]erify failed|verification error|Verify (?:unsuccessful|error))",
         "verify failed: the flash contents differ from the sketch; press RESET twice (bootloader) and retry"),
        (r"Error during Upload: (.+)", "upload failed: {0}"),
        (r"Compilation error: (.+)", "compiling the Profile sketch failed: {0}; install the TFLM Arduino library "
         "the sketch includes"),
    )

    def command(self, exe: str, req: FlashRequest, work: Path) -> list[str]:
        # --input-dir: the compile's output folder; the core's upload recipe picks its .bin/.hex/.elf there
        cmd = [exe, "upload", "--fqbn", req.target, "--input-dir", str(Path(req.image).parent), "--verify"]
        return cmd + (["-p", req.probe] if req.probe else [])

    def compile_command(self, exe: str, fw: Path, fqbn: str, out: Path) -> list[str]:
        libs = sorted(p for p in (fw / "arduino").glob("*") if (p / "library.properties").is_file())
        if not libs:
            raise FlashError(f"arduino-cli: {fw} has no arduino/<library>/ folder; package with "
                             "`edgepack package --target tflm` (it writes the Arduino library)")
        lib = libs[0]
        return [exe, "compile", "--fqbn", fqbn, "--library", str(lib), "--output-dir", str(out),
                str(lib / "examples" / "Profile")]

    def build(self, fw: Path, fqbn: str, out: Path) -> Path:
        """Compile the package's Profile sketch; returns the ELF (for the size check and upload)."""
        exe = self.find()
        res = subprocess.run(self.compile_command(exe, fw, fqbn, out), capture_output=True, text=True)
        problem = self.diagnose(res.returncode, res.stdout + res.stderr)
        if problem:
            raise FlashError(f"arduino-cli: {problem}")
        elf = next(iter(sorted(out.glob("*.elf"))), None)
        if elf is None:
            raise FlashError(f"arduino-cli compiled no .elf into {out}; check the core supports --output-dir")
        return elf
