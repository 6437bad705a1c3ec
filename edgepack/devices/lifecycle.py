"""The Device lifecycle every device follows, and the capabilities a device may declare.

Every device (host, Android over ADB, a board over serial, QEMU, an estimate)
follows one lifecycle and returns one result schema
(:class:`~edgepack.devices.result.ProfileResult`)::

    check(artifact)                refuse bad options/inputs before touching the device
    connect()                      open the link (socket, serial port, ADB auth ...)
    prepare(artifact)              push/build/load the model (a ResolvedArtifact)
    run(settings) -> ProfileResult measure (or estimate) it
    cleanup()                      remove what prepare() put on the device
    close()                        close the link

:meth:`Device.profile` runs check -> connect -> prepare -> run -> cleanup for one
artifact (cleanup also runs when run() fails). Devices are context managers.

Example::

    class MyDevice(Device):
        kind, capabilities = "mine", frozenset({LATENCY})
        def prepare(self, artifact): ...
        def run(self, settings): return ProfileResult(...)

    MyDevice().profile(Path("model.tflite"), Settings(runs=20))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

from ..errors import UsageError
from .artifact import ResolvedArtifact, resolve_artifact
from .result import ProfileResult, Settings

# Capabilities a device may declare (what its results can contain).
LATENCY = "latency"  # per-inference latency distribution
INIT_TIME = "init_time"  # interpreter init time
PEAK_MEMORY = "peak_memory"  # process peak memory
ARENA = "arena"  # TFLM tensor arena used
FLASH_RAM = "flash_ram"  # firmware image flash/RAM from the ELF
ENERGY = "energy"  # measured energy
ENERGY_ESTIMATE = "energy_estimate"  # energy from a power model (labelled "estimated")
OP_PROFILE = "op_profile"  # per-op time table
CYCLES = "cycles"  # cycle counts
INSTRUCTIONS = "instructions"  # deterministic instruction counts (QEMU)
OUTPUT_CHECKSUM = "output_checksum"  # CRC-32 of the output for a reference input

ALL_CAPABILITIES = frozenset({LATENCY, INIT_TIME, PEAK_MEMORY, ARENA, FLASH_RAM, ENERGY,
                              ENERGY_ESTIMATE, OP_PROFILE, CYCLES, INSTRUCTIONS, OUTPUT_CHECKSUM})


class Device:
    """Base class of devices; subclasses implement the lifecycle methods.

    Subclasses set ``kind`` (a DeviceInfo kind), ``capabilities`` and
    ``option_names`` (keyword options their constructor accepts; anything
    else given to :func:`open_device` is a UsageError naming the option).
    """

    kind: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, target: str = "", **options: Any):
        self.target = target
        self.options = options

    # -- lifecycle ---------------------------------------------------------
    def check(self, artifact: ResolvedArtifact) -> None:
        """Raise (DeviceError, UsageError) for what is wrong before the device is touched."""

    def connect(self) -> None:
        """Open the link to the device (no-op by default)."""

    def prepare(self, artifact: ResolvedArtifact) -> None:  # pragma: no cover - abstract
        """Make the model ready to run on the device."""
        raise NotImplementedError

    def run(self, settings: Settings) -> ProfileResult:  # pragma: no cover - abstract
        """Measure (or estimate) the prepared model and return the result."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove whatever prepare() left on the device (no-op by default)."""

    def close(self) -> None:
        """Close the link (no-op by default)."""

    # -- conveniences ------------------------------------------------------
    def profile(self, artifact: Path | ResolvedArtifact, settings: Optional[Settings] = None
                ) -> ProfileResult:
        """check -> connect -> prepare -> run -> cleanup; cleanup runs even when run() fails."""
        settings = settings or Settings()
        check_settings(settings)
        resolved = artifact if isinstance(artifact, ResolvedArtifact) else resolve_artifact(artifact)
        self.check(resolved)
        self.connect()
        try:
            self.prepare(resolved)
            return self.run(settings)
        finally:
            self.cleanup()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_settings(settings: Settings) -> None:
    """Reject settings no device can honour (runs < 1, negative warmup, threads < 1)."""
    if settings.runs < 1:
        raise UsageError(f"--runs {settings.runs}: at least 1 timed run is needed")
    if settings.warmup < 0:
        raise UsageError(f"--warmup {settings.warmup}: warmup runs cannot be negative")
    if settings.threads < 1:
        raise UsageError(f"--threads {settings.threads}: at least 1 thread is needed")
