"""Stream codecs of the package: stored, raw LZMA1 and order-0 rANS (version 2), plus version 1's readers.

Every decompression is bounded by the stream's declared raw length before any output is
produced (no decompression bomb grows past it).

Example::

    codec, packed = best(b"skeleton bytes" * 100)
    assert decompress(codec, packed, 1400) == b"skeleton bytes" * 100
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib

from . import rans
from .limits import (LZMA, LZMA_BASE_PROBS, LZMA_ENCODER_DICT, LZMA_MAX_DICT, LZMA_MAX_LCLP, LZMA_MAX_PB,
                     LZMA_MIN_DICT, RANS, STORED, corrupt)

_LZMA_CANDIDATES = ((3, 0, 2), (0, 0, 0), (4, 0, 0), (2, 2, 2))  # (lc, lp, pb) tried; lp=2: float32 byte lanes
_V1_LZMA2 = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 22}]


def _lzma_filter(lc: int, lp: int, pb: int, dict_size: int, preset: int | None = None) -> list[dict]:
    f = {"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}
    if preset is not None:
        f["preset"] = preset
    return [f]


def lzma_dict_size(n: int, cap: int = LZMA_ENCODER_DICT) -> int:
    """The encoder's dictionary for an ``n``-byte stream: the next power of two, within [4 KiB, cap]."""
    d = LZMA_MIN_DICT
    while d < n and d < cap:
        d <<= 1
    return d


def lzma_encode(data: bytes, lc: int = 3, lp: int = 0, pb: int = 2, dict_cap: int = LZMA_ENCODER_DICT) -> bytes:
    """u8 properties, u32 dictionary size, then the raw LZMA1 stream (preset 9e)."""
    d = lzma_dict_size(len(data), dict_cap)
    body = lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filter(lc, lp, pb, d, 9 | lzma.PRESET_EXTREME))
    return bytes([(pb * 5 + lp) * 9 + lc]) + struct.pack("<I", d) + body


def lzma_params(packed: bytes) -> tuple[int, int, int, int]:
    """(lc, lp, pb, dictionary size) of an LZMA stream, validated against the format's limits."""
    if len(packed) < 10:
        raise corrupt("LZMA stream shorter than its header")
    props, (d,) = packed[0], struct.unpack_from("<I", packed, 1)
    lc, lp, pb = props % 9, props // 9 % 5, props // 45
    if props >= 225 or lc + lp > LZMA_MAX_LCLP or pb > LZMA_MAX_PB:
        raise corrupt(f"LZMA properties byte {props} outside lc+lp<={LZMA_MAX_LCLP}, pb<={LZMA_MAX_PB}")
    if not LZMA_MIN_DICT <= d <= LZMA_MAX_DICT:
        raise corrupt(f"LZMA dictionary of {d:,} bytes outside [{LZMA_MIN_DICT:,}, {LZMA_MAX_DICT:,}]")
    if packed[5] != 0:
        raise corrupt("LZMA stream does not start with a zero byte")
    return lc, lp, pb, d


def _bounded(dec, data: bytes, raw_length: int) -> bytes:
    try:
        out = dec.decompress(data, max_length=raw_length)
    except (lzma.LZMAError, OSError, EOFError, zlib.error, ValueError) as e:
        raise corrupt(str(e)) from e
    if len(out) != raw_length:
        raise corrupt(f"stream gives {len(out):,} bytes, declares {raw_length:,}")
    return out


def compress(codec: int, data: bytes, dict_cap: int = LZMA_ENCODER_DICT, small: bool = False) -> bytes:
    if codec == STORED:
        return data
    if codec == RANS:
        return rans.encode(data)
    d = lzma_dict_size(len(data), dict_cap)
    props = ((0, 0, 0),) if small else _LZMA_CANDIDATES  # small: 5 KB of probabilities instead of up to 28 KB
    quick = min(props, key=lambda c: len(lzma.compress(  # rank (lc, lp, pb) at preset 6, then 9e once
        data, format=lzma.FORMAT_RAW, filters=_lzma_filter(*c, d, 6))))
    return lzma_encode(data, *quick, dict_cap=dict_cap)


def decompress(codec: int, packed: bytes, raw_length: int) -> bytes:
    """Decode one version-2 stream of ``raw_length`` bytes (already bounded by the header)."""
    if codec == STORED:
        if len(packed) != raw_length:
            raise corrupt("stored stream length differs from its raw length")
        return packed
    if codec == RANS:
        return rans.decode(packed, raw_length)
    if codec == LZMA:
        lc, lp, pb, d = lzma_params(packed)
        return _bounded(lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_lzma_filter(lc, lp, pb, d)), packed[5:],
                        raw_length)
    raise corrupt(f"unknown codec {codec}")


def lzma_work(packed: bytes, raw_length: int) -> int:
    """Decoder work memory of one LZMA stream: probabilities (u16) and window, 8-byte aligned (as epk.c)."""
    lc, lp, _, d = lzma_params(packed)
    return _align8(2 * (LZMA_BASE_PROBS + (0x300 << (lc + lp)))) + _align8(max(1, min(d, raw_length)))


def _align8(n: int) -> int:
    return (n + 7) & ~7


def best(data: bytes, dict_cap: int = LZMA_ENCODER_DICT, small: bool = False) -> tuple[int, bytes]:
    """The smallest (codec, packed) of ``data`` among the codecs every shipped decoder reads.

    ``dict_cap`` bounds the LZMA dictionary (decoder RAM), ``small`` uses lc=lp=0 (fewest probabilities);
    ``dict_cap=0`` leaves LZMA out (no work memory at all).
    """
    if not data:
        return STORED, b""
    cands = [(c, compress(c, data, dict_cap, small)) for c in ((STORED, LZMA, RANS) if dict_cap else (STORED, RANS))]
    return min(cands, key=lambda c: (len(c[1]), c[0]))


def decompress_v1(codec: int, packed: bytes, cap: int) -> bytes:
    """Decode a version-1 stream (0 stored, 1 zlib, 2 bz2, 3 raw LZMA2, 4 rANS), at most ``cap`` bytes."""
    if codec == 0:
        if len(packed) > cap:
            raise corrupt("stored stream longer than the model")
        return packed
    if codec == 4:
        if len(packed) < 6:
            raise corrupt("rANS frame shorter than its header")
        (n,) = struct.unpack_from("<I", packed, 0)
        if n > cap:
            raise corrupt(f"rANS frame claims {n:,} symbols, more than the model's size allows")
        return rans.decode(packed, n)
    decs = {1: lambda: zlib.decompressobj(), 2: lambda: bz2.BZ2Decompressor(),
            3: lambda: lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=_V1_LZMA2)}
    if codec not in decs:
        raise corrupt(f"unknown codec {codec}")
    dec = decs[codec]()
    try:
        out = dec.decompress(packed, cap + 1)
    except (lzma.LZMAError, OSError, EOFError, zlib.error, ValueError) as e:
        raise corrupt(str(e)) from e
    if len(out) > cap:
        raise corrupt("stream inflates beyond the model's declared size")
    return out
