"""The flashing tools: command lines, failure parsing on recorded real outputs, and the real tools.

Recorded outputs are in tests/data/flash (README.md there says which were run here and which come
from the tools' source or documentation). Where a tool is installed (pyocd and esptool from PyPI,
openocd and gdb-multiarch from Debian) it is also run for real with no probe/port attached.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from edgepack.devices.mcu.flash import TOOLS, FlashError, FlashRequest, flash_tool
from edgepack.errors import UsageError
from locations import DATA as TEST_DATA

DATA = TEST_DATA / "flash"
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None


def recorded(name: str) -> tuple[int, str]:
    text = (DATA / name).read_text()
    body, _, rc = text.rstrip("\n").rpartition("\n")
    assert rc.startswith("rc="), name
    return int(rc[3:]), body


@pytest.fixture(scope="module")
def elf(tmp_path_factory) -> Path:
    """A real Cortex-M4 ELF (any bytes would do for the tools that fail before reading it)."""
    d = tmp_path_factory.mktemp("flash")
    path = d / "t.elf"
    if HAVE_ARM:
        (d / "t.c").write_text("int main(void) { return 0; }\n")
        subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "--specs=nosys.specs",
                        str(d / "t.c"), "-o", str(path)], check=True)
    else:
        path.write_bytes(b"\x7fELF" + bytes(60))
    return path


@pytest.mark.parametrize("tool, file, message", [
    ("pyocd", "pyocd_load_no_probe.txt", "no debug probe is attached"),
    ("pyocd", "pyocd_load_uid.txt", "no attached probe has unique ID 0240000032044e4500"),
    ("pyocd", "pyocd_target_not_recognized.txt", "pyOCD has no target type stm32l4r5zitx; install its pack"),
    ("pyocd", "pyocd_locked.txt", "the target is locked"),
    ("openocd", "openocd_no_probe.txt", "no debug adapter found"),
    ("openocd", "openocd_cmsisdap_no_probe.txt", "no debug adapter found"),
    ("openocd", "openocd_unknown_target.txt", "OpenOCD has no config target/stm32l4r5.cfg"),
    ("openocd", "openocd_verify_failed.txt", "verify failed"),
    ("openocd", "openocd_write_protected.txt", "the target is locked"),
    ("esptool", "esptool_no_port.txt", "cannot open serial port /dev/ttyUSB7"),
    ("esptool", "esptool_no_device.txt", "no Espressif chip answered; hold BOOT"),
    ("esptool", "esptool_missing_image.txt", "image missing.bin does not exist"),
    ("esptool", "esptool_wrong_chip.txt", "the board has a ESP32, not the profile's ESP32-S3"),
    ("esptool", "esptool_verify_failed.txt", "verify failed"),
    ("gdb", "gdb_connection_refused.txt", "no GDB server answers at 127.0.0.1:1"),
    ("gdb", "gdb_verify_mismatch.txt", "verify failed: section .isr_vector"),
    ("gdb", "gdb_wrong_architecture.txt", "not the ELF's Cortex-M core"),
    ("gdb", "gdb_missing_elf.txt", "missing.elf does not exist"),
    ("picotool", "picotool_no_bootsel.txt", "no RP2040 in BOOTSEL mode"),
    ("picotool", "picotool_no_bootsel_v1.txt", "no RP2040 in BOOTSEL mode"),
    ("picotool", "picotool_no_permission.txt", "install picotool's udev rules"),
    ("arduino-cli", "arduino_cli_core_missing.txt", "run `arduino-cli core install arduino:mbed_nano`"),
    ("arduino-cli", "arduino_cli_no_port.txt", "no board on the serial port; pass --port"),
    ("arduino-cli", "arduino_cli_no_device.txt", "no board on the serial port"),
])
def test_recorded_failures_become_one_line_with_the_fix(tool, file, message):
    rc, out = recorded(file)
    got = flash_tool(tool).diagnose(rc, out)
    assert got is not None and message in got, got
    assert "\n" not in got


@pytest.mark.parametrize("tool, file", [("gdb", "gdb_load_ok.txt"), ("picotool", "picotool_load_ok.txt")])
def test_recorded_successes_are_not_failures(tool, file):
    assert flash_tool(tool).diagnose(*recorded(file)) is None


def test_every_registered_tool_imports():
    assert set(TOOLS) == {"pyocd", "openocd", "esptool", "picotool", "uf2", "arduino-cli", "gdb"}
    for name in TOOLS:
        assert flash_tool(name).name == name
    with pytest.raises(UsageError, match="unknown flashing tool 'jlink'"):
        flash_tool("jlink")


def test_command_lines(tmp_path):
    img = tmp_path / "h.elf"
    r = FlashRequest(img, target="stm32h743xx", probe="0670FF", options={"pack": "p.pack"})
    assert flash_tool("pyocd").command("pyocd", r, tmp_path) == [
        "pyocd", "load", "--no-wait", "-t", "stm32h743xx", "-u", "0670FF", "--pack", "p.pack", "--format", "elf",
        str(img)]
    r = FlashRequest(img, target="stm32l4x", probe="066D", options={"interface": "stlink"})
    assert flash_tool("openocd").command("openocd", r, tmp_path) == [
        "openocd", "-f", "interface/stlink.cfg", "-c", "adapter serial 066D", "-f", "target/stm32l4x.cfg",
        "-c", f"program {{{img}}} verify reset exit"]
    b = tmp_path / "merged.bin"
    r = FlashRequest(b, target="esp32s3", probe="/dev/ttyUSB0", options={"baud": "460800"})
    assert flash_tool("esptool").command("esptool", r, tmp_path) == [
        "esptool", "--chip", "esp32s3", "--port", "/dev/ttyUSB0", "--baud", "460800", "write-flash", "0x0", str(b)]
    assert flash_tool("picotool").command("picotool", FlashRequest(img), tmp_path) == [
        "picotool", "load", "-v", "-x", str(img)]
    r = FlashRequest(tmp_path / "build" / "Profile.ino.elf", target="arduino:mbed_nano:nano33ble", probe="/dev/ttyACM0")
    assert flash_tool("arduino-cli").command("arduino-cli", r, tmp_path) == [
        "arduino-cli", "upload", "--fqbn", "arduino:mbed_nano:nano33ble", "--input-dir", str(tmp_path / "build"),
        "--verify", "-p", "/dev/ttyACM0"]
    r = FlashRequest(img, target="127.0.0.1:3333", vector_table=0x08000000, options={"reset": "monitor reset halt"})
    cmd = flash_tool("gdb").command("gdb-multiarch", r, tmp_path)
    assert cmd == ["gdb-multiarch", "-nx", "-batch", "-x", str(tmp_path / "flash.gdb"), str(img)]
    script = (tmp_path / "flash.gdb").read_text().splitlines()
    assert script[3:] == ["target remote 127.0.0.1:3333", "monitor reset halt", "load", "compare-sections -r",
                          "set $sp = *(unsigned int *)0x8000000", "set $pc = *(unsigned int *)0x8000004", "detach"]
    with pytest.raises(FlashError, match="not a GDB server address"):
        flash_tool("gdb").command("gdb", FlashRequest(img, target="127.0.0.1:3333; shell rm -rf /"), tmp_path)


def test_a_missing_tool_names_how_to_install_it(elf, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("sys.executable", "/nonexistent/python")
    for name, hint in [("pyocd", "pip install pyocd"), ("openocd", "apt-get install"), ("gdb", "gdb-multiarch"),
                       ("arduino-cli", "arduino-cli")]:
        with pytest.raises(FlashError, match=f"{name}: .* is not installed or not on PATH; .*{hint}"):
            flash_tool(name).flash(FlashRequest(elf, target="x:1"))


def test_wrong_image_format_and_missing_image(tmp_path, elf):
    with pytest.raises(FlashError, match=r"esptool flashes \.bin images"):
        flash_tool("esptool").flash(FlashRequest(elf, target="esp32s3"))
    with pytest.raises(FlashError, match="does not exist; build the firmware first"):
        flash_tool("pyocd").flash(FlashRequest(tmp_path / "none.elf", target="nrf52840"))


def _real(name: str):
    tool = flash_tool(name)
    try:
        tool.find()
    except FlashError as e:
        pytest.skip(str(e))
    return tool


def test_real_pyocd_without_a_probe(elf):
    with pytest.raises(FlashError, match="pyocd: no debug probe is attached"):
        _real("pyocd").flash(FlashRequest(elf, target="nrf52840", timeout_s=60))


def test_real_openocd_without_an_adapter(elf):
    with pytest.raises(FlashError, match="openocd: no debug adapter found"):
        _real("openocd").flash(FlashRequest(elf, target="stm32l4x", options={"interface": "stlink"}, timeout_s=60))
    with pytest.raises(FlashError, match="OpenOCD has no config target/stm32l4r5.cfg"):
        _real("openocd").flash(FlashRequest(elf, target="stm32l4r5", options={"interface": "stlink"}))


def test_real_esptool_without_a_port(tmp_path):
    img = tmp_path / "x.bin"
    img.write_bytes(bytes(1024))
    with pytest.raises(FlashError, match="esptool: cannot open serial port /dev/ttyEDGEPACK0"):
        _real("esptool").flash(FlashRequest(img, target="esp32s3", probe="/dev/ttyEDGEPACK0", timeout_s=60))


def test_real_gdb_without_a_server(elf):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FlashError, match=f"gdb: no GDB server answers at 127.0.0.1:{port}"):
        _real("gdb").flash(FlashRequest(elf, target=f"127.0.0.1:{port}", options={"connect_timeout": "1"}))


def test_real_pyocd_probe_listing_is_empty_here():
    pytest.importorskip("pyocd")
    from edgepack.devices.mcu.board import list_probes

    assert list_probes() == []


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi binutils absent")
def test_uf2_copy_writes_the_flash_image_in_uf2_blocks(tmp_path, elf):
    from edgepack.devices.mcu.flash.picotool import FAMILIES, UF2_MAGIC

    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    with pytest.raises(FlashError, match="not a UF2 bootloader drive"):
        flash_tool("uf2").flash(FlashRequest(elf, probe=str(drive)))
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nBoard-ID: RPI-RP2\n")
    base = 0x10000000
    flash_tool("uf2").flash(FlashRequest(elf, probe=str(drive), vector_table=base))
    data = (drive / "EDGEPACK.UF2").read_bytes()
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".isr_vector", "-j", ".text", "-j", ".rodata",
                    "-j", ".ARM.exidx", "-j", ".init_array", "-j", ".data", str(elf), str(tmp_path / "flat.bin")],
                   check=True)
    flat = (tmp_path / "flat.bin").read_bytes()
    assert len(data) % 512 == 0 and len(data) // 512 == -(-len(flat) // 256)
    payload = b""
    for n in range(len(data) // 512):
        blk = data[512 * n:512 * (n + 1)]
        m0, m1, flags, addr, size, no, total, fam = struct.unpack("<8I", blk[:32])
        assert (m0, m1, struct.unpack("<I", blk[508:])[0]) == UF2_MAGIC
        assert (addr, size, no, total, fam) == (base + 256 * n, 256, n, len(data) // 512, FAMILIES["rp2040"])
        payload += blk[32:32 + 256]
    assert payload[:len(flat)] == flat


def test_arduino_cli_compiles_the_packaged_profile_sketch(tmp_path):
    tool = flash_tool("arduino-cli")
    with pytest.raises(FlashError, match="has no arduino/<library>/ folder"):
        tool.compile_command("arduino-cli", tmp_path, "arduino:mbed_nano:nano33ble", tmp_path / "out")
    lib = tmp_path / "arduino" / "edgepack_g_model"
    (lib / "examples" / "Profile").mkdir(parents=True)
    (lib / "library.properties").write_text("name=edgepack_g_model\n")
    assert tool.compile_command("arduino-cli", tmp_path, "arduino:mbed_nano:nano33ble", tmp_path / "out") == [
        "arduino-cli", "compile", "--fqbn", "arduino:mbed_nano:nano33ble", "--library", str(lib),
        "--output-dir", str(tmp_path / "out"), str(lib / "examples" / "Profile")]
