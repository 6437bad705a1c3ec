"""The host device (LiteRT + XNNPACK in a child process) and artifact resolution."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from edgepack.devices.artifact import resolve_artifact
from edgepack.devices.lifecycle import Device
from edgepack.devices.registry import DEVICES, open_device, parse_spec
from edgepack.tflm.protocol import input_pattern_array
from edgepack.devices.result import ProfileResult, Settings
from edgepack.errors import DeviceError, UsageError
from edgepack.runtime import LiteRT


@pytest.fixture(scope="module")
def kws(mlperf_dir) -> Path:
    return mlperf_dir / "kws_ref_model.tflite"


def test_host_profile_is_a_full_measured_result(kws):
    r = open_device("host").profile(kws, Settings(runs=15, warmup=2))
    assert isinstance(r, ProfileResult) and r.device.kind == "host"
    lat = r.latency
    assert lat.source == "measured" and lat.n == 15 and lat.first_us is not None
    assert 0 < lat.min_us <= lat.median_us <= lat.p95_us <= lat.max_us
    assert lat.min_us <= lat.mean_us <= lat.max_us
    assert r.init_us > 0
    assert r.memory.source == "measured" and r.memory.peak_bytes > 0
    assert r.energy.source == "not_available" and r.energy.per_inference_mj is None
    assert r.artifact.size_bytes == kws.stat().st_size
    ProfileResult.model_validate_json(r.model_dump_json())  # the schema round-trips


def test_host_checksum_is_the_output_for_the_harness_pattern(kws):
    """The child's CRC equals the output LiteRT gives in this process for the same input."""
    r = open_device("host").profile(kws, Settings(runs=1, warmup=0))
    it = LiteRT(kws.read_bytes()).interp
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], input_pattern_array(tuple(d["shape"]), d["dtype"]))
    it.invoke()
    raw = it.get_tensor(it.get_output_details()[0]["index"])
    assert r.output_checksum == f"{zlib.crc32(raw.tobytes()) & 0xFFFFFFFF:08x}"


def test_host_float_model_uses_a_finite_input():
    from emulators.models import tiny_tflite

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "float.tflite"
        path.write_bytes(tiny_tflite(quantized=False))
        r = open_device("host").profile(path, Settings(runs=3, warmup=1))
    assert r.latency.n == 3 and any("standard normal" in n for n in r.notes)


def test_a_bigger_model_takes_longer_measured_side_by_side(mlperf_dir):
    """AD (0.26 M MACs) vs IC ResNet-8 (12.5 M MACs): the ranking must come out of measurement."""
    dev = open_device("host")
    small = dev.profile(mlperf_dir / "ad01_int8.tflite", Settings(runs=20, warmup=3))
    big = dev.profile(mlperf_dir / "pretrainedResnet_quant.tflite", Settings(runs=20, warmup=3))
    assert big.latency.median_us > small.latency.median_us


def test_corrupt_model_is_a_device_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40)
    with pytest.raises(DeviceError, match="LiteRT could not run .*bad.tflite"):
        open_device("host").profile(bad, Settings(runs=1, warmup=0))


# -- artifact resolution -------------------------------------------------------

def test_resolve_tflite_and_android_bundle(kws, tmp_path):
    assert resolve_artifact(kws).kind == "tflite"
    bundle = tmp_path / "android"
    bundle.mkdir()
    (bundle / "model.tflite").write_bytes(kws.read_bytes())
    (bundle / "labels.txt").write_text("a\nb\n")
    art = resolve_artifact(bundle)
    assert art.kind == "android" and art.model == kws.read_bytes() and art.name == "android"


def test_resolve_firmware_folder_from_the_c_array(kws, tmp_path):
    fw = tmp_path / "fw" / "src"
    fw.mkdir(parents=True)
    data = kws.read_bytes()
    rows = ",\n  ".join(", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12))
    (fw / "model_data.cc").write_text(
        f'#include "model_data.h"\n// model: kws\nalignas(16) const unsigned char g_model[] = {{\n  {rows}\n}};\n'
        f"const unsigned int g_model_len = {len(data)};\n")
    art = resolve_artifact(tmp_path / "fw")
    assert art.kind == "firmware" and art.tflite_path is None and art.model == data
    r = open_device("host").profile(tmp_path / "fw", Settings(runs=2, warmup=0))
    assert r.artifact.size_bytes == len(data)
    (tmp_path / "fw" / "model.tflite").write_bytes(data)  # the copy the firmware target writes
    assert resolve_artifact(tmp_path / "fw").tflite_path == tmp_path / "fw" / "model.tflite"
    (tmp_path / "fw" / "model.tflite").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(DeviceError, match="hold different models"):
        resolve_artifact(tmp_path / "fw")


def test_resolve_errors_name_the_folder(tmp_path, kws):
    with pytest.raises(DeviceError, match="does not exist"):
        resolve_artifact(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeviceError, match="no .tflite and no model_data.cc"):
        resolve_artifact(empty)
    two = tmp_path / "two"
    two.mkdir()
    for n in ("a.tflite", "b.tflite"):
        (two / n).write_bytes(kws.read_bytes())
    with pytest.raises(DeviceError, match="several .tflite"):
        resolve_artifact(two)
    txt = tmp_path / "model.tflite.txt"
    txt.write_text("hello")
    with pytest.raises(DeviceError, match="not a TFLite model"):
        resolve_artifact(txt)


# -- SPEC registry -------------------------------------------------------------

def test_specs_parse_and_every_prefix_is_registered():
    assert set(DEVICES) == {"host", "adb", "adb-tcp", "serial", "qemu", "board", "estimate"}
    assert parse_spec("adb-tcp:10.0.0.2:5555").target == "10.0.0.2:5555"
    assert parse_spec("serial:socket://127.0.0.1:5555").target == "socket://127.0.0.1:5555"
    assert parse_spec("estimate:nucleo-l4r5zi").prefix == "estimate"


@pytest.mark.parametrize("spec, words", [
    ("phone", "unknown device 'phone'"), ("host:x", "takes no argument"),
    ("adb-tcp:nohost", "adb-tcp:HOST:PORT"), ("serial:", "needs a target"),
])
def test_bad_specs_are_usage_errors(spec, words):
    with pytest.raises(UsageError, match=words):
        parse_spec(spec)


def test_options_a_device_does_not_take_are_named():
    with pytest.raises(UsageError, match="does not take benchmark_binary="):
        open_device("host", benchmark_binary=Path("x"))
    assert isinstance(open_device("host", benchmark_binary=None), Device)  # None = not given


@pytest.mark.parametrize("settings, words", [
    (Settings(runs=0), "--runs 0"), (Settings(warmup=-1), "--warmup -1"), (Settings(threads=0), "--threads 0")])
def test_impossible_settings_are_refused(kws, settings, words):
    with pytest.raises(UsageError, match=words):
        open_device("host").profile(kws, settings)


def test_profile_runs_cleanup_even_when_run_fails(kws):
    calls = []

    class Failing(Device):
        kind = "host"

        def prepare(self, artifact):
            calls.append("prepare")

        def run(self, settings):
            raise DeviceError("boom")

        def cleanup(self):
            calls.append("cleanup")

    with pytest.raises(DeviceError):
        Failing().profile(kws)
    assert calls == ["prepare", "cleanup"]


def test_input_pattern_and_model_agree_on_dtype(kws):
    d = LiteRT(kws.read_bytes()).inputs[0]
    x = input_pattern_array(tuple(d["shape"]), d["dtype"])
    assert x.dtype == np.int8 and x.shape == tuple(d["shape"])
