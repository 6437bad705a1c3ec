"""Static order-0 rANS (32-bit state, byte-wise renormalisation): the package's entropy coder.

Frame layout: u32 symbol count, u16 distinct symbols k, k x (u8 symbol ascending, u16 frequency-1)
(frequencies sum to 2**14), then the big-endian final encoder state and the renormalisation bytes.
The encoder starts from state 2**23, so a decoder that ends anywhere else has read a corrupt frame.

Example::

    assert decode(encode(b"abracadabra"), 11) == b"abracadabra"
"""

from __future__ import annotations

import struct

import numpy as np

from .limits import RANS_L, RANS_SCALE_BITS, RANS_X_MAX, corrupt, rans_max_symbols

_SCALE = 1 << RANS_SCALE_BITS


def _freqs(counts: np.ndarray) -> np.ndarray:
    """Counts scaled to sum to 2**14, every present symbol at least 1."""
    total, present = int(counts.sum()), np.flatnonzero(counts)
    f = np.zeros(256, dtype=np.int64)
    f[present] = np.maximum(1, counts[present] * _SCALE // total)
    f[int(np.argmax(f))] += _SCALE - int(f.sum())
    return f


def encode(data: bytes) -> bytes:
    """One rANS frame holding ``data`` (at least one byte)."""
    a = np.frombuffer(data, dtype=np.uint8)
    f = _freqs(np.bincount(a, minlength=256))
    freq, start = f.tolist(), np.concatenate([[0], np.cumsum(f)[:-1]]).tolist()
    x, out, shift = RANS_L, bytearray(), (RANS_L >> RANS_SCALE_BITS) << 8
    for sym in reversed(a.tolist()):
        fs = freq[sym]
        while x >= shift * fs:
            out.append(x & 0xFF)
            x >>= 8
        x = ((x // fs) << RANS_SCALE_BITS) + (x % fs) + start[sym]
    out += struct.pack("<I", x)
    out.reverse()
    syms = np.flatnonzero(f)
    table = struct.pack("<IH", len(a), len(syms)) + b"".join(struct.pack("<BH", int(c), int(f[c]) - 1) for c in syms)
    return table + bytes(out)


def read_table(blob: bytes, raw_length: int) -> tuple[list[int], int]:
    """Validate a frame's header against ``raw_length`` and the frame's own size; (freqs, payload start)."""
    if len(blob) < 6:
        raise corrupt("rANS frame shorter than its header")
    n, k = struct.unpack_from("<IH", blob, 0)
    if n != raw_length:
        raise corrupt(f"rANS frame holds {n:,} symbols, its stream declares {raw_length:,}")
    if not 1 <= k <= 256 or len(blob) < 6 + 3 * k + 4:
        raise corrupt(f"rANS table of {k} symbols does not fit the {len(blob)}-byte frame")
    freq, last = [0] * 256, -1
    for i in range(k):
        sym, fm1 = struct.unpack_from("<BH", blob, 6 + 3 * i)
        if sym <= last:
            raise corrupt("rANS symbols not in ascending order")
        freq[sym], last = fm1 + 1, sym
    if sum(freq) != _SCALE:
        raise corrupt("rANS frequencies do not sum to 2**14")
    payload = 6 + 3 * k
    if n > rans_max_symbols(len(blob) - payload, max(freq)):
        raise corrupt(f"rANS frame claims {n:,} symbols, more than its {len(blob) - payload} bytes can hold")
    return freq, payload


def decode(blob: bytes, raw_length: int) -> bytes:
    """Inverse of :func:`encode`; ``raw_length`` is the stream's declared length (validated first)."""
    freq, pos = read_table(blob, raw_length)
    x = int.from_bytes(blob[pos : pos + 4], "big")
    pos += 4
    if not RANS_L <= x < RANS_X_MAX:
        raise corrupt("rANS initial state out of range")
    if max(freq) == _SCALE:  # one symbol: every step leaves the state unchanged
        if pos != len(blob) or x != RANS_L:
            raise corrupt("rANS single-symbol frame with trailing bytes")
        return bytes([freq.index(_SCALE)]) * raw_length
    start = np.concatenate([[0], np.cumsum(freq)[:-1]]).tolist()
    slot_sym = np.repeat(np.arange(256), freq).tolist()
    mask, end, out = _SCALE - 1, len(blob), bytearray(raw_length)
    for i in range(raw_length):
        slot = x & mask
        sym = slot_sym[slot]
        out[i] = sym
        x = freq[sym] * (x >> RANS_SCALE_BITS) + slot - start[sym]
        while x < RANS_L:
            if pos >= end:
                raise corrupt("rANS stream ends early")
            x = (x << 8) | blob[pos]
            pos += 1
    if x != RANS_L or pos != end:
        raise corrupt("rANS stream does not end in its initial state")
    return bytes(out)
