"""A client of the adb server's host protocol (what ``adb``, Android Studio and scrcpy speak).

The adb server (started by ``adb start-server``, Android Studio, any IDE) owns every USB
phone and every ``adb connect``-ed device; it listens on localhost:5037. Its protocol
(AOSP ``packages/modules/adb/OVERVIEW.TXT``, ``SERVICES.TXT``, ``SYNC.TXT``) is small:
the client sends a request as 4 hex digits of length + text, and the server answers
``OKAY`` or ``FAIL`` + 4 hex digits of length + message.

* ``host:version``  -> OKAY + hex4 length + hex4 version
* ``host:devices-l`` -> OKAY + hex4 length + one line per device:
  ``SERIAL  STATE product:P model:M device:D transport_id:N``
* ``host:transport:SERIAL`` -> OKAY; the socket is now a stream to the device, and the next
  request (``shell:CMD``, ``sync:``) opens that service on it; the server closes the socket
  when the service ends.

Where the server is: ``ADB_SERVER_SOCKET=tcp:HOST:PORT`` as adb reads it, else
``ANDROID_ADB_SERVER_ADDRESS`` / ``ANDROID_ADB_SERVER_PORT``, else 127.0.0.1:5037.
No server is ever started from here (:class:`ServerNotRunning` lets the caller fall back).

Example::

    server = AdbServer.from_env()
    for d in server.devices(): print(d.serial, d.state, d.model)
    out = server.shell(d.serial, "getprop ro.product.cpu.abi", timeout=10)
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Optional

from ...errors import DeviceError

DEFAULT_PORT = 5037
SYNC_DATA_MAX = 64 * 1024  # the sync protocol's largest DATA chunk

# A state adb reports and what the user does about it.
STATE_FIX: dict[str, str] = {
    "device": "",
    "unauthorized": "unlock the phone and tap Allow on the 'Allow USB debugging?' prompt (no prompt: "
                    "revoke USB debugging authorisations in Developer options, then replug)",
    "offline": "the server lost the device: replug it or run `adb reconnect offline`",
    "authorizing": "the phone is still checking the key: wait a moment and retry",
    "connecting": "the server is still connecting: wait a moment and retry",
    "no permissions": "the USB device is not readable by you: add a udev rule for it (see "
                      "https://developer.android.com/studio/run/device) and replug",
    "bootloader": "the phone is in the bootloader: boot Android (`fastboot reboot`)",
    "recovery": "the phone is in recovery: reboot it into Android",
    "sideload": "the phone is in sideload mode: reboot it into Android",
    "rescue": "the phone is in rescue mode: reboot it into Android",
}


class LinkError(Exception):
    """A device link failed; ``timeout`` tells a timeout from a dropped or refused link."""

    def __init__(self, message: str, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


class ServerNotRunning(LinkError):
    """Nothing listens at the adb server address."""


class ServerError(LinkError):
    """The server answered FAIL (its message is kept)."""


def fix_for(state: str) -> str:
    """What to do about a device in ``state`` ("" for a ready one)."""
    return STATE_FIX.get(state, f"the device is '{state}': reconnect it and check `adb devices`")


def server_address(env: Mapping[str, str] = os.environ) -> tuple[str, int]:
    """(host, port) of the adb server, read from the environment the way adb reads it.

    Example::

        server_address({"ADB_SERVER_SOCKET": "tcp:127.0.0.1:5038"})  # ("127.0.0.1", 5038)
    """
    sock = env.get("ADB_SERVER_SOCKET", "").strip()
    if sock:
        kind, _, rest = sock.partition(":")
        host, _, port = rest.rpartition(":")
        if kind != "tcp" or not port.isdigit():
            raise DeviceError(f"ADB_SERVER_SOCKET={sock}: edgepack understands tcp:HOST:PORT or tcp:PORT "
                              "(e.g. tcp:localhost:5037); fix or unset it")
        return host or "127.0.0.1", int(port)
    port = env.get("ANDROID_ADB_SERVER_PORT", "").strip()
    if port and not port.isdigit():
        raise DeviceError(f"ANDROID_ADB_SERVER_PORT={port} is not a port number; fix or unset it")
    host = env.get("ANDROID_ADB_SERVER_ADDRESS", "").strip() or "127.0.0.1"
    return host, int(port or DEFAULT_PORT)


@dataclass
class ServerDevice:
    """One line of ``host:devices-l``."""

    serial: str
    state: str
    props: dict[str, str] = field(default_factory=dict)  # product, model, device, transport_id, usb

    @property
    def model(self) -> str:
        return self.props.get("model", "")  # adb writes non-alphanumerics as "_"

    @property
    def ready(self) -> bool:
        return self.state == "device"


def parse_devices_l(text: str) -> list[ServerDevice]:
    """Parse ``host:devices-l`` output (states may hold spaces: "no permissions (...)").

    Example::

        parse_devices_l("emulator-5554 device product:sdk model:Pixel_7 transport_id:1\\n")[0].model
    """
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        serial, rest = parts[0], parts[1:]
        if rest[0] == "no" and len(rest) > 1 and rest[1] == "permissions":
            state = "no permissions"
            rest = [t for t in rest[2:] if ":" in t and not t.startswith(("(", "[", "see"))
                    and t.split(":", 1)[0] in ("usb", "transport_id")]
        else:
            state, rest = rest[0], rest[1:]
        props = dict(t.split(":", 1) for t in rest if ":" in t)
        out.append(ServerDevice(serial, state, props))
    return out


class AdbServer:
    """The adb server at (host, port); every call opens its own socket, as adb does."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, timeout: float = 5.0):
        self.host, self.port, self.timeout = host, int(port), float(timeout)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, timeout: float = 5.0) -> "AdbServer":
        host, port = server_address(env)
        return cls(host, port, timeout)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- requests ------------------------------------------------------------------
    def _open(self) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        except ConnectionRefusedError as e:
            raise ServerNotRunning(f"no adb server at {self.address} ({e.strerror})") from e
        except socket.timeout as e:
            raise ServerNotRunning(f"the adb server at {self.address} did not accept a connection "
                                   f"within {self.timeout:g} s", timeout=True) from e
        except OSError as e:
            raise ServerNotRunning(f"no adb server at {self.address} ({e.strerror or e})") from e

    def _request(self, sock: socket.socket, text: str) -> None:
        data = text.encode()
        try:
            sock.sendall(b"%04x" % len(data) + data)
            status = _recv_exact(sock, 4)
            if status == b"OKAY":
                return
            if status == b"FAIL":
                raise ServerError(_recv_exact(sock, int(_recv_exact(sock, 4), 16)).decode(errors="replace"))
        except socket.timeout as e:
            raise LinkError(f"the adb server at {self.address} did not answer '{text}'", timeout=True) from e
        except (OSError, ValueError) as e:
            raise LinkError(f"the adb server at {self.address} dropped '{text}' ({e})") from e
        raise LinkError(f"the adb server at {self.address} answered '{text}' with {status!r}, "
                        "not OKAY/FAIL: is that port an adb server?")

    def _query(self, text: str) -> str:
        with self._open() as sock:
            self._request(sock, text)
            try:
                return _recv_exact(sock, int(_recv_exact(sock, 4), 16)).decode(errors="replace")
            except (OSError, ValueError) as e:
                raise LinkError(f"the adb server at {self.address} sent a bad reply to '{text}' ({e})") from e

    def version(self) -> int:
        """The server's protocol version (``host:version``); raises ServerNotRunning."""
        return int(self._query("host:version"), 16)

    def devices(self) -> list[ServerDevice]:
        """Every device the server knows, in its order, with its state."""
        return parse_devices_l(self._query("host:devices-l"))

    def _service(self, serial: str, service: str, timeout: float) -> socket.socket:
        sock = self._open()
        try:
            sock.settimeout(timeout)
            self._request(sock, f"host:transport:{serial}")
            self._request(sock, service)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- services --------------------------------------------------------------------
    def shell(self, serial: str, command: str, timeout: float) -> str:
        """Run ``command`` in the legacy shell (no exit status: append ``; echo EXIT=$?``).

        The output is read until the device closes the stream; ``timeout`` bounds the whole
        command. On timeout the socket is closed, which closes the shell on the device.
        """
        deadline = time.monotonic() + timeout
        chunks = []
        with _stream(self._service(serial, "shell:" + command, timeout), serial, "a shell command",
                     timeout) as sock:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def push(self, serial: str, data: bytes, remote: str, mode: int, timeout: float) -> None:
        """Write ``data`` to ``remote`` with permission bits ``mode`` (sync SEND/DATA/DONE)."""
        with _stream(self._service(serial, "sync:", timeout), serial, f"the push of {remote}",
                     timeout) as sock:
            spec = f"{remote},{stat.S_IFREG | mode}".encode()  # as adb sends it: st_mode in decimal
            sock.sendall(b"SEND" + struct.pack("<I", len(spec)) + spec)
            view = memoryview(data)
            for i in range(0, len(data), SYNC_DATA_MAX):  # streamed: no second copy of a large model
                piece = view[i:i + SYNC_DATA_MAX]
                sock.sendall(b"DATA" + struct.pack("<I", len(piece)))
                sock.sendall(piece)
            sock.sendall(b"DONE" + struct.pack("<I", int(time.time())))
            ident, length = struct.unpack("<4sI", _recv_exact(sock, 8))
            if ident == b"FAIL":
                raise LinkError(f"push of {remote} refused: "
                                f"{_recv_exact(sock, length).decode(errors='replace')}")
            if ident != b"OKAY":
                raise LinkError(f"push of {remote}: unexpected sync reply {ident!r}")
            sock.sendall(b"QUIT" + struct.pack("<I", 0))


@contextmanager
def _stream(sock: socket.socket, serial: str, what: str, timeout: float) -> Iterator[socket.socket]:
    """Close the service socket at the end; socket errors become LinkError (timeout or dropped)."""
    try:
        yield sock
    except socket.timeout as e:
        raise LinkError(f"{what} timed out after {timeout:g} s", timeout=True) from e
    except OSError as e:
        raise LinkError(f"the link to {serial} dropped during {what} ({e})") from e
    finally:
        sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("connection closed")
        buf += chunk
    return buf


class ServerLink:
    """A device reached through the server: the link AdbDevice drives (shell, push, close)."""

    transport = "adb-server"

    def __init__(self, server: AdbServer, serial: str):
        self.server, self.serial = server, serial

    def shell(self, command: str, timeout: float) -> str:
        return self.server.shell(self.serial, command, timeout)

    def push(self, data: bytes, remote: str, mode: int, timeout: float) -> None:
        self.server.push(self.serial, data, remote, mode, timeout)

    def close(self) -> None:
        """Nothing to close: every call had its own socket."""


def find_device(server: AdbServer, serial: Optional[str]) -> ServerDevice:
    """The device to use: ``serial`` if given, else the only one; a clear error otherwise."""
    devices = server.devices()
    if serial:
        match = next((d for d in devices if d.serial == serial), None)
        if match is None:
            known = ", ".join(d.serial for d in devices) or "none"
            hint = (f"run `adb connect {serial}` or use adb-tcp:{serial}" if ":" in serial
                    else "check the cable and `adb devices`")
            raise DeviceError(f"adb device {serial} is not attached to the adb server at {server.address} "
                              f"(attached: {known}); {hint}")
        return match
    if not devices:
        raise DeviceError(f"no device is attached to the adb server at {server.address}; plug a phone in "
                          "with USB debugging on, or `adb connect HOST:PORT`")
    if len(devices) > 1:
        names = ", ".join(d.serial for d in devices)
        raise DeviceError(f"several devices are attached ({names}); pick one with --device adb:SERIAL "
                          "or ANDROID_SERIAL, or profile them all with --device adb:all")
    return devices[0]
