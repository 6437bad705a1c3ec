"""Android devices over ADB: through the adb server (``adb:SERIAL``), or directly (``adb-tcp:HOST:PORT``).

``adb:SERIAL`` (``adb`` alone: $ANDROID_SERIAL, else the only attached device; ``adb:all``:
every attached device, expanded by :func:`edgepack.devices.registry.expand_spec`) goes through
the adb server's host protocol (:mod:`edgepack.devices.android.adb_server`; the server found as adb
finds it: $ADB_SERVER_SOCKET, $ANDROID_ADB_SERVER_PORT, localhost:5037). When no server
runs, it falls back to adb-shell's direct links (:mod:`edgepack.devices.android.adb_direct`): TCP
for a HOST:PORT serial, libusb otherwise. ``adb-tcp:HOST:PORT`` is always direct.

Lifecycle: connect (read model, Android version and ABIs with getprop) -> prepare (remove
stale edgepack folders of earlier runs, pick the ``benchmark_model`` for the device's ABI
and check its ELF header, push it and the model to a fresh folder in /data/local/tmp) ->
run (optional idle battery baseline, then ``benchmark_model`` with its documented flags
while a shell loop samples the battery, exit status recovered with ``; echo EXIT=$?``) ->
cleanup (kill the run's processes, remove the folder) -> close. Timeouts, disconnects, a
rejected key or a device that is not ready raise DeviceError saying what to do.

Example::

    dev = open_device("adb:R58M123ABC", benchmark_binary=["arm64-v8a=./bm64", "armeabi-v7a=./bm32"])
    with dev:
        r = dev.profile(Path("model.tflite"), Settings(runs=50, warmup=5, threads=4))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from ...errors import DeviceError, UsageError
from . import adb_workdir as wd
from ..artifact import ResolvedArtifact
from ..lifecycle import ENERGY, INIT_TIME, LATENCY, OP_PROFILE, PEAK_MEMORY, Device
from .adb_direct import DirectLink, default_key_path, ensure_key  # noqa: F401 - public API
from .adb_server import AdbServer, LinkError, ServerLink, ServerNotRunning, find_device, fix_for
from .abi import BinarySpec, check_files, parse_binaries, pick_binary
from .battery import EnergyFigure, energy_per_inference, timed_window
from .parsers import BenchmarkOutput, parse_battery_samples, parse_benchmark_output, split_exit
from ..result import DeviceInfo, Energy, Latency, Memory, OpTime, ProfileResult, Settings

BATTERY = "/sys/class/power_supply/battery"
SAMPLE_PERIOD_S = 0.05
END_MARK = "EDGEPACK_END_UPTIME"
PROPS = (("model", "ro.product.model"), ("abi", "ro.product.cpu.abi"),
         ("abilist", "ro.product.cpu.abilist"), ("android", "ro.build.version.release"))


class AdbDevice(Device):
    """Common ADB logic over a link (server or direct); subclasses open the link."""

    kind = "adb"
    capabilities = frozenset({LATENCY, INIT_TIME, PEAK_MEMORY, ENERGY, OP_PROFILE})
    option_names = frozenset({"benchmark_binary", "adb_key", "timeout", "auth_timeout", "energy",
                              "idle_seconds", "energy_seconds", "op_profiling", "current_unit",
                              "voltage_unit", "current_sign", "xnnpack"})

    def __init__(self, target: str, benchmark_binary: BinarySpec = None,
                 adb_key: Optional[Path] = None, timeout: float = 300.0, auth_timeout: float = 10.0,
                 energy: bool = True, idle_seconds: float = 2.0, energy_seconds: float = 2.0,
                 op_profiling: bool = False, current_unit: str = "auto", voltage_unit: str = "auto",
                 current_sign: str = "auto", xnnpack: bool = True):
        super().__init__(target)
        self.binaries = parse_binaries(benchmark_binary)
        self.binary: Optional[Path] = None  # the one picked for this device's ABI
        self.key_path = Path(adb_key) if adb_key else None
        self.timeout, self.auth_timeout = float(timeout), float(auth_timeout)
        self.energy, self.op_profiling = bool(energy), bool(op_profiling)
        self.idle_seconds, self.energy_seconds = float(idle_seconds), float(energy_seconds)
        self.units = dict(current=current_unit, voltage=voltage_unit, sign=current_sign)
        self.xnnpack = bool(xnnpack)
        self.link: Any = None
        self.serial = target
        self.workdir: Optional[str] = None
        self.artifact: Optional[ResolvedArtifact] = None
        self.props: dict[str, str] = {}
        self.removed_stale: list[str] = []

    # -- transport ---------------------------------------------------------
    def _open_link(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _where(self) -> str:
        return f"adb device {self.serial or self.target}"

    def _fail(self, stage: str, e: LinkError) -> DeviceError:
        if e.timeout:
            return DeviceError(f"{self._where()} timed out during {stage} ({e}); check the device "
                               "is awake and reachable, or raise --timeout")
        return DeviceError(f"{self._where()} disconnected or failed during {stage} ({e}); "
                           "reconnect it and retry")

    def connect(self) -> None:
        if self.link is not None:
            return
        self.link = self._open_link()
        self.props = self._props()

    def _props(self) -> dict[str, str]:
        body, _ = self._sh("; ".join(f"getprop {p}" for _, p in PROPS), "getprop", 10.0)
        values = (body.splitlines() + [""] * len(PROPS))[:len(PROPS)]
        return dict(zip((k for k, _ in PROPS), (v.strip() for v in values)))

    def abis(self) -> list[str]:
        """The device's ABIs, most preferred first (abilist, else the primary ABI)."""
        listed = [a.strip() for a in self.props.get("abilist", "").split(",") if a.strip()]
        return listed or [a for a in [self.props.get("abi", "")] if a]

    def _sh(self, command: str, stage: str, timeout: float) -> tuple[str, int]:
        """Run a legacy shell command; return (output, exit status from EXIT=)."""
        try:
            out = self.link.shell(command + "; echo EXIT=$?", timeout)
        except LinkError as e:
            raise self._fail(stage, e) from e
        return split_exit(out)

    def _push(self, data: bytes, remote: str, mode: int) -> None:
        try:
            self.link.push(data, remote, mode, self.timeout)
        except LinkError as e:
            raise self._fail(f"push of {remote}", e) from e

    # -- lifecycle ---------------------------------------------------------
    def check(self, artifact: ResolvedArtifact) -> None:
        if not self.binaries:
            pick_binary(self.binaries, [], self._where())  # raises: where to get one
        check_files(self.binaries)

    def prepare(self, artifact: ResolvedArtifact) -> None:
        self.check(artifact)
        self.connect()
        self.binary = pick_binary(self.binaries, self.abis(), self._where())
        self.artifact = artifact
        self._remove_stale()
        workdir = wd.new_folder()
        body, code = self._sh(wd.create_command(workdir), "mkdir", 10.0)
        if code != 0:
            raise DeviceError(f"{self._where()}: cannot create {workdir} ({body.strip()}); "
                              f"check free space in {wd.REMOTE_ROOT}")
        self.workdir = workdir
        wd.ACTIVE.add(workdir)
        self._push(artifact.model, f"{workdir}/model.tflite", 0o644)
        self._push(self.binary.read_bytes(), f"{workdir}/benchmark_model", 0o755)

    def _remove_stale(self) -> None:
        """Remove edgepack folders earlier runs left (a dropped link, a killed edgepack)."""
        self.removed_stale = []
        body, _ = self._sh(wd.LIST_COMMAND, "listing of earlier edgepack folders", 20.0)
        for f in wd.stale(wd.parse_listing(body)):
            path = f"{wd.REMOTE_ROOT}/{f.name}"
            _, code = self._sh(wd.remove_command(path), f"removal of stale {path}", 20.0)
            if code == 0:
                self.removed_stale.append(path)

    def _sampler(self) -> str:
        """A loop that samples until the stop file appears or the folder is removed."""
        w = self.workdir
        one = (f"echo \"$(cut -d' ' -f1 /proc/uptime) $(cat {BATTERY}/current_now) "
               f"$(cat {BATTERY}/voltage_now)\"; sleep {SAMPLE_PERIOD_S}")
        return f"while [ -d {w} ] && [ ! -f {w}/stop ]; do {one}; done"

    def _idle(self) -> str:
        n = max(int(self.idle_seconds / SAMPLE_PERIOD_S), 2)
        one = (f"echo \"$(cut -d' ' -f1 /proc/uptime) $(cat {BATTERY}/current_now 2>/dev/null) "
               f"$(cat {BATTERY}/voltage_now 2>/dev/null)\"; sleep {SAMPLE_PERIOD_S}")
        body, _ = self._sh(f"i=0; while [ $i -lt {n} ]; do {one}; i=$((i+1)); done",
                           "idle battery sampling", self.idle_seconds * 4 + 10)
        return body

    def _bench_command(self, settings: Settings) -> str:
        w = self.workdir
        min_secs = self.energy_seconds if self.energy else 0
        flags = [f"--graph={w}/model.tflite", f"--num_threads={settings.threads}",
                 f"--num_runs={settings.runs}", f"--warmup_runs={settings.warmup}",
                 f"--use_xnnpack={str(self.xnnpack).lower()}", "--report_peak_memory_footprint=true",
                 f"--min_secs={min_secs:g}", "--warmup_min_secs=0"]
        if self.op_profiling:
            flags.append("--enable_op_profiling=true")
        sampler = ""
        if self.energy:
            sampler = (f"({self._sampler()}) </dev/null >{w}/samples.txt 2>/dev/null & "
                       f"echo $! >>{w}/pids; ")
        # The shell, the sampler and benchmark_model record their PIDs, so cleanup() can stop
        # them all (SIGKILL, then wait) before removing the folder if the host gives up.
        return (f"cd {w} || exit 97; echo $$ >>{w}/pids; rm -f stop samples.txt; {sampler}"
                f"{w}/benchmark_model {' '.join(flags)} </dev/null >{w}/bench.txt 2>&1 & bp=$!; "
                f"echo $bp >>{w}/pids; wait $bp; rc=$?; "
                f"t1=$(cut -d' ' -f1 /proc/uptime); touch {w}/stop; "
                f"cat {w}/bench.txt; echo \"{END_MARK} $t1\"; (exit $rc)")

    def run(self, settings: Settings) -> ProfileResult:
        assert self.artifact is not None and self.workdir, "prepare() first"
        idle_text = self._idle() if self.energy else ""
        body, code = self._sh(self._bench_command(settings), "benchmark_model run", self.timeout)
        if code != 0:
            last = [ln.strip() for ln in body.splitlines()
                    if ln.strip() and not ln.startswith(END_MARK)][-3:]
            raise DeviceError(f"benchmark_model failed on {self._where()} (exit {code}): "
                              f"{' | '.join(last) or 'no output'}; check that --benchmark-binary "
                              f"matches the device ABI ({', '.join(self.abis()) or 'unknown'})")
        bench = parse_benchmark_output(body)
        energy, notes = self._energy(idle_text, bench, settings, _end_uptime(body)) if self.energy else (
            Energy(source="not_available", method="energy sampling turned off (--no-energy)"), [])
        if self.removed_stale:
            notes.append(f"removed {len(self.removed_stale)} edgepack folder(s) left on the device by "
                         f"earlier runs: {', '.join(self.removed_stale)}")
        return self._result(settings, bench, energy, notes)

    def _energy(self, idle_text: str, bench: BenchmarkOutput, settings: Settings,
                end: Optional[float]) -> tuple[Energy, list[str]]:
        try:
            run_text, _ = self._sh(f"cat {self.workdir}/samples.txt", "battery sample read", 30.0)
            idle = parse_battery_samples(idle_text, "idle battery samples")
            run = parse_battery_samples(run_text, "run battery samples")
            latency_s = (bench.avg_us or bench.inference_avg_us or 0) / 1e6
            runs = bench.count or settings.runs
            window, trimmed = (run.t, run.current, run.voltage), False
            if end is not None:
                window, trimmed = timed_window(window, end - runs * latency_s, end)
            fig = energy_per_inference((idle.t, idle.current, idle.voltage), window,
                                       latency_s, (bench.std_us or 0) / 1e6, runs, **self.units)
        except DeviceError as e:
            return Energy(source="not_available", method=str(e)), []
        notes = _energy_notes(fig, bench, settings)
        if not trimmed:
            notes.append("energy: the timed runs were too short to hold 3 battery samples; the whole "
                         "run (init and warmup included) was averaged — raise --energy-seconds")
        return _energy_result(fig), notes

    def _result(self, settings: Settings, bench: BenchmarkOutput, energy: Energy,
                notes: list[str]) -> ProfileResult:
        assert self.artifact is not None
        latency = Latency(source="measured", n=bench.count, first_us=bench.first_inference_us,
                          min_us=bench.min_us, median_us=bench.median_us,
                          mean_us=bench.avg_us or bench.inference_avg_us, p95_us=bench.p95_us,
                          max_us=bench.max_us, std_us=bench.std_us)
        peak = bench.peak_bytes
        memory = Memory(source="measured" if peak is not None else "not_available", peak_bytes=peak)
        total = sum(r.avg_ms for r in bench.ops) or 1.0
        ops = [OpTime(op=r.op, count=r.count, avg_us=r.avg_ms * 1e3,
                      percent=r.percent if r.percent is not None else 100 * r.avg_ms / total)
               for r in bench.ops]
        if bench.peak_mb is None and peak is not None:
            notes.append(f"peak memory: the tool's {bench.mem_format or 'overall'} memory line "
                         "(growth since the tool started), no periodic monitoring")
        details = {"abi": self.props.get("abi", ""), "android": self.props.get("android", ""),
                   "transport": self.link.transport if self.link is not None else "",
                   "runtime": "benchmark_model" + (" + XNNPACK" if self.xnnpack else "")}
        return ProfileResult(
            device=DeviceInfo(kind="adb", id=self.serial or self.target, name=self.props.get("model", ""),
                              details=details),
            artifact=self.artifact.artifact(), settings=settings, init_us=bench.init_us,
            latency=latency, memory=memory, energy=energy, ops=ops, notes=notes,
            tool_versions={"benchmark_model": _sha(self.binary)})

    def cleanup(self) -> None:
        """Stop the run's processes and remove its folder; a device that is gone cannot be
        cleaned now (the next connection removes the folder as stale)."""
        if self.link is not None and self.workdir:
            try:
                self._sh(f"touch {self.workdir}/stop 2>/dev/null; " + wd.remove_command(self.workdir),
                         "cleanup", 15.0)
            except DeviceError:
                pass
        if self.workdir:
            wd.ACTIVE.discard(self.workdir)
        self.workdir = None

    def close(self) -> None:
        if self.link is not None:
            try:
                self.link.close()
            finally:
                self.link = None


class AdbTcpDevice(AdbDevice):
    """``adb-tcp:HOST:PORT`` — a device in TCP mode (``adb tcpip 5555``) or an emulator, direct."""

    def _open_link(self) -> Any:
        host, _, port = self.target.rpartition(":")
        return DirectLink.tcp(host, int(port), self.key_path, self.timeout, self.auth_timeout)


class AdbSerialDevice(AdbDevice):
    """``adb:SERIAL`` / ``adb`` — through the adb server; direct adb-shell when no server runs."""

    @classmethod
    def expand_targets(cls, target: str) -> list[str]:
        """``all`` -> every serial the adb server lists; anything else stays as it is."""
        if target != "all":
            return [target]
        server = AdbServer.from_env()
        try:
            devices = server.devices()
        except ServerNotRunning as e:
            raise DeviceError(f"adb:all lists the devices through the adb server, and {e}; start it with "
                              "`adb start-server` (or set ADB_SERVER_SOCKET=tcp:HOST:PORT)") from None
        except LinkError as e:
            raise DeviceError(f"adb:all: the adb server at {server.address} failed ({e})") from None
        if not devices:
            raise DeviceError(f"adb:all: no device is attached to the adb server at {server.address}; "
                              "plug phones in with USB debugging on, or `adb connect HOST:PORT`")
        return [d.serial for d in devices]

    def _open_link(self) -> Any:
        if self.target == "all":
            raise UsageError("adb:all names several devices: open each of expand_spec('adb:all'), "
                             "or run `edgepack profile --device adb:all`")
        serial = self.target or os.environ.get("ANDROID_SERIAL", "").strip() or None
        server = AdbServer.from_env(timeout=min(self.timeout, 10.0))
        try:
            dev = find_device(server, serial)
        except ServerNotRunning:
            return self._direct(serial)
        except LinkError as e:
            raise DeviceError(f"the adb server at {server.address} failed ({e}); restart it with "
                              "`adb kill-server && adb start-server`") from None
        self.serial = dev.serial
        if not dev.ready:
            raise DeviceError(f"adb device {dev.serial} is {dev.state}: {fix_for(dev.state)}")
        return ServerLink(server, dev.serial)

    def _direct(self, serial: Optional[str]) -> Any:
        """No adb server: adb-shell over TCP for HOST:PORT, over libusb for a USB serial."""
        host, sep, port = (serial or "").rpartition(":")
        if sep and port.isdigit():
            return DirectLink.tcp(host, int(port), self.key_path, self.timeout, self.auth_timeout)
        return DirectLink.usb(serial, self.key_path, self.timeout, self.auth_timeout)


def _end_uptime(body: str) -> Optional[float]:
    for line in reversed(body.splitlines()):
        if line.startswith(END_MARK):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def _sha(path: Optional[Path]) -> str:
    import hashlib

    return f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}" if path else ""


def _energy_result(fig: EnergyFigure) -> Energy:
    return Energy(source="measured", per_inference_mj=fig.mj, uncertainty_mj=fig.uncertainty_mj,
                  method="battery current x voltage sampled on the device every ~50 ms during the "
                         "timed runs; idle baseline subtracted; excess power x mean inference latency")


def _energy_notes(fig: EnergyFigure, bench: BenchmarkOutput, settings: Settings) -> list[str]:
    notes = [f"energy: idle {fig.idle_mw:.0f} mW ({fig.idle_samples} samples), run {fig.run_mw:.0f} mW "
             f"({fig.run_samples} samples), excess {fig.excess_mw:.1f} +/- {fig.excess_sem_mw:.1f} mW; "
             f"current in {fig.current_unit}, {fig.sign}, voltage in {fig.voltage_unit}"]
    if not fig.significant:
        notes.append("energy: the excess power is within 2 standard errors of the idle baseline; "
                     "the per-inference figure is not significant (run longer with --energy-seconds)")
    if bench.count > settings.runs:
        notes.append(f"runs: benchmark_model ran {bench.count} timed runs (>= --runs {settings.runs}) "
                     "to last long enough for battery sampling")
    return notes


