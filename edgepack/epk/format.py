"""The .epk container: version 2 writer, version 1 and 2 readers (layout in :mod:`edgepack.epk.limits`).

Example::

    blob = encode(tflite_bytes)
    assert decode(blob) == tflite_bytes
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from ..errors import ModelLoadError
from . import codec
from .limits import (CODECS, HEADER_SIZE, ITEMSIZE, LZMA_ENCODER_DICT, MAGIC, MAX_OUTPUT, MIN_REGION, N_STREAMS,
                     READABLE_VERSIONS, REGION_SIZE, STORED, VERSION, CorruptPackageError, check_output_length,
                     corrupt, max_stream_length)
from .transform import DTYPES, encode_region, rebuild_rows, regions

_REGION = struct.Struct("<QIBBBI")
_STREAM = struct.Struct("<BII")


def streams(data: bytes, transposed: bool = True) -> list[bytes]:
    """The five raw streams (regions, skeleton, value tables, codes, raw regions) of ``data``."""
    regs = regions(data)
    head, tables, codes, raws, skeleton, last = [struct.pack("<I", len(regs))], [], [], [], [], 0
    for reg in regs:
        raw = data[reg.offset : reg.offset + reg.length]
        transform, column_major, lead, table, payload = encode_region(raw, reg, transposed)
        head.append(_REGION.pack(reg.offset, reg.length, reg.dtype if transform else 0, transform, column_major,
                                 lead))
        tables.append(table)
        (codes if transform else raws).append(payload)
        skeleton.append(data[last : reg.offset])
        last = reg.offset + reg.length
    skeleton.append(data[last:])
    return [b"".join(head), b"".join(skeleton), b"".join(tables), b"".join(codes), b"".join(raws)]


def _container(data: bytes, packed: list[tuple[int, int, bytes]]) -> bytes:
    heads = b"".join(_STREAM.pack(c, n, len(p)) for c, n, p in packed)
    return (MAGIC + bytes([VERSION]) + struct.pack("<Q", len(data)) + hashlib.sha256(data).digest() + heads
            + b"".join(p for _, _, p in packed))


def work_size(blob: bytes) -> int:
    """Work memory (bytes) the C decoder needs for a valid package: what ``epk_work_size()`` returns.

    Example::

        assert work_size(encode(tflite, max_work=32 * 1024)) <= 32 * 1024
    """
    heads = [_STREAM.unpack_from(blob, 44 + 9 * i) for i in range(N_STREAMS)]
    need, pos = 0, HEADER_SIZE
    for c, n, p in heads:
        if c == codec.LZMA:
            need += codec.lzma_work(blob[pos : pos + p], n)
        pos += p
    regs = _parse_regions(blob[HEADER_SIZE : HEADER_SIZE + heads[0][1]], struct.unpack_from("<Q", blob, 4)[0])
    return need + (max([r[1] // ITEMSIZE[r[2]] for r in regs if r[3] and r[4]], default=0) + 7) // 8 * 8


def _candidates(data: bytes, transposed: bool, dict_cap: int, small: bool = False) -> list[bytes]:
    """[regions layout, whole file as one stream] under one memory plan."""
    out = []
    for raw in (streams(data, transposed), [struct.pack("<I", 0), data, b"", b"", b""]):
        packed = [(STORED, raw[0])] + [codec.best(s, dict_cap, small) for s in raw[1:]]  # the region table is stored
        out.append(_container(data, [(c, len(s), p) for s, (c, p) in zip(raw, packed)]))
    return out


_PLANS = [(True, LZMA_ENCODER_DICT), (True, 1 << 14), (False, LZMA_ENCODER_DICT), (False, 1 << 14),
          (True, 1 << 14, True), (False, 1 << 14, True), (False, 1 << 12, True), (False, 0)]


def encode(data: bytes, max_work: int | None = None) -> bytes:
    """Encode .tflite bytes into a version-2 package; also tries the whole file as one LZMA stream.

    ``max_work`` bounds the C decoder's work memory (e.g. a microcontroller's free RAM): smaller
    LZMA dictionaries, then no column-major codes, then no LZMA at all (rANS needs none).

    Example::

        blob = encode(Path("model.tflite").read_bytes())
        ota = encode(Path("model.tflite").read_bytes(), max_work=16 * 1024)
    """
    data = bytes(data)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError("entropy package: input is not a TFLite flatbuffer (no TFL3 identifier)")
    if len(data) > MAX_OUTPUT:
        raise ModelLoadError(f"entropy package: {len(data):,}-byte model is above the {MAX_OUTPUT:,}-byte cap")
    if max_work is None:
        blob = min(_candidates(data, True, LZMA_ENCODER_DICT), key=len)
    else:
        fits = []  # memory plans, roomiest first, until the regions layout fits; the last needs no work memory
        for plan in _PLANS:
            cands = _candidates(data, *plan)
            fits += [b for b in cands if work_size(b) <= max_work]
            if work_size(cands[0]) <= max_work:
                break
        blob = min(fits, key=len)
    try:
        ok = decode(blob) == data
    except CorruptPackageError:
        ok = False
    if not ok:  # never ship a package that does not restore the model
        raise ModelLoadError("entropy package: round trip failed (e.g. the model compresses more than the "
                             "format's 4096x bomb limit); report this model as a bug")
    return blob


def _header(blob: bytes) -> tuple[int, int, bytes]:
    if len(blob) < 4 or blob[:3] != MAGIC:
        raise ModelLoadError("not an edgepack entropy package (no EPK header); give a .epk file")
    if blob[3] not in READABLE_VERSIONS:
        raise ModelLoadError(f"entropy package version {blob[3]} is not supported (this edgepack reads "
                             f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade edgepack")
    if len(blob) < 44:
        raise corrupt("header truncated")
    (length,) = struct.unpack_from("<Q", blob, 4)
    check_output_length(length, len(blob))
    return blob[3], length, blob[12:44]


def _read_v2(blob: bytes, length: int) -> list[bytes]:
    if len(blob) < HEADER_SIZE:
        raise corrupt("stream headers truncated")
    heads = [_STREAM.unpack_from(blob, 44 + 9 * i) for i in range(N_STREAMS)]
    for i, (c, n, _) in enumerate(heads):
        if n > max_stream_length(i, length):
            raise corrupt(f"stream {i} declares {n:,} bytes, more than a {length:,}-byte model needs")
        if c not in CODECS or (i == 0 and c != STORED):
            raise corrupt(f"stream {i} has codec {c}, not one of {CODECS} (the region table is stored)")
    if HEADER_SIZE + sum(p for _, _, p in heads) != len(blob):
        raise corrupt(f"stream lengths add up to {HEADER_SIZE + sum(p for _, _, p in heads):,} bytes, file has "
                      f"{len(blob):,}")
    out, pos = [], HEADER_SIZE
    for i, (c, n, p) in enumerate(heads):
        out.append(codec.decompress(c, blob[pos : pos + p], n))
        pos += p
        if i == 0:
            _check_layout(_parse_regions(out[0], length), length, [h[1] for h in heads])
    return out


def _read_v1(blob: bytes, length: int) -> list[bytes]:
    got, pos, cap = [], 44, 3 * length + 64
    for _ in range(4):
        if pos + 5 > len(blob):
            raise corrupt("stream header truncated")
        c, n = struct.unpack_from("<BI", blob, pos)
        if pos + 5 + n > len(blob):
            raise corrupt("stream truncated")
        got.append(codec.decompress_v1(c, blob[pos + 5 : pos + 5 + n], cap))
        pos += 5 + n
    if len(got[0]) < 4:
        raise corrupt("region header truncated")
    (n,) = struct.unpack_from("<I", got[0], 0)
    cut = 4 + REGION_SIZE * n
    if cut > len(got[0]):
        raise corrupt(f"{n:,} regions do not fit the header stream")
    return [got[0][:cut], got[0][cut:], *got[1:]]


def _parse_regions(head: bytes, length: int) -> list[tuple]:
    if len(head) < 4:
        raise corrupt("region table truncated")
    (n,) = struct.unpack_from("<I", head, 0)
    if len(head) != 4 + REGION_SIZE * n:
        raise corrupt(f"region table of {len(head)} bytes does not hold {n:,} regions")
    regs, last = [_REGION.unpack_from(head, 4 + i * REGION_SIZE) for i in range(n)], 0
    for offset, size, dt, transform, transposed, lead in regs:
        if offset < last or offset + size > length or size <= MIN_REGION:
            raise corrupt(f"region at {offset:,} (+{size:,}) overlaps or leaves the model")
        if transform > 2 or transposed > 1 or lead < 1 or (transform == 0) != (dt == 0) or (dt and dt not in ITEMSIZE):
            raise corrupt(f"region at {offset:,} has an invalid transform/dtype")
        if transform and (size % ITEMSIZE[dt] or ((transform == 2 or transposed) and (size // ITEMSIZE[dt]) % lead)):
            raise corrupt(f"region at {offset:,} does not divide into its rows")
        last = offset + size
    return regs


def _check_layout(regs: list[tuple], length: int, lens: list[int]) -> None:
    """The skeleton, codes and raw streams must hold exactly what the region table says."""
    total = sum(r[1] for r in regs)
    want = {1: length - total, 3: sum(r[1] // ITEMSIZE[r[2]] for r in regs if r[3]),
            4: sum(r[1] for r in regs if not r[3])}
    for i, n in want.items():
        if lens[i] != n:
            raise corrupt(f"stream {i} holds {lens[i]:,} bytes, the region table needs {n:,}")


def _assemble(regs: list[tuple], skeleton: bytes, tables: bytes, payload: bytes, raws: bytes) -> bytes:
    out, last, s_pos, t_pos, p_pos, r_pos, tview = [], 0, 0, 0, 0, 0, memoryview(tables)
    for offset, size, dt, transform, transposed, lead in regs:
        out.append(skeleton[s_pos : s_pos + offset - last])
        s_pos += offset - last
        if transform == 0:
            out.append(raws[r_pos : r_pos + size])
            r_pos += size
        else:
            dtype = DTYPES[dt]
            count = size // dtype.itemsize
            if p_pos + count > len(payload):
                raise corrupt("codes stream ends early")
            codes = np.frombuffer(payload, dtype=np.uint8, count=count, offset=p_pos)
            p_pos += count
            if transposed:
                codes = codes.reshape(-1, lead).T
            codes = np.ascontiguousarray(codes).reshape(lead if transform == 2 else 1, -1)
            vals, t_pos = rebuild_rows(tview, t_pos, codes, dtype)
            out.append(vals.tobytes())
        last = offset + size
    out.append(skeleton[s_pos:])
    if t_pos != len(tables):
        raise corrupt("value tables have trailing bytes")
    return b"".join(bytes(x) for x in out)


def decode(blob: bytes) -> bytes:
    """Restore the exact .tflite bytes from a version 1 or 2 package; checks length and SHA-256.

    Example::

        tflite = decode(Path("model.tflite.epk").read_bytes())
    """
    blob = bytes(blob)
    version, length, digest = _header(blob)
    regs_raw, skeleton, tables, payload, raws = (_read_v2 if version == 2 else _read_v1)(blob, length)
    regs = _parse_regions(regs_raw, length)
    if version == 1:
        _check_layout(regs, length, [0, len(skeleton), 0, len(payload), len(raws)])
    data = _assemble(regs, skeleton, tables, payload, raws)
    if len(data) != length or hashlib.sha256(data).digest() != digest:
        raise CorruptPackageError("entropy package does not restore the original model (SHA-256 mismatch); "
                                  "download it again")
    return data
