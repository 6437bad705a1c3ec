"""The device registry: SPEC strings, the table of device kinds, and opening a device.

A SPEC string names a device: ``host``, ``adb`` / ``adb:SERIAL`` / ``adb:all``,
``adb-tcp:HOST:PORT``, ``serial:PORT``, ``qemu:mps2-an386``, ``estimate:PROFILE``. The
registry :data:`DEVICES` maps each prefix to a lazily imported "module:Class" (the lifecycle
every device follows is :class:`~edgepack.devices.lifecycle.Device`). A SPEC may name several
devices (``adb:all``): :func:`expand_spec` lists them, through the class's optional
``expand_targets(target) -> list[str]``. Options a device does not take are
:class:`UnsupportedOptions`.

Example::

    from edgepack.devices.registry import open_device
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
from typing import Any, Optional

from ..errors import DeviceError, UsageError
from .lifecycle import Device
from .result import ProfileResult, Settings

# SPEC prefix -> "module:Class". One line per device kind; imported only when used.
DEVICES: dict[str, str] = {
    "host": "edgepack.devices.host:HostDevice",
    "adb": "edgepack.devices.android.adb:AdbSerialDevice",
    "adb-tcp": "edgepack.devices.android.adb:AdbTcpDevice",
    "serial": "edgepack.devices.mcu.serial:SerialDevice",
    "qemu": "edgepack.devices.mcu.qemu:QemuDevice",
    "board": "edgepack.devices.mcu.board:BoardDevice",
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

        from edgepack.devices.registry import profile
        r = profile("build/android", "adb-tcp:192.168.1.7:5555", Settings(runs=50),
                    benchmark_binary=Path("benchmark_model"))
    """
    with open_device(device, **options) as dev:
        return dev.profile(Path(artifact), settings)
