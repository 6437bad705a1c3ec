"""An Android device emulator speaking the real ADB wire protocol over loopback TCP.

Implements the device (adbd) side: CNXN, AUTH (a random 20-byte token; the
client's PKCS#1 v1.5 / SHA-1 signature is checked against authorised public
keys in Android's key format), OPEN/OKAY/WRTE/CLSE streams with flow control
(one unacknowledged WRTE per stream), the legacy ``shell:`` and ``exec:``
services (no exit status, as on real devices) and ``sync:`` (STAT, LIST,
SEND/DATA/DONE, RECV, QUIT).

Commands run in a sandboxed device root: absolute /data, /sys, /sdcard paths
(not /dev or /proc) in shell commands and sync paths are mapped into ``root`` (a path-mapping
sandbox for tests, not a security boundary). The root holds /data/local/tmp,
/system/bin/getprop and /sys/class/power_supply/battery/{current_now,
voltage_now}, which a background thread updates every 20 ms with plausible
readings: more discharge current while a program holds a marker file in
/dev/.load (the emulated ``benchmark_model`` does while it runs).

Example::

    with AdbEmulator(tmp_path / "dev", authorized_keys=[pub_text]) as emu:
        dev = AdbDeviceTcp("127.0.0.1", emu.port); dev.connect(rsa_keys=[signer])
"""

from __future__ import annotations

import base64
import os
import queue
import random
import re
import socket
import stat
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Optional


def _id(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE = (_id(c) for c in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
TOKEN, SIGNATURE, RSAPUBLICKEY = 1, 2, 3
SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")
IDLE_UA, LOAD_UA, BATTERY_UV, SAG_UV = 150_000, 350_000, 3_850_000, 30_000  # emulated battery


def true_excess_mw() -> float:
    """The extra power the emulated battery shows while a benchmark runs (ground truth)."""
    run = (IDLE_UA + LOAD_UA) * 1e-6 * (BATTERY_UV - SAG_UV) * 1e-6
    return (run - IDLE_UA * 1e-6 * BATTERY_UV * 1e-6) * 1e3


_MAPPED = re.compile(r"(?<![\w.~/-])/(data|sys|sdcard)(?=/|\s|$|;|'|\")")


def parse_android_pubkey(text: str) -> tuple[int, int]:
    """(n, e) of an adb public key: base64 of {len, n0inv, n[64], rr[64], e} little-endian."""
    raw = base64.b64decode(text.strip().split()[0])
    words = struct.unpack("<I", raw[:4])[0]
    n = int.from_bytes(raw[8:8 + 4 * words], "little")
    e = struct.unpack("<I", raw[8 + 8 * words:12 + 8 * words])[0]
    return n, e


def signature_ok(token: bytes, signature: bytes, key: tuple[int, int]) -> bool:
    """RSA PKCS#1 v1.5 verification of a SHA-1-prehashed token (what adbd does)."""
    n, e = key
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    em = pow(int.from_bytes(signature, "big"), e, n).to_bytes(k, "big")
    t = SHA1_DIGEST_INFO + token
    return em == b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


class _Closed(Exception):
    pass


class _Stream:
    def __init__(self, conn: "_Connection", local: int, remote: int):
        self.conn, self.local, self.remote = conn, local, remote
        self.acked = threading.Event()
        self.inbox: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self.closed = False
        self.buf = b""

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), self.conn.maxdata):
            if self.closed:
                raise _Closed()
            self.acked.clear()
            self.conn.send(WRTE, self.local, self.remote, data[i:i + self.conn.maxdata])
            while not self.acked.wait(0.2):
                if self.closed or self.conn.dead:
                    raise _Closed()

    def read(self, n: int, timeout: float = 30.0) -> bytes:
        while len(self.buf) < n:
            chunk = self.inbox.get(timeout=timeout)
            if chunk is None:
                raise _Closed()
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(CLSE, self.local, self.remote)


class _Connection:
    """One client (adb-shell or the adb server) connected to the emulator."""

    def __init__(self, emu: "AdbEmulator", sock: socket.socket):
        self.emu, self.sock = emu, sock
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.maxdata = 4096
        self.dead = False
        self.token = b""

    def send(self, cmd: int, a0: int, a1: int, data: bytes = b"") -> None:
        head = struct.pack("<6I", cmd, a0, a1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF)
        with self.lock:
            try:
                self.sock.sendall(head + data)
            except OSError:
                self.dead = True

    def _recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise _Closed()
            out += chunk
        return out

    def serve(self) -> None:
        try:
            while not self.emu.stopping:
                cmd, a0, a1, length, check, magic = struct.unpack("<6I", self._recv(24))
                data = self._recv(length) if length else b""
                if magic != cmd ^ 0xFFFFFFFF or (check and check != sum(data) & 0xFFFFFFFF):
                    break  # corrupt packet: adbd drops the connection
                self.dispatch(cmd, a0, a1, data)
        except (_Closed, OSError):
            pass
        finally:
            self.drop()

    def drop(self) -> None:
        self.dead = True
        for s in list(self.streams.values()):
            s.closed = True
            s.inbox.put(None)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def dispatch(self, cmd: int, a0: int, a1: int, data: bytes) -> None:
        if cmd == CNXN:
            self.maxdata = min(a1 or 4096, MAX_PAYLOAD)
            self.challenge()
        elif cmd == AUTH:
            self.auth(a0, data)
        elif cmd == OPEN and self.emu.authorised(self):
            self.open(a0, data.rstrip(b"\0").decode(errors="replace"))
        elif cmd in (OKAY, WRTE, CLSE) and a1 in self.streams:
            s = self.streams[a1]
            if cmd == OKAY:
                s.acked.set()
            elif cmd == WRTE:
                s.inbox.put(data)
                self.send(OKAY, s.local, s.remote)
            else:  # the client closed: answer CLSE unless we closed first
                s.close()
                s.inbox.put(None)
                self.streams.pop(a1, None)

    def challenge(self) -> None:
        self.token = os.urandom(20)
        self.send(AUTH, TOKEN, 0, self.token)

    def auth(self, kind: int, data: bytes) -> None:
        if kind == SIGNATURE:
            if any(signature_ok(self.token, data, k) for k in self.emu.keys):
                self.emu.authorise(self)
                self.send(CNXN, A_VERSION, self.maxdata, self.emu.banner)
            else:
                self.challenge()
        elif kind == RSAPUBLICKEY and self.emu.accept_new_keys:
            self.emu.keys.append(parse_android_pubkey(data.rstrip(b"\0").decode()))
            self.emu.authorise(self)
            self.send(CNXN, A_VERSION, self.maxdata, self.emu.banner)
        # an unknown key with accept_new_keys=False: the user never taps "Allow"; no answer

    def open(self, remote: int, service: str) -> None:
        kind, _, arg = service.partition(":")
        if kind not in ("shell", "exec", "sync") or (kind != "sync" and not arg.strip()):
            self.send(CLSE, 0, remote)
            return
        local, self.next_id = self.next_id, self.next_id + 1
        stream = self.streams[local] = _Stream(self, local, remote)
        self.send(OKAY, local, remote)
        threading.Thread(target=self.emu.run_service, args=(stream, kind, arg), daemon=True).start()


class AdbEmulator:
    """A device on 127.0.0.1:<port chosen at run time>; see the module docstring."""

    def __init__(self, root: Path, authorized_keys: Iterable[str] = (), accept_new_keys: bool = False,
                 current_unit: str = "uA", discharge_negative: bool = True,
                 stall_on: Optional[str] = None, drop_on: Optional[str] = None, seed: int = 0,
                 model: str = "edgepack-emu", abi: str = "", abilist: str = "", android: str = "14"):
        self.root = Path(root).resolve()
        self.model, self.android = model, android
        self.abi = abi or _host_abi()
        self.abilist = abilist or self.abi
        self.banner = (f"device::ro.product.name={model.replace('-', '_')};ro.product.model={model};"
                       "ro.product.device=emu;features=cmd\0").encode()
        self.keys = [parse_android_pubkey(k) for k in authorized_keys]
        self.accept_new_keys = accept_new_keys
        self.current_unit, self.discharge_negative = current_unit, discharge_negative
        self.stall_on, self.drop_on = stall_on, drop_on
        self.rng = random.Random(seed)
        self.stopping = False
        self._authorised: set[int] = set()
        self.commands: list[str] = []  # every shell/exec command received, for tests
        self._make_root()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.serial = f"127.0.0.1:{self.port}"

    # -- sandbox -------------------------------------------------------------
    def _make_root(self) -> None:
        for d in ("data/local/tmp", "sys/class/power_supply/battery", "system/bin", "dev/.load"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        getprop = self.root / "system/bin/getprop"
        getprop.write_text('#!/bin/sh\ncase "$1" in\n'
                           f' ro.product.model) echo {self.model};;\n'
                           f' ro.product.cpu.abi) echo {self.abi};;\n'
                           f' ro.product.cpu.abilist) echo {self.abilist};;\n'
                           f' ro.build.version.release) echo {self.android};;\n *) echo;;\nesac\n')
        getprop.chmod(0o755)
        self._battery_tick()

    def device_path(self, path: str) -> Path:
        p = (self.root / path.lstrip("/")).resolve()
        if p != self.root and self.root not in p.parents:
            raise PermissionError(path)
        return p

    def _battery_tick(self) -> None:
        load = 1 if any((self.root / "dev/.load").iterdir()) else 0
        ua = IDLE_UA + LOAD_UA * load + self.rng.gauss(0, 10_000)
        uv = BATTERY_UV - SAG_UV * load + self.rng.gauss(0, 2_000)
        cur = -ua if self.discharge_negative else ua
        cur = cur / 1000 if self.current_unit == "mA" else cur
        bat = self.root / "sys/class/power_supply/battery"
        for name, value in (("current_now", cur), ("voltage_now", uv)):
            tmp = bat / f".{name}.tmp"
            tmp.write_text(f"{int(round(value))}\n")
            os.replace(tmp, bat / name)

    def _battery_loop(self) -> None:
        while not self.stopping:
            self._battery_tick()
            time.sleep(0.02)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "AdbEmulator":
        threading.Thread(target=self._accept_loop, daemon=True).start()
        threading.Thread(target=self._battery_loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.server.close()

    def __enter__(self) -> "AdbEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self.stopping:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            conn = _Connection(self, sock)
            threading.Thread(target=conn.serve, daemon=True).start()

    def authorise(self, conn: _Connection) -> None:
        self._authorised.add(id(conn))

    def authorised(self, conn: _Connection) -> bool:
        return id(conn) in self._authorised

    # -- services --------------------------------------------------------------
    def run_service(self, stream: _Stream, kind: str, arg: str) -> None:
        try:
            if kind != "sync":
                self.commands.append(arg)
                if self.drop_on and self.drop_on in arg:
                    time.sleep(0.3)
                    stream.conn.drop()
                    return
                if self.stall_on and self.stall_on in arg:
                    while not (stream.closed or self.stopping):
                        time.sleep(0.05)
                    return
                self._shell(stream, arg, merge_stderr=(kind == "shell"))
            else:
                self._sync(stream)
            stream.close()
        except (_Closed, queue.Empty):
            stream.closed = True

    def _shell(self, stream: _Stream, command: str, merge_stderr: bool) -> None:
        mapped = _MAPPED.sub(lambda m: f"{self.root}/{m.group(1)}", command)
        env = {"PATH": f"{self.root}/system/bin:/usr/bin:/bin", "HOME": f"{self.root}/data/local/tmp",
               "EDGEPACK_EMU_ROOT": str(self.root), "LANG": "C"}
        proc = subprocess.Popen(["/bin/sh", "-c", mapped], cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merge_stderr else subprocess.DEVNULL)
        try:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                stream.write(chunk)
        finally:
            proc.stdout.close()
            if proc.poll() is None and stream.closed:
                proc.kill()
            proc.wait()

    def _sync(self, s: _Stream) -> None:
        while True:
            ident, length = struct.unpack("<4sI", s.read(8))
            if ident == b"QUIT":
                return
            if ident not in (b"STAT", b"LIST", b"SEND", b"RECV"):
                s.write(self._fail(f"unknown sync request {ident!r}"))
                return
            path = s.read(length).decode(errors="replace")
            try:
                getattr(self, "_sync_" + ident.decode().lower())(s, path)
            except (OSError, ValueError) as e:
                s.write(self._fail(f"{path}: {e.strerror if isinstance(e, OSError) else e}"))

    @staticmethod
    def _fail(msg: str) -> bytes:
        data = msg.encode()
        return b"FAIL" + struct.pack("<I", len(data)) + data

    def _sync_stat(self, s: _Stream, path: str) -> None:
        try:
            st = os.stat(self.device_path(path))
            s.write(b"STAT" + struct.pack("<3I", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
        except (OSError, PermissionError):
            s.write(b"STAT" + struct.pack("<3I", 0, 0, 0))

    def _sync_list(self, s: _Stream, path: str) -> None:
        folder = self.device_path(path)
        out = b""
        for name in sorted(os.listdir(folder)):
            st = os.stat(folder / name)
            out += b"DENT" + struct.pack("<4I", st.st_mode, st.st_size, int(st.st_mtime), len(name.encode()))
            out += name.encode()
        s.write(out + b"DONE" + struct.pack("<4I", 0, 0, 0, 0))

    def _sync_send(self, s: _Stream, spec: str) -> None:
        path, _, mode = spec.rpartition(",")
        data = bytearray()
        while True:
            ident, n = struct.unpack("<4sI", s.read(8))
            if ident == b"DATA":
                data += s.read(n)
            elif ident == b"DONE":
                mtime = n
                break
            else:
                raise ValueError(f"unexpected {ident!r} during SEND")
        dest = self.device_path(path)
        if not dest.parent.is_dir():
            raise FileNotFoundError(2, "No such file or directory")
        tmp = dest.with_name(f".{dest.name}.part")
        tmp.write_bytes(bytes(data))
        os.chmod(tmp, stat.S_IMODE(int(mode)) if mode else 0o644)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, dest)
        s.write(b"OKAY" + struct.pack("<I", 0))

    def _sync_recv(self, s: _Stream, path: str) -> None:
        data = self.device_path(path).read_bytes()
        out = b"".join(b"DATA" + struct.pack("<I", len(data[i:i + 65536])) + data[i:i + 65536]
                       for i in range(0, len(data), 65536))
        s.write(out + b"DONE" + struct.pack("<I", 0))


def _host_abi() -> str:
    """The Android ABI name of this machine (the emulated benchmark_model runs natively)."""
    return {"x86_64": "x86_64", "aarch64": "arm64-v8a", "i686": "x86", "armv7l": "armeabi-v7a"}.get(
        os.uname().machine, os.uname().machine)


def install_benchmark_model(dest: Path, python: str) -> Path:
    """Write the emulated benchmark_model program (a script for ``python``) to ``dest``."""
    src = (Path(__file__).with_name("benchmark_model.py")).read_text()
    dest.write_text(f"#!{python}\n" + src)
    dest.chmod(0o755)
    return dest



def emulator(tmp_path, key, **kw) -> AdbEmulator:
    """An emulated phone under ``tmp_path/device`` that trusts ``key`` (a key path, or None: trusts nothing)."""
    keys = [Path(str(key) + ".pub").read_text()] if key else []
    return AdbEmulator(tmp_path / "device", authorized_keys=keys, **kw)
