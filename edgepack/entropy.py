"""Entropy-coded download package for a .tflite (the Deep Compression "Huffman" stage).

A lossless encoding meant for over-the-air updates: the device (or the app)
downloads the small ``.epk`` blob and restores the exact ``.tflite`` bytes with
:func:`decode` before loading it. It exploits what pruning and clustering leave
in the weights: few distinct values per tensor or per output channel, and many
zeros.

How it works
------------
1. The flatbuffer is parsed; every constant buffer of a weight tensor (int8,
   float32 or float16, more than 64 bytes) is cut out of the file. What is left
   (the "skeleton": graph, shapes, scales) is kept verbatim.
2. Each cut-out buffer is coded by the cheapest of three transforms, chosen by
   its compressed size:
   ``raw`` (bytes as they are), ``rank`` (one table of distinct values for the
   whole tensor, each weight replaced by a small code: 0 for zero, 2p-1 for the
   p-th positive value, 2q for the q-th negative value counting from zero) and
   ``rank_rows`` (the same with one table per output channel, which suits
   per-channel quantized clustered weights). Codes of 2-D tensors may be stored
   column-major (``transposed``), which turns dead inputs into long zero runs.
3. Four streams (skeleton + region headers, value tables, codes, raw regions) are each
   compressed with the smallest of zlib, bz2, LZMA (raw LZMA2, no container) and
   a static order-0 rANS coder (the "Huffman" stage proper: on pruned and
   clustered codes it lands within 1% of the order-0 entropy, ~11% below LZMA).

Format (version 1, little endian)::

    magic   b"EPK" + version byte (1)
    u64     length of the original .tflite
    32 B    SHA-256 of the original .tflite (checked by decode)
    4x      stream: u8 codec (0 stored, 1 zlib, 2 bz2, 3 raw LZMA2 with preset 9e and a
            4 MiB dictionary, 4 static order-0 rANS: see :func:`rans_encode`), u32 length, bytes

    stream 0 (after decompression): u32 n_regions, then per region
             u64 offset, u32 length, u8 dtype (0 raw, 1 int8, 2 float32, 3 float16),
             u8 transform (0 raw, 1 rank, 2 rank_rows), u8 transposed, u32 lead
             (first dimension: the number of tables for rank_rows, the row count
             of the column-major code layout when transposed);
             then the skeleton bytes (original minus all regions).
    stream 1: value tables: per table u8 n_pos, u8 n_neg, n_pos positive values
             ascending, then n_neg negative values from nearest zero, as dtype bytes.
    stream 2: code bytes (one u8 per weight) of the transformed regions, in order.
    stream 3: the bytes of the regions kept raw, in order.

Example::

    blob = encode(tflite_bytes)
    assert decode(blob) == tflite_bytes
    unpack("model.tflite.epk", "model.tflite")
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelLoadError

MAGIC = b"EPK"
VERSION = 1
SUFFIX = ".epk"
STREAMS = 4
_DTYPES = {1: np.dtype(np.int8), 2: np.dtype("<f4"), 3: np.dtype("<f2")}
_TFLITE_TYPES = {9: 1, 0: 2, 1: 3}  # schema TensorType INT8, FLOAT32, FLOAT16 -> our codes
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 22}]
_QUICK_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 22}]  # to rank candidates
_REGION = struct.Struct("<QIBBBI")
_MIN_REGION = 64


_RANS_SCALE = 14  # frequencies sum to 2**14
_RANS_L = 1 << 23  # lower bound of the 32-bit rANS state
_RANS_MAX = 1 << 23  # longest stream given to the (pure Python) rANS coder


def _rans_freqs(counts: np.ndarray) -> np.ndarray:
    """Counts scaled to sum to 2**_RANS_SCALE, every present symbol at least 1."""
    total, present = int(counts.sum()), np.flatnonzero(counts)
    f = np.zeros(256, dtype=np.int64)
    f[present] = np.maximum(1, counts[present] * (1 << _RANS_SCALE) // total)
    f[int(np.argmax(f))] += (1 << _RANS_SCALE) - int(f.sum())
    return f


def rans_encode(data: bytes) -> bytes:
    """Static order-0 rANS (32-bit state, byte output): symbol table, then the coded bytes.

    Layout: u32 symbol count, u16 distinct symbols, per symbol (u8 symbol, u16 frequency-1),
    then the big-endian final state followed by the renormalisation bytes.
    """
    a = np.frombuffer(data, dtype=np.uint8)
    f = _rans_freqs(np.bincount(a, minlength=256))
    freq, start = f.tolist(), np.concatenate([[0], np.cumsum(f)[:-1]]).tolist()
    x, out, shift = _RANS_L, bytearray(), (_RANS_L >> _RANS_SCALE) << 8
    for sym in reversed(a.tolist()):
        fs = freq[sym]
        while x >= shift * fs:
            out.append(x & 0xFF)
            x >>= 8
        x = ((x // fs) << _RANS_SCALE) + (x % fs) + start[sym]
    out += struct.pack("<I", x)
    out.reverse()
    syms = np.flatnonzero(f)
    table = struct.pack("<IH", len(a), len(syms)) + b"".join(struct.pack("<BH", int(c), int(f[c]) - 1) for c in syms)
    return table + bytes(out)


def rans_decode(blob: bytes) -> bytes:
    """Inverse of :func:`rans_encode`."""
    n, k = struct.unpack_from("<IH", blob, 0)
    freq, pos = [0] * 256, 6
    for _ in range(k):
        sym, fm1 = struct.unpack_from("<BH", blob, pos)
        freq[sym], pos = fm1 + 1, pos + 3
    if sum(freq) != 1 << _RANS_SCALE:
        raise ValueError("bad rANS frequency table")
    start = np.concatenate([[0], np.cumsum(freq)[:-1]]).tolist()
    slot_sym = np.repeat(np.arange(256), freq).tolist()
    x, pos, mask = int.from_bytes(blob[pos : pos + 4], "big"), pos + 4, (1 << _RANS_SCALE) - 1
    out = bytearray(n)
    for i in range(n):
        slot = x & mask
        sym = slot_sym[slot]
        out[i] = sym
        x = freq[sym] * (x >> _RANS_SCALE) + slot - start[sym]
        while x < _RANS_L:
            x = (x << 8) | blob[pos]
            pos += 1
    return bytes(out)


def _compress(codec: int, data: bytes) -> bytes:
    if codec == 4:
        return rans_encode(data)
    if codec == 0:
        return data
    if codec == 1:
        return zlib.compress(data, 9)
    if codec == 2:
        return bz2.compress(data, 9)
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)


def _decompress(codec: int, data: bytes) -> bytes:
    if codec == 0:
        return data
    if codec == 1:
        return zlib.decompress(data)
    if codec == 2:
        return bz2.decompress(data)
    if codec == 3:
        return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    if codec == 4:
        return rans_decode(data)
    raise ValueError(f"unknown codec {codec}")


def _best(data: bytes) -> tuple[int, bytes]:
    """The smallest (codec, compressed) among stored, zlib, bz2, LZMA2 and order-0 rANS."""
    codecs = (0, 1, 2, 3, 4) if 16 <= len(data) <= _RANS_MAX else (0, 1, 2, 3)
    cands = [(c, _compress(c, data)) for c in codecs]
    return min(cands, key=lambda c: (len(c[1]), c[0]))


@dataclass
class _Region:
    offset: int
    length: int
    dtype: int
    shape: tuple[int, ...]


def _regions(data: bytes) -> list[_Region]:
    """Weight buffers of the flatbuffer as (offset, length, dtype, shape), sorted by offset."""
    from .convert.flatbuffer import _schema

    s = _schema()
    model = s.Model.GetRootAsModel(data, 0)
    seen: dict[int, _Region] = {}
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            if t.Buffer() >= model.BuffersLength() or t.Type() not in _TFLITE_TYPES:
                continue
            buf = model.Buffers(t.Buffer())
            n = int(buf.DataLength())
            if n <= _MIN_REGION or t.Buffer() in seen:
                continue
            start = int(buf._tab.Vector(buf._tab.Offset(4)))  # noqa: SLF001 - flatbuffers vector start
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (n,)
            dt = _TFLITE_TYPES[t.Type()]
            if int(np.prod(shape)) * _DTYPES[dt].itemsize != n:
                shape = (n // _DTYPES[dt].itemsize,)
            seen[t.Buffer()] = _Region(start, n, dt, shape)
    regions = sorted(seen.values(), key=lambda r: r.offset)
    for a, b in zip(regions, regions[1:]):
        if a.offset + a.length > b.offset:
            raise ModelLoadError("overlapping buffers in the TFLite flatbuffer; rebuild the model")
    return regions


def _table_and_codes(rows: np.ndarray) -> tuple[bytes, np.ndarray] | None:
    """Per row: a table of distinct non-zero values and the u8 code of every element."""
    tables, codes = [], np.zeros(rows.shape, dtype=np.uint8)
    if not np.issubdtype(rows.dtype, np.integer) and not np.isfinite(rows).all():
        return None
    for r, row in enumerate(rows):
        pos = np.unique(row[row > 0])
        neg = np.unique(row[row < 0])[::-1]
        if len(pos) > 127 or len(neg) > 127:
            return None
        codes[r][row > 0] = 2 * np.searchsorted(pos, row[row > 0]) + 1
        codes[r][row < 0] = 2 * (len(neg) - 1 - np.searchsorted(neg[::-1], row[row < 0])) + 2
        tables.append(bytes([len(pos), len(neg)]) + pos.tobytes() + neg.tobytes())
    return b"".join(tables), codes


def _rebuild_rows(tables: memoryview, pos: int, codes: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """Inverse of :func:`_table_and_codes`; returns the values and the new table position."""
    out = np.zeros(codes.shape, dtype=dtype)
    for r in range(codes.shape[0]):
        n_pos, n_neg = tables[pos], tables[pos + 1]
        pos += 2
        vals = np.frombuffer(tables, dtype=dtype, count=n_pos + n_neg, offset=pos)
        pos += (n_pos + n_neg) * dtype.itemsize
        lut = np.zeros(256, dtype=dtype)
        lut[1 : 2 * n_pos : 2] = vals[:n_pos]
        lut[2 : 2 * n_neg + 1 : 2] = vals[n_pos:]
        out[r] = lut[codes[r]]
    return out, pos


def _encode_region(raw: bytes, reg: _Region) -> tuple[int, int, int, bytes, bytes]:
    """Pick the smallest transform of one region: (transform, transposed, rows, table, codes)."""
    arr = np.frombuffer(raw, dtype=_DTYPES[reg.dtype])
    options = [(0, 0, 1, b"", raw)]
    lead = reg.shape[0] if len(reg.shape) >= 2 else 1
    for transform, rows in ((1, 1), (2, lead)):
        got = _table_and_codes(arr.reshape(rows, -1))
        if got is None:
            continue
        table, codes = got
        back, _ = _rebuild_rows(memoryview(table), 0, codes, _DTYPES[reg.dtype])
        if back.tobytes() != raw:  # e.g. -0.0 or NaN: not representable losslessly
            continue
        full = codes.reshape(lead, -1)
        options.append((transform, 0, rows, table, full.tobytes()))
        if lead > 1:
            options.append((transform, 1, rows, table, full.T.tobytes()))
    sizes = [len(lzma.compress(t[3] + t[4], format=lzma.FORMAT_RAW, filters=_QUICK_FILTERS)) for t in options]
    return options[int(np.argmin(sizes))]


def _streams(data: bytes) -> list[bytes]:
    """The four uncompressed streams (header+skeleton, value tables, codes, raw regions) of the format."""
    regions = _regions(data)
    head, tables, payload, skeleton, last = [struct.pack("<I", len(regions))], [], [], [], 0
    raws = []
    for reg in regions:
        raw = data[reg.offset : reg.offset + reg.length]
        transform, transposed, _, table, codes = _encode_region(raw, reg)
        lead = reg.shape[0] if len(reg.shape) >= 2 else 1
        head.append(_REGION.pack(reg.offset, reg.length, reg.dtype if transform else 0,
                                 transform, transposed, lead))
        tables.append(table)
        (payload if transform else raws).append(codes)
        skeleton.append(data[last : reg.offset])
        last = reg.offset + reg.length
    skeleton.append(data[last:])
    return [b"".join(head) + b"".join(skeleton), b"".join(tables), b"".join(payload), b"".join(raws)]


def encode(data: bytes) -> bytes:
    """Encode .tflite bytes into the entropy-coded package (see module doc for the format).

    Example::

        blob = encode(Path("model.tflite").read_bytes())
    """
    data = bytes(data)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError("entropy package: input is not a TFLite flatbuffer (no TFL3 identifier)")
    streams = _streams(data)
    out = [MAGIC, bytes([VERSION]), struct.pack("<Q", len(data)), hashlib.sha256(data).digest()]
    for s in streams:
        codec, packed = _best(s)
        out.append(struct.pack("<BI", codec, len(packed)) + packed)
    blob = b"".join(out)
    if decode(blob) != data:  # never ship a package that does not restore the model
        raise ModelLoadError("entropy package: round trip failed; report this model as a bug")
    return blob


def _read_streams(blob: bytes) -> tuple[int, bytes, list[bytes]]:
    if len(blob) < 44 or blob[:3] != MAGIC:
        raise ModelLoadError("not an edgepack entropy package (no EPK header); give a .epk file")
    if blob[3] != VERSION:
        raise ModelLoadError(f"entropy package version {blob[3]} is not supported (this edgepack reads {VERSION})")
    (length,) = struct.unpack_from("<Q", blob, 4)
    digest, pos, streams = blob[12:44], 44, []
    try:
        for _ in range(STREAMS):
            codec, n = struct.unpack_from("<BI", blob, pos)
            streams.append(_decompress(codec, blob[pos + 5 : pos + 5 + n]))
            pos += 5 + n
    except (struct.error, ValueError, IndexError, OSError, lzma.LZMAError, zlib.error) as e:
        raise ModelLoadError(f"entropy package is truncated or corrupt ({e}); download it again") from e
    return length, digest, streams


def decode(blob: bytes) -> bytes:
    """Restore the exact .tflite bytes from an entropy package; checks length and SHA-256.

    Example::

        tflite = decode(Path("model.tflite.epk").read_bytes())
    """
    length, digest, (head, tables, payload, raws) = _read_streams(bytes(blob))
    try:
        (n,) = struct.unpack_from("<I", head, 0)
        regs = [_REGION.unpack_from(head, 4 + i * _REGION.size) for i in range(n)]
        skeleton = memoryview(head)[4 + n * _REGION.size :]
        out, last, s_pos, t_pos, p_pos, r_pos, tview = [], 0, 0, 0, 0, 0, memoryview(tables)
        for offset, size, dt, transform, transposed, lead in regs:
            out.append(skeleton[s_pos : s_pos + offset - last])
            s_pos += offset - last
            if transform == 0:
                out.append(raws[r_pos : r_pos + size])
                r_pos += size
            else:
                dtype = _DTYPES[dt]
                count = size // dtype.itemsize
                codes = np.frombuffer(payload, dtype=np.uint8, count=count, offset=p_pos)
                p_pos += count
                if transposed:
                    codes = codes.reshape(-1, lead).T
                codes = np.ascontiguousarray(codes).reshape(lead if transform == 2 else 1, -1)
                vals, t_pos = _rebuild_rows(tview, t_pos, codes, dtype)
                out.append(vals.tobytes())
            last = offset + size
        out.append(skeleton[s_pos:])
        data = b"".join(bytes(x) for x in out)
    except (struct.error, ValueError, IndexError, KeyError) as e:
        raise ModelLoadError(f"entropy package is corrupt ({e}); download it again") from e
    if len(data) != length or hashlib.sha256(data).digest() != digest:
        raise ModelLoadError("entropy package does not restore the original model (SHA-256 mismatch); download it again")
    return data


def unpack(path_in: str | Path, path_out: str | Path) -> int:
    """Decode the package at ``path_in`` and write the .tflite to ``path_out``; returns its size.

    Example::

        unpack("model.tflite.epk", "model.tflite")
    """
    path_in, path_out = Path(path_in), Path(path_out)
    if not path_in.is_file():
        raise ModelLoadError(f"{path_in}: no such entropy package file")
    data = decode(path_in.read_bytes())
    tmp = path_out.with_name(path_out.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path_out)
    return len(data)


def order0_bytes(data: bytes) -> float:
    """Order-0 (memoryless) entropy of a byte string in bytes: the floor for a static Huffman/rANS coder."""
    if not data:
        return 0.0
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    p = counts[counts > 0] / len(data)
    return float(-(counts[counts > 0] * np.log2(p)).sum() / 8)


def stream_stats(data: bytes) -> list[dict]:
    """Per stream: raw bytes, each codec's output, and the order-0 entropy bound (for benchmarks).

    Example::

        for s in stream_stats(tflite_bytes): print(s["name"], s["lzma2"], s["order0_bound"])
    """
    names = ("skeleton", "tables", "codes", "raw")
    out = []
    for name, stream in zip(names, _streams(bytes(data))):
        row = {"name": name, "raw": len(stream), "order0_bound": round(order0_bytes(stream))}
        row.update({c: len(_compress(i, stream)) for i, c in ((1, "zlib"), (2, "bz2"), (3, "lzma2"), (4, "rans0"))
                    if i != 4 or len(stream) >= 16})
        out.append(row)
    return out


def report(data: bytes) -> dict:
    """Sizes for the report: .tflite bytes, package bytes, ratio and what zip/xz would give.

    Example::

        report(tflite_bytes)["package_bytes"]
    """
    blob = encode(data)
    return {"tflite_bytes": len(data), "package_bytes": len(blob),
            "ratio": round(len(data) / len(blob), 2),
            "zlib_bytes": len(zlib.compress(data, 9)),
            "xz_bytes": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))}
