"""Phones through a REAL adb server: Debian's ``adb`` on a loopback port, emulated phones attached.

The server runs with its own HOME (its own adbkey) on a free port and is killed at the end
(``adb -P PORT kill-server``). Emulators (tests/emulators/adb_device.py, the real ADB wire
protocol) are attached with ``adb -P PORT connect 127.0.0.1:EMUPORT``: one that trusts the
server's key shows as ``device``, one that trusts nothing as ``unauthorized``. edgepack finds
the server through ADB_SERVER_SOCKET, as adb does, and lists, selects and profiles through it.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from edgepack.devices.android.adb_server import AdbServer, ServerNotRunning, parse_devices_l, server_address
from edgepack.devices.registry import expand_spec, open_device
from edgepack.devices.result import ProfileResult, Settings
from edgepack.errors import DeviceError, UsageError
from emulators.adb_device import AdbEmulator, install_benchmark_model
from emulators.adb_server import AdbServerProcess, free_port

pytestmark = pytest.mark.skipif(shutil.which("adb") is None,
                                reason="Debian's adb is absent (apt-get install -y adb; make system-deps)")
# -- fixtures -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("adb-home")
    proc = AdbServerProcess(home).start()
    yield proc
    proc.stop()


@pytest.fixture
def env(server, monkeypatch, tmp_path):
    """edgepack sees the test server (ADB_SERVER_SOCKET) and has a key of its own it must not need."""
    monkeypatch.setenv("ADB_SERVER_SOCKET", server.socket_spec)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT", raising=False)
    monkeypatch.setenv("EDGEPACK_ADB_KEY", str(tmp_path / "edgepack-key" / "adbkey"))
    yield server
    server.detach_all()


@pytest.fixture
def phones(env, tmp_path):
    """Two authorised phones (different models and ABIs) and an unauthorised one, attached."""
    pub = env.pubkey
    a = AdbEmulator(tmp_path / "pixel", authorized_keys=[pub], model="Pixel 7", android="14",
                    abi="arm64-v8a", abilist="arm64-v8a,armeabi-v7a").start()
    b = AdbEmulator(tmp_path / "galaxy", authorized_keys=[pub], model="SM-A546B", android="13",
                    abi="x86_64", abilist="x86_64,x86", seed=1).start()
    u = AdbEmulator(tmp_path / "locked", authorized_keys=[], model="Locked Phone").start()
    env.attach(a)
    env.attach(b)
    env.attach(u, expect="unauthorized")
    yield a, b, u
    for e in (a, b, u):
        e.stop()


def folders(emu) -> list[str]:
    return sorted(p.name for p in (emu.root / "data/local/tmp").iterdir())


FAST = dict(idle_seconds=0.3, energy_seconds=0.6)


# -- the host protocol ------------------------------------------------------------------

def test_host_protocol_against_the_real_server(phones, env):
    a, b, u = phones
    client = env.client()
    assert client.version() >= 31  # adb 29 speaks protocol 41 (0x29)
    states = {d.serial: d for d in client.devices()}
    assert states[a.serial].state == "device" and states[a.serial].props["model"] == "Pixel_7"
    assert states[b.serial].state == "device"
    assert states[u.serial].state == "unauthorized" and not states[u.serial].ready
    out = client.shell(a.serial, "getprop ro.product.cpu.abilist; echo EXIT=$?", timeout=10)
    assert out.split() == ["arm64-v8a,armeabi-v7a", "EXIT=0"]
    payload = bytes(range(256)) * 1000  # 256 kB: several sync DATA chunks
    client.push(a.serial, payload, "/data/local/tmp/blob", 0o640, timeout=10)
    blob = a.root / "data/local/tmp/blob"
    assert blob.read_bytes() == payload and blob.stat().st_mode & 0o777 == 0o640


def test_server_address_follows_adb_environment():
    assert server_address({}) == ("127.0.0.1", 5037)
    assert server_address({"ADB_SERVER_SOCKET": "tcp:10.0.0.2:6000"}) == ("10.0.0.2", 6000)
    assert server_address({"ADB_SERVER_SOCKET": "tcp:6001"}) == ("127.0.0.1", 6001)
    assert server_address({"ANDROID_ADB_SERVER_PORT": "5038"}) == ("127.0.0.1", 5038)
    assert server_address({"ADB_SERVER_SOCKET": "tcp:h:1", "ANDROID_ADB_SERVER_PORT": "2"}) == ("h", 1)
    with pytest.raises(DeviceError, match="ADB_SERVER_SOCKET=localfilesystem:/x.*tcp:HOST:PORT"):
        server_address({"ADB_SERVER_SOCKET": "localfilesystem:/x"})


def test_devices_l_states_with_spaces():
    text = ("R58M123 device usb:1-2 product:a54x model:SM_A546B device:a54x transport_id:3\n"
            "0123ABC no permissions (missing udev rules? user is in the plugdev group); "
            "see [http://developer.android.com/tools/device.html] usb:1-1 transport_id:4\n"
            "emulator-5554 offline transport_id:5\n")
    got = [(d.serial, d.state, d.props.get("transport_id")) for d in parse_devices_l(text)]
    assert got == [("R58M123", "device", "3"), ("0123ABC", "no permissions", "4"),
                   ("emulator-5554", "offline", "5")]


# -- listing -------------------------------------------------------------------------------

def test_devices_lists_what_the_server_sees_with_the_fix_for_each_state(run_cli, phones):
    a, b, u = phones
    r = run_cli("devices", "--json", "--no-usb")
    assert r.exit_code == 0, r.err
    entries = {e["spec"]: e for e in json.loads(r.out)}
    pixel, galaxy, locked = (entries[f"adb:{e.serial}"] for e in (a, b, u))
    assert pixel["status"] == "available"
    assert {k: pixel["details"][k] for k in ("model", "android", "abi", "state", "serial")} == {
        "model": "Pixel 7", "android": "14", "abi": "arm64-v8a", "state": "device", "serial": a.serial}
    assert galaxy["details"]["model"] == "SM-A546B" and galaxy["details"]["abi"] == "x86_64"
    assert locked["status"].startswith("unauthorized: unlock the phone and tap Allow")
    assert entries["host"]["status"] == "available" and "estimate:nucleo-l4r5zi" in entries
    table = run_cli("devices", "--no-usb")
    assert "Pixel 7" in table.out and "arm64-v8a" in table.out
    assert f"adb:{u.serial}\tadb\tunauthorized: unlock the phone and tap Allow" in table.out  # piped: one line


def test_devices_says_when_no_server_runs(run_cli, monkeypatch):
    monkeypatch.setenv("ADB_SERVER_SOCKET", f"tcp:127.0.0.1:{free_port()}")
    r = run_cli("devices", "--json", "--no-usb")
    entries = {e["spec"]: e for e in json.loads(r.out)}
    assert "no adb server at 127.0.0.1:" in entries["adb"]["status"]
    assert "adb start-server" in entries["adb"]["status"]


# -- selecting and profiling -----------------------------------------------------------------

def test_profile_by_serial_goes_through_the_server(phones, bench_bin, model, tmp_path):
    a, b, u = phones
    with open_device(f"adb:{b.serial}", benchmark_binary=bench_bin, op_profiling=True, **FAST) as dev:
        r = dev.profile(model, Settings(runs=5, warmup=1))
    assert (r.device.id, r.device.name, r.device.details["transport"]) == (b.serial, "SM-A546B", "adb-server")
    assert r.device.details["abi"] == "x86_64" and r.device.details["android"] == "13"
    assert r.latency.n >= 5 and r.latency.median_us > 0 and r.ops
    assert r.energy.source == "measured" and r.energy.per_inference_mj > 0
    assert any("benchmark_model --graph=" in c for c in b.commands) and a.commands == []
    assert folders(b) == []  # cleaned up through the server too
    assert not (tmp_path / "edgepack-key").exists()  # the server's key was used, not edgepack's


def test_bare_adb_picks_android_serial_or_the_only_device(phones, env, monkeypatch):
    a, b, u = phones
    with pytest.raises(DeviceError, match="several devices are attached.*adb:SERIAL.*ANDROID_SERIAL.*adb:all"):
        open_device("adb").connect()
    monkeypatch.setenv("ANDROID_SERIAL", a.serial)
    dev = open_device("adb")
    dev.connect()
    assert dev.serial == a.serial and dev.props["model"] == "Pixel 7"
    monkeypatch.delenv("ANDROID_SERIAL")
    env.detach(b)
    env.detach(u)
    dev = open_device("adb")
    dev.connect()
    assert dev.serial == a.serial and dev.abis() == ["arm64-v8a", "armeabi-v7a"]


def test_unauthorized_and_unknown_serials_say_what_to_do(phones, bench_bin, model):
    a, b, u = phones
    with pytest.raises(DeviceError, match=f"{u.serial} is unauthorized: unlock the phone and tap Allow"):
        open_device(f"adb:{u.serial}", benchmark_binary=bench_bin).profile(model)
    assert u.commands == []  # nothing reached the locked phone
    with pytest.raises(DeviceError, match="127.0.0.1:9 is not attached.*adb connect 127.0.0.1:9"):
        open_device("adb:127.0.0.1:9", benchmark_binary=bench_bin).profile(model)


def test_timeout_through_the_server_stops_the_run_and_cleans_up(phones, bench_bin, model):
    a, b, u = phones
    dev = open_device(f"adb:{b.serial}", benchmark_binary=bench_bin, timeout=2.0, idle_seconds=0.2,
                      energy_seconds=30)  # the run would last >= 30 s
    with pytest.raises(DeviceError, match="timed out during benchmark_model run.*--timeout"):
        dev.profile(model, Settings(runs=3, warmup=0))
    dev.close()
    assert folders(b) == []
    from test_adb import _benchmarks_running

    assert _benchmarks_running(str(b.root)) == []


# -- ABIs ------------------------------------------------------------------------------------

def fake_elf(path, elf_class: int, machine: int):
    """An ELF header only: enough for the ABI check, which must refuse it before any push."""
    head = b"\x7fELF" + bytes([elf_class, 1, 1]) + bytes(9) + (2).to_bytes(2, "little") \
        + machine.to_bytes(2, "little")
    path.write_bytes(head + bytes(64))
    return path


def test_wrong_abi_binary_is_refused_before_pushing(phones, model, tmp_path):
    a, b, u = phones
    arm64 = fake_elf(tmp_path / "bm_arm64", 2, 183)
    with pytest.raises(DeviceError, match=r"bm_arm64 is a 64-bit AArch64 ELF, but adb device .* runs "
                                          r"x86_64, x86; pass the x86_64 build"):
        open_device(f"adb:{b.serial}", benchmark_binary=arm64).profile(model)
    assert all(c.startswith("getprop") for c in b.commands) and folders(b) == []
    arm32 = fake_elf(tmp_path / "bm_arm32", 1, 40)
    with pytest.raises(UsageError, match="arm64-v8a=.*bm_arm32 is a 32-bit ARM binary, not arm64-v8a"):
        open_device(f"adb:{a.serial}", benchmark_binary=[f"arm64-v8a={arm32}"]).profile(model)
    with pytest.raises(UsageError, match="unknown ABI 'arm65'"):
        open_device(f"adb:{a.serial}", benchmark_binary=["arm65=./x"])


def test_pick_binary_by_abilist_and_folder_layout(tmp_path):
    from edgepack.devices.android.abi import parse_binaries, pick_binary

    bm32, bm64 = fake_elf(tmp_path / "bm32", 1, 40), fake_elf(tmp_path / "bm64", 2, 183)
    both = parse_binaries([f"armeabi-v7a={bm32}", f"arm64-v8a={bm64}"])
    assert pick_binary(both, ["arm64-v8a", "armeabi-v7a"], "p") == bm64  # the preferred ABI first
    assert pick_binary(both, ["armeabi-v7a"], "p") == bm32
    only32 = parse_binaries([f"armeabi-v7a={bm32}"])
    assert pick_binary(only32, ["arm64-v8a", "armeabi-v7a"], "p") == bm32  # 64-bit phones run 32-bit
    with pytest.raises(DeviceError, match="runs x86_64, and --benchmark-binary gives armeabi-v7a only"):
        pick_binary(only32, ["x86_64"], "p")
    tree = tmp_path / "bins"
    for abi, src in (("arm64-v8a", bm64), ("armeabi-v7a", bm32)):
        (tree / abi).mkdir(parents=True)
        shutil.copy(src, tree / abi / "benchmark_model")
    found = parse_binaries([str(tree)])
    assert found == {"arm64-v8a": tree / "arm64-v8a/benchmark_model",
                     "armeabi-v7a": tree / "armeabi-v7a/benchmark_model"}
    (tmp_path / "notelf").write_bytes(b"MZ\x90\x00" + bytes(40))
    with pytest.raises(DeviceError, match="not an ELF executable"):
        pick_binary(parse_binaries(str(tmp_path / "notelf")), ["x86_64"], "p")


# -- several phones at once ------------------------------------------------------------------

def test_profile_all_runs_on_every_phone_and_reports_the_spread(run_cli, phones, env, model, tmp_path):
    a, b, u = phones
    bm64 = install_benchmark_model(tmp_path / "bm_arm64", sys.executable)  # scripts: any ABI runs them
    bmx86 = install_benchmark_model(tmp_path / "bm_x86_64", sys.executable)
    common = ["--device", "adb:all", "--benchmark-binary", f"arm64-v8a={bm64}",
              "--benchmark-binary", f"x86_64={bmx86}", "--no-energy", "--runs", "5", "--warmup", "1", "-q"]
    out = tmp_path / "all.json"
    r = run_cli("profile", model, *common, "--json", "--out", out)
    assert r.exit_code == 1 and f"1 of 3 devices failed (adb:{u.serial})" in r.err  # the locked phone
    data = json.loads(out.read_text())
    assert data == json.loads(r.out)
    results = [ProfileResult.model_validate(x) for x in data["results"]]
    by_id = {x.device.id: x for x in results}
    assert set(by_id) == {a.serial, b.serial}
    assert by_id[a.serial].tool_versions["benchmark_model"].startswith("bm_arm64 ")  # ABI picked the binary
    assert by_id[b.serial].tool_versions["benchmark_model"].startswith("bm_x86_64 ")
    assert [f["device"] for f in data["failed"]] == [f"adb:{u.serial}"]
    assert "unauthorized" in data["failed"][0]["error"]
    rows = {row["metric"]: row for row in data["comparison"]}
    med = [x.latency.median_us for x in results]  # one value per result, in the results' order
    assert rows["latency median"]["values"] == med
    assert rows["latency median"]["spread"] == pytest.approx(max(med) / min(med))
    assert rows["model size"]["spread"] == pytest.approx(1.0)
    env.detach(u)
    table = run_cli("profile", model, *common)
    assert table.exit_code == 0, table.err
    assert a.serial in table.out and b.serial in table.out and "max/min" in table.out
    assert "Pixel 7" in table.out and "SM-A546B" in table.out
    assert folders(a) == [] and folders(b) == []


def test_adb_all_needs_a_server_and_refuses_compare(run_cli, monkeypatch, model):
    monkeypatch.setenv("ADB_SERVER_SOCKET", f"tcp:127.0.0.1:{free_port()}")
    with pytest.raises(DeviceError, match="adb:all lists the devices through the adb server.*adb start-server"):
        expand_spec("adb:all")
    r = run_cli("profile", "--compare", model, model, "--device", "adb:all", "-q")
    assert r.exit_code == 2 and "compare two builds on one device" in r.err


# -- no server: the direct fallback ----------------------------------------------------------

def test_without_a_server_adb_serial_falls_back_to_direct_tcp(monkeypatch, tmp_path, bench_bin, model):
    from edgepack.devices.android.adb import ensure_key

    monkeypatch.setenv("ADB_SERVER_SOCKET", f"tcp:127.0.0.1:{free_port()}")  # nothing listens
    with pytest.raises(ServerNotRunning):
        AdbServer.from_env().version()
    key = ensure_key(tmp_path / "k" / "adbkey")
    with AdbEmulator(tmp_path / "dev", authorized_keys=[(tmp_path / "k" / "adbkey.pub").read_text()]) as emu:
        with open_device(f"adb:{emu.serial}", benchmark_binary=bench_bin, adb_key=key, energy=False) as dev:
            r = dev.profile(model, Settings(runs=3, warmup=0))
    assert r.device.details["transport"] == "tcp" and r.device.id == emu.serial and r.latency.n == 3
