"""The one versioned result schema every device returns (host, adb, serial, qemu, estimate).

Every figure carries where it came from: ``source`` is "measured",
"estimated" or "not_available" (never a fake 0).

Example::

    r = ProfileResult(device=DeviceInfo(kind="host", id="host"), artifact=Artifact.of(path),
                      settings=Settings(runs=50), latency=Latency.from_samples_us(samples))
    print(r.model_dump_json(indent=2))
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..fsutil import sha256_bytes

SCHEMA_VERSION = "1"
Source = Literal["measured", "estimated", "not_available"]


class _Strict(BaseModel):
    # NaN/inf are not figures (and not JSON): constructing a result with one is an error.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DeviceInfo(_Strict):
    kind: Literal["host", "adb", "serial", "qemu", "estimate", "board"]
    id: str
    name: str = ""
    profile: Optional[str] = None  # device profile name, when one applies
    details: dict[str, str] = Field(default_factory=dict)  # cpu, abi, os, clock ...


class Artifact(_Strict):
    path: str
    sha256: str
    size_bytes: int

    @classmethod
    def of(cls, path: Path) -> "Artifact":
        return cls.of_bytes(path, Path(path).read_bytes())

    @classmethod
    def of_bytes(cls, path: Path, data: bytes) -> "Artifact":
        return cls(path=str(path), sha256=sha256_bytes(data), size_bytes=len(data))


class Settings(_Strict):
    runs: int = 50
    warmup: int = 5
    threads: int = 1


class Latency(_Strict):
    """Per-inference latency in microseconds (first run reported apart)."""

    source: Source = "measured"
    n: int = 0
    first_us: Optional[float] = None
    min_us: Optional[float] = None
    median_us: Optional[float] = None
    mean_us: Optional[float] = None
    p95_us: Optional[float] = None
    max_us: Optional[float] = None
    std_us: Optional[float] = None
    cycles: Optional[float] = None  # median cycles per inference, where the device counts them
    instructions: Optional[int] = None  # per inference (QEMU -icount): deterministic

    @classmethod
    def from_samples_us(cls, samples: list[float], first_us: Optional[float] = None,
                        source: Source = "measured") -> "Latency":
        a = np.asarray(samples, dtype=np.float64)
        if a.size == 0:
            return cls(source="not_available")
        return cls(source=source, n=int(a.size), first_us=first_us, min_us=float(a.min()),
                   median_us=float(np.median(a)), mean_us=float(a.mean()),
                   p95_us=float(np.percentile(a, 95)), max_us=float(a.max()), std_us=float(a.std()))


class Memory(_Strict):
    source: Source = "not_available"
    peak_bytes: Optional[int] = None  # process peak (host, Android)
    arena_bytes: Optional[int] = None  # TFLM tensor arena used
    flash_bytes: Optional[int] = None  # firmware image text+data (ELF)
    ram_bytes: Optional[int] = None  # firmware data+bss (ELF)


class Energy(_Strict):
    source: Source = "not_available"
    per_inference_mj: Optional[float] = None
    uncertainty_mj: Optional[float] = None
    method: str = ""  # e.g. "battery current x voltage, idle baseline subtracted"


class OpTime(_Strict):
    op: str
    count: int = 1
    avg_us: float
    percent: Optional[float] = None


class ProfileResult(_Strict):
    schema_version: str = SCHEMA_VERSION
    device: DeviceInfo
    artifact: Artifact
    settings: Settings = Field(default_factory=Settings)
    init_us: Optional[float] = None
    latency: Latency = Field(default_factory=Latency)
    memory: Memory = Field(default_factory=Memory)
    energy: Energy = Field(default_factory=Energy)
    ops: list[OpTime] = Field(default_factory=list)
    output_checksum: Optional[str] = None
    notes: list[str] = Field(default_factory=list)
    tool_versions: dict[str, str] = Field(default_factory=dict)
