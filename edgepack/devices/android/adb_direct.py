"""Direct ADB links without an adb server: adb-shell over TCP or USB, the RSA key, a CNXN probe.

Used for ``adb-tcp:HOST:PORT`` and as the fallback of ``adb:SERIAL`` when no adb server
runs. edgepack's key is created on first use under ~/.config/edgepack/adbkey (owner-only).

A device that accepts the TCP connection but never answers CNXN (not an adb daemon, or
adbd hung) is told apart from one that sent AUTH and then never accepted the key: the
transport counts the bytes it received.

Example::

    link = DirectLink.tcp("192.168.1.7", 5555, key=None, timeout=300, auth_timeout=10)  # default key
    link.shell("getprop ro.product.model; echo EXIT=$?", timeout=10)
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import struct
import tempfile
from pathlib import Path
from typing import Any, Optional

from ...errors import DeviceError
from .adb_server import LinkError

KEY_ENV = "EDGEPACK_ADB_KEY"
_CNXN, _AUTH = (struct.unpack("<I", c)[0] for c in (b"CNXN", b"AUTH"))
A_VERSION, MAX_PAYLOAD = 0x01000001, 256 * 1024


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


def _link_error(e: BaseException) -> LinkError:
    return LinkError(f"{type(e).__name__}: {e}", timeout=_is_timeout(e))


class _Counting:
    """Mixin state for a transport: how many bytes the device sent (0 = never answered)."""

    received = 0


def _tcp_transport(host: str, port: int) -> Any:
    """adb-shell's TCP transport, counting bytes; a closed socket raises at once (no spin)."""
    from adb_shell.transport.tcp_transport import TcpTransport

    class EofTcpTransport(TcpTransport, _Counting):
        def bulk_read(self, numbytes: int, transport_timeout_s: Any) -> bytes:
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError(f"{host}:{port} closed the connection")
            self.received += len(data)
            return data

    return EofTcpTransport(host, port)


class DirectLink:
    """An adb-shell device: the link AdbDevice drives (shell, push, close)."""

    def __init__(self, dev: Any, transport: str, where: str):
        self.dev, self.transport, self.where = dev, transport, where

    @classmethod
    def tcp(cls, host: str, port: int, key: Optional[Path], timeout: float, auth_timeout: float
            ) -> "DirectLink":
        from adb_shell.adb_device import AdbDevice as ShellDevice

        transport = _tcp_transport(host, port)
        dev = ShellDevice(transport, default_transport_timeout_s=10.0)
        cls._connect(dev, transport, f"{host}:{port}", key, timeout, auth_timeout)
        return cls(dev, "tcp", f"{host}:{port}")

    @classmethod
    def usb(cls, serial: Optional[str], key: Optional[Path], timeout: float, auth_timeout: float
            ) -> "DirectLink":
        from adb_shell import exceptions as ex

        try:
            from adb_shell.adb_device import AdbDeviceUsb

            dev = AdbDeviceUsb(serial=serial, default_transport_timeout_s=10.0)
        except ex.InvalidTransportError as e:
            raise DeviceError("no adb server runs and direct USB needs libusb1: start one with "
                              "`adb start-server` (Android platform tools), or pip install "
                              "'adb-shell[usb]', or use adb-tcp:HOST:5555 after `adb tcpip 5555`") from e
        except ex.UsbDeviceNotFoundError as e:
            raise DeviceError(f"USB device {serial or '(any)'} not found ({e}); check the cable, that USB "
                              "debugging is on, and `edgepack devices`") from e
        cls._connect(dev, None, f"USB {serial or '(first device)'}", key, timeout, auth_timeout)
        return cls(dev, "usb", serial or "usb")

    @staticmethod
    def _connect(dev: Any, transport: Any, where: str, key_path: Optional[Path], timeout: float,
                 auth_timeout: float) -> None:
        key = ensure_key(key_path)  # created on first use, once a device is there to use it
        try:
            dev.connect(rsa_keys=[_signer(key)], auth_timeout_s=auth_timeout,
                        transport_timeout_s=min(timeout, 10.0))
        except _adb_errors() as e:
            dev.close()
            if not _is_timeout(e):
                raise DeviceError(f"adb device {where} disconnected or failed during connect "
                                  f"({type(e).__name__}: {e}); reconnect it and retry") from e
            if transport is not None and transport.received == 0:
                raise DeviceError(
                    f"adb device {where} accepted the TCP connection but never answered ADB's CNXN "
                    f"within {min(timeout, 10.0):g} s: it is not an adb daemon (wrong port?) or adbd "
                    "hangs; check the port (`adb tcpip 5555` on the phone) and retry") from e
            raise DeviceError(
                f"adb device {where} did not accept edgepack's key {key}.pub within "
                f"{auth_timeout:.0f} s (key rejected or the 'Allow USB debugging' prompt "
                "was not confirmed); unlock the device, tap Allow, and retry") from e

    def shell(self, command: str, timeout: float) -> str:
        try:
            return self.dev.shell(command, transport_timeout_s=timeout, read_timeout_s=timeout,
                                  timeout_s=timeout)
        except _adb_errors() as e:
            raise _link_error(e) from e

    def push(self, data: bytes, remote: str, mode: int, timeout: float) -> None:
        try:
            self.dev.push(io.BytesIO(data), remote, st_mode=stat.S_IFREG | mode,
                          transport_timeout_s=min(timeout, 30.0), read_timeout_s=timeout)
        except _adb_errors() as e:
            raise _link_error(e) from e

    def close(self) -> None:
        self.dev.close()


def probe_adbd(host: str, port: int, timeout: float = 1.0) -> str:
    """Whether HOST:PORT is an adb daemon: send CNXN, expect AUTH or CNXN back (no key used).

    Returns "available" or a status saying what is wrong. A port that accepts TCP but
    sends nothing, or sends something that is not an ADB packet, is not a device.

    Example::

        probe_adbd("192.168.1.7", 5555)  # "available"
    """
    banner = b"host::\0"
    head = struct.pack("<6I", _CNXN, A_VERSION, MAX_PAYLOAD, len(banner), sum(banner), _CNXN ^ 0xFFFFFFFF)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(head + banner)
            reply = b""
            while len(reply) < 24:
                chunk = s.recv(24 - len(reply))
                if not chunk:
                    break
                reply += chunk
    except socket.timeout:
        return (f"not answering: the port accepts TCP but sent no ADB reply to CNXN within {timeout:g} s "
                "(not an adb daemon, or adbd hangs)")
    except (OSError, ValueError) as e:
        return f"unreachable ({e.__class__.__name__})"
    if len(reply) < 24:
        return "not an adb device: the port closed the connection without answering CNXN"
    cmd, *_rest, magic = struct.unpack("<6I", reply)
    if cmd not in (_CNXN, _AUTH) or magic != cmd ^ 0xFFFFFFFF:
        return "not an adb device: the port answered CNXN with something that is not an ADB packet"
    return "available"
