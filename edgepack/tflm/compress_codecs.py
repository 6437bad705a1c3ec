"""Prune and Huffman encoders for TFLM's DECODE op, written against the C++ decoders of the
pinned tflite-micro tree (``kernels/decode_state_prune.cc``, ``decode_state_huffman.h/.cc``);
the Python upstream has none (its ``huffman.py`` and ``pruning.py`` always raise).

Both produce the wheel's ``CompressionResult`` (encoded tensor bytes, ancillary tensor bytes =
the 16-byte decode header + payload), so the wheel's DECODE insertion places them.

- prune: the encoded tensor is one bit per element, MSB first (1: the next kept value,
  0: the element's zero point, per channel for int8); the payload is the kept values in order.
- Huffman: a bit stream of the codes, MSB first, as big-endian uint32 words plus one zero
  word (the decoder reads a word ahead); the payload is 16-bit lookup tables: an entry with
  bit 15 set holds a symbol in bits 7-0 and in bits 14-11 how many of the looked-up bits its
  code used (the rest are put back); otherwise bits 14-11 + 1 are the next lookup's width and
  bits 10-0 the forward offset from the entry to its sub-table. Header byte 5: bits 7-4 = the
  first lookup's width - 1.

Example::

    res = prune_encode(weights, axis=0, zeros=[0] * weights.shape[0])
    res = huffman_encode(weights)            # None when it does not apply (not int8)
"""

from __future__ import annotations

import heapq
from typing import Optional, Sequence

import numpy as np

DCM_SIZE = 16
TYPE_HUFFMAN, TYPE_PRUNE = 1, 2
FIRST_BITS_MAX = 8  # widest lookup (first table and sub-tables); the first width giving the smallest tables is used
MAX_FORWARD = 0x7FF  # 16-bit entries' forward offset field


def _result(encoded: bytes, ancillary: bytes):
    from tflite_micro.tensorflow.lite.micro.compression import compressor

    return compressor.CompressionResult(encoded_data=bytes(encoded), ancillary_data=bytes(ancillary))


def header(decode_type: int, byte5: int = 0) -> bytes:
    """The 16-byte decode common metadata: type, DCM version 1, type version 1 (byte 4), byte 5."""
    h = bytearray(DCM_SIZE)
    h[0], h[1], h[4], h[5] = decode_type, 1, 1, byte5
    return bytes(h)


def zero_points(quantization, values: np.ndarray, axis: Optional[int]) -> list[int]:
    """The zero point of each channel (one for per-tensor quantization)."""
    zps = [int(z) for z in (quantization.zero_points if quantization is not None else [0]) or [0]]
    channels = 1 if axis is None else values.shape[axis]
    return zps if len(zps) == channels else [zps[0]] * channels


def _channel_of_each(values: np.ndarray, axis: Optional[int]) -> np.ndarray:
    """The channel index of every element in row-major order."""
    if axis is None:
        return np.zeros(values.size, np.int64)
    shape = [1] * values.ndim
    shape[axis] = values.shape[axis]
    return np.broadcast_to(np.arange(values.shape[axis]).reshape(shape), values.shape).reshape(-1)


def prune_encode(values: np.ndarray, axis: Optional[int], zeros: Sequence[int]):
    """Bitmask + kept values (decode_state_prune.cc). Per-channel zero points are used only for
    int8 with more than one channel (as the decoder does); None if there is nothing to prune."""
    flat = values.reshape(-1)
    zp = np.asarray(zeros, np.int64)
    if axis is not None and len(zp) > 1 and np.any(zp != 0):
        if values.dtype != np.int8:
            return None
        per = zp[_channel_of_each(values, axis)]
    else:
        per = np.full(flat.size, int(zp[0]) if len(zp) else 0)
    keep = flat.astype(np.int64) != per
    if keep.all():
        return None
    mask = np.packbits(keep.astype(np.uint8), bitorder="big").tobytes()
    return _result(mask, header(TYPE_PRUNE) + flat[keep].tobytes())


def _code_lengths(counts: dict[int, int]) -> dict[int, int]:
    """Huffman code length per symbol (ties broken by symbol: deterministic)."""
    if len(counts) == 1:
        return {next(iter(counts)): 0}
    heap = [(c, i, [s]) for i, (s, c) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    lengths = {s: 0 for s in counts}
    n = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, n, s1 + s2))
        n += 1
    return lengths


def _canonical(lengths: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Canonical codes: symbol -> (code, length), shorter codes first, then by symbol."""
    code, prev, out = 0, 0, {}
    for s, ln in sorted(lengths.items(), key=lambda kv: (kv[1], kv[0])):
        code <<= ln - prev
        out[s] = (code, ln)
        code += 1
        prev = ln
    return out


def _tables(codes: dict[int, tuple[int, int]], first_bits: int) -> Optional[list[int]]:
    """The 16-bit lookup tables (first table at 0, sub-tables after it); None if an offset overflows."""
    entries: list[int] = []

    def build(group: list[tuple[int, int, int]], bits: int) -> int:
        """Lay out a table of 2**bits entries for ``group`` = (symbol, remaining code, remaining length);
        return its start."""
        start = len(entries)
        entries.extend([0] * (1 << bits))
        subs: dict[int, list[tuple[int, int, int]]] = {}
        for sym, code, ln in group:
            if ln <= bits:
                lo = code << (bits - ln)
                for i in range(lo, lo + (1 << (bits - ln))):
                    entries[start + i] = 0x8000 | (ln << 11) | (sym & 0xFF)
            else:
                rest = ln - bits
                subs.setdefault(code >> rest, []).append((sym, code & ((1 << rest) - 1), rest))
        for idx, sub in sorted(subs.items()):
            sub_bits = min(FIRST_BITS_MAX, max(ln for _, _, ln in sub))
            pos = start + idx
            sub_start = build(sub, sub_bits)
            offset = sub_start - pos
            if offset > MAX_FORWARD:
                raise OverflowError
            entries[pos] = ((sub_bits - 1) << 11) | offset
        return start

    longest = max(ln for _, ln in codes.values())
    try:
        build([(s, c, ln) for s, (c, ln) in codes.items()], first_bits)
    except OverflowError:
        return None
    assert longest >= 0
    return entries


def huffman_encode(values: np.ndarray):
    """Huffman-coded int8 values with 16-bit tables (decode_state_huffman); None if not int8."""
    if values.dtype != np.int8 or values.size == 0:
        return None
    flat = values.reshape(-1)
    syms, counts = np.unique(flat, return_counts=True)
    codes = _canonical(_code_lengths({int(s): int(c) for s, c in zip(syms, counts)}))
    longest = max(ln for _, ln in codes.values())
    options = [(len(t), b, t) for b in range(1, max(1, min(FIRST_BITS_MAX, longest)) + 1)
               if (t := _tables(codes, b)) is not None]
    if not options:
        return None
    _, first_bits, tables = min(options, key=lambda o: (o[0], o[1]))  # the smallest tables
    lookup = {s: c for s, c in codes.items()}
    bits = "".join(format(lookup[int(v)][0], f"0{lookup[int(v)][1]}b") if lookup[int(v)][1] else ""
                   for v in flat)
    bits += "0" * (-len(bits) % 32)
    stream = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    stream += bytes(4 if stream else 8)  # the decoder reads one word ahead
    table_bytes = np.asarray(tables, "<u2").tobytes()
    return _result(stream, header(TYPE_HUFFMAN, (first_bits - 1) << 4) + table_bytes)
