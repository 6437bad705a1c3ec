"""The real Arm toolchain: generated model_data.cc lands in flash with its declared length, and the
harness protocol code + QEMU board shim speak protocol v1 on an emulated Cortex-M4."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgepack.tflm.c_array import model_array_files
from edgepack.tflm import protocol as hp
from edgepack.paths import data_dir
from locations import TESTS, GOLDEN, TFLM_TREE

GCC = shutil.which("arm-none-eabi-gcc")
pytestmark = pytest.mark.skipif(
    GCC is None, reason="arm-none-eabi-gcc absent: apt-get install -y --no-install-recommends "
                        "gcc-arm-none-eabi libnewlib-arm-none-eabi")
CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


def _run(*cmd, cwd: Path) -> str:
    return subprocess.run([*cmd], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("flags", [["-Os"], ["-O2", "-fdata-sections"]])
def test_model_array_is_read_only_and_has_its_declared_length(tmp_path, flags):
    data = (GOLDEN / "tiny_int8.tflite").read_bytes()
    header, source = model_array_files(data, "g_tiny", {"model": "tiny"})
    (tmp_path / "model_data.h").write_text(header)
    (tmp_path / "model_data.cc").write_text(source)
    _run("arm-none-eabi-g++", *CPU, "-std=c++11", "-Wall", "-Werror", *flags, "-c", "model_data.cc",
         "-o", "model_data.o", cwd=tmp_path)
    syms = {ln.split()[-1]: ln.split() for ln in _run("arm-none-eabi-nm", "-S", "model_data.o", cwd=tmp_path).splitlines()}
    addr, size, kind, _ = syms["g_tiny"]
    assert kind == "R" and int(size, 16) == len(data)  # global, read-only, exact length
    assert syms["g_tiny_len"][2] == "R" and int(syms["g_tiny_len"][1], 16) == 4
    # the section holding the array: allocated, not writable, 16-byte aligned
    sections = _run("arm-none-eabi-readelf", "-S", "-W", "model_data.o", cwd=tmp_path)
    row = next(ln for ln in sections.splitlines() if ".rodata" in ln and int(ln.split()[-6], 16) >= len(data))
    flags_col, align = row.split()[-4], int(row.split()[-1])
    assert "A" in flags_col and "W" not in flags_col and align >= 16
    # `size` counts it as text (flash), not data (RAM)
    text, dat, bss = (int(v) for v in _run("arm-none-eabi-size", "model_data.o", cwd=tmp_path).splitlines()[1].split()[:3])
    assert text >= len(data) and dat == 0 and bss == 0


def test_packaged_folder_model_data_compiles(tmp_path):
    """The golden package files compile for Cortex-M4 as C++ and are usable from C."""
    for name in ("model_data.h", "model_data.cc"):
        shutil.copyfile(GOLDEN / name, tmp_path / name)
    (tmp_path / "use.c").write_text('#include "model_data.h"\n'
                                    "unsigned f(void) { return g_tiny_len + g_tiny[4] + G_TINY_LEN; }\n")
    _run("arm-none-eabi-g++", *CPU, "-std=c++17", "-Wall", "-Werror", "-c", "model_data.cc", cwd=tmp_path)
    _run("arm-none-eabi-gcc", *CPU, "-std=c99", "-Wall", "-Werror", "-c", "use.c", cwd=tmp_path)
    assert (tmp_path / "model_data.o").stat().st_size > len((GOLDEN / "tiny_int8.tflite").read_bytes())


def _build_selftest(tmp_path: Path) -> Path:
    tmpl = data_dir("templates") / "tflm"
    srcs = [tmpl / "ep_protocol.c", tmpl / "board_mps2.c", TESTS / "firmware" / "protocol_selftest.c"]
    elf = tmp_path / "selftest.elf"
    _run(GCC, *CPU, "-O2", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections", f"-I{tmpl}",
         "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-T", str(tmpl / "mps2_an386.ld"),
         "-Wl,--gc-sections", *map(str, srcs), "-o", str(elf), cwd=tmp_path)
    return elf


def test_harness_protocol_code_builds_without_warnings(tmp_path):
    elf = _build_selftest(tmp_path)
    text = int(_run("arm-none-eabi-size", str(elf), cwd=tmp_path).splitlines()[1].split()[0])
    assert 0 < text < 16 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(ser, token: bytes, deadline: float) -> bytes:
    buf = b""
    while token not in buf:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {token!r}; got {buf!r}")
        buf += ser.read(256)
    return buf


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None,
                    reason="qemu-system-arm absent: apt-get install -y --no-install-recommends qemu-system-arm")
def test_protocol_over_the_mps2_uart_in_qemu(tmp_path):
    import serial

    elf = _build_selftest(tmp_path)
    port = _free_port()
    qemu = subprocess.Popen(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
                             "-icount", "shift=0", "-kernel", str(elf),
                             "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ser = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.2)
                break
            except serial.SerialException:
                assert time.monotonic() < deadline, "QEMU serial port never opened"
                time.sleep(0.05)
        ser.write(hp.START_BYTE)
        hello = hp.parse(_read_until(ser, b"\n", deadline).splitlines()[0])
        assert hello.kind == "HELLO" and hello.int("v") == 1 and hello.int("clock_hz") == 25_000_000
        ser.write(b"S" + hp.run_command(4, 1))  # a stray resent start byte must be ignored
        lines = [hp.parse(ln) for ln in _read_until(ser, b"EP DONE", deadline).splitlines() if ln]
        # a malformed request gets ERR + DONE, then the board waits for the next session
        ser.write(b"S")
        _read_until(ser, b"HELLO", deadline)
        ser.write(b"R x 1\n")
        err = [hp.parse(ln) for ln in _read_until(ser, b"EP DONE", deadline).splitlines() if ln]
        ser.close()
    finally:
        qemu.kill()
        qemu.wait()
    runs = [m for m in lines if m.kind == "RUN"]
    assert [m.int("i") for m in runs] == [0, 1, 2, 3]
    assert all(m.int("cycles") > 0 and m.int("us") == m.int("cycles") * 10**6 // 25_000_000 for m in runs)
    result = next(m for m in lines if m.kind == "RESULT")
    x = hp.input_pattern(hello.int("in"))
    expected = bytes((int(x[(j * 7) % 100]) ^ j) & 0xFF for j in range(37))
    assert result.text("crc32") == f"{zlib.crc32(expected):08x}" and result.int("out_bytes") == 37
    assert lines[-1].kind == "DONE" and lines[-1].int("status") == 0
    assert [m.kind for m in err] == ["ERR", "DONE"] and err[0].int("code") == 4 and err[1].int("status") == 4
    assert err[0].text("msg") == "expected R runs warmup"
    assert np.array_equal(x[:3], [7, 38, 69])


WARN = ["-Wall", "-Wextra", "-Werror"]


def _firmware_folder(tmp_path: Path, data: bytes, mode: str = "int8", labels=None) -> Path:
    from edgepack.targets.firmware import FirmwareTarget
    from tflm_helpers import build_for, calib

    build = build_for(data, options={"device": "nucleo-l4r5zi", "array_name": "g_tiny"}, mode=mode,
                      calibration=calib(4))
    build.labels = labels
    out = tmp_path / "fw"
    out.mkdir()
    FirmwareTarget().write(build, out)
    return out


@pytest.fixture(scope="module")
def fw_int8(tmp_path_factory) -> Path:
    return _firmware_folder(tmp_path_factory.mktemp("fw8"), (GOLDEN / "tiny_int8.tflite").read_bytes(),
                            labels=["a", "b\n*/", "c"])


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_model_header_compiles_for_cortex_m4_from_c_and_cpp(tmp_path, kind, request):
    """model_config.h (I/O tensors, quantize helpers, preprocessing, labels) is clean C99 and C++11."""
    if kind == "int8":
        out = request.getfixturevalue("fw_int8")
    else:
        from tflm_helpers import convert_tiny

        out = _firmware_folder(tmp_path, convert_tiny(mode="none"), mode="none")
    use = ('#include "model_config.h"\n#include "model_data.h"\n'
           "float f(const float* raw, EP_INPUT0_CTYPE* in, const EP_OUTPUT0_CTYPE* y) {\n"
           "  const int shape[] = EP_INPUT0_SHAPE; unsigned i; float s = 0.0f;\n"
           "  for (i = 0; i < EP_INPUT0_ELEMENTS; ++i) in[i] = ep_input0_quantize(ep_preprocess(raw[i], i));\n"
           "  for (i = 0; i < EP_OUTPUT0_ELEMENTS; ++i) s += ep_output0_dequantize(y[i]);\n"
           "#if EP_HAVE_LABELS\n  s += (float)ep_labels[0][0];\n#endif\n"
           "  return s + (float)shape[0] + (float)EP_ARENA_SIZE + (float)g_tiny_len; }\n")
    (tmp_path / "use.c").write_text(use)
    (tmp_path / "use.cc").write_text(use)
    _run("arm-none-eabi-gcc", *CPU, "-std=c99", "-pedantic", *WARN, f"-I{out}", "-c", "use.c", "-o", "c.o", cwd=tmp_path)
    _run("arm-none-eabi-g++", *CPU, "-std=c++11", *WARN, f"-I{out}", "-c", "use.cc", "-o", "cc.o", cwd=tmp_path)
    syms = _run("arm-none-eabi-nm", "c.o", cwd=tmp_path)
    assert " T f" in syms and "roundf" not in syms  # no libm call: rounding is done in the header


@pytest.mark.skipif(not (TFLM_TREE / "tensorflow/lite/micro/micro_interpreter.h").is_file(),
                    reason=f"no TFLM tree at {TFLM_TREE}")
def test_inference_helper_and_example_compile_for_cortex_m4(tmp_path, fw_int8):
    from edgepack.tflm.build import COMMON_FLAGS, CXX_FLAGS, find_tree

    out = fw_int8
    inc = [f"-isystem{p}" for p in find_tree(TFLM_TREE).includes] + [f"-I{out}", f"-I{out / 'harness'}"]
    for src in ("harness/ep_inference.cc", "examples/inference/main.cc"):
        _run("arm-none-eabi-g++", *CPU, *COMMON_FLAGS, *CXX_FLAGS, "-Os", *WARN, *inc,
             f"-I{out / 'examples/inference'}", "-c", str(out / src), "-o", Path(src).stem + ".o", cwd=tmp_path)
    syms = _run("arm-none-eabi-nm", "-S", "ep_inference.o", cwd=tmp_path)
    arena = next(ln.split() for ln in syms.splitlines() if "g_inference_arena" in ln)
    assert int(arena[1], 16) == int(re.search(r"EP_ARENA_SIZE (\d+)u", (out / "model_config.h").read_text())[1])
    assert " T ep_run_inference" in syms


MPS2_SUPPORT = r"""
/* The inference example's printf goes to the mps2 UART; board_init runs as a constructor. */
#include "board.h"
__attribute__((constructor)) static void ep_support_init(void) { board_init(); }
int _write(int fd, const char* buf, int n) {
  int i;
  (void)fd;
  for (i = 0; i < n; ++i) board_putc(buf[i]);
  return n;
}
"""


@pytest.mark.skipif(not (os.environ.get("EDGEPACK_TFLM_ROOT") and shutil.which("qemu-system-arm")),
                    reason="set EDGEPACK_TFLM_ROOT to a TFLM tree and install qemu-system-arm")
def test_inference_example_runs_on_a_cortex_m4_in_qemu(tmp_path):
    """examples/inference/main.cc, unchanged, on QEMU mps2-an386 against TFLM built for Cortex-M4: the top
    class it prints is the one the host TFLM gave when the package was written."""
    from edgepack.devices.mcu.qemu import LINKER_SCRIPT
    from edgepack.tflm.build import CPU_FLAGS, Toolchain, build_library, compile_one, find_tree
    from edgepack.targets.firmware import FirmwareTarget
    from tflm_helpers import build_for, calib

    build = build_for((GOLDEN / "tiny_int8.tflite").read_bytes(), options={"device": "nucleo-l4r5zi",
                      "array_name": "g_tiny"}, calibration=calib(4, seed=5))
    build.labels = ["zero", "one", "two"]
    out = tmp_path / "fw"
    out.mkdir()
    FirmwareTarget().write(build, out)
    expected = build.report["firmware"]["example"]["top_class"]
    tc = Toolchain.find()
    lib = build_library(find_tree(Path(os.environ["EDGEPACK_TFLM_ROOT"])), tc)
    (tmp_path / "support.c").write_text(MPS2_SUPPORT)
    includes = (out, out / "harness", out / "examples/inference", *lib.includes)
    objs = []
    for src in (out / "model_data.cc", out / "harness/ep_inference.cc", out / "examples/inference/main.cc",
                out / "harness/board_mps2.c", tmp_path / "support.c"):
        obj = tmp_path / f"{src.name}.o"
        compile_one(tc, src, obj, includes, lib.defines)
        objs.append(str(obj))
    elf = tmp_path / "inference.elf"
    _run(tc.gxx, *CPU_FLAGS, "-T", str(out / "harness" / LINKER_SCRIPT), "-Wl,--gc-sections", "-nostartfiles",
         "--specs=nano.specs", "--specs=nosys.specs", "-u", "_printf_float", *objs, str(lib.archive), "-lm",
         "-o", str(elf), cwd=tmp_path)
    qemu = subprocess.Popen(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
                             "-icount", "shift=0", "-serial", "stdio", "-kernel", str(elf)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        os.set_blocking(qemu.stdout.fileno(), False)
        buf, deadline = b"", time.monotonic() + 60
        while b"host TFLM" not in buf or not buf.endswith(b"\n"):
            assert time.monotonic() < deadline and qemu.poll() is None, f"no result line; got {buf!r}"
            buf += qemu.stdout.read() or b""
            time.sleep(0.05)
    finally:
        qemu.kill()
        qemu.wait()
    line = buf.decode().strip().splitlines()[-1]
    m = re.fullmatch(rf"top class {expected} score ([0-9.]+) label {build.labels[expected]} "
                     rf"\(packaging-time host TFLM: {expected}\)", line)
    assert m, line
    t_out = build.info.tensors[build.info.outputs[0]]  # the score is the host's raw top value, dequantized
    raw = build.report["firmware"]["example"]["raw"]
    assert m[1] == f"{(raw - t_out.zero_point[0]) * np.float32(t_out.scale[0]):.6f}"
