"""Broken and hostile ADB devices (issue 12): silent ports, dropped links, stubborn processes, bad figures."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from edgepack.devices.android.adb import ensure_key
from edgepack.devices.registry import open_device
from edgepack.devices.android.parsers import parse_benchmark_output
from edgepack.devices.result import Latency, Settings
from edgepack.devices.store import write_json
from edgepack.errors import DeviceError
from emulators.adb_device import AdbEmulator, emulator


class Listener:
    """A TCP port that accepts connections and then sends ``reply`` (nothing: stays silent)."""

    def __init__(self, reply: bytes = b""):
        self.reply = reply
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.reply:
                c.sendall(self.reply)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.server.close()


def folders(emu: AdbEmulator) -> list[str]:
    return sorted(p.name for p in (emu.root / "data/local/tmp").iterdir())


# -- a device that never answers CNXN ----------------------------------------------------

def test_a_port_that_never_answers_cnxn_is_not_blamed_on_the_key(key, bench_bin, model):
    silent = Listener()
    try:
        dev = open_device(f"adb-tcp:127.0.0.1:{silent.port}", benchmark_binary=bench_bin, adb_key=key,
                          timeout=1.0)
        with pytest.raises(DeviceError) as e:
            dev.profile(model)
    finally:
        silent.close()
    assert "never answered ADB's CNXN" in str(e.value) and "not an adb daemon" in str(e.value)
    assert "key" not in str(e.value)


def test_a_key_the_device_ignores_is_still_named(tmp_path, key, bench_bin, model):
    other = ensure_key(tmp_path / "other" / "adbkey")
    with emulator(tmp_path, other) as emu:  # answers CNXN with AUTH, never accepts our key
        dev = open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key, auth_timeout=1)
        with pytest.raises(DeviceError, match="did not accept edgepack's key"):
            dev.profile(model)


def test_devices_adb_tcp_probes_with_cnxn_not_just_tcp(run_cli, tmp_path, key, monkeypatch):
    monkeypatch.setenv("ADB_SERVER_SOCKET", "tcp:127.0.0.1:9")  # no server: a hermetic listing
    silent, http = Listener(), Listener(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    try:
        with emulator(tmp_path, key) as emu:
            r = run_cli("devices", "--no-usb", "--json", "--adb-tcp", emu.serial,
                        "--adb-tcp", f"127.0.0.1:{silent.port}", "--adb-tcp", f"127.0.0.1:{http.port}")
    finally:
        silent.close()
        http.close()
    entries = {e["spec"]: e["status"] for e in json.loads(r.out)}
    assert entries[f"adb-tcp:{emu.serial}"] == "available"
    assert entries[f"adb-tcp:127.0.0.1:{silent.port}"].startswith("not answering: the port accepts TCP")
    assert entries[f"adb-tcp:127.0.0.1:{http.port}"].startswith("not an adb device")


# -- folders left on the device -------------------------------------------------------------

def test_a_dropped_run_leaves_a_folder_that_the_next_connection_removes(tmp_path, key, bench_bin, model):
    with emulator(tmp_path, key, drop_on="benchmark_model --graph") as emu:
        dev = open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key, energy=False)
        with pytest.raises(DeviceError, match="disconnected"):
            dev.profile(model, Settings(runs=2, warmup=0))
        dev.close()
        left = folders(emu)
        assert len(left) == 1 and left[0].startswith("edgepack-")  # the link was gone: nothing to clean with
        # a folder of another computer's run that is still young, and an old dead one
        tmp = emu.root / "data/local/tmp"
        for name, age in (("edgepack-0000aaaa", 60), ("edgepack-0000bbbb", 7200)):
            (tmp / name).mkdir()
            (tmp / name / "owner").write_text("otherhost 4242\n")
            os.utime(tmp / name, (time.time() - age, time.time() - age))
        emu.drop_on = None
        with open_device(f"adb-tcp:{emu.serial}", benchmark_binary=bench_bin, adb_key=key, energy=False) as dev:
            r = dev.profile(model, Settings(runs=2, warmup=0))
        after = folders(emu)
    assert after == ["edgepack-0000aaaa"]  # another computer's recent folder is left alone
    note = next(n for n in r.notes if n.startswith("removed 2 edgepack folder(s)"))
    assert left[0] in note and "edgepack-0000bbbb" in note


STUBBORN = """#!/bin/sh
# ignores SIGTERM and keeps creating files in its folder: an rm -rf racing it fails
trap '' TERM
d=$(dirname "$0")
i=0
while :; do echo x 2>/dev/null >"$d/junk.$i"; i=$(( (i + 1) % 64 )); done
"""


def test_cleanup_after_a_timeout_kills_the_run_before_removing_its_folder(tmp_path, key, model):
    stubborn = tmp_path / "benchmark_model"
    stubborn.write_text(STUBBORN)
    stubborn.chmod(0o755)
    with emulator(tmp_path, key) as emu:
        dev = open_device(f"adb-tcp:{emu.serial}", benchmark_binary=stubborn, adb_key=key, timeout=1.5,
                          energy=False)
        with pytest.raises(DeviceError, match="timed out during benchmark_model run"):
            dev.profile(model, Settings(runs=2, warmup=0))
        dev.close()
        left = folders(emu)
        alive = _alive_under(str(emu.root))
    assert left == [] and alive == []


def _alive_under(root: str, grace_s: float = 2.0) -> list[str]:
    """Live (non-zombie) processes whose command line names a path under ``root``."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                argv = (p / "cmdline").read_bytes()
                state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z" and root.encode() + b"/data/" in argv:
                alive.append(p.name)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


# -- impossible figures --------------------------------------------------------------------------

GOOD = ("INFO: count=5 first=1200 curr=1100 min=1000 max=1300 avg=1150 std=90 p5=1000 median=1120 p95=1290\n"
        "INFO: Inference timings in us: Init: 5000, First inference: 1300, Warmup (avg): 1250, "
        "Inference (avg): 1150\n"
        "INFO: Memory footprint delta from the start of the tool (MB): init=2.5 overall=3.1\n")


@pytest.mark.parametrize("old, new, shown", [
    ("avg=1150", "avg=nan", "avg_us=nan"),
    ("Inference (avg): 1150", "Inference (avg): inf", "inference_avg_us=inf"),
    ("median=1120", "median=-1120", "median_us=-1120"),
    ("Init: 5000", "Init: 1e999", "init_us=inf"),
    ("overall=3.1", "overall=NaN", "mem_overall_mb=nan"),
    ("min=1000", "min=2000", "min=2000.0 > max=1300.0"),
])
def test_nan_inf_and_negative_timings_are_refused(old, new, shown):
    assert parse_benchmark_output(GOOD).avg_us == 1150  # the good text parses
    with pytest.raises(DeviceError, match="impossible figures") as e:
        parse_benchmark_output(GOOD.replace(old, new))
    assert shown in str(e.value)


def test_a_benchmark_printing_nan_writes_nothing(run_cli, tmp_path, key, model):
    liar = tmp_path / "benchmark_model"
    liar.write_text("#!/bin/sh\ncat <<'X'\n" + GOOD.replace("avg=1150", "avg=nan")
                    .replace("Inference (avg): 1150", "Inference (avg): inf") + "X\n")
    liar.chmod(0o755)
    out = tmp_path / "r.json"
    with emulator(tmp_path, key) as emu:
        r = run_cli("profile", model, "--device", f"adb-tcp:{emu.serial}", "--benchmark-binary", liar,
                    "--adb-key", key, "--no-energy", "--out", out, "-q")
        left = folders(emu)
    assert r.exit_code == 1 and "impossible figures" in r.err and r.err.count("\n") == 1
    assert not out.exists() and left == []


def test_json_is_strict_no_nan_or_infinity(tmp_path):
    with pytest.raises(DeviceError, match="NaN or infinite.*nothing was written"):
        write_json(tmp_path / "x.json", {"latency": math.inf})
    assert not (tmp_path / "x.json").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        Latency(median_us=math.nan)  # a result cannot even hold one


def test_which_folders_are_stale():
    import subprocess

    from edgepack.devices.android import adb_workdir as wd

    dead = subprocess.Popen(["true"])
    dead.wait()  # a PID that no longer runs
    me, other = wd.host_id(), "elsewhere.12345678"
    rows = [wd.Folder("edgepack-00000001", False, 5, me, dead.pid),  # our dead edgepack: stale
            wd.Folder("edgepack-00000002", True, 5, me, os.getppid()),  # a live edgepack here: kept
            wd.Folder("edgepack-00000003", False, 5, me, os.getpid()),  # this process, not in use: stale
            wd.Folder("edgepack-00000004", False, 5, me, os.getpid()),  # this process, in use: kept
            wd.Folder("edgepack-00000005", True, 9999, other, 1),  # another host's run still alive: kept
            wd.Folder("edgepack-00000006", False, 9999, other, 1),  # another host's, dead and old: stale
            wd.Folder("edgepack-00000007", False, 60, other, 1)]  # another host's, recent: kept
    wd.ACTIVE.add(f"{wd.REMOTE_ROOT}/edgepack-00000004")
    try:
        names = [f.name[-1] for f in wd.stale(rows)]
    finally:
        wd.ACTIVE.discard(f"{wd.REMOTE_ROOT}/edgepack-00000004")
    assert names == ["1", "3", "6"]
    listing = "DIR edgepack-0000abcd 1 42 h.1 77\nDIR ../../etc 0 1 h 1\ngarbage\n"
    assert [(f.name, f.alive, f.age_s, f.owner_pid) for f in wd.parse_listing(listing)] == [
        ("edgepack-0000abcd", True, 42.0, 77)]  # a name that is not ours is never removed
