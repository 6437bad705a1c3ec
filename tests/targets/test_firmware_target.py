"""Firmware target: golden headers, layouts, checks before writing, and the CLI end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from edgepack.profiles import list_profiles, profiles_dir
from edgepack.errors import BudgetError, UnsupportedOpError, UsageError
from edgepack.targets.firmware import FirmwareTarget
from edgepack.tflm import find_arena
from tflm_helpers import build_for, calib, convert_tiny
from locations import GOLDEN

GOLDEN_FILES = ("model_data.h", "model_data.cc", "model_ops.h", "model_config.h")
UPDATE = os.environ.get("EDGEPACK_UPDATE_GOLDEN") == "1"


def _normalize(text: str) -> str:
    """Mask figures that legitimately move with the tflite-micro nightly or edgepack's version."""
    text = re.sub(r"edgepack \d+\.\d+\.\d+\S*", "edgepack X", text)
    text = re.sub(r"(tensor_arena_bytes: |EP_ARENA_SIZE |EP_ARENA_MIN_HOST_BYTES )\d+u?", r"\1N", text)
    return re.sub(r"/\* Tensor arena: \d+ B .*?\+ \d+ B margin", "/* Tensor arena: N B ... + N B margin", text,
                  flags=re.S)


@pytest.fixture(scope="module")
def tiny_out(tiny, tmp_path_factory) -> tuple[Path, dict]:
    build = build_for(tiny, options={"device": "nucleo-l4r5zi", "array_name": "g_tiny"}, calibration=calib(16))
    t = FirmwareTarget()
    t.check(build)
    out = tmp_path_factory.mktemp("fw")
    files = t.write(build, out)
    return out, {**build.report["firmware"], "written": files}


def test_golden_headers(tiny_out):
    out, _ = tiny_out
    for name in GOLDEN_FILES:
        got = (out / name).read_text()
        if UPDATE:
            (GOLDEN / name).write_text(got)
        assert _normalize(got) == _normalize((GOLDEN / name).read_text()), name


def test_report_carries_real_arena_parity_budget_and_harness(tiny, tiny_out):
    out, fw = tiny_out
    arena = find_arena(tiny)
    assert fw["arena"]["min_bytes"] == arena.min_bytes
    cfg = (out / "model_config.h").read_text()
    assert f"#define EP_ARENA_SIZE {arena.recommended_bytes}u" in cfg
    assert f"#define EP_MODEL_DATA_LEN {len(tiny)}u" in cfg
    assert fw["parity"]["bit_exact"] and fw["parity"]["data"] == "calibration" and fw["parity"]["samples"] == 16
    flash, ram = fw["budget"]["flash"], fw["budget"]["ram"]
    assert flash["needed"] == len(tiny) + flash["runtime_estimate"] and flash["headroom"] > 0
    assert ram["needed"] == arena.recommended_bytes + ram["runtime_estimate"]
    assert re.fullmatch(r"[0-9a-f]{8}", fw["harness"]["expected_crc32"]) and fw["harness"]["clock_hz"] == 120_000_000
    assert fw["harness"]["expected_crc32"] in (out / "README.md").read_text()
    assert (out / "model.tflite").read_bytes() == tiny


def test_layouts_plain_folder_and_arduino_library(tiny_out):
    out, fw = tiny_out
    lib = out / "arduino" / "edgepack_g_tiny"
    props = dict(ln.split("=", 1) for ln in (lib / "library.properties").read_text().splitlines())
    assert props["name"] == lib.name and props["includes"] == "edgepack_g_tiny.h"
    src = {p.name for p in (lib / "src").iterdir()}
    assert {"model_data.h", "model_data.cc", "model_ops.h", "model_config.h", "ep_harness.cc", "ep_protocol.c",
            "board.h", "board_arduino.cpp", "edgepack_g_tiny.h"} <= src
    assert "board_mps2.c" not in src and "main.cc" not in src  # Arduino compiles every file in src/
    assert "#include <edgepack_g_tiny.h>" in (lib / "examples" / "Profile" / "Profile.ino").read_text()
    for name in GOLDEN_FILES:
        assert (lib / "src" / name).read_text() == (out / name).read_text()
    assert {"main.cc", "ep_harness.cc", "board_mps2.c", "mps2_an386.ld"} <= {p.name for p in (out / "harness").iterdir()}
    cmake = (out / "CMakeLists.txt").read_text()
    assert "add_library(g_tiny_model STATIC" in cmake and "idf_component_register" in cmake
    assert "REQUIRES esp-tflite-micro" in cmake and "espressif/esp-tflite-micro" in (out / "idf_component.yml").read_text()
    assert "zephyr_library()" in (out / "zephyr/CMakeLists.txt").read_text()
    assert (lib / "examples" / "Inference" / "example_input.h").read_text() == (
        out / "examples" / "inference" / "example_input.h").read_text()
    assert fw["example"]["sample"] == "the first calibration sample" and fw["example"]["top_class"] in (0, 1, 2)
    assert sorted(fw["written"]) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_builds_the_model_library(tiny_out, tmp_path):
    out, _ = tiny_out
    build = tmp_path / "b"
    subprocess.run(["cmake", "-S", str(out), "-B", str(build)], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    assert list(build.glob("libg_tiny_model.a"))


def test_same_inputs_same_bytes(tiny, tiny_out, tmp_path):
    out, _ = tiny_out
    build = build_for(tiny, options={"device": "nucleo-l4r5zi", "array_name": "g_tiny"}, calibration=calib(16))
    FirmwareTarget().write(build, tmp_path)  # write() plans by itself when check() was not called
    for p in out.rglob("*"):
        if p.is_file():
            assert (tmp_path / p.relative_to(out)).read_bytes() == p.read_bytes(), p


@pytest.mark.parametrize("device", ["nucleo-l4r5zi", "arduino-nano-33-ble-sense"])
@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"])
def test_mlperf_models_fit_two_boards(mlperf_dir, tmp_path, device, model):
    data = (mlperf_dir / model).read_bytes()
    build = build_for(data, name=Path(model).stem, options={"device": device})
    t = FirmwareTarget()
    t.check(build)
    fw = build.report["firmware"]
    assert fw["parity"]["data"] == "random" and fw["parity"]["max_raw_diff"] <= 16
    assert fw["array_name"] == "g_" + Path(model).stem.lower()
    assert fw["budget"]["flash"]["needed"] <= fw["budget"]["flash"]["available"]


def _tiny_profile(tmp_path: Path, **changes) -> str:
    raw = yaml.safe_load((profiles_dir() / "nucleo-l4r5zi.yaml").read_text())
    raw.update(changes, name="tiny-board")
    path = tmp_path / "tiny-board.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_flash_budget_error_says_by_how_much(mlperf_dir, tmp_path):
    data = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    prof = _tiny_profile(tmp_path, flash_bytes=256 * 1024, runtime_flash_bytes=64 * 1024)
    with pytest.raises(BudgetError) as e:  # judged on the final model (after compression / memory plan)
        _check_and_finalize(build_for(data, name="ad01", options={"device": prof}))
    over = (len(data) + 64 * 1024 - 256 * 1024) / 1024
    assert "ad01 does not fit tiny-board flash" in str(e.value) and f"over by {over:.1f} KiB" in str(e.value)


def test_ram_budget_error(mlperf_dir, tmp_path):
    data = (mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes()
    prof = _tiny_profile(tmp_path, ram_bytes=64 * 1024, runtime_ram_bytes=16 * 1024)
    with pytest.raises(BudgetError, match=r"tiny-board RAM: needs .*tensor arena .* over by"):
        _check_and_finalize(build_for(data, name="resnet", options={"device": prof}))


def _check_and_finalize(build):
    t = FirmwareTarget()
    t.check(build)
    t.finalize_model(build)


def test_bad_options_are_usage_errors(tiny):
    with pytest.raises(UsageError) as e:
        FirmwareTarget().check(build_for(tiny, options={"device": "nucleo"}))
    assert all(n in str(e.value) for n in list_profiles())
    with pytest.raises(UsageError, match="needs --device"):
        FirmwareTarget().check(build_for(tiny))
    with pytest.raises(UsageError, match="'my-model' is not a valid C identifier"):
        FirmwareTarget().check(build_for(tiny, options={"device": "nucleo-l4r5zi", "array_name": "my-model"}))


def test_float_model_refused_for_int8_only_board():
    data = convert_tiny(mode="none")
    with pytest.raises(UnsupportedOpError, match="runs int8 only"):
        FirmwareTarget().check(build_for(data, options={"device": "raspberry-pi-pico"}, mode="none"))
    b = build_for(data, options={"device": "nucleo-l4r5zi"}, mode="none", calibration=calib(4))
    FirmwareTarget().check(b)  # the same model is fine on a board with an FPU
    assert b.report["firmware"]["parity"]["output_dtype"] == "float32"


def test_cli_packages_mnist_for_tflm(run_cli, mnist, tmp_path):
    out = tmp_path / "fw"
    r = run_cli("package", mnist.model, "--target", "tflm", "--device", "arduino-nano-33-ble-sense",
                "--array-name", "g_mnist", "--quantize", "int8", "--io", "int8", "--calibration", mnist.calib,
                "--out", out, "-q", "--json")
    assert r.exit_code == 0, r.err
    rep = json.loads((out / "report.json").read_text())
    assert rep["firmware"]["device"] == "arduino-nano-33-ble-sense" and rep["firmware"]["parity"]["bit_exact"]
    assert "extern const unsigned char g_mnist[];" in (out / "model_data.h").read_text()
    assert (out / "model.tflite").read_bytes() == (out / "model.tflite").read_bytes()


def test_cli_nothing_written_when_the_board_refuses(run_cli, mnist, tmp_path):
    out = tmp_path / "fw"
    r = run_cli("package", mnist.model, "--target", "tflm", "--device", "raspberry-pi-pico", "--quantize", "none",
                "--out", out, "-q")
    assert r.exit_code == 1 and "runs int8 only" in r.err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_advice_flags_per_channel_dense_layers(mlperf_dir, tiny_out):
    from edgepack.targets.firmware import advice_for

    _, fw = tiny_out
    assert any("per-channel" in a for a in fw["advice"])  # the tiny model's Dense is per-channel
    # MLPerf's own conversion of the autoencoder uses per-tensor dense weights: nothing to advise
    data = (mlperf_dir / "ad01_int8.tflite").read_bytes()
    assert advice_for(build_for(data)) == []


def test_advice_names_patches_when_ram_is_short_and_patches_did_not_run(mlperf_dir):
    from edgepack.targets.firmware import advice_for

    build = build_for((mlperf_dir / "ad01_int8.tflite").read_bytes())
    build.checks["budget"] = {"ram": {"needed": 95_000, "available": 100_000, "headroom": 5_000}}
    assert any(a.startswith("RAM is short (5000 B left): --patches auto") for a in advice_for(build))
    build.checks["budget"]["ram"].update(needed=50_000, headroom=50_000)
    assert advice_for(build) == []  # room to spare: nothing to advise
    build.checks["budget"]["ram"].update(needed=95_000, headroom=5_000)
    build.report["patches"] = {"kept": False, "reason": "no tiling gives a smaller arena"}
    assert advice_for(build) == []  # patches ran and could not help: not advised again
