"""Entropy-coded download package for a .tflite (the Deep Compression "Huffman" stage).

A lossless encoding for over-the-air updates: the device (or the app) downloads the
small ``.epk`` blob and restores the exact ``.tflite`` bytes before loading it, with
:func:`decode` here, or with the shipped decoders (portable C for firmware and JNI, Java
for apps: :func:`decoder_sources`). It exploits what pruning and clustering leave in the
weights: few distinct values per tensor or per output channel, and many zeros.

1. Every constant buffer of an int8/float32/float16 weight tensor (> 64 bytes) is cut out
   of the flatbuffer; what is left (the skeleton: graph, shapes, scales) is kept verbatim.
2. Each buffer is kept raw or rank-coded (:mod:`edgepack.epk.transform`), whichever is smaller.
3. Five streams (region table, skeleton, value tables, codes, raw regions) are each stored,
   LZMA-coded or rANS-coded (:mod:`edgepack.epk.codec`), whichever is smallest; the whole
   file as one LZMA stream is a candidate too. Layout and limits: :mod:`edgepack.epk.limits`.

Example::

    blob = encode(tflite_bytes)
    assert decode(blob) == tflite_bytes
    unpack("model.tflite.epk", "model.tflite")
"""

from __future__ import annotations

import lzma
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError, OutputExistsError, UsageError
from . import codec, rans
from .format import decode, encode, streams, work_size
from .limits import MAX_OUTPUT, STREAM_NAMES, SUFFIX, VERSION, CorruptPackageError

__all__ = ["CorruptPackageError", "SUFFIX", "VERSION", "decode", "decoder_sources", "encode", "order0_bytes",
           "rans_decode", "rans_encode", "report", "stream_stats", "unpack", "work_size"]

rans_encode = rans.encode
rans_decode = rans.decode


def unpack(path_in: str | Path, path_out: str | Path, force: bool = False) -> int:
    """Decode the package at ``path_in`` into the file ``path_out``; returns its size.

    The .tflite is written to a temporary file in ``path_out``'s folder and renamed at the
    end: on any error nothing is left behind. An existing ``path_out`` is replaced only
    with ``force`` (and never when it is ``path_in`` itself).

    Example::

        unpack("model.tflite.epk", "model.tflite")
    """
    path_in, path_out = Path(path_in), Path(path_out)
    if not path_in.is_file():
        raise ModelLoadError(f"{path_in}: no such entropy package file")
    if path_out.is_dir():
        raise UsageError(f"{path_out}: is a folder; give the .tflite file to write, e.g. {path_out / 'model.tflite'}")
    if path_out.exists() and path_out.resolve() == path_in.resolve():
        raise UsageError(f"{path_out}: is the package itself; choose another output file")
    if path_out.exists() and not force:
        raise OutputExistsError(f"{path_out}: exists; pass --force to replace it or choose another output file")
    if not path_out.parent.is_dir():
        raise UsageError(f"{path_out.parent}: folder does not exist; create it or choose another output file")
    if path_in.stat().st_size > MAX_OUTPUT:
        raise CorruptPackageError(f"{path_in}: {path_in.stat().st_size:,} bytes is larger than any package; "
                                  "give a .epk file")
    data = decode(path_in.read_bytes())
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path_out.name}.", suffix=".part", dir=path_out.parent)
    except OSError as e:
        raise UsageError(f"{path_out.parent}: cannot write there ({e.strerror}); choose another output file") from e
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path_out)
    except OSError as e:
        raise UsageError(f"{path_out}: cannot write ({e.strerror}); free space or choose another output file") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(data)


def decoder_sources() -> dict[str, bytes]:
    """The shipped decoders (C and Java), as {relative path: bytes}, for a bundle's ``epk/`` folder.

    Example::

        for rel, data in decoder_sources().items(): (bundle / "epk" / rel).write_bytes(data)
    """
    from ..paths import data_dir

    root = data_dir("templates") / "epk"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".c", ".h", ".java", ".md")}


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

        for s in stream_stats(tflite_bytes): print(s["name"], s["lzma"], s["order0_bound"])
    """
    out = []
    for name, stream in zip(STREAM_NAMES, streams(bytes(data))):
        row = {"name": name, "raw": len(stream), "order0_bound": round(order0_bytes(stream))}
        if stream:
            row.update({"lzma": len(codec.compress(codec.LZMA, stream)), "rans0": len(rans.encode(stream))})
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
