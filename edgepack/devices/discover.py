"""What ``edgepack devices`` lists: the host, ADB devices, serial ports, device profiles.

ADB devices come from the adb server when one runs (``host:devices-l``, plus getprop on
each ready device for Android version and ABI; a device that is unauthorized or offline
is listed with what to do). Without a server, USB is scanned through adb-shell's libusb
transport when libusb1 is installed (otherwise an entry says what is missing). ADB over
TCP cannot be discovered by scanning, so the addresses given with ``--adb-tcp HOST:PORT``
are probed with an ADB CNXN (no key): a port that accepts TCP but does not answer as an
adb daemon is not "available". Serial ports come from pyserial's port listing. Device
profiles are those in device_profiles/.

Example::

    for e in discover(adb_tcp=["192.168.1.7:5555"]): print(e.spec, e.status)
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Iterable

ADB_USB_CLASS = (0xFF, 0x42, 0x01)  # vendor-specific class, ADB subclass and protocol


@dataclass
class Entry:
    spec: str  # what to pass to --device
    kind: str
    description: str
    status: str  # "available", "unreachable", "unavailable: why"
    profiles: list[str] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)  # adb: serial, state, model, android, abi

    def as_dict(self) -> dict:
        return asdict(self)


def host_entry() -> Entry:
    cpu = platform.processor() or platform.machine()
    return Entry("host", "host", f"this machine ({cpu}, {os.cpu_count()} cores), LiteRT + XNNPACK",
                 "available")


def adb_usb_entries() -> list[Entry]:
    """ADB devices on USB (needs the libusb1 package and the libusb-1.0 library)."""
    try:
        import usb1  # type: ignore
    except (ImportError, OSError):
        return [Entry("adb:SERIAL", "adb", "Android over USB, direct (no adb server)", "unavailable: "
                      "start the adb server (`adb start-server`), or pip install 'adb-shell[usb]' "
                      "(libusb1) for direct USB, or use adb-tcp:HOST:PORT")]
    out = []
    try:
        with usb1.USBContext() as ctx:
            for dev in ctx.getDeviceIterator(skip_on_error=True):
                if any((s.getClass(), s.getSubClass(), s.getProtocol()) == ADB_USB_CLASS
                       for cfg in dev for iface in cfg for s in iface):
                    serial = _usb_serial(dev)
                    out.append(Entry(f"adb:{serial}", "adb", f"Android over USB "
                                     f"({dev.getVendorID():04x}:{dev.getProductID():04x})", "available"))
    except usb1.USBError as e:
        return [Entry("adb:SERIAL", "adb", "Android over USB", f"unavailable: libusb error {e}")]
    return out


def _usb_serial(dev) -> str:
    try:
        return dev.getSerialNumber() or f"{dev.getBusNumber()}-{dev.getPortNumber()}"
    except Exception:  # noqa: BLE001 - a device we may not open (permissions) still gets listed
        return f"{dev.getBusNumber()}-{dev.getPortNumber()}"


def adb_tcp_entries(addresses: Iterable[str], timeout: float = 1.0) -> list[Entry]:
    """Probe each HOST:PORT with an ADB CNXN (an AUTH or CNXN reply = an adb daemon)."""
    from .android.adb_direct import probe_adbd

    out = []
    for addr in addresses:
        host, _, port = addr.rpartition(":")
        status = probe_adbd(host, int(port), timeout) if port.isdigit() else "unreachable (no port)"
        out.append(Entry(f"adb-tcp:{addr}", "adb", "Android over TCP (adb tcpip), direct", status))
    return out


def adb_server_entries(timeout: float = 2.0) -> tuple[list[Entry], bool]:
    """Devices the adb server lists, and whether a server answered at all."""
    from ..errors import DeviceError
    from .android.adb_server import AdbServer, LinkError, ServerNotRunning, fix_for

    try:
        server = AdbServer.from_env(timeout=timeout)
        devices = server.devices()
    except ServerNotRunning as e:
        return [Entry("adb", "adb", "Android through the adb server", f"unavailable: {e}; start it with "
                      "`adb start-server` (edgepack falls back to direct USB/TCP meanwhile)")], False
    except (LinkError, DeviceError) as e:
        return [Entry("adb", "adb", "Android through the adb server", f"unavailable: {e}")], False
    if not devices:
        return [Entry("adb:SERIAL", "adb", f"Android through the adb server {server.address}",
                      "unavailable: no device attached; plug a phone in with USB debugging on, or "
                      "`adb connect HOST:PORT`")], True
    return [_server_entry(server, d, fix_for) for d in devices], True


def _server_entry(server, d, fix_for) -> Entry:
    from .android.adb_server import LinkError

    details = {"serial": d.serial, "state": d.state, "model": d.model, "android": "", "abi": "",
               "server": server.address}
    if d.ready:
        try:
            lines = server.shell(d.serial, "getprop ro.product.model; getprop ro.build.version.release; "
                                 "getprop ro.product.cpu.abi", timeout=server.timeout).splitlines()
            model, android, abi = (lines + ["", "", ""])[:3]
            details.update(model=model.strip() or d.model, android=android.strip(), abi=abi.strip())
        except LinkError:
            pass
    what = details["model"] or d.serial
    if details["android"] or details["abi"]:
        what += f" (Android {details['android'] or '?'}, {details['abi'] or '?'})"
    status = "available" if d.ready else f"{d.state}: {fix_for(d.state)}"
    return Entry(f"adb:{d.serial}", "adb", f"{what} via the adb server {server.address}", status,
                 details=details)


def serial_entries(profiles: list[str] = ()) -> list[Entry]:
    """Serial ports pyserial can see (boards running the profiling harness; pick --profile)."""
    from serial.tools import list_ports

    return [Entry(f"serial:{p.device}", "serial", p.description or "serial port", "available",
                  list(profiles)) for p in sorted(list_ports.comports(), key=lambda p: p.device)]


def profile_entries() -> list[Entry]:
    """Device profiles: each names --profile for serial/QEMU; those with a cost model can be estimated."""
    from ..errors import DeviceError
    from ..costmodel.estimate import profile_cost_model
    from ..profiles import list_profiles, load_profile

    out = []
    for name in list_profiles():
        p = load_profile(name)
        try:
            profile_cost_model(p)
            state = "available"
        except DeviceError:
            state = f"no cost model for {p.core}"
        out.append(Entry(f"estimate:{name}", "estimate",
                         f"{p.board} ({p.core}, {p.clock_hz / 1e6:g} MHz): estimated, no device needed",
                         state, [name]))
    return out


def discover(adb_tcp: Iterable[str] = (), usb: bool = True) -> list[Entry]:
    """Everything reachable, host first; then ADB, serial ports, QEMU and estimates."""
    import shutil

    from ..profiles import list_profiles, load_profile

    names = list_profiles()
    m4 = [n for n in names if load_profile(n).core == "cortex-m4"]
    entries = [host_entry()]
    server_entries, server_runs = adb_server_entries()
    entries += server_entries
    entries += adb_usb_entries() if usb and not server_runs else []  # the server owns USB phones
    entries += adb_tcp_entries(adb_tcp)
    entries += serial_entries(names)
    qemu = shutil.which("qemu-system-arm")
    entries.append(Entry("qemu:mps2-an386", "qemu", "Cortex-M4 in QEMU (needs --tflm-root)",
                         "available" if qemu else "unavailable: apt-get install qemu-system-arm "
                         "gcc-arm-none-eabi libnewlib-arm-none-eabi", m4))
    entries += profile_entries()
    return entries
