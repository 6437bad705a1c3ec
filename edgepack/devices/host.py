"""The host itself as a device: LiteRT with XNNPACK, timed in a fresh child process.

Latency is a distribution (min/median/mean/p95/max) over ``runs`` timed
invokes after ``warmup`` untimed ones, with the very first invoke reported
apart; init time is interpreter creation + tensor allocation; peak memory is
the child's peak RSS growth from loading and running the model. The host has
no energy counter here, so energy is "not_available" (never 0).

Example::

    from edgepack.devices.registry import open_device
    r = open_device("host").profile(Path("model.tflite"), Settings(runs=20))
    r.latency.median_us, r.memory.peak_bytes
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Optional

from ..errors import DeviceError
from .artifact import ResolvedArtifact
from .lifecycle import INIT_TIME, LATENCY, OUTPUT_CHECKSUM, PEAK_MEMORY, Device
from .result import DeviceInfo, Energy, Latency, Memory, ProfileResult, Settings

DEFAULT_TIMEOUT_S = 600.0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _rapl_present() -> bool:
    return os.path.exists("/sys/class/powercap/intel-rapl:0/energy_uj")


class HostDevice(Device):
    """This machine, through LiteRT + XNNPACK in a child process."""

    kind = "host"
    capabilities = frozenset({LATENCY, INIT_TIME, PEAK_MEMORY, OUTPUT_CHECKSUM})
    option_names = frozenset({"timeout"})

    def __init__(self, target: str = "", timeout: Optional[float] = None):
        super().__init__(target)
        self.timeout = float(timeout or DEFAULT_TIMEOUT_S)
        self.artifact: Optional[ResolvedArtifact] = None

    def info(self) -> DeviceInfo:
        return DeviceInfo(kind="host", id="host", name=platform.node() or "host",
                          details={"cpu": _cpu_name(), "cores": str(os.cpu_count() or 0),
                                   "os": f"{platform.system()} {platform.release()}",
                                   "machine": platform.machine(), "runtime": "LiteRT + XNNPACK"})

    def prepare(self, artifact: ResolvedArtifact) -> None:
        self.artifact = artifact

    def _child(self, settings: Settings) -> dict:
        assert self.artifact is not None, "prepare() first"
        cmd = [sys.executable, "-m", "edgepack.devices.host_worker",
               str(settings.runs), str(settings.warmup), str(settings.threads)]
        try:
            proc = subprocess.run(cmd, input=self.artifact.model, capture_output=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"host: profiling {self.artifact.path} took over {self.timeout:.0f} s; "
                              "use fewer --runs or a larger --timeout") from None
        lines = proc.stdout.decode(errors="replace").strip().splitlines()
        try:
            data = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            data = {}
        if proc.returncode != 0 or "samples_us" not in data:
            why = data.get("error") or (proc.stderr.decode(errors="replace").strip().splitlines()
                                        or [f"exit status {proc.returncode}"])[-1]
            raise DeviceError(f"host: LiteRT could not run {self.artifact.path}: {why}; "
                              "check the model with `edgepack inspect`")
        return data

    def run(self, settings: Settings) -> ProfileResult:
        data = self._child(settings)
        assert self.artifact is not None
        peak = data.get("peak_bytes")
        energy_why = ("RAPL counters exist but are not read by edgepack" if _rapl_present()
                      else "this host has no energy counter (no RAPL)")
        return ProfileResult(
            device=self.info(), artifact=self.artifact.artifact(), settings=settings,
            init_us=data["init_us"],
            latency=Latency.from_samples_us(data["samples_us"], first_us=data["first_us"]),
            memory=Memory(source="measured" if peak is not None else "not_available",
                          peak_bytes=peak),
            energy=Energy(source="not_available", method=energy_why),
            output_checksum=data["crc32"],
            notes=[f"input: {data['input']}",
                   "peak memory: peak RSS growth of a fresh process while loading and running "
                   "the model (interpreter, arena, XNNPACK packed weights)"],
            tool_versions={"ai-edge-litert": _version("ai-edge-litert"),
                           "python": platform.python_version(), "edgepack": _version("edgepack")})
