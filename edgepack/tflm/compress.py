"""Weights kept compressed in flash and decoded by TFLM itself (the ``TFLM_DECODE`` custom op).

For each constant weight tensor of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, the
smallest of these encodings is chosen (a tensor that would not shrink stays plain):

- ``lut``: the distinct values as a table (per channel where the quantization is per
  channel) and packed indices of ``bits`` = the width the most distinct values need.
  Encoded with the ``tflite-micro`` wheel's own compressor
  (``tflite_micro.tensorflow.lite.micro.compression``);
- ``prune``: a bitmask and the non-zero values (:mod:`.compress_codecs`);
- ``huffman``: a canonical Huffman code of the values (:mod:`.compress_codecs`).

TFLM's axis rules (kernels/decode_state_lut.cc): the channel count and axis come from
the decoded tensor's quantization, so the value tables follow it exactly: per channel on
its axis when quantized per channel (only axis 0 and the last axis decode: depthwise
weights ``[1, H, W, C]`` use axis 3), one table when quantized per tensor. (A per-channel
table set on a per-tensor quantized fully connected weight decodes wrongly: TFLM reads one
channel; per-channel dense weights on axis 0 decode bit-exactly.) Two bugs of the wheel are worked around: operator codes kept only
in ``deprecated_builtin_code`` (older converters) are copied to ``builtin_code`` before
the wheel reads the model (it would merge them into one opcode), and the encoded tensors
carry no quantization or names of their own (the file would grow).

Decoding restores the exact int8 values, so the compressed model computes what the
plain one computes; :func:`check_bit_exact` proves it on samples in the host TFLM.

Example::

    result = compress_model(tflite, CompressOptions())
    result.tflite            # the model to ship (the input bytes unchanged when nothing shrank)
    result.tensors[0]        # TensorChoice(name=..., encoding='lut', bits=4, bytes_before=..., bytes_after=...)
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from ..errors import EdgepackError, VerificationError

DECODE_OP = "TFLM_DECODE"
ENCODINGS = ("lut", "prune", "huffman")
# Ops whose weight input (index 1) is compressed.
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
MAX_LUT_BITS = 7  # decode_state_lut: index width 1-7, value table stride <= 128
# Flatbuffer bytes a compressed tensor adds besides its encoded data and ancillary tensor (the
# ancillary and decoded tensor tables, buffer entries, the DECODE operator): a first filter only;
# each remaining tensor's real change of the file is then measured by building it.
OVERHEAD_BYTES = 96
# Flash the DECODE kernel adds to the firmware: text of kernels/decode.cc + decode_state*.cc for
# Cortex-M4F, compiled -Os as every edgepack layout and the QEMU build compile them (arm-none-eabi-gcc;
# decode_state_lut.cc 4,124 B of it; 18,636 B at TFLM's -O2). ``auto`` compresses only when the model
# shrinks by more than this: otherwise the firmware would grow.
DECODE_CODE_BYTES = 6_288


@dataclass
class CompressOptions:
    """``encoding``: ``auto`` (per tensor the smallest of LUT / prune / Huffman / plain, and only
    when the model shrinks by more than ``code_bytes``, the DECODE kernel's flash), ``off`` (plain
    int8, the input bytes), or one of ``lut``/``prune``/``huffman`` only (whatever the kernel
    costs); ``lut_bits`` forces the LUT index width (tensors needing more stay plain)."""

    encoding: str = "auto"
    lut_bits: Optional[int] = None
    code_bytes: int = DECODE_CODE_BYTES  # the DECODE kernel's flash, weighed by ``auto`` (0: already linked)

    def allowed(self) -> tuple[str, ...]:
        if self.encoding == "off":
            return ()
        return ENCODINGS if self.encoding == "auto" else (self.encoding,)


@dataclass
class TensorChoice:
    """What happened to one weight tensor (the report's per-tensor row)."""

    tensor: int
    name: str
    op: str
    encoding: str  # lut / prune / huffman / plain
    bits: Optional[int]  # LUT index width, None otherwise
    bytes_before: int
    bytes_after: int  # encoded data + ancillary tensor (== bytes_before when plain)
    per_channel: bool
    reason: str = ""
    file_delta: Optional[int] = None  # measured change of the whole file when only this tensor is encoded

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CompressResult:
    tflite: bytes
    plain_bytes: int
    tensors: list[TensorChoice] = field(default_factory=list)
    code_bytes: int = 0  # the DECODE kernel's flash weighed against the saving
    dropped: str = ""  # why nothing was compressed although tensors could be

    @property
    def compressed(self) -> bool:
        return any(t.encoding != "plain" for t in self.tensors) and len(self.tflite) < self.plain_bytes

    def report(self) -> dict:
        out = {"plain_bytes": self.plain_bytes, "compressed_bytes": len(self.tflite),
               "saved_bytes": self.plain_bytes - len(self.tflite), "decode_op": self.compressed,
               "decode_code_bytes": self.code_bytes, "tensors": [t.as_dict() for t in self.tensors]}
        if self.dropped:
            out["dropped"] = self.dropped
        return out


def _modules():
    try:
        from tflite_micro.tensorflow.lite.micro.compression import (
            compressor, decode, decode_insert, lut, model_editor, spec)
        from tflite_micro.tensorflow.lite.micro.compression.compress import _apply_flatbuffer_alignment
    except ImportError as e:  # pragma: no cover - a dependency of edgepack
        raise EdgepackError("TFLM weight compression needs the tflite-micro package (pip install tflite-micro)") from e
    return compressor, decode, decode_insert, lut, model_editor, spec, _apply_flatbuffer_alignment


def read_model(data: bytes):
    """The wheel's model editor over ``data``, with operator codes fixed (wheel bug 1: codes only in
    ``deprecated_builtin_code`` would all read as 0 and merge into one opcode)."""
    model_editor = _modules()[4]
    model = model_editor.read(bytes(data))
    for oc in model.operator_codes:
        dep = oc._fb.deprecatedBuiltinCode or 0
        oc.builtin_code = max(oc.builtin_code or 0, dep)
    for sg in model.subgraphs:
        for op in sg.operators:
            op.opcode = model.operator_codes[op.opcode_index].builtin_code
    return model


def _op_names() -> dict[int, str]:
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tfl

    return {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}


def _candidates(model) -> list[tuple[Any, str, Optional[int]]]:
    """(tensor, op name, channel axis or None) of each compressible weight tensor of subgraph 0."""
    names = _op_names()
    sg = model.subgraphs[0]
    users: dict[int, list[str]] = {}
    for op in sg.operators:
        for t in op.inputs:
            if t is not None:
                users.setdefault(id(t), []).append(names.get(op.opcode, "?") if op.custom_code is None else "custom")
    by_buffer: dict[int, int] = {}
    for t in sg.tensors:
        if t.buffer is not None:
            by_buffer[id(t.buffer)] = by_buffer.get(id(t.buffer), 0) + 1
    out, seen = [], set()
    for op in sg.operators:
        name = names.get(op.opcode, "")
        if op.custom_code is not None or name not in WEIGHT_OPS or len(op.inputs) < 2 or op.inputs[1] is None:
            continue
        t = op.inputs[1]
        if id(t) in seen or t.buffer is None or not t.buffer.data or t.is_variable:
            continue
        seen.add(id(t))
        if set(users[id(t)]) != {name} or by_buffer.get(id(t.buffer), 0) != 1:
            continue  # shared with another op kind or buffer: the plain data would stay
        if t.array is None or t.array.dtype != np.int8 or t.quantization is None:
            continue
        q = t.quantization
        axis = None if len(q.scales) <= 1 else int(q.axis or 0)
        out.append((t, name, axis))
    return out


def lut_width(values: np.ndarray, axis: Optional[int]) -> tuple[int, int]:
    """(index bits, table stride): the width the most distinct values of a channel need.

    >>> lut_width(np.array([[1, 2, 1], [5, 5, 5]], np.int8), 0)
    (1, 2)
    """
    slices = [values] if axis is None else list(np.moveaxis(values, axis, 0))
    stride = max(int(np.unique(s).size) for s in slices)
    return max(1, (stride - 1).bit_length()), stride


def _lut_result(t, axis: Optional[int], bits: int):
    compressor, _, _, lut, _, spec, _ = _modules()
    mode = spec.PerTensor() if axis is None else spec.PerChannel(axis=axis)
    with contextlib.redirect_stderr(io.StringIO()):  # its "wider than necessary" note on a forced width
        return lut.LutCompressor().compress(t, spec.LookUpTableCompression(index_bitwidth=bits, mode=mode))


def _encode(t, op: str, axis: Optional[int], opts: CompressOptions) -> tuple[TensorChoice, Any]:
    """The smallest allowed encoding of tensor ``t`` (or plain, with the reason)."""
    from . import compress_codecs as codecs

    values = np.asarray(t.array)
    before = int(values.nbytes)
    row = TensorChoice(tensor=int(t.index if t.index is not None else -1), name=t.name or "", op=op,
                       encoding="plain", bits=None, bytes_before=before, bytes_after=before,
                       per_channel=axis is not None)
    if axis is not None and axis not in (0, values.ndim - 1):
        row.reason = f"channel axis {axis}: TFLM decodes axis 0 or the last axis only"
        return row, None
    options: list[tuple[int, str, Optional[int], Any]] = []
    allowed = opts.allowed()
    if "lut" in allowed:
        bits, stride = lut_width(values, axis)
        if opts.lut_bits is not None and opts.lut_bits < bits:
            row.reason = f"needs {bits}-bit indices, more than lut_bits {opts.lut_bits}"
        elif bits > MAX_LUT_BITS or stride > 128:
            row.reason = f"{stride} distinct values per {'channel' if axis is not None else 'tensor'}: over 128"
        else:
            res = _lut_result(t, axis, opts.lut_bits or bits)
            options.append((len(res.encoded_data) + len(res.ancillary_data), "lut", opts.lut_bits or bits, res))
    zeros = codecs.zero_points(t.quantization, values, axis)
    if "prune" in allowed:
        res = codecs.prune_encode(values, axis, zeros)
        if res is not None:
            options.append((len(res.encoded_data) + len(res.ancillary_data), "prune", None, res))
    if "huffman" in allowed:
        res = codecs.huffman_encode(values)
        if res is not None:
            options.append((len(res.encoded_data) + len(res.ancillary_data), "huffman", None, res))
    if not options:
        row.reason = row.reason or "no allowed encoding applies"
        return row, None
    size, enc, bits, res = min(options, key=lambda o: (o[0], ENCODINGS.index(o[1])))
    if size + OVERHEAD_BYTES >= before:
        row.reason = f"{enc} would take {size} B (+ ~{OVERHEAD_BYTES} B of flatbuffer entries) for {before} B: grows"
        return row, None
    row.encoding, row.bits, row.bytes_after, row.reason = enc, bits, size, ""
    return row, res


def compress_model(data: bytes, opts: Optional[CompressOptions] = None) -> CompressResult:
    """Compress the eligible weight tensors of ``data`` (see module doc).

    Returns the input bytes unchanged when ``encoding`` is off, nothing is eligible or the
    file would not shrink.
    """
    opts = opts or CompressOptions()
    data = bytes(data)
    result = CompressResult(tflite=data, plain_bytes=len(data), code_bytes=opts.code_bytes)
    if not opts.allowed():
        return result
    model = read_model(data)
    chosen = {}
    for t, op, axis in _candidates(model):
        row, res = _encode(t, op, axis, opts)
        result.tensors.append(row)
        if res is not None:
            chosen[t.index] = (row, res)
    if not chosen:
        return result
    base = len(_build(data, {}))
    for index, (row, res) in list(chosen.items()):  # what each tensor really changes in the file
        row.file_delta = len(_build(data, {index: res})) - base
        if row.file_delta >= 0:
            row.reason = f"{row.encoding} grows the file by {row.file_delta} B (tables, DECODE op, alignment)"
            row.encoding, row.bits, row.bytes_after = "plain", None, row.bytes_before
            del chosen[index]
    out = _build(data, {i: res for i, (_, res) in chosen.items()}) if chosen else data
    code = opts.code_bytes if opts.encoding == "auto" else 0
    if len(out) + code >= len(data):
        why = (f"the whole file would not shrink ({len(data)} -> {len(out)} B)" if len(out) >= len(data) else
               f"the model shrinks by {len(data) - len(out)} B, less than the DECODE kernel's {code} B of code")
        for row in result.tensors:
            if row.encoding != "plain":
                row.reason = f"{row.encoding} dropped: {why}"
                row.encoding, row.bits, row.bytes_after = "plain", None, row.bytes_before
        result.dropped = why
        return result
    result.tflite = out
    return result


def _build(data: bytes, results: dict) -> bytes:
    """The model with tensors ``results`` (index -> CompressionResult) replaced by DECODE of their
    encodings, rebuilt and aligned by the wheel (16-byte buffers: the 4-bit LUT path reads uint64)."""
    _, _, decode_insert, _, _, _, align = _modules()
    model = read_model(data)
    sg = model.subgraphs[0]
    originals = {id(t) for t in sg.tensors}
    encoded = {id(sg.tensors[i]) for i in results}
    if results:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decode_insert.insert_decode_operators(model, {(0, i): r for i, r in results.items()})
    for t in sg.tensors:  # names cost flash: only the decoded tensors keep theirs (wheel bug 2)
        if id(t) in encoded:  # wheel bug 2: the editor keeps the flatbuffer's quantization of encoded tensors
            t.name, t.quantization, t._fb.quantization = None, None, None
        elif id(t) not in originals:
            t.name = t.name[: -len("_decoded")] if t.name and t.name.endswith("_decoded") else None
    return bytes(align(model.build()))


def check_bit_exact(plain: bytes, compressed: bytes, samples: np.ndarray, arena_size: Optional[int] = None) -> dict:
    """Host TFLM outputs of ``compressed`` equal those of ``plain`` bit for bit on ``samples``
    (float, quantized like the device does); VerificationError otherwise.

    Example: ``check_bit_exact(plain, compress_model(plain).tflite, calibration[:32])``
    -> ``{"samples": 32, "bit_exact": True, ...}``
    """
    from .interpreter import Tflm
    from .parity import input_sets
    from ..runtime import quantize_input

    a, b = Tflm(plain, arena_size=arena_size), Tflm(compressed, arena_size=arena_size)
    n = int(len(samples))
    for i, sample in enumerate(input_sets(plain, samples)):  # one array per input (several-input models)
        xs = [quantize_input(np.asarray(xk, np.float32), d) for xk, d in zip(sample, a.inputs)]
        x = xs[0] if len(xs) == 1 else xs
        ya, yb = a.invoke_all(x), b.invoke_all(x)  # every output (several-output models)
        if any(p.shape != q.shape or p.tobytes() != q.tobytes() for p, q in zip(ya, yb)) or len(ya) != len(yb):
            raise VerificationError(f"the TFLM-compressed model differs from the plain one on sample {i} "
                                    "(decoding must restore the exact weights); package with recipe "
                                    "compress: {encoding: off} and report the model to edgepack")
    return {"samples": n, "bit_exact": True, "interpreter": "TFLM host (tflite-micro wheel) with DECODE"}


FIRMWARE_PARITY_SAMPLES = 32


@dataclass
class FirmwareCompression:
    """A firmware build's compression: the model to ship, its arena, the bit-exact proof, the report."""

    result: CompressResult
    arena: Any = None  # ArenaSize of the compressed model (None when nothing was compressed)
    arena_plain: Any = None
    bit_exact: Optional[dict] = None

    @property
    def tflite(self) -> bytes:
        return self.result.tflite

    def report(self) -> dict:
        out = self.result.report()
        if self.arena is not None:
            out["arena_bytes"] = {"plain": self.arena_plain.min_bytes if self.arena_plain else None,
                                  "compressed": self.arena.min_bytes,
                                  "note": "host TFLM bisection; decoded weights live in the arena"}
            out["bit_exact"] = self.bit_exact
        return out


def _samples(calibration: Optional[np.ndarray], model: bytes) -> np.ndarray:
    if calibration is not None and len(calibration):
        return calibration[:FIRMWARE_PARITY_SAMPLES].astype(np.float32)
    from .interpreter import Tflm

    shape = [8] + list(Tflm(model).input["shape"][1:])
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def compress_for_firmware(tflite: bytes, config: Any = None, calibration: Optional[np.ndarray] = None,
                          arena_plain: Any = None) -> FirmwareCompression:
    """Compress ``tflite`` for ``--target tflm`` (``config``: the recipe's ``compress`` section or None
    = auto), then measure the compressed model's arena and prove its outputs equal the plain
    model's bit for bit on the calibration samples (host TFLM with DECODE).

    Example::

        fc = compress_for_firmware(build.tflite, build.recipe.compress, build.calibration)
        fc.tflite, fc.arena.recommended_bytes, fc.report()["tensors"]
    """
    from .arena import find_arena

    opts = CompressOptions()
    if config is not None:
        opts = CompressOptions(encoding=config.encoding, lut_bits=config.lut_bits,
                               code_bytes=DECODE_CODE_BYTES if config.decode_code_bytes is None
                               else config.decode_code_bytes)
    try:
        result = compress_model(tflite, opts)
    except Exception as e:  # the wheel's editor on a model it cannot rebuild: ship the plain model
        result = CompressResult(tflite=bytes(tflite), plain_bytes=len(tflite), code_bytes=opts.code_bytes,
                                dropped=f"the tflite-micro compressor failed ({type(e).__name__}: {str(e)[:120]})")
    fc = FirmwareCompression(result=result, arena_plain=arena_plain)
    if not result.compressed:
        return fc
    try:
        fc.arena = find_arena(result.tflite)
        fc.bit_exact = check_bit_exact(tflite, result.tflite, _samples(calibration, tflite),
                                       fc.arena.recommended_bytes)
    except EdgepackError as e:  # never ship what was not proven: the plain model, saying why
        fc.result = CompressResult(tflite=bytes(tflite), plain_bytes=len(tflite), tensors=result.tensors,
                                   code_bytes=opts.code_bytes, dropped=f"plain int8 kept: {e}")
        for row in fc.result.tensors:
            row.encoding, row.bits, row.bytes_after = "plain", None, row.bytes_before
        fc.arena = fc.bit_exact = None
    return fc
