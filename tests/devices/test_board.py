"""``board:PROFILE``: build for the profile's core, check sizes, flash with its tool, profile over serial.

Without hardware the flash step runs against QEMU: mps2-an386 started halted with its GDB stub
and its UART on loopback ports, the ELF loaded through the real GDB remote protocol
(gdb-multiarch), then profiled over QEMU's serial port; the figures must be those of the
``qemu:`` path. The error paths run before any build, so they need no TFLM tree.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
import yaml

from edgepack.devices.registry import open_device
from edgepack.devices.mcu.board import BoardDevice, parse_probe
from edgepack.devices.mcu.flash import FlashError
from edgepack.devices.result import Settings
from edgepack.tflm.build import CORE_FLAGS
from edgepack.errors import DeviceError, UsageError
from test_qemu import tiny_int8  # noqa: F401  (the same tiny int8 model as the qemu: tests)
from test_serial_device import _profile_yaml
from locations import ROOT

KWS = ROOT.parent / "shared/models/mlperf_tiny/kws_ref_model.tflite"
QEMU_BOARD = ROOT / "tests/data/flash/mps2-an386-gdb.yaml"
TFLM_ROOT = os.environ.get("EDGEPACK_TFLM_ROOT")
HAVE = {t: shutil.which(t) is not None for t in ("arm-none-eabi-gcc", "qemu-system-arm", "gdb-multiarch")}
needs_arm = pytest.mark.skipif(not HAVE["arm-none-eabi-gcc"], reason="arm-none-eabi-gcc absent (make system-deps)")
needs_all = pytest.mark.skipif(not (TFLM_ROOT and all(HAVE.values())),
                               reason="set EDGEPACK_TFLM_ROOT to a TFLM tree and install gcc-arm-none-eabi, "
                                      "qemu-system-arm and gdb-multiarch (make system-deps)")


def _profile(tmp_path: Path, name: str = "test-board", flash: Optional[dict] = None, **fields) -> Path:
    """A test device profile (the serial tests' one) with another name, fields and a flash: block."""
    data = yaml.safe_load(_profile_yaml(tmp_path, active_mw=40.0, clock_hz=25_000_000).read_text())
    data.update(name=name, **fields)
    if flash is not None:
        data["flash"] = flash
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_probe_argument():
    assert parse_probe("gdb:127.0.0.1:3333") == ("gdb", "127.0.0.1:3333")
    assert parse_probe("pyocd") == ("pyocd", None)
    assert parse_probe(None) == (None, None)
    with pytest.raises(UsageError, match="unknown flashing tool 'stlink'"):
        parse_probe("stlink:1")


def test_a_profile_without_a_flash_block_needs_a_probe(tmp_path):
    with pytest.raises(UsageError, match="has no flash: block; pass --probe pyocd|openocd"):
        open_device(f"board:{_profile(tmp_path)}")
    dev = open_device(f"board:{_profile(tmp_path)}", probe="openocd")
    assert dev.tool.name == "openocd" and dev.flash_target == ""  # the profile names no OpenOCD target


def test_errors_before_any_build(tmp_path, monkeypatch):
    """Port, board support, the tool and the core are checked before the (minutes-long) TFLM build."""
    monkeypatch.delenv("EDGEPACK_TFLM_ROOT", raising=False)
    prof = _profile(tmp_path, flash={"tool": "gdb", "target": "127.0.0.1:1"})
    with pytest.raises(UsageError, match="needs its serial port: pass --port"):
        open_device(f"board:{prof}").profile(KWS, Settings(runs=1, warmup=0))
    with pytest.raises(DeviceError, match="no board support for test-board: write harness/board_test-board.c"):
        open_device(f"board:{prof}", port="/dev/null").profile(KWS, Settings(runs=1, warmup=0))
    esp = _profile(tmp_path, "esp", {"tool": "esptool", "target": "esp32s3"}, core="xtensa-lx7")
    if shutil.which("esptool") or (Path(sys.executable).parent / "esptool").exists():
        with pytest.raises(DeviceError, match="xtensa-lx7 core, which edgepack's arm-none-eabi build does not "
                                              "target: build the harness .* with the vendor SDK"):
            open_device(f"board:{esp}", port="/dev/null").profile(KWS, Settings(runs=1, warmup=0))
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("sys.executable", "/nonexistent/python")
    with pytest.raises(FlashError, match="gdb: 'gdb-multiarch' is not installed"):
        open_device(f"board:{QEMU_BOARD}", port="/dev/null").profile(KWS, Settings(runs=1, warmup=0))


def test_an_unflashed_board_is_never_profiled():
    dev = BoardDevice(str(QEMU_BOARD), port="socket://127.0.0.1:1")
    with pytest.raises(DeviceError, match="the harness was not flashed"):
        dev.run(Settings(runs=1, warmup=0))


@needs_arm
@pytest.mark.parametrize("core, fpu", sorted(CORE_FLAGS))
def test_every_core_compiles_and_links_against_its_newlib(tmp_path, core, fpu):
    """Each (core, FPU) flag set picks a multilib that links, and the object says the right CPU."""
    from edgepack.tflm.build import cpu_flags

    flags = cpu_flags(core, fpu)
    src = tmp_path / "t.c"
    src.write_text("float f(float a, float b) { return a * b + 1.0f; }\nint main(void) { return (int)f(2, 3); }\n")
    elf = tmp_path / "t.elf"
    subprocess.run(["arm-none-eabi-gcc", *flags, "-O2", "--specs=nano.specs", "--specs=nosys.specs", str(src),
                    "-o", str(elf)], check=True, capture_output=True)
    attrs = subprocess.run(["arm-none-eabi-readelf", "-A", str(elf)], capture_output=True, text=True).stdout
    arch = {"cortex-m0plus": "v6S-M", "cortex-m3": "v7", "cortex-m4": "v7E-M", "cortex-m7": "v7E-M",
            "cortex-m33": "v8-M.mainline", "cortex-m55": "v8.1-M.mainline"}[core]
    assert f"Tag_CPU_arch: {arch}\n" in attrs
    assert ("Tag_ABI_VFP_args: VFP registers" in attrs) == (fpu != "none")  # hard-float ABI iff an FPU
    assert ("Tag_MVE_arch" in attrs) == (core == "cortex-m55" and fpu != "none")


def test_unknown_core_is_one_line():
    from edgepack.tflm.build import cpu_flags

    with pytest.raises(DeviceError, match="no arm-none-eabi-gcc build for core xtensa-lx7"):
        cpu_flags("xtensa-lx7", "sp")


@needs_arm
def test_linker_script_follows_the_profiles_memory_map_and_sizes_are_checked(tmp_path):
    """A board at 0x08000000/0x20000000: vectors and stack land where the profile says; an image
    larger than the board's flash is refused before flashing."""
    from edgepack.tflm.build import Toolchain
    from edgepack.paths import data_dir

    prof = _profile(tmp_path, flash={"tool": "openocd", "target": "stm32l4x", "flash_origin": 0x08000000,
                                     "ram_origin": 0x20000000, "board_support": ["board_mps2.c"]})
    dev = open_device(f"board:{prof}", port="/dev/null")
    ld = dev.linker_script(tmp_path / "board.ld")
    tflm = data_dir("templates") / "tflm"
    main = tmp_path / "main.c"
    main.write_text("const unsigned char g_blob[200000] = {1};\nint main(void) { return g_blob[7]; }\n")
    elf = tmp_path / "h.elf"
    subprocess.run(["arm-none-eabi-gcc", *CORE_FLAGS[("cortex-m4", "sp")], f"-I{tflm}", "-T", str(ld),
                    "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", str(main),
                    str(tflm / "board_mps2.c"), "-o", str(elf)], check=True, capture_output=True)
    syms = {ln.split()[2]: int(ln.split()[0], 16) for ln in subprocess.run(
        ["arm-none-eabi-nm", str(elf)], capture_output=True, text=True).stdout.splitlines() if len(ln.split()) == 3}
    assert syms["g_vectors"] == 0x08000000
    assert 0x20000000 < syms["_estack"] <= 0x20000000 + 655360
    dev._tc = Toolchain.find(need_qemu=False)
    sizes = dev.check_fits(elf)
    assert sizes["flash"] > 200000
    small = open_device(f"board:{_profile(tmp_path, 'small', {'tool': 'gdb'}, flash_bytes=131072)}", port="/dev/null")
    small._tc = dev._tc
    with pytest.raises(DeviceError, match=r"needs [\d,]+ B flash .* the board has 131,072 B .*nothing was flashed"):
        small.check_fits(elf)


# -- QEMU + GDB: the real flash path ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _halted_qemu(machine: str):
    """``machine`` halted at reset, GDB stub and UART on loopback ports: (process, gdb port, serial port)."""
    gdb, uart = _free_port(), _free_port()
    proc = subprocess.Popen(["qemu-system-arm", "-M", machine, "-icount", "shift=0", "-nographic",
                             "-monitor", "none", "-S", "-gdb", f"tcp:127.0.0.1:{gdb}",
                             "-serial", f"tcp:127.0.0.1:{uart},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:  # wait until QEMU listens
        try:
            socket.create_connection(("127.0.0.1", uart), timeout=0.2).close()
            return proc, gdb, uart
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"qemu did not start: {proc.stderr.read().decode()[:300]}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def qemu_reference(tiny_int8):
    """The ``qemu:`` path's figures for the tiny model (the board runs must match them)."""
    with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile=str(QEMU_BOARD)) as dev:
        return dev.profile(tiny_int8, Settings(runs=3, warmup=1))


@needs_all
@pytest.mark.parametrize("machine, profile, clock_hz", [
    ("mps2-an386", QEMU_BOARD, 25_000_000),  # flash at 0x0, CMSDK UART (board_mps2.c)
    pytest.param("netduinoplus2", ROOT / "tests/data/flash/netduinoplus2-gdb.yaml", 168_000_000,
                 marks=pytest.mark.slow),  # an STM32 memory map: flash at 0x08000000, USART1
])
def test_build_flash_over_gdb_and_profile_equals_the_qemu_path(tiny_int8, qemu_reference, machine, profile,
                                                                clock_hz):
    """The whole CLI: build for the profile's memory map, flash over GDB, profile over the serial port.
    With -icount shift=0 one instruction is 1 ns of virtual time on either machine, so the board's
    SysTick cycles / clock are the qemu: path's instruction count, to one tick at each end."""
    proc, gdb, uart = _halted_qemu(machine)
    try:
        cmd = [sys.executable, "-m", "edgepack", "profile", str(tiny_int8), "--device", f"board:{profile}",
               "--probe", f"gdb:127.0.0.1:{gdb}", "--port", f"socket://127.0.0.1:{uart}", "--runs", "3",
               "--warmup", "1", "--json", "-q"]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0, out.stderr
    board, ref = json.loads(out.stdout), qemu_reference
    assert board["device"]["kind"] == "board" and board["device"]["details"]["clock_hz"] == str(clock_hz)
    assert board["output_checksum"] == ref.output_checksum  # and both checked against the host TFLM
    assert any("matches the TFLM host interpreter" in n for n in board["notes"])
    tick_ns = 1e9 / clock_hz
    assert abs(board["latency"]["cycles"] * tick_ns - ref.latency.instructions) <= 2 * 40 + 1
    assert board["memory"]["arena_bytes"] == ref.memory.arena_bytes
    assert abs(board["memory"]["flash_bytes"] - ref.memory.flash_bytes) <= 512  # same code, another board shim
    d = board["device"]["details"]
    assert d["flash_tool"] == "gdb" and d["flash_target"] == f"127.0.0.1:{gdb}" and len(d["image_sha256"]) == 64
    assert "gdb-multiarch" in board["tool_versions"] and "arm-none-eabi-gcc" in board["tool_versions"]
    assert board["energy"]["source"] == "estimated"


@needs_all
@pytest.mark.slow  # a full harness build before the flash fails; the unit tests above cover the parsing
def test_a_failed_flash_is_an_error_and_no_result(tiny_int8, tmp_path):
    dead = _free_port()
    with pytest.raises(FlashError, match=f"gdb: no GDB server answers at 127.0.0.1:{dead}"):
        with open_device(f"board:{QEMU_BOARD}", probe=f"gdb:127.0.0.1:{dead}", port="socket://127.0.0.1:1",
                         tflm_root=TFLM_ROOT) as dev:
            dev.profile(tiny_int8, Settings(runs=1, warmup=0))
