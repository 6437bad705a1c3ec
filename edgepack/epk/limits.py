"""Every format decision of the ``.epk`` download package, in one place.

The Python reader, the C decoder (templates/epk/c/epk.h) and the Java decoder
(templates/epk/java/.../EpkDecoder.java) apply exactly these limits, so the three
reject the same bad files; ``tests/epk/test_epk_decoders.py`` checks they agree.

Format version 2 (little endian; version 1 files are still read by Python)::

    b"EPK" + u8 version (2)
    u64  length of the original .tflite           <= MAX_OUTPUT and <= MAX_RATIO * file size + RATIO_SLACK
    32 B SHA-256 of the original .tflite          (checked after the last byte)
    5 x  stream header: u8 codec, u32 raw length, u32 packed length
    the 5 packed streams, back to back; the file ends exactly after the last one

    stream 0 regions : (always stored: a decoder reads it in place) u32 n, then n x
                       (u64 offset, u32 length, u8 dtype, u8 transform, u8 transposed, u32 lead)
    stream 1 skeleton: the .tflite minus all regions
    stream 2 tables  : per table u8 n_pos, u8 n_neg, values (dtype bytes)
    stream 3 codes   : one u8 code per weight of the rank-coded regions
    stream 4 raw     : bytes of the regions kept raw

Codecs (one per stream, chosen by size among those every decoder implements):
``STORED`` (packed = raw), ``LZMA`` (u8 properties (pb*5+lp)*9+lc, u32 dictionary size,
then a raw LZMA1 stream; the decoder stops after the raw length) and ``RANS``
(static order-0 rANS, see :mod:`edgepack.epk.rans`). zlib and bz2 (version 1 only)
never won a stream on the corpus in bench/codec_bench.py and have no shipped decoders.

Decisions (measured by bench/codec_bench.py; figures in the helper's report):

- Codecs are limited to those with shipped decoders. brotli -q11 is 0.2-0.9% smaller on some plain
  int8 models (MNIST int8, ResNet-8) and is not used: it needs a dependency on Android
  (org.brotli:dec) and its 120 KB dictionary in a firmware's flash, for under 1% of download size.
  Where xz/LZMA would win, the whole file as one LZMA stream is an encoder candidate (stream 1 =
  the file, no regions), so the package is never larger than that.
- The region table is stored (read in place: a decoder needs no memory to hold it).
- ``encode(max_work=...)`` bounds the C decoder's work memory (LZMA windows and probabilities,
  column-major codes) for microcontrollers; rANS and stored streams need none.
- Version 1 files (zlib/bz2/LZMA2/rANS streams) are still read by Python, with the same bounds;
  the C and Java decoders read version 2 only and say so.

Example::

    check_output_length(n, len(blob))  # raises CorruptPackageError when n is implausible
"""

from __future__ import annotations

from ..errors import ModelLoadError

MAGIC = b"EPK"
VERSION = 2
READABLE_VERSIONS = (1, 2)
SUFFIX = ".epk"
N_STREAMS = 5
STREAM_NAMES = ("regions", "skeleton", "tables", "codes", "raw")
HEADER_SIZE = 3 + 1 + 8 + 32 + N_STREAMS * 9
REGION_SIZE = 19  # u64 offset, u32 length, u8 dtype, u8 transform, u8 transposed, u32 lead

STORED, LZMA, RANS = 0, 3, 4
CODECS = (STORED, LZMA, RANS)

MAX_OUTPUT = 1 << 30  # no .tflite above 1 GiB is packed or unpacked
MAX_RATIO = 4096  # output length <= MAX_RATIO * package size + RATIO_SLACK (decompression bombs)
RATIO_SLACK = 1 << 16
MIN_REGION = 64  # regions are buffers of more than this many bytes
MAX_RANK = 127  # distinct positive (or negative) values per rank table

RANS_SCALE_BITS = 14  # symbol frequencies sum to 2**14
RANS_L = 1 << 23  # lower bound of the 32-bit state; also the encoder's initial (= decoder's final) state
RANS_X_MAX = 1 << 31  # the state stays below this

LZMA_BASE_PROBS = 1846  # LZMA probabilities besides the 0x300 << (lc + lp) literal ones
LZMA_MAX_LCLP = 4  # lc + lp
LZMA_MAX_PB = 4
LZMA_MIN_DICT = 1 << 12
LZMA_MAX_DICT = 1 << 20  # the decoder's window is min(dictionary, raw length)
LZMA_ENCODER_DICT = 1 << 16  # what the encoder writes by default (fits microcontroller RAM)

DTYPE_RAW, DTYPE_INT8, DTYPE_F32, DTYPE_F16 = 0, 1, 2, 3
ITEMSIZE = {DTYPE_INT8: 1, DTYPE_F32: 4, DTYPE_F16: 2}
TRANSFORM_RAW, TRANSFORM_RANK, TRANSFORM_RANK_ROWS = 0, 1, 2


class CorruptPackageError(ModelLoadError):
    """A .epk file that is truncated, corrupt, hostile or of an unknown version."""


def corrupt(what: str) -> CorruptPackageError:
    return CorruptPackageError(f"entropy package is corrupt or truncated ({what}); download it again")


def check_output_length(length: int, file_size: int) -> None:
    """The declared .tflite length must be under the hard cap and plausible for the file's size."""
    if length > MAX_OUTPUT:
        raise corrupt(f"declares {length:,} output bytes, above the {MAX_OUTPUT:,}-byte cap")
    if length > MAX_RATIO * file_size + RATIO_SLACK:
        raise corrupt(f"declares {length:,} output bytes from {file_size:,}: more than {MAX_RATIO}x")


def max_stream_length(index: int, output_length: int) -> int:
    """Upper bound of stream ``index``'s raw length for a .tflite of ``output_length`` bytes."""
    if index == 0:
        return 4 + REGION_SIZE * (output_length // (MIN_REGION + 1))
    if index == 2:  # a table per row: 2 bytes + at most the row's own bytes
        return 3 * output_length
    return output_length


def rans_max_symbols(payload_length: int, max_freq: int) -> int:
    """Most symbols ``payload_length`` coded bytes can carry when no frequency exceeds ``max_freq``.

    Each symbol costs at least log2(2**14 / max_freq) > (2**14 - max_freq) / 2**14 bits, and the
    payload holds 8 bits a byte plus 8 bits of state slack. (A single-symbol table costs 0 bits: no
    bound but the raw length.)
    """
    scale = 1 << RANS_SCALE_BITS
    if max_freq >= scale:
        return MAX_OUTPUT * 3
    return (8 * payload_length + 16) * scale // (scale - max_freq)
