"""A real adb server (Debian's ``adb``) on a free loopback port with its own HOME, for tests to attach emulated
phones to (``adb -P PORT connect``) and stop (``adb -P PORT kill-server``)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from edgepack.devices.android.adb_server import AdbServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AdbServerProcess:
    def __init__(self, home: Path):
        self.home, self.port = home, free_port()
        self.env = dict(os.environ, HOME=str(home), ADB_VENDOR_KEYS="")
        for k in ("ADB_SERVER_SOCKET", "ANDROID_ADB_SERVER_PORT", "ANDROID_SERIAL"):
            self.env.pop(k, None)

    def adb(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["adb", "-P", str(self.port), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self) -> "AdbServerProcess":
        r = self.adb("start-server")
        assert r.returncode == 0, r.stderr
        return self

    def stop(self) -> None:
        self.adb("kill-server")

    @property
    def socket_spec(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    @property
    def pubkey(self) -> str:
        return (self.home / ".android" / "adbkey.pub").read_text()

    def client(self) -> AdbServer:
        return AdbServer("127.0.0.1", self.port)

    def attach(self, emu, expect: str = "device", wait_s: float = 15.0) -> None:
        """``adb connect`` the emulator and wait until the server shows it in state ``expect``."""
        self.adb("connect", emu.serial)
        deadline = time.monotonic() + wait_s
        while True:
            states = {d.serial: d.state for d in self.client().devices()}
            if states.get(emu.serial) == expect:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{emu.serial} is {states.get(emu.serial)!r}, expected {expect!r}")
            time.sleep(0.1)

    def detach(self, emu, wait_s: float = 10.0) -> None:
        """``adb disconnect`` one emulator and wait until the server no longer lists it."""
        self.adb("disconnect", emu.serial)
        deadline = time.monotonic() + wait_s
        while any(d.serial == emu.serial for d in self.client().devices()) and time.monotonic() < deadline:
            time.sleep(0.1)

    def detach_all(self) -> None:
        self.adb("disconnect")
        deadline = time.monotonic() + 10
        while self.client().devices() and time.monotonic() < deadline:
            time.sleep(0.1)
