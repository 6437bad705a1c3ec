"""The board harness line protocol, v1 (shared by the firmware harness and the profilers).

Every line a board sends is ``EP <KIND> key=value ...*HH`` terminated by "\\n", where
``HH`` is the two-hex-digit XOR of all bytes from "EP" (inclusive) to "*" (exclusive),
NMEA style. The host sends the start byte ``S`` and then ``R <runs> <warmup>\\n``.

Board -> host kinds: HELLO (v, model, bytes, arena, clock_hz, in, out),
RUN (i, cycles, us), RESULT (arena_used, crc32, out_bytes), ERR (code, msg), DONE (status).

The board fills the input tensor with ``byte[i] = (i * 31 + 7) & 0xFF`` and reports
the CRC-32 (zlib polynomial) of the raw output bytes after the last run.

Example::

    line = encode("RUN", i=0, cycles=1200, us=10)      # 'EP RUN i=0 cycles=1200 us=10*3F'
    msg = parse(line)                                  # Message(kind='RUN', fields={...})
    msg.int("cycles")                                  # 1200
    x = input_pattern_array((1, 28, 28, 1), np.int8)   # what the board feeds the model
    crc32_hex(np.zeros(10, np.int8))                   # 'e38a6876'
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from ..errors import DeviceError

VERSION = 1
START_BYTE = b"S"
BAUD = 115200
KINDS = ("HELLO", "RUN", "RESULT", "ERR", "DONE")
REQUIRED: dict[str, tuple[str, ...]] = {
    "HELLO": ("v", "model", "bytes", "arena", "clock_hz", "in", "out"),
    "RUN": ("i", "cycles", "us"),
    "RESULT": ("arena_used", "crc32", "out_bytes"),
    "ERR": ("code", "msg"),
    "DONE": ("status",),
}
_TOKEN = re.compile(r"^[A-Za-z0-9_.:+\-/]+$")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def checksum(body: Union[str, bytes]) -> int:
    """XOR of the bytes of ``body`` (the text from "EP" up to, not including, "*")."""
    data = body.encode("ascii") if isinstance(body, str) else body
    c = 0
    for b in data:
        c ^= b
    return c


@dataclass
class Message:
    """One parsed board line: ``kind`` and its ``key=value`` fields (as text)."""

    kind: str
    fields: dict[str, str] = field(default_factory=dict)

    def int(self, key: str) -> int:
        """An integer field (raises DeviceError when missing or not a number)."""
        try:
            return int(self.fields[key])
        except KeyError:
            raise DeviceError(f"board line EP {self.kind} lacks '{key}=': check the harness version") from None
        except ValueError:
            raise DeviceError(f"board line EP {self.kind}: '{key}={self.fields[key]}' is not an integer") from None

    def text(self, key: str) -> str:
        """A text field; ERR messages have '_' turned back into spaces."""
        try:
            v = self.fields[key]
        except KeyError:
            raise DeviceError(f"board line EP {self.kind} lacks '{key}=': check the harness version") from None
        return v.replace("_", " ") if (self.kind == "ERR" and key == "msg") else v


def escape_msg(text: str) -> str:
    """An ERR message as one protocol token: spaces become '_', other odd bytes are dropped."""
    out = "".join(c if (c.isascii() and (c.isalnum() or c in "_.:+-/")) else ("_" if c.isspace() else "")
                  for c in text)
    return out or "error"


def encode(kind: str, **fields: object) -> str:
    """A board line without the newline, e.g. ``encode("DONE", status=0)`` -> ``'EP DONE status=0*HH'``."""
    if kind not in KINDS:
        raise ValueError(f"unknown harness line kind '{kind}'; known: {', '.join(KINDS)}")
    parts = ["EP", kind]
    for k, v in fields.items():
        text = escape_msg(str(v)) if (kind == "ERR" and k == "msg") else str(v)
        if not _KEY.match(k) or not _TOKEN.match(text):
            raise ValueError(f"harness field {k}={text!r} is not a protocol token (no spaces, '=' or '*')")
        parts.append(f"{k}={text}")
    body = " ".join(parts)
    return f"{body}*{checksum(body):02X}"


def parse(line: Union[str, bytes]) -> Message:
    """Parse and validate one board line (checksum, kind, required keys).

    Raises DeviceError naming what is wrong; a stray CR/LF at the end is ignored.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError:
            raise DeviceError(f"board line is not ASCII: {line[:60]!r}; check the baud rate (115200 8N1)") from None
    text = line.rstrip("\r\n")
    star = text.rfind("*")
    if not text.startswith("EP ") or star < 0 or len(text) != star + 3:
        raise DeviceError(f"not a harness line (expected 'EP KIND k=v ...*HH'): {text[:80]!r}")
    body, hh = text[:star], text[star + 1:]
    try:
        want = int(hh, 16)
    except ValueError:
        raise DeviceError(f"harness line checksum '{hh}' is not hex: {text[:80]!r}") from None
    got = checksum(body)
    if got != want:
        raise DeviceError(f"harness line checksum mismatch (sent {want:02X}, computed {got:02X}): {text[:80]!r}; "
                          "check the serial line for noise or a wrong baud rate")
    tokens = body.split(" ")
    kind = tokens[1] if len(tokens) > 1 else ""
    if kind not in KINDS:
        raise DeviceError(f"unknown harness line kind '{kind}' in {text[:80]!r}; known: {', '.join(KINDS)}")
    fields: dict[str, str] = {}
    for tok in tokens[2:]:
        k, sep, v = tok.partition("=")
        if not sep or not k:
            raise DeviceError(f"malformed field '{tok}' in harness line {text[:80]!r}")
        fields[k] = v
    missing = [k for k in REQUIRED[kind] if k not in fields]
    if missing:
        raise DeviceError(f"harness line EP {kind} lacks {', '.join(missing)}: {text[:80]!r}")
    return Message(kind, fields)


def run_command(runs: int, warmup: int) -> bytes:
    """The host's run request, e.g. ``b"R 10 2\\n"``."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0 (got {runs}, {warmup})")
    return f"R {int(runs)} {int(warmup)}\n".encode("ascii")


def parse_run_command(line: Union[str, bytes]) -> tuple[int, int]:
    """Board side of :func:`run_command` (used by emulators): ``"R 10 2"`` -> ``(10, 2)``."""
    text = line.decode("ascii", "replace") if isinstance(line, bytes) else line
    parts = text.strip().split()
    if len(parts) != 3 or parts[0] != "R" or not parts[1].isdigit() or not parts[2].isdigit():
        raise DeviceError(f"bad run request {text.strip()!r}: expected 'R <runs> <warmup>'")
    return int(parts[1]), int(parts[2])


def input_pattern(nbytes: int) -> np.ndarray:
    """The input fill pattern as uint8: ``byte[i] = (i * 31 + 7) & 0xFF``."""
    i = np.arange(int(nbytes), dtype=np.uint64)
    return ((i * 31 + 7) & 0xFF).astype(np.uint8)


def input_pattern_array(shape, dtype) -> np.ndarray:
    """The pattern reinterpreted as an array of ``shape`` and ``dtype`` (raw bytes, little endian); zeros for
    int32 inputs, which are indices (token ids) that must be valid for any table (as the harness fills them)."""
    if np.dtype(dtype) == np.int32:
        return np.zeros(tuple(shape), np.int32)
    dt = np.dtype(dtype).newbyteorder("<")
    n = int(np.prod(shape)) * dt.itemsize
    return input_pattern(n).view(dt).reshape(tuple(shape)).astype(np.dtype(dtype))


def crc32_hex(output: Union[np.ndarray, bytes]) -> str:
    """CRC-32 (zlib polynomial) of the raw output bytes, as 8 lowercase hex digits."""
    if isinstance(output, np.ndarray):
        data = np.ascontiguousarray(output).astype(output.dtype.newbyteorder("<")).tobytes()
    else:
        data = bytes(output)
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def crc_matches(reported: str, expected: str) -> bool:
    """Compare two crc32 fields (case-insensitive, 8 hex digits)."""
    return reported.strip().lower().zfill(8) == expected.strip().lower().zfill(8)


def latency_us(cycles: int, clock_hz: int) -> float:
    """Microseconds for ``cycles`` at ``clock_hz`` (the host recomputes what the board prints)."""
    if clock_hz <= 0:
        raise DeviceError(f"board reported clock_hz={clock_hz}; the harness must report the core clock")
    return cycles * 1e6 / clock_hz
