"""Weight regions of a .tflite and their rank transform (few distinct values -> small codes).

A region is a constant buffer of an int8/float32/float16 tensor of more than 64 bytes. Its
``rank`` transform stores one table of distinct non-zero values (``rank_rows``: one per output
channel) and a u8 code per weight: 0 for zero, 2p-1 for the p-th positive value ascending, 2q for
the q-th negative value counting from zero. ``transposed`` stores the codes column-major.

Example::

    for reg in regions(tflite_bytes): print(reg.offset, reg.length, reg.shape)
"""

from __future__ import annotations

import lzma
from dataclasses import dataclass

import numpy as np

from ..errors import ModelLoadError
from .limits import DTYPE_F16, DTYPE_F32, DTYPE_INT8, ITEMSIZE, MAX_RANK, MIN_REGION, corrupt

DTYPES = {DTYPE_INT8: np.dtype(np.int8), DTYPE_F32: np.dtype("<f4"), DTYPE_F16: np.dtype("<f2")}
_TFLITE_TYPES = {9: DTYPE_INT8, 0: DTYPE_F32, 1: DTYPE_F16}  # schema TensorType INT8, FLOAT32, FLOAT16
_QUICK = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}]  # ranks candidate transforms


@dataclass
class Region:
    offset: int
    length: int
    dtype: int
    shape: tuple[int, ...]


def regions(data: bytes) -> list[Region]:
    """Weight buffers of the flatbuffer, sorted by offset."""
    from ..convert.flatbuffer import tflite_schema

    model = tflite_schema().Model.GetRootAsModel(data, 0)
    seen: dict[int, Region] = {}
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            if t.Buffer() >= model.BuffersLength() or t.Type() not in _TFLITE_TYPES:
                continue
            buf = model.Buffers(t.Buffer())
            n = int(buf.DataLength())
            if n <= MIN_REGION or t.Buffer() in seen:
                continue
            start = int(buf._tab.Vector(buf._tab.Offset(4)))  # noqa: SLF001 - flatbuffers vector start
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (n,)
            dt = _TFLITE_TYPES[t.Type()]
            if int(np.prod(shape)) * ITEMSIZE[dt] != n:
                shape = (n // ITEMSIZE[dt],)
            seen[t.Buffer()] = Region(start, n, dt, shape)
    out = sorted(seen.values(), key=lambda r: r.offset)
    for a, b in zip(out, out[1:]):
        if a.offset + a.length > b.offset:
            raise ModelLoadError("overlapping buffers in the TFLite flatbuffer; rebuild the model")
    return out


def table_and_codes(rows: np.ndarray) -> tuple[bytes, np.ndarray] | None:
    """Per row: a table of distinct non-zero values and the u8 code of every element (None: not rankable)."""
    tables, codes = [], np.zeros(rows.shape, dtype=np.uint8)
    if not np.issubdtype(rows.dtype, np.integer) and not np.isfinite(rows).all():
        return None
    for r, row in enumerate(rows):
        pos = np.unique(row[row > 0])
        neg = np.unique(row[row < 0])[::-1]
        if len(pos) > MAX_RANK or len(neg) > MAX_RANK:
            return None
        codes[r][row > 0] = 2 * np.searchsorted(pos, row[row > 0]) + 1
        codes[r][row < 0] = 2 * (len(neg) - 1 - np.searchsorted(neg[::-1], row[row < 0])) + 2
        tables.append(bytes([len(pos), len(neg)]) + pos.tobytes() + neg.tobytes())
    return b"".join(tables), codes


def rebuild_rows(tables: memoryview, pos: int, codes: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """Inverse of :func:`table_and_codes`; validates every table and code; (values, new table position)."""
    out = np.zeros(codes.shape, dtype=dtype)
    for r in range(codes.shape[0]):
        if pos + 2 > len(tables):
            raise corrupt("value tables end early")
        n_pos, n_neg = tables[pos], tables[pos + 1]
        pos += 2
        if n_pos > MAX_RANK or n_neg > MAX_RANK or pos + (n_pos + n_neg) * dtype.itemsize > len(tables):
            raise corrupt(f"value table of {n_pos}+{n_neg} entries is invalid or truncated")
        vals = np.frombuffer(tables, dtype=dtype, count=n_pos + n_neg, offset=pos)
        pos += (n_pos + n_neg) * dtype.itemsize
        lut, valid = np.zeros(256, dtype=dtype), np.zeros(256, dtype=bool)
        lut[1 : 2 * n_pos : 2], valid[1 : 2 * n_pos : 2] = vals[:n_pos], True
        lut[2 : 2 * n_neg + 1 : 2], valid[2 : 2 * n_neg + 1 : 2] = vals[n_pos:], True
        valid[0] = True
        if not valid[codes[r]].all():
            raise corrupt("a weight code points outside its value table")
        out[r] = lut[codes[r]]
    return out, pos


def encode_region(raw: bytes, reg: Region, transposed: bool = True) -> tuple[int, int, int, bytes, bytes]:
    """The smallest transform of one region: (transform, transposed, lead, table, codes or raw bytes).

    ``transposed=False`` never stores codes column-major (a decoder buffers such a region's codes).
    """
    arr = np.frombuffer(raw, dtype=DTYPES[reg.dtype])
    lead = reg.shape[0] if len(reg.shape) >= 2 else 1
    options = [(0, 0, lead, b"", raw)]
    for transform, rows in ((1, 1), (2, lead)):
        got = table_and_codes(arr.reshape(rows, -1))
        if got is None:
            continue
        table, codes = got
        back, _ = rebuild_rows(memoryview(table), 0, codes, DTYPES[reg.dtype])
        if back.tobytes() != raw:  # e.g. -0.0 or NaN: not representable losslessly
            continue
        full = codes.reshape(lead, -1)
        options.append((transform, 0, lead, table, full.tobytes()))
        if lead > 1 and transposed:
            options.append((transform, 1, lead, table, full.T.tobytes()))
    sizes = [len(lzma.compress(t[3] + t[4], format=lzma.FORMAT_RAW, filters=_QUICK)) for t in options]
    return options[int(np.argmin(sizes))]
