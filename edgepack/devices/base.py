"""The Device protocol, its capabilities, the SPEC registry and artifact resolution.

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

A SPEC string names a device: ``host``, ``adb`` / ``adb:SERIAL`` / ``adb:all``,
``adb-tcp:HOST:PORT``, ``serial:PORT``, ``qemu:mps2-an386``, ``estimate:PROFILE``. The
registry :data:`DEVICES` maps each prefix to a lazily imported "module:Class". A SPEC
may name several devices (``adb:all``): :func:`expand_spec` lists them, through the
class's optional ``expand_targets(target) -> list[str]``.

Example::

    from edgepack.devices.base import open_device
    from edgepack.devices.result import Settings

    with open_device("host") as dev:
        result = dev.profile(Path("model.tflite"), Settings(runs=20, warmup=2))
    print(result.latency.median_us)
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..errors import DeviceError, UsageError
from .result import Artifact, ProfileResult, Settings

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

# SPEC prefix -> "module:Class". One line per device kind; imported only when used.
DEVICES: dict[str, str] = {
    "host": "edgepack.devices.host:HostDevice",
    "adb": "edgepack.devices.adb:AdbSerialDevice",
    "adb-tcp": "edgepack.devices.adb:AdbTcpDevice",
    "serial": "edgepack.devices.serial:SerialDevice",
    "qemu": "edgepack.devices.qemu:QemuDevice",
    "board": "edgepack.devices.board:BoardDevice",
    "estimate": "edgepack.devices.estimate:EstimateDevice",
}

SPEC_HELP = ("host, adb (the only device), adb:SERIAL, adb:all, adb-tcp:HOST:PORT, serial:PORT, "
             "qemu:mps2-an386, board:PROFILE or estimate[:PROFILE]")
NO_TARGET_OK = frozenset({"host", "adb", "estimate"})  # prefixes that may stand alone (estimate: the package's profile)


@dataclass(frozen=True)
class Spec:
    """A parsed SPEC string: ``prefix`` (a DEVICES key) and ``target`` (the rest)."""

    prefix: str
    target: str
    text: str


def parse_spec(spec: str) -> Spec:
    """Split ``adb-tcp:127.0.0.1:5555`` into prefix and target; unknown prefix -> UsageError.

    Example::

        parse_spec("serial:/dev/ttyACM0")  # Spec(prefix="serial", target="/dev/ttyACM0", ...)
    """
    text = (spec or "").strip()
    prefix, _, target = text.partition(":")
    if prefix not in DEVICES:
        raise UsageError(f"unknown device '{spec}'; use {SPEC_HELP}")
    if prefix == "host" and target:
        raise UsageError(f"device '{spec}': 'host' takes no argument; use --device host")
    if prefix not in NO_TARGET_OK and not target:
        raise UsageError(f"device '{spec}' needs a target after '{prefix}:'; use {SPEC_HELP}")
    if prefix == "adb-tcp" and not re.fullmatch(r"[^:\s]+:\d{1,5}", target):
        raise UsageError(f"device '{spec}': expected adb-tcp:HOST:PORT, e.g. adb-tcp:192.168.1.7:5555")
    return Spec(prefix, target, text)


@dataclass(frozen=True)
class ResolvedArtifact:
    """The model to profile, found from a .tflite or a package folder.

    ``kind`` is "tflite" (a file given directly), "android" (a bundle with a
    .tflite), or "firmware" (a folder whose model comes from model_data.cc
    or the .tflite copy beside it). ``tflite_path`` is None when the bytes
    were read from a C array.
    """

    path: Path
    kind: str
    model: bytes
    tflite_path: Optional[Path]
    name: str

    def artifact(self) -> Artifact:
        """The result schema's Artifact for these bytes."""
        return Artifact.of_bytes(self.path, self.model)


_TFLITE_MAGIC = b"TFL3"
_ARRAY_RE = re.compile(r"(?:unsigned\s+char|uint8_t)\s+(\w+)\s*\[\s*\w*\s*\]\s*=\s*\{(.*?)\}",
                       re.S)


def _check_tflite(data: bytes, where: Path) -> bytes:
    if len(data) < 8 or data[4:8] != _TFLITE_MAGIC:
        raise DeviceError(f"{where} is not a TFLite model (no TFL3 identifier); "
                          "pass a .tflite file or a folder written by `edgepack package`")
    return data


def model_from_c_array(path: Path) -> bytes:
    """Bytes of the first ``unsigned char NAME[] = {...}`` array in a C/C++ source file.

    Example::

        model_from_c_array(Path("build/firmware/model_data.cc"))[4:8]  # b"TFL3"
    """
    text = path.read_text(errors="replace")
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    m = _ARRAY_RE.search(text)
    if not m:
        raise DeviceError(f"{path} holds no 'unsigned char NAME[] = {{...}}' model array; "
                          "regenerate it with `edgepack package --target tflm`")
    try:
        values = [int(tok, 0) for tok in m.group(2).replace("\n", " ").split(",") if tok.strip()]
        return bytes(values)
    except ValueError as e:
        raise DeviceError(f"{path}: the array {m.group(1)} is not a list of byte literals ({e}); "
                          "regenerate it with `edgepack package --target tflm`") from None


def _folder_tflites(folder: Path) -> list[Path]:
    top = sorted(folder.glob("*.tflite"))
    return top or sorted(p for p in folder.rglob("*.tflite") if p.is_file())


def resolve_artifact(path: Path) -> ResolvedArtifact:
    """Find the model in ``path``: a .tflite file, an Android bundle or a firmware folder.

    A folder's ``model.tflite`` wins; otherwise its single .tflite (searched
    recursively); otherwise the array in ``model_data.cc``. Anything else is a
    DeviceError naming the folder and what to pass.

    Example::

        resolve_artifact(Path("out/android")).tflite_path  # out/android/model.tflite
    """
    path = Path(path)
    if not path.exists():
        raise DeviceError(f"artifact {path} does not exist; pass a .tflite file or a package folder")
    if path.is_file():
        if path.suffix == ".cc" or path.suffix == ".c":
            return ResolvedArtifact(path, "firmware", _check_tflite(model_from_c_array(path), path),
                                    None, path.stem)
        return ResolvedArtifact(path, "tflite", _check_tflite(path.read_bytes(), path), path, path.stem)
    preferred = path / "model.tflite"
    candidates = [preferred] if preferred.is_file() else _folder_tflites(path)
    top = path / "model_data.cc"
    c_arrays = [top] if top.is_file() else sorted(path.rglob("model_data.cc"))
    kind = "firmware" if c_arrays else "android"
    if len(candidates) == 1:
        tfl = candidates[0]
        model = _check_tflite(tfl.read_bytes(), tfl)
        if c_arrays and model_from_c_array(c_arrays[0]) != model:
            raise DeviceError(f"{tfl} and {c_arrays[0]} hold different models; re-run "
                              "`edgepack package` so the folder is consistent")
        return ResolvedArtifact(path, kind, model, tfl, _name(path))
    if len(candidates) > 1:
        names = ", ".join(str(p.relative_to(path)) for p in candidates)
        raise DeviceError(f"package folder {path} holds several .tflite files ({names}); "
                          "pass the one to profile")
    if c_arrays:
        return ResolvedArtifact(path, "firmware", _check_tflite(model_from_c_array(c_arrays[0]),
                                                                c_arrays[0]), None, _name(path))
    raise DeviceError(f"package folder {path} holds no .tflite and no model_data.cc; "
                      "pass a .tflite or a folder written by `edgepack package`")


def _name(folder: Path) -> str:
    return folder.resolve().name or "model"


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


def device_class(prefix: str) -> type[Device]:
    """Import and return the Device class registered for a SPEC prefix."""
    try:
        module, cls = DEVICES[prefix].split(":")
    except KeyError:
        raise UsageError(f"unknown device kind '{prefix}'; use {SPEC_HELP}") from None
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise DeviceError(f"device kind '{prefix}' is not available in this install ({e}); "
                          "reinstall edgepack") from e


def expand_spec(spec: str) -> list[str]:
    """The single-device SPECs a SPEC names: ``adb:all`` -> one ``adb:SERIAL`` per attached device.

    Example::

        expand_spec("adb:all")  # ["adb:R58M123ABC", "adb:emulator-5554"]
        expand_spec("host")     # ["host"]
    """
    parsed = parse_spec(spec)
    expand = getattr(device_class(parsed.prefix), "expand_targets", None)
    if expand is None:
        return [parsed.text]
    return [f"{parsed.prefix}:{t}" if t else parsed.prefix for t in expand(parsed.target)]


class UnsupportedOptions(UsageError):
    """Options a device does not take. The library names them by keyword (``energy``); a CLI that
    knows its own flags re-words the message with :meth:`describe` (``--no-energy``).

    Example::

        try:
            open_device("host", energy=False)
        except UnsupportedOptions as e:
            print(e.describe({"energy": "--no-energy", "timeout": "--timeout"}.get))
    """

    def __init__(self, spec: str, unknown: tuple[str, ...], accepted: tuple[str, ...]):
        self.spec, self.unknown, self.accepted = spec, tuple(unknown), tuple(accepted)
        super().__init__(self.describe())

    def __reduce__(self):
        return type(self), (self.spec, self.unknown, self.accepted)

    def describe(self, name=None) -> str:
        """The message, each option named by ``name(option)`` (default: the keyword, ``energy=``);
        an accepted option ``name`` returns None for (no flag for it) is left out of the list."""
        keyword = lambda o: f"{o}="  # noqa: E731
        name = name or keyword
        opts = ", ".join(name(u) or keyword(u) for u in self.unknown)
        takes = ", ".join(n for n in map(name, self.accepted) if n) or "none"
        return f"device '{self.spec}' does not take {opts}; its options: {takes}"


def open_device(spec: str, **options: Any) -> Device:
    """Construct the device a SPEC names; options the device does not take -> :class:`UnsupportedOptions`.

    Options whose value is None are dropped, so a CLI can pass every option.

    Example::

        dev = open_device("adb-tcp:127.0.0.1:5555", benchmark_binary=Path("benchmark_model"))
    """
    parsed = parse_spec(spec)
    cls = device_class(parsed.prefix)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(cls.option_names))
    if unknown:
        raise UnsupportedOptions(spec, tuple(unknown), tuple(sorted(cls.option_names)))
    return cls(parsed.target, **given)


def profile(artifact: Path | str, device: str = "host", settings: Optional[Settings] = None,
            **options: Any) -> ProfileResult:
    """Profile one artifact on the device a SPEC names (opened and closed here).

    Example::

        from edgepack.devices.base import profile
        r = profile("build/android", "adb-tcp:192.168.1.7:5555", Settings(runs=50),
                    benchmark_binary=Path("benchmark_model"))
    """
    with open_device(device, **options) as dev:
        return dev.profile(Path(artifact), settings)


def firmware_report(folder: Path) -> Optional[dict]:
    """The ``firmware`` block of ``folder/report.json`` (None when the folder has none).

    Example: ``firmware_report(Path("build/firmware"))["device"]  # "nucleo-l4r5zi"``.
    """
    import json

    path = Path(folder) / "report.json"
    if not Path(folder).is_dir() or not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DeviceError(f"{path}: not readable JSON ({e}); re-run `edgepack package` for that folder") from None
    fw = report.get("firmware") if isinstance(report, dict) else None
    return fw if isinstance(fw, dict) else None
