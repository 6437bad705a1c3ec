"""Android devices over ADB (adb-shell): TCP (``adb-tcp:HOST:PORT``) or USB (``adb:SERIAL``).

Lifecycle: connect (RSA key created on first use under ~/.config/edgepack/adbkey,
owner-only) -> prepare (push the model and the user's ``benchmark_model`` to a
fresh folder in /data/local/tmp) -> run (optional idle battery baseline, then
``benchmark_model`` with its documented flags while a shell loop samples the
battery, exit status recovered with ``; echo EXIT=$?``) -> cleanup (remove the
folder) -> close. Timeouts, disconnects and a rejected key raise DeviceError.

Example::

    dev = open_device("adb-tcp:192.168.1.7:5555", benchmark_binary=Path("benchmark_model"))
    with dev:
        r = dev.profile(Path("model.tflite"), Settings(runs=50, warmup=5, threads=4))
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Optional

from ..errors import DeviceError
from . import base
from .energy import EnergyFigure, energy_per_inference, timed_window
from .parsers import BenchmarkOutput, parse_battery_samples, parse_benchmark_output, split_exit
from .result import DeviceInfo, Energy, Latency, Memory, OpTime, ProfileResult, Settings

KEY_ENV = "EDGEPACK_ADB_KEY"
REMOTE_ROOT = "/data/local/tmp"
BATTERY = "/sys/class/power_supply/battery"
SAMPLE_PERIOD_S = 0.05
END_MARK = "EDGEPACK_END_UPTIME"
GET_BENCHMARK = ("pass --benchmark-binary PATH: download TFLite's prebuilt benchmark_model for the "
                 "device ABI (android_aarch64_benchmark_model, see "
                 "https://www.tensorflow.org/lite/performance/measurement) or build it with "
                 "`bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model`")


def default_key_path() -> Path:
    """The adb key edgepack uses: $EDGEPACK_ADB_KEY, else ~/.config/edgepack/adbkey."""
    return Path(os.environ.get(KEY_ENV) or Path.home() / ".config" / "edgepack" / "adbkey")


def ensure_key(path: Optional[Path] = None) -> Path:
    """Create the RSA key pair on first use (0600, folder 0700); refuse a key others can read.

    Example::

        ensure_key(Path("/tmp/k/adbkey"))  # writes adbkey and adbkey.pub
    """
    path = Path(path or default_key_path()).expanduser()
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise DeviceError(f"adb key {path} is readable by others (mode {mode:o}); "
                              f"run `chmod 600 {path}` or delete it to create a new one")
        if not Path(str(path) + ".pub").exists():
            raise DeviceError(f"adb key {path} has no {path.name}.pub beside it; delete {path} "
                              "to create a new pair")
        return path
    from adb_shell.auth.keygen import keygen

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=".adbkey-"))  # 0700 by mkdtemp
    try:
        keygen(str(staging / "adbkey"))
        os.chmod(staging / "adbkey", 0o600)
        os.replace(staging / "adbkey.pub", str(path) + ".pub")
        os.replace(staging / "adbkey", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _signer(path: Path) -> Any:
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    try:
        return PythonRSASigner.FromRSAKeyPath(str(path))
    except (OSError, ValueError) as e:
        raise DeviceError(f"adb key {path} cannot be read ({e}); delete it to create a new one") from e


def _adb_errors() -> tuple[type[BaseException], ...]:
    from adb_shell import exceptions as ex

    return (ex.AdbConnectionError, ex.AdbTimeoutError, ex.TcpTimeoutException, ex.InvalidResponseError,
            ex.InvalidCommandError, ex.InvalidChecksumError, ex.AdbCommandFailureException,
            ex.DeviceAuthError, ex.PushFailedError, ex.UsbDeviceNotFoundError, ex.UsbReadFailedError,
            ex.UsbWriteFailedError, ex.DevicePathInvalidError, OSError)


def _is_timeout(e: BaseException) -> bool:
    return "timeout" in type(e).__name__.lower() or "timed out" in str(e).lower()


class AdbDevice(base.Device):
    """Common ADB logic; AdbTcpDevice and AdbUsbDevice differ only in the transport."""

    kind = "adb"
    transport = ""
    capabilities = frozenset({base.LATENCY, base.INIT_TIME, base.PEAK_MEMORY, base.ENERGY,
                              base.OP_PROFILE})
    option_names = frozenset({"benchmark_binary", "adb_key", "timeout", "auth_timeout", "energy",
                              "idle_seconds", "energy_seconds", "op_profiling", "current_unit",
                              "voltage_unit", "current_sign", "xnnpack"})

    def __init__(self, target: str, benchmark_binary: Optional[Path] = None,
                 adb_key: Optional[Path] = None, timeout: float = 300.0, auth_timeout: float = 10.0,
                 energy: bool = True, idle_seconds: float = 2.0, energy_seconds: float = 2.0,
                 op_profiling: bool = False, current_unit: str = "auto", voltage_unit: str = "auto",
                 current_sign: str = "auto", xnnpack: bool = True):
        super().__init__(target)
        self.binary = Path(benchmark_binary) if benchmark_binary else None
        self.key_path = Path(adb_key) if adb_key else None
        self.timeout, self.auth_timeout = float(timeout), float(auth_timeout)
        self.energy, self.op_profiling = bool(energy), bool(op_profiling)
        self.idle_seconds, self.energy_seconds = float(idle_seconds), float(energy_seconds)
        self.units = dict(current=current_unit, voltage=voltage_unit, sign=current_sign)
        self.xnnpack = bool(xnnpack)
        self.dev: Any = None
        self.workdir: Optional[str] = None
        self.artifact: Optional[base.ResolvedArtifact] = None
        self.props: dict[str, str] = {}

    # -- transport ---------------------------------------------------------
    def _make(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _where(self) -> str:
        return f"adb device {self.target}"

    def _fail(self, stage: str, e: BaseException) -> DeviceError:
        if _is_timeout(e):
            return DeviceError(f"{self._where()} timed out during {stage} ({e}); check the device "
                               "is awake and reachable, or raise --timeout")
        return DeviceError(f"{self._where()} disconnected or failed during {stage} "
                           f"({type(e).__name__}: {e}); reconnect it and retry")

    def connect(self) -> None:
        if self.dev is not None:
            return
        key = ensure_key(self.key_path)
        dev = self._make()
        try:
            dev.connect(rsa_keys=[_signer(key)], auth_timeout_s=self.auth_timeout,
                        transport_timeout_s=min(self.timeout, 10.0))
        except _adb_errors() as e:
            dev.close()
            if _is_timeout(e):
                raise DeviceError(
                    f"{self._where()} did not accept edgepack's key {key}.pub within "
                    f"{self.auth_timeout:.0f} s (key rejected or the 'Allow USB debugging' prompt "
                    "was not confirmed); unlock the device, tap Allow, and retry") from e
            raise self._fail("connect", e) from e
        self.dev = dev
        self.props = self._props()

    def _props(self) -> dict[str, str]:
        names = ("ro.product.model", "ro.product.cpu.abi", "ro.build.version.release")
        body, _ = self._sh("; ".join(f"getprop {n}" for n in names), "getprop", 10.0)
        values = (body.splitlines() + ["", "", ""])[:3]
        return dict(zip(("model", "abi", "android"), (v.strip() for v in values)))

    def _sh(self, command: str, stage: str, timeout: float) -> tuple[str, int]:
        """Run a legacy shell command; return (output, exit status from EXIT=)."""
        try:
            out = self.dev.shell(command + "; echo EXIT=$?", transport_timeout_s=timeout,
                                 read_timeout_s=timeout, timeout_s=timeout)
        except _adb_errors() as e:
            raise self._fail(stage, e) from e
        return split_exit(out)

    def _push(self, data: bytes, remote: str, mode: int) -> None:
        try:
            self.dev.push(io.BytesIO(data), remote, st_mode=stat.S_IFREG | mode,
                          transport_timeout_s=min(self.timeout, 30.0), read_timeout_s=self.timeout)
        except _adb_errors() as e:
            raise self._fail(f"push of {remote}", e) from e

    # -- lifecycle ---------------------------------------------------------
    def check(self, artifact: base.ResolvedArtifact) -> None:
        if self.binary is None:
            raise DeviceError(f"{self._where()}: no benchmark_model binary; {GET_BENCHMARK}")
        if not self.binary.is_file():
            raise DeviceError(f"benchmark binary {self.binary} does not exist; {GET_BENCHMARK}")

    def prepare(self, artifact: base.ResolvedArtifact) -> None:
        self.check(artifact)
        self.connect()
        self.artifact = artifact
        workdir = f"{REMOTE_ROOT}/edgepack-{secrets.token_hex(4)}"
        body, code = self._sh(f"mkdir -p {workdir}", "mkdir", 10.0)
        if code != 0:
            raise DeviceError(f"{self._where()}: cannot create {workdir} ({body.strip()}); "
                              "check free space in /data/local/tmp")
        self.workdir = workdir
        self._push(artifact.model, f"{workdir}/model.tflite", 0o644)
        self._push(self.binary.read_bytes(), f"{workdir}/benchmark_model", 0o755)

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
            sampler = f"({self._sampler()}) </dev/null >{w}/samples.txt 2>/dev/null & "
        # benchmark_model runs in the background with its PID saved, so cleanup() can stop
        # it by PID if the host gives up (timeout) while it still runs.
        return (f"cd {w} || exit 97; rm -f stop samples.txt; {sampler}"
                f"{w}/benchmark_model {' '.join(flags)} </dev/null >{w}/bench.txt 2>&1 & bp=$!; "
                f"echo $bp >{w}/bench.pid; wait $bp; rc=$?; "
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
                              f"matches the device ABI ({self.props.get('abi') or 'unknown'})")
        bench = parse_benchmark_output(body)
        energy, notes = self._energy(idle_text, bench, settings, _end_uptime(body)) if self.energy else (
            Energy(source="not_available", method="energy sampling turned off (--no-energy)"), [])
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
        return ProfileResult(
            device=DeviceInfo(kind="adb", id=self.target, name=self.props.get("model", ""),
                              details={"abi": self.props.get("abi", ""),
                                       "android": self.props.get("android", ""),
                                       "transport": self.transport,
                                       "runtime": "benchmark_model" + (" + XNNPACK" if self.xnnpack else "")}),
            artifact=self.artifact.artifact(), settings=settings, init_us=bench.init_us,
            latency=latency, memory=memory, energy=energy, ops=ops, notes=notes,
            tool_versions={"benchmark_model": _sha(self.binary)})

    def cleanup(self) -> None:
        """Remove the pushed folder; a device that is gone cannot be cleaned (no error)."""
        if self.dev is not None and self.workdir:
            try:
                w = self.workdir
                self._sh(f"touch {w}/stop 2>/dev/null; [ -f {w}/bench.pid ] && "
                         f"kill $(cat {w}/bench.pid) 2>/dev/null; rm -rf {w}", "cleanup", 10.0)
            except DeviceError:
                pass
        self.workdir = None

    def close(self) -> None:
        if self.dev is not None:
            try:
                self.dev.close()
            finally:
                self.dev = None


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


class _EofTcpTransport:
    """adb-shell's TCP transport, but a closed socket raises at once instead of spinning."""

    def __new__(cls, host: str, port: int) -> Any:
        from adb_shell.transport.tcp_transport import TcpTransport

        class EofTcpTransport(TcpTransport):
            def bulk_read(self, numbytes: int, transport_timeout_s: Any) -> bytes:
                data = super().bulk_read(numbytes, transport_timeout_s)
                if not data:
                    raise ConnectionResetError(f"{host}:{port} closed the connection")
                return data

        return EofTcpTransport(host, port)


class AdbTcpDevice(AdbDevice):
    """``adb-tcp:HOST:PORT`` — a device in TCP mode (``adb tcpip 5555``) or an emulator."""

    transport = "tcp"

    def _make(self) -> Any:
        from adb_shell.adb_device import AdbDevice as ShellDevice

        host, _, port = self.target.rpartition(":")
        return ShellDevice(_EofTcpTransport(host, int(port)), default_transport_timeout_s=10.0)


class AdbUsbDevice(AdbDevice):
    """``adb:SERIAL`` — a device on USB through adb-shell's libusb transport."""

    transport = "usb"

    def _make(self) -> Any:
        from adb_shell import exceptions as ex
        from adb_shell.adb_device import AdbDeviceUsb

        try:
            return AdbDeviceUsb(serial=self.target, default_transport_timeout_s=10.0)
        except ex.InvalidTransportError as e:
            raise DeviceError("USB ADB needs libusb1: pip install 'adb-shell[usb]' (and the libusb-1.0 "
                              "system library), or switch the device to TCP with `adb tcpip 5555` and "
                              "use adb-tcp:HOST:5555") from e
        except ex.UsbDeviceNotFoundError as e:
            raise DeviceError(f"USB device {self.target} not found ({e}); check the cable, that USB "
                              "debugging is on, and `edgepack devices`") from e
