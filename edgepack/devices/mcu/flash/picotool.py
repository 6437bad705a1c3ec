"""Flash the RP2040 (Raspberry Pi Pico): ``picotool load -v -x`` or a UF2 copy to its BOOTSEL drive.

The board must be in BOOTSEL mode (hold BOOTSEL while plugging it in): a running
edgepack harness has no USB reset interface. ``picotool load -v -x FILE.elf`` writes,
verifies and starts the image; ``Uf2Copy`` converts the ELF's flash image to UF2
(256-byte blocks, RP2040 family ID) and copies it to the mounted drive (``probe`` = the
mount folder holding INFO_UF2.TXT), which the boot ROM writes and reboots.

Example::

    Picotool().flash(FlashRequest(Path("harness.elf")))
    Uf2Copy().flash(FlashRequest(Path("harness.elf"), probe="/media/me/RPI-RP2", vector_table=0x10000000))
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
from pathlib import Path

from .base import FlashError, FlashReport, FlashRequest, FlashTool

UF2_MAGIC = (0x0A324655, 0x9E5D5157, 0x0AB16F30)
UF2_FLAG_FAMILY = 0x00002000
FLASH_SECTIONS = (".isr_vector", ".boot2", ".text", ".rodata", ".ARM.exidx", ".init_array", ".data")
FAMILIES = {"rp2040": 0xE48BFF56, "rp2350-arm-s": 0xE48BFF59, "nrf52840": 0xADA52840, "stm32f4": 0x57755A57}


class Picotool(FlashTool):
    name = executable = "picotool"
    install = ("install it from your distribution where packaged (`apt-get install picotool`) or build it from "
               "raspberrypi/picotool with the Pico SDK; or use --probe uf2:MOUNT-FOLDER")
    version_args = ("version",)
    image_suffixes = (".elf", ".uf2", ".bin")
    failures = (
        (r"No accessible RP(?:-series|2040|2350) devices in BOOTSEL mode were found",
         "no RP2040 in BOOTSEL mode: hold BOOTSEL while plugging the board in, then retry"),
        (r"Unable to access device to reboot it|Use sudo or setup a udev rule|LIBUSB_ERROR_ACCESS",
         "no permission to open the RP2040's USB device; install picotool's udev rules (99-picotool.rules)"),
        (r"Failed to initialise libUSB", "picotool cannot use libUSB here (no USB access in this environment); "
         "run it where the board's USB is visible"),
        (r"(?:[Vv]erif\w* failed|contents did not match|does not match)",
         "verify failed: the flash contents differ from the image; reflash, and check the image was linked "
         "for the RP2040's flash at 0x10000000"),
        (r"ERROR: (.+)", "{0}"),
    )

    def command(self, exe: str, req: FlashRequest, work: Path) -> list[str]:
        cmd = [exe, "load", "-v", "-x", str(req.image)]
        if req.probe:
            cmd += ["--ser", req.probe]
        if Path(req.image).suffix == ".bin":
            cmd += ["-o", req.options.get("offset", hex(req.vector_table))]
        return cmd


class Uf2Copy(FlashTool):
    """Copy a UF2 image to a UF2 bootloader's drive (RP2040 BOOTSEL, Adafruit nRF52 ...)."""

    name = "uf2"
    executable = "arm-none-eabi-objcopy"
    install = "install it with `apt-get install --no-install-recommends binutils-arm-none-eabi`"
    image_suffixes = (".elf", ".uf2")

    def flash(self, req: FlashRequest) -> FlashReport:
        self.check_image(req)
        drive = Path(req.probe or req.options.get("drive", ""))
        if not req.probe and not req.options.get("drive"):
            raise FlashError("uf2: no drive given; put the board in BOOTSEL mode and pass --probe uf2:/media/USER/RPI-RP2")
        if not (drive / "INFO_UF2.TXT").is_file():
            raise FlashError(f"uf2: {drive} is not a UF2 bootloader drive (no INFO_UF2.TXT); put the board in "
                             "BOOTSEL mode and pass its mount folder")
        family = FAMILIES.get(req.options.get("family", "rp2040"))
        if family is None:
            raise FlashError(f"uf2: unknown family '{req.options.get('family')}'; use one of {', '.join(FAMILIES)}")
        data = Path(req.image).read_bytes() if Path(req.image).suffix == ".uf2" else \
            elf_to_uf2(self.find(), Path(req.image), req.vector_table, family)
        dest = drive / "EDGEPACK.UF2"
        try:
            with open(dest, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise FlashError(f"uf2: writing {dest} failed ({e}); remount the drive and retry") from None
        return FlashReport(self.name, "uf2", str(drive), ("copy", str(req.image), str(dest)),
                           f"{len(data) // 512} UF2 blocks written to {dest}")


def elf_to_uf2(objcopy: str, elf: Path, base: int, family: int) -> bytes:
    """The ELF's loadable flash contents (from ``base``) as UF2 blocks of 256 bytes.

    Example: ``elf_to_uf2("arm-none-eabi-objcopy", Path("h.elf"), 0x10000000, FAMILIES["rp2040"])``.
    """
    with tempfile.TemporaryDirectory(prefix="edgepack-uf2-") as tmp:
        flat = Path(tmp) / "image.bin"
        out = subprocess.run([objcopy, "-O", "binary", *(f"--only-section={s}" for s in FLASH_SECTIONS), str(elf),
                              str(flat)], capture_output=True, text=True)
        if out.returncode != 0 or not flat.is_file() or not flat.stat().st_size:
            raise FlashError(f"uf2: {objcopy} could not extract the image from {elf}: {out.stderr.strip()[:160]}")
        return uf2_blocks(flat.read_bytes(), base, family)


def uf2_blocks(binary: bytes, base: int, family: int) -> bytes:
    """UF2-encode a flat image at ``base``: 512-byte blocks with 256 payload bytes each."""
    chunks = [binary[i:i + 256] for i in range(0, len(binary), 256)]
    blocks = []
    for n, chunk in enumerate(chunks):
        head = struct.pack("<8I", UF2_MAGIC[0], UF2_MAGIC[1], UF2_FLAG_FAMILY, base + 256 * n, 256, n,
                           len(chunks), family)
        blocks.append(head + chunk.ljust(476, b"\0") + struct.pack("<I", UF2_MAGIC[2]))
    return b"".join(blocks)
