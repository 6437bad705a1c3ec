"""A board emulator on a real pty that speaks the edgepack harness protocol (v1).

It behaves like firmware built from templates/tflm/main.cc: silent until the start
byte ``S``, then HELLO; on ``R <runs> <warmup>`` it fills the input with the
protocol's pattern, runs the model in the TFLM host interpreter (tflite-micro)
for real, reports per-run cycles (measured wall time x the emulated clock), the
arena the interpreter recorded, and the CRC-32 of the output bytes.

``fault`` makes it misbehave the way real boards do, for the error-path tests:
"bad_checksum" (corrupt RUN 1's checksum), "err" (ERR line and DONE status=3),
"stall" (HELLO, then silence), "garbage" (line noise instead of HELLO),
"wrong_crc" (a wrong output CRC), "drop_run" (RUN 1 missing), "disconnect"
(pty closed after HELLO), "wrong_model" (HELLO with another model size), "noise"
(a line of boot noise before HELLO, which hosts must skip), "flood_result" (valid
RESULT lines forever, never DONE), "extra_runs" (RUN lines past the requested count,
forever), "slow" (every RUN line 0.3 s after the last: valid, but slower than a deadline).

``transport="tcp"`` serves the same board on a loopback TCP port chosen at run time
(like QEMU's ``-serial tcp:...,server``); ``port`` is then ``socket://127.0.0.1:N``.

Example::

    with SerialBoardEmulator(model_bytes, clock_hz=80_000_000) as board:
        SerialDevice(board.port).profile(path, Settings(runs=5, warmup=1))
"""

from __future__ import annotations

import os
import re
import select
import socket
import tempfile
import threading
import time
import tty
import zlib
from typing import Optional

import numpy as np

from edgepack.tflm import protocol as hp


def recorded_arena(interp) -> int:
    """The arena total the RecordingMicroAllocator prints to fd 2 (captured at fd level)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    m = re.search(r"Arena allocation total (\d+) bytes", text)
    return int(m.group(1)) if m else 0


class SerialBoardEmulator:
    """A pty-backed board; ``port`` is the slave path a host opens with pyserial."""

    def __init__(self, model: bytes, clock_hz: int = 120_000_000, name: str = "model",
                 fault: Optional[str] = None, arena: int = 200_000, transport: str = "pty"):
        from tflite_micro.python.tflite_micro import runtime

        self.model, self.clock_hz, self.name, self.fault, self.arena = model, clock_hz, name, fault, arena
        self.interp = runtime.Interpreter.from_bytes(model, arena_size=arena)
        d_in = self.interp.get_input_details(0)
        self.in_shape, self.in_dtype = tuple(d_in["shape"]), np.dtype(d_in["dtype"])
        self.interp.set_input(hp.input_pattern_array(self.in_shape, self.in_dtype), 0)
        self.interp.invoke()
        self.out_bytes = int(np.asarray(self.interp.get_output(0)).nbytes)
        self.arena_used = recorded_arena(self.interp)
        self._listener = self._conn = None
        if transport == "tcp":
            self._listener = socket.create_server(("127.0.0.1", 0))
            self.port = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
            self.master = self._slave = -1
        else:
            self.master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.port = os.ttyname(self._slave)
        self.sessions = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "SerialBoardEmulator":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in (self._conn, self._listener):
            if sock is not None:
                sock.close()
        if self._listener is None:
            for fd in (self.master, self._slave):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _accept(self) -> bool:
        """TCP transport: wait for the host to connect (like QEMU's server=on,wait=on)."""
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                self._conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            self.master = self._conn.fileno()
            return True
        return False

    def _send(self, kind: str, **fields) -> None:
        line = hp.encode(kind, **fields)
        if self.fault == "bad_checksum" and kind == "RUN" and fields.get("i") == 1:
            line = line[:-2] + ("00" if not line.endswith("00") else "11")
        os.write(self.master, (line + "\n").encode("ascii"))

    def _read_byte(self) -> Optional[bytes]:
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if r:
                try:
                    return os.read(self.master, 1) or None  # b"": the host hung up
                except OSError:
                    return None
        return None

    def _read_request(self) -> Optional[bytes]:
        """The run request line; stray start bytes sent before it are skipped."""
        buf = b""
        while True:
            b = self._read_byte()
            if b is None:
                return None
            if b == b"\n":
                return buf
            if b == hp.START_BYTE and not buf:
                continue
            buf += b

    def _serve(self) -> None:
        if self._listener is not None and not self._accept():
            return
        while not self._stop.is_set():
            b = self._read_byte()
            if b is None:
                return
            if b != hp.START_BYTE:
                continue
            if self.fault == "garbage":
                os.write(self.master, b"\x8f\xff garbage at the wrong baud \x00\n")
                continue
            if self.fault == "noise":
                os.write(self.master, b"boot: clocks up\r\n")
            size = len(self.model) + (4 if self.fault == "wrong_model" else 0)
            self._send("HELLO", v=hp.VERSION, model=self.name, bytes=size, arena=self.arena,
                       clock_hz=self.clock_hz, **{"in": int(np.prod(self.in_shape)) * self.in_dtype.itemsize,
                                                  "out": self.out_bytes})
            if self.fault == "disconnect":
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                else:
                    os.close(self.master)
                return
            req = self._read_request()
            if req is None:
                return
            if self.fault == "stall":
                continue
            self._session(*hp.parse_run_command(req))

    def _session(self, runs: int, warmup: int) -> None:
        self.sessions += 1
        if self.fault == "err":
            self._send("ERR", code=3, msg="AllocateTensors() failed: arena too small")
            self._send("DONE", status=3)
            return
        x = hp.input_pattern_array(self.in_shape, self.in_dtype)
        for _ in range(warmup):
            self.interp.set_input(x, 0)
            self.interp.invoke()
        for k in range(runs if self.fault != "extra_runs" else 1 << 30):
            if self._stop.is_set():
                return
            if self.fault == "slow":
                time.sleep(0.3)
            # TFLM's planner reuses the input buffer for activations: refill before each run
            self.interp.set_input(x, 0)
            t0 = time.perf_counter()
            self.interp.invoke()
            cycles = max(1, round((time.perf_counter() - t0) * self.clock_hz))
            if not (self.fault == "drop_run" and k == 1):
                self._send("RUN", i=k, cycles=cycles, us=cycles * 1_000_000 // self.clock_hz)
        out = np.ascontiguousarray(np.asarray(self.interp.get_output(0))).tobytes()
        crc = zlib.crc32(out) ^ (0xFFFFFFFF if self.fault == "wrong_crc" else 0)
        self._send("RESULT", arena_used=self.arena_used, crc32=f"{crc & 0xFFFFFFFF:08x}", out_bytes=len(out))
        while self.fault == "flood_result" and not self._stop.wait(0.002):
            try:
                self._send("RESULT", arena_used=self.arena_used, crc32=f"{crc & 0xFFFFFFFF:08x}", out_bytes=len(out))
            except OSError:  # the host closed the port
                return
        self._send("DONE", status=0)
