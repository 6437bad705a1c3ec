"""Android profiling over ADB against the device emulator (real wire protocol on loopback TCP).

Driven by adb-shell (what edgepack uses) and by Debian's ``adb`` client, which
proves the emulator speaks the protocol real tools speak.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgepack.devices.android.adb import ensure_key
from edgepack.devices.registry import open_device
from edgepack.devices.android.parsers import parse_benchmark_output, split_exit
from edgepack.devices.result import Settings
from edgepack.errors import DeviceError
from emulators.adb_device import AdbEmulator, emulator, true_excess_mw

FAST = dict(idle_seconds=0.4, energy_seconds=0.8)


def remote_tmp(emu: AdbEmulator) -> list[str]:
    return sorted(p.name for p in (emu.root / "data/local/tmp").iterdir())


def test_key_is_created_once_with_owner_only_permissions(tmp_path):
    path = ensure_key(tmp_path / "cfg" / "adbkey")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    first = path.read_bytes()
    assert ensure_key(path).read_bytes() == first  # reused, not regenerated
    path.chmod(0o644)
    with pytest.raises(DeviceError, match="readable by others.*chmod 600"):
        ensure_key(path)


def test_key_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPACK_ADB_KEY", str(tmp_path / "env" / "k"))
    from edgepack.devices.android.adb import default_key_path

    assert default_key_path() == tmp_path / "env" / "k"


def test_profile_over_adb_tcp(tmp_path, key, bench_bin, model):
    with emulator(tmp_path, key) as emu:
        with open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key,
                         op_profiling=True, **FAST) as dev:
            r = dev.profile(model, Settings(runs=10, warmup=2, threads=1))
        cmd = next(c for c in emu.commands if "benchmark_model --graph=" in c)
        left = remote_tmp(emu)
    assert r.device.kind == "adb" and r.device.name == "edgepack-emu"
    for flag in ("--num_threads=1", "--num_runs=10", "--warmup_runs=2", "--use_xnnpack=true",
                 "--report_peak_memory_footprint=true", "--enable_op_profiling=true"):
        assert flag in cmd
    lat = r.latency
    assert lat.n >= 10 and lat.min_us <= lat.median_us <= lat.max_us and lat.first_us > 0
    assert r.init_us > 0 and r.memory.peak_bytes > 0
    assert r.ops and r.ops[0].op == "TfLiteXNNPackDelegate"
    e = r.energy
    assert e.source == "measured" and e.per_inference_mj > 0 and 0 < e.uncertainty_mj < e.per_inference_mj
    excess_mw = e.per_inference_mj / (lat.mean_us * 1e-6)  # mJ per inference / s per inference
    assert excess_mw == pytest.approx(true_excess_mw(), rel=0.25)  # the emulator's known load
    assert left == []  # pushed files cleaned up
    assert r.artifact.sha256 and r.artifact.size_bytes == model.stat().st_size


@pytest.mark.parametrize("unit, negative", [("mA", False)])
def test_energy_with_another_driver_convention(tmp_path, key, bench_bin, model, unit, negative):
    with emulator(tmp_path, key, current_unit=unit, discharge_negative=negative) as emu:
        with open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key, **FAST) as dev:
            r = dev.profile(model, Settings(runs=5, warmup=1))
    assert r.energy.source == "measured" and r.energy.per_inference_mj > 0
    assert any("current in mA, positive-discharge" in n for n in r.notes)


def test_no_energy_is_not_available_not_zero(tmp_path, key, bench_bin, model):
    with emulator(tmp_path, key) as emu:
        with open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key,
                         energy=False) as dev:
            r = dev.profile(model, Settings(runs=5, warmup=1))
        assert not any("current_now" in c for c in emu.commands)
    assert r.energy.source == "not_available" and r.energy.per_inference_mj is None
    assert r.latency.n == 5  # without energy sampling, --runs is exact


def test_unknown_key_is_rejected_with_a_clear_error(tmp_path, key, bench_bin, model):
    other = ensure_key(tmp_path / "other" / "adbkey")  # the device trusts only this one
    with emulator(tmp_path, other) as emu:
        dev = open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key, auth_timeout=1)
        with pytest.raises(DeviceError, match="did not accept edgepack's key.*tap Allow"):
            dev.profile(model)
        assert emu.commands == []  # nothing ran on the device


def test_a_new_key_accepted_on_the_device_then_signs(tmp_path, key, bench_bin):
    from adb_shell.adb_device import AdbDeviceTcp
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    with AdbEmulator(tmp_path / "device", accept_new_keys=True) as emu:
        for _ in range(2):  # 1st: public key sent and accepted; 2nd: signature checked
            d = AdbDeviceTcp("127.0.0.1", emu.port, default_transport_timeout_s=5)
            assert d.connect(rsa_keys=[PythonRSASigner.FromRSAKeyPath(str(key))], auth_timeout_s=2)
            assert d.shell("echo ok").strip() == "ok"
            d.close()
        assert len(emu.keys) == 1


def test_sync_stat_list_and_recv(tmp_path, key):
    from adb_shell.adb_device import AdbDeviceTcp
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    payload = os.urandom(200_000)  # several WRTE packets each way
    with emulator(tmp_path, key) as emu:
        d = AdbDeviceTcp("127.0.0.1", emu.port, default_transport_timeout_s=5)
        d.connect(rsa_keys=[PythonRSASigner.FromRSAKeyPath(str(key))], auth_timeout_s=2)
        d.push(io.BytesIO(payload), "/data/local/tmp/blob.bin", st_mode=stat.S_IFREG | 0o640)
        mode, size, _ = d.stat("/data/local/tmp/blob.bin")
        names = [f.filename.decode() for f in d.list("/data/local/tmp")]
        back = io.BytesIO()
        d.pull("/data/local/tmp/blob.bin", back)
        d.close()
    assert (stat.S_IMODE(mode), size, names) == (0o640, len(payload), ["blob.bin"])
    assert back.getvalue() == payload


def test_disconnect_mid_run_is_a_device_error(tmp_path, key, bench_bin, model):
    with emulator(tmp_path, key, drop_on="benchmark_model --graph") as emu:
        dev = open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key, **FAST)
        with pytest.raises(DeviceError, match="disconnected or failed during benchmark_model run"):
            dev.profile(model, Settings(runs=3, warmup=0))
        dev.close()


def test_timeout_is_a_device_error(tmp_path, key, bench_bin, model):
    with emulator(tmp_path, key, stall_on="benchmark_model --graph") as emu:
        dev = open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key,
                          timeout=1.5, energy=False)
        with pytest.raises(DeviceError, match="timed out during benchmark_model run.*--timeout"):
            dev.profile(model, Settings(runs=3, warmup=0))
        dev.close()


def test_missing_benchmark_binary_says_where_to_get_one(tmp_path, key, model):
    for binary in (None, tmp_path / "nope"):
        dev = open_device("adb-tcp:127.0.0.1:9", benchmark_binary=binary, adb_key=key)
        with pytest.raises(DeviceError, match="benchmark_model.*--benchmark-binary|--benchmark-binary PATH"):
            dev.profile(model)


def test_failing_benchmark_reports_its_exit_status(tmp_path, key, model):
    bad = tmp_path / "benchmark_model"
    bad.write_text("#!/bin/sh\necho \"ERROR: Didn't find op for builtin opcode 'CUSTOM'\"\nexit 1\n")
    bad.chmod(0o755)
    with emulator(tmp_path, key) as emu:
        with open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bad, adb_key=key, energy=False) as dev:
            with pytest.raises(DeviceError, match=r"exit 1\).*Didn't find op"):
                dev.profile(model, Settings(runs=1, warmup=0))
        assert remote_tmp(emu) == []  # cleaned up after the failure too


def test_unreachable_device_is_a_device_error(key, bench_bin, model):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    dev = open_device(f"adb-tcp:127.0.0.1:{port}", benchmark_binary=bench_bin, adb_key=key)
    with pytest.raises(DeviceError, match=f"127.0.0.1:{port}"):
        dev.profile(model)


# -- Debian's adb client against the emulator ----------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("adb") is None,
                    reason="Debian's adb client is absent (apt-get install -y adb; .ci/run installs it)")
def test_debian_adb_client_drives_the_emulator(tmp_path, bench_bin, model):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), ANDROID_ADB_SERVER_PORT=str(_free_port()), ADB_VENDOR_KEYS="")

    def adb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["adb", *args], env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    assert adb("start-server").returncode == 0
    try:
        pub = (home / ".android" / "adbkey.pub").read_text()  # adb's own key, signed by adb
        with AdbEmulator(tmp_path / "device", authorized_keys=[pub]) as emu:
            assert "connected to" in adb("connect", emu.serial).stdout
            assert f"{emu.serial}\tdevice" in adb("devices").stdout
            s = ["-s", emu.serial]
            legacy = adb(*s, "shell", "false")
            assert legacy.returncode == 0  # the legacy shell protocol loses the exit status ...
            assert split_exit(adb(*s, "shell", "false; echo EXIT=$?").stdout)[1] == 1  # ... EXIT= recovers it
            assert adb(*s, "push", str(model), "/data/local/tmp/m.tflite").returncode == 0
            assert adb(*s, "push", str(bench_bin), "/data/local/tmp/benchmark_model").returncode == 0
            out = adb(*s, "shell", "/data/local/tmp/benchmark_model --graph=/data/local/tmp/m.tflite "
                      "--num_runs=5 --warmup_runs=1 --min_secs=0 --report_peak_memory_footprint=true"
                      "; echo EXIT=$?").stdout
            body, code = split_exit(out)
            b = parse_benchmark_output(body)
            assert code == 0 and b.count == 5 and b.peak_mb > 0
            assert adb(*s, "pull", "/data/local/tmp/m.tflite", str(tmp_path / "back.tflite")).returncode == 0
            assert (tmp_path / "back.tflite").read_bytes() == model.read_bytes()
            assert adb(*s, "exec-out", "ls /data/local/tmp").stdout.split() == ["benchmark_model", "m.tflite"]
    finally:
        adb("kill-server")


def test_timeout_mid_benchmark_stops_it_by_pid_and_cleans_up(tmp_path, key, bench_bin, model):
    with emulator(tmp_path, key) as emu:
        dev = open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key,
                          timeout=2.5, idle_seconds=0.2, energy_seconds=20)  # the run lasts >= 20 s
        with pytest.raises(DeviceError, match="timed out during benchmark_model run"):
            dev.profile(model, Settings(runs=3, warmup=0))
        dev.close()
        assert remote_tmp(emu) == []
        assert _benchmarks_running(str(emu.root)) == []  # stopped by its PID on the device


def _benchmarks_running(root: str, grace_s: float = 2.0) -> list[str]:
    """PIDs of emulated benchmark_model programs under ``root`` still alive after a grace period."""
    import time

    deadline = time.monotonic() + grace_s
    while True:
        alive = []
        for p in Path("/proc").iterdir():
            try:
                argv = (p / "cmdline").read_bytes().split(b"\0") if p.name.isdigit() else []
            except OSError:
                continue
            if len(argv) > 1 and argv[0] == sys.executable.encode() and root.encode() in argv[1] \
                    and argv[1].endswith(b"/benchmark_model"):
                alive.append(p.name)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)
