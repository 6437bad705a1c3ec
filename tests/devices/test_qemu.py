"""QEMU mps2-an386 profiling: error paths always; the real build + run with a TFLM tree.

The end-to-end tests need a TFLM source tree in EDGEPACK_TFLM_ROOT (TFLM's sources are
on no registry) plus arm-none-eabi-gcc and qemu-system-arm; they skip, saying so,
otherwise. The first run compiles TFLM (~15 min on 2 cores, cached in
~/.cache/edgepack/tflm); later runs only build the harness.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgepack.devices.registry import open_device
from edgepack.devices.result import Settings
from edgepack.errors import DeviceError, UsageError
from edgepack.paths import data_dir
from locations import MLPERF

KWS = MLPERF / "kws_ref_model.tflite"
TFLM_ROOT = os.environ.get("EDGEPACK_TFLM_ROOT")
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc absent (apt-get install "
                               "gcc-arm-none-eabi libnewlib-arm-none-eabi)")
needs_tree = pytest.mark.skipif(not (TFLM_ROOT and HAVE_ARM and HAVE_QEMU),
                                reason="set EDGEPACK_TFLM_ROOT to a TFLM tree and install gcc-arm-none-eabi, "
                                       "libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib and qemu-system-arm")


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory) -> Path:
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.recipe import QuantizeConfig

    set_seed(1)
    k = keras()
    model = k.Sequential([k.layers.Input((10, 10, 2)), k.layers.Conv2D(4, 3, activation="relu"),
                          k.layers.Flatten(), k.layers.Dense(3)])
    x = np.random.default_rng(1).random((16, 10, 10, 2), dtype=np.float32)
    path = tmp_path_factory.mktemp("qemu") / "tiny.tflite"
    path.write_bytes(convert(model, QuantizeConfig(mode="int8", io="int8"), calibration=x))
    return path


def test_without_a_tflm_tree_the_error_says_what_to_pass(monkeypatch):
    monkeypatch.delenv("EDGEPACK_TFLM_ROOT", raising=False)
    with pytest.raises(DeviceError, match="needs a TFLM tree: pass --tflm-root DIR"):
        with open_device("qemu:mps2-an386") as dev:
            dev.profile(KWS, Settings(runs=1, warmup=0))


def test_a_folder_that_is_not_a_tflm_tree(tmp_path):
    with pytest.raises(DeviceError, match="holds no tensorflow/lite/micro/micro_interpreter.h"):
        open_device("qemu:mps2-an386", tflm_root=str(tmp_path)).profile(KWS, Settings(runs=1))
    (tmp_path / "tensorflow/lite/micro").mkdir(parents=True)
    (tmp_path / "tensorflow/lite/micro/micro_interpreter.h").write_text("")
    with pytest.raises(DeviceError, match="flatbuffers headers"):
        open_device("qemu:mps2-an386", tflm_root=str(tmp_path)).profile(KWS, Settings(runs=1))


def test_unknown_machine_is_a_usage_error():
    with pytest.raises(UsageError, match="use qemu:mps2-an386"):
        open_device("qemu:lm3s6965evb")


@needs_arm
def test_elf_sizes_match_the_toolchain_symbols(tmp_path):
    """flash/RAM from arm-none-eabi-size on a real mps2-an386 link (the harness's shim and script)."""
    from edgepack.devices.mcu.qemu import elf_sizes
    from edgepack.tflm.build import CPU_FLAGS, Toolchain

    src = tmp_path / "t.c"
    src.write_text('#include "board.h"\nconst unsigned char g_table[3000] = {1};\nunsigned char g_buf[5000];\n'
                   "__attribute__((weak)) void* __dso_handle = 0;\n"
                   "int main(void){ board_init(); g_buf[0] = g_table[board_getc()]; for (;;) {} }\n")
    tflm = data_dir("templates") / "tflm"
    elf = tmp_path / "t.elf"
    subprocess.run(["arm-none-eabi-gcc", *CPU_FLAGS, "-Os", "-ffunction-sections", "-fdata-sections", f"-I{tflm}",
                    str(src), str(tflm / "board_mps2.c"), "-T", str(tflm / "mps2_an386.ld"), "-Wl,--gc-sections",
                    "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-o", str(elf)], check=True)
    sizes = elf_sizes(Toolchain.find(need_qemu=False), elf)
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    sym = {ln.split()[-1]: (int(ln.split()[1], 16), ln.split()[2]) for ln in nm.splitlines() if len(ln.split()) == 4}
    assert sym["g_table"][1] in "Rr" and sym["g_buf"][1] in "Bb"
    assert sizes["flash"] >= sym["g_table"][0] and sizes["text"] >= sym["g_table"][0]
    assert sizes["ram"] >= sym["g_buf"][0] and sizes["flash"] < sym["g_table"][0] + 64 * 1024


@needs_tree
def test_qemu_profile_is_deterministic_and_reports_sizes(tiny_int8):
    from edgepack.tflm import find_arena

    with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile="nucleo-l4r5zi") as dev:
        a = dev.profile(tiny_int8, Settings(runs=1, warmup=0))  # one invoke: output CRC checked
        a2 = dev.profile(tiny_int8, Settings(runs=1, warmup=0))  # rebuilt, rebooted: the same count
    # several runs: every run executes the same instructions (-icount), counted by the
    # 25 MHz SysTick, i.e. to 40 instructions at each end
    with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile="nucleo-l4r5zi", check_output=False) as dev:
        b = dev.profile(tiny_int8, Settings(runs=3, warmup=1))
    assert a.device.kind == "qemu" and a.latency.instructions > 1000
    assert abs(a.latency.instructions - a2.latency.instructions) <= 81  # start and end each +-40
    assert abs(a.latency.instructions - b.latency.instructions) < 0.01 * a.latency.instructions
    assert (b.latency.max_us - b.latency.min_us) * 120 <= 81
    assert a.latency.source == "estimated"
    assert a.latency.median_us == pytest.approx(a.latency.instructions / 120.0, rel=1e-6)
    assert 0 < a.memory.arena_bytes <= find_arena(tiny_int8.read_bytes()).recorded_bytes
    assert a.memory.flash_bytes > tiny_int8.stat().st_size and a.memory.ram_bytes > a.memory.arena_bytes
    assert any("matches the TFLM host interpreter" in n for n in a.notes)
    assert a.energy.source == "estimated" and a.energy.per_inference_mj > 0


@needs_tree
def test_cmsis_nn_kernels_are_bit_exact_and_run_fewer_instructions(tiny_int8):
    from edgepack.tflm.build import find_tree

    if find_tree(Path(TFLM_ROOT)).cmsis_nn is None:
        pytest.skip("the TFLM tree has no third_party/cmsis_nn (CMSIS-NN sources)")
    results = {}
    for kernels in ("reference", "cmsis_nn"):
        with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, kernels=kernels) as dev:
            results[kernels] = dev.profile(tiny_int8, Settings(runs=1, warmup=0))
    ref, opt = results["reference"], results["cmsis_nn"]
    assert opt.output_checksum == ref.output_checksum  # both checked against the host TFLM too
    assert opt.device.details["kernels"] == "cmsis_nn"
    assert opt.latency.instructions < ref.latency.instructions


def test_unknown_kernel_set_is_a_usage_error():
    with pytest.raises(UsageError, match="--kernels fast: use one of reference, cmsis_nn"):
        open_device("qemu:mps2-an386", kernels="fast")



@needs_tree
def test_qemu_reads_the_packaged_device_profile(run_cli, mnist, tmp_path):
    """A firmware folder names its profile: qemu: takes clock and power from it without --profile."""
    import json

    fw = tmp_path / "fw"
    r = run_cli("package", mnist.model, "--target", "tflm", "--device", "nucleo-h743zi2", "--recipe", mnist.recipe,
                "--calibration", mnist.calib, "--out", fw, "-q")
    assert r.exit_code == 0, r.err
    r = run_cli("profile", fw, "--device", "qemu:mps2-an386", "--runs", "2", "--warmup", "0", "--json")
    assert r.exit_code == 0, r.err
    res = json.loads(r.out)
    assert res["device"]["profile"] == "nucleo-h743zi2"
    assert res["energy"]["source"] == "estimated" and "nucleo-h743zi2" in res["energy"]["method"]
    assert res["device"]["details"]["latency_clock_hz"] == "480000000"  # the H743's clock, not the harness's
