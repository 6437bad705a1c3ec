"""The graph rewrite behind patch-based inference (:mod:`.patches`): a stage of the int8 graph run tile by tile.

A *stage* is a chain of ops at the start of the graph (CONV_2D, DEPTHWISE_CONV_2D, AVERAGE/MAX_POOL_2D,
PAD and one-input elementwise ops such as RELU or QUANTIZE), each feeding only the next. For a tile grid
of the stage output, every tile's input region is found backwards through the chain (kernel, stride,
dilation, padding), sliced from the stage input (STRIDED_SLICE), and every op is copied per tile with the
same weight tensors (no flash added); a SAME op becomes a VALID one on the haloed tile, with an explicit
PAD (value: the input zero point, what TFLM's SAME padding adds) only where the tile touches the true
image border. CONCATENATION assembles the tiles into the stage's original output tensor, so the rest of
the graph is untouched. Integer arithmetic per output pixel is unchanged: outputs are bit-exact.

Example::

    stage = find_chain(model_bytes)                       # [Layer, ...] from op 0
    patched, info = rewrite(model_bytes, stage[:4], (4, 1))  # 4 horizontal strips of the first 4 ops
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np

UNARY = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "QUANTIZE", "DEQUANTIZE",
                   "LEAKY_RELU", "PRELU_NONE"})
WINDOWED = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"})


@dataclass(frozen=True)
class Layer:
    """One op of a stage as the tiler sees it (rows and columns alike: (h, w) pairs)."""

    op: int  # op index in the subgraph
    name: str
    src: int  # activation input tensor
    dst: int  # output tensor
    k: tuple[int, int]
    s: tuple[int, int]
    d: tuple[int, int]
    pad: tuple[int, int]  # rows/cols of padding before the image (SAME or a PAD op); after: implied
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    macs_per_px: int  # MACs per output pixel (all channels)

    def need(self, axis: int, a: int, b: int) -> tuple[int, int]:
        """Input span [lo, hi) (may leave the image: padding) that output span [a, b) reads along ``axis``."""
        eff = (self.k[axis] - 1) * self.d[axis] + 1
        return a * self.s[axis] - self.pad[axis], (b - 1) * self.s[axis] - self.pad[axis] + eff


def _names(s, enum: str) -> dict[int, str]:
    return {v: k for k, v in vars(getattr(s, enum)).items() if not k.startswith("_")}


def _load(model_bytes: bytes):
    from ..convert.flatbuffer import tflite_schema
    from ..keras_compat import tf

    tf()
    from tensorflow.lite.tools import flatbuffer_utils as fu

    return tflite_schema(), fu.convert_bytearray_to_object(bytearray(model_bytes))


def _op_name(s, model, op) -> str:
    oc = model.operatorCodes[op.opcodeIndex]
    if oc.customCode:
        return "CUSTOM"
    return _names(s, "BuiltinOperator").get(max(oc.builtinCode, oc.deprecatedBuiltinCode), "?")


def _const(model, sub, t: int) -> Optional[np.ndarray]:
    tt = sub.tensors[t]
    buf = model.buffers[tt.buffer] if 0 < tt.buffer < len(model.buffers) else None
    if buf is None or buf.data is None or len(buf.data) == 0:
        return None
    dtype = {2: "<i4", 4: "<i8", 9: "i1", 3: "u1", 0: "<f4"}.get(tt.type)
    return None if dtype is None else np.frombuffer(bytes(np.asarray(buf.data, np.uint8)), dtype).reshape(tt.shape)


def _layer(s, model, sub, i: int, op) -> Optional[Layer]:
    """The op as a Layer, or None when it cannot be tiled (the stage ends before it)."""
    name = _op_name(s, model, op)
    acts = [t for t in op.inputs if t >= 0 and _const(model, sub, t) is None]
    if len(acts) != 1 or len(op.outputs) != 1:
        return None
    src, dst = int(acts[0]), int(op.outputs[0])
    ish, osh = list(sub.tensors[src].shape), list(sub.tensors[dst].shape)
    if len(ish) != 4 or len(osh) != 4 or ish[0] != 1 or osh[0] != 1:
        return None
    in_hw, out_hw = (int(ish[1]), int(ish[2])), (int(osh[1]), int(osh[2]))
    one = (1, 1)
    if name in UNARY:
        return Layer(i, name, src, dst, one, one, one, (0, 0), in_hw, out_hw, 0) if in_hw == out_hw else None
    if name == "PAD":
        pads = _const(model, sub, op.inputs[1]) if len(op.inputs) > 1 else None
        if pads is None or len(op.inputs) > 2 or pads.shape != (4, 2) or pads[0].any() or pads[3].any():
            return None  # padding batch/channels, or an explicit constant value: not a border pad
        q_in, q_out = sub.tensors[src].quantization, sub.tensors[dst].quantization
        if q_in is not None and q_out is not None and (list(q_in.zeroPoint or []) != list(q_out.zeroPoint or [])):
            return None
        return Layer(i, name, src, dst, one, one, one, (int(pads[1][0]), int(pads[2][0])), in_hw, out_hw, 0)
    if name not in WINDOWED:
        return None
    o = op.builtinOptions
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = sub.tensors[op.inputs[1]].shape  # conv [oc, kh, kw, ic]; depthwise [1, kh, kw, oc]
        k, d = (w[1], w[2]), (o.dilationHFactor or 1, o.dilationWFactor or 1)
        per_px = osh[3] * w[1] * w[2] * (w[3] if name == "CONV_2D" else 1)
    else:
        k, d, per_px = (o.filterHeight, o.filterWidth), one, 0
    st = (o.strideH, o.strideW)
    pad = (0, 0)
    if o.padding == s.Padding.SAME:
        totals = [max((out_hw[a] - 1) * st[a] + (k[a] - 1) * d[a] + 1 - in_hw[a], 0) for a in (0, 1)]
        if name.endswith("POOL_2D") and any(totals):
            return None  # pooling ignores padded cells (not a zero-point pad): stage ends here
        pad = (totals[0] // 2, totals[1] // 2)
    return Layer(i, name, src, dst, _ints(k), _ints(st), _ints(d), _ints(pad), in_hw, out_hw, int(per_px))


def _ints(pair) -> tuple[int, int]:
    return int(pair[0]), int(pair[1])


def find_chain(model_bytes: bytes) -> list[Layer]:
    """The longest tileable chain of ops from the first op: each op's only activation input is the
    previous op's output and nothing else reads that output. Empty when op 0 cannot be tiled."""
    s, model = _load(model_bytes)
    if len(model.subgraphs) != 1:
        return []
    sub = model.subgraphs[0]
    readers: dict[int, int] = {}
    for op in sub.operators:
        for t in op.inputs:
            readers[int(t)] = readers.get(int(t), 0) + 1
    outputs = {int(t) for t in sub.outputs}
    chain: list[Layer] = []
    for i, op in enumerate(sub.operators):
        lay = _layer(s, model, sub, i, op)
        if lay is None or (chain and lay.src != chain[-1].dst) or (not chain and lay.src not in set(map(int, sub.inputs))):
            break
        chain.append(lay)
        if readers.get(lay.dst, 0) != 1 or lay.dst in outputs:
            break  # its output is read elsewhere too: the stage must end with it
    return chain


def _spans(n: int, parts: int) -> list[tuple[int, int]]:
    cuts = [round(n * j / parts) for j in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


@dataclass
class TileOp:
    """One op of one tile: the layer, its output region (rows, cols) and the border pads it needs."""

    layer: Layer
    out: tuple[tuple[int, int], tuple[int, int]]
    pads: tuple[int, int, int, int]  # top, bottom, left, right


def tile_plan(chain: list[Layer], grid: tuple[int, int]) -> list[list[TileOp]]:
    """Per tile (row-major), the ops from the first to the last layer with their regions."""
    last = chain[-1]
    tiles = []
    for rows in _spans(last.out_hw[0], grid[0]):
        for cols in _spans(last.out_hw[1], grid[1]):
            ops, region = [], (rows, cols)
            for lay in reversed(chain):
                need = [lay.need(a, *region[a]) for a in (0, 1)]
                clip = [(max(lo, 0), min(hi, lay.in_hw[a])) for a, (lo, hi) in enumerate(need)]
                pads = (clip[0][0] - need[0][0], need[0][1] - clip[0][1], clip[1][0] - need[1][0], need[1][1] - clip[1][1])
                ops.append(TileOp(lay, region, pads))
                region = (clip[0], clip[1])
            ops.reverse()
            tiles.append((region, ops))
    return tiles


def extra_macs(chain: list[Layer], grid: tuple[int, int]) -> tuple[int, int]:
    """(MACs of the stage as tiled, MACs of the stage whole): the halo's recomputation."""
    whole = sum(lay.macs_per_px * lay.out_hw[0] * lay.out_hw[1] for lay in chain)
    tiled = sum(t.layer.macs_per_px * (t.out[0][1] - t.out[0][0]) * (t.out[1][1] - t.out[1][0])
                for _, ops in tile_plan(chain, grid) for t in ops)
    return tiled, whole


def _opcode(s, model, code: int, version: int) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code and not oc.customCode:
            return i
    oc = s.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


class _Builder:
    """Appends tensors, constants and ops to a ModelT's main subgraph."""

    def __init__(self, s, model):
        self.s, self.model, self.sub = s, model, model.subgraphs[0]
        self.ops: list = []
        self.consts: dict[bytes, int] = {}

    def tensor(self, like: int, hw: tuple[int, int], name: str) -> int:
        src = self.sub.tensors[like]
        t = copy.copy(src)
        t.shape = np.array([1, hw[0], hw[1], src.shape[3]], dtype=np.int32)
        t.shapeSignature, t.name, t.buffer = None, name.encode(), 0
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def const(self, values: np.ndarray, name: str) -> int:
        """An int32 constant; equal ones are shared (each tensor costs TFLM persistent bytes)."""
        key = np.asarray(values, dtype="<i4").tobytes() + bytes(str(values.shape), "ascii")
        if key in self.consts:
            return self.consts[key]
        buf = self.s.BufferT()
        buf.data = np.asarray(values, dtype="<i4").view(np.uint8).ravel()
        self.model.buffers.append(buf)
        t = self.s.TensorT()
        t.shape, t.type, t.buffer, t.name = np.array(values.shape, np.int32), self.s.TensorType.INT32, \
            len(self.model.buffers) - 1, name.encode()
        self.sub.tensors.append(t)
        self.consts[key] = len(self.sub.tensors) - 1
        return self.consts[key]

    def op(self, code: int, version: int, inputs: list[int], outputs: list[int], opt_type: int, opts) -> None:
        o = self.s.OperatorT()
        o.opcodeIndex = _opcode(self.s, self.model, code, version)
        o.inputs, o.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        o.builtinOptionsType, o.builtinOptions = opt_type, opts
        self.ops.append(o)

    def slice(self, src: int, rows, cols, dst: int, tag: str) -> None:
        c = int(self.sub.tensors[src].shape[3])
        begin = self.const(np.array([0, rows[0], cols[0], 0]), f"{tag}/begin")
        end = self.const(np.array([1, rows[1], cols[1], c]), f"{tag}/end")
        strides = self.const(np.array([1, 1, 1, 1]), f"{tag}/strides")
        s = self.s
        self.op(s.BuiltinOperator.STRIDED_SLICE, 2, [src, begin, end, strides], [dst],
                s.BuiltinOptions.StridedSliceOptions, s.StridedSliceOptionsT())

    def pad(self, src: int, pads, dst: int, tag: str) -> None:
        t, b, l, r = pads
        amounts = self.const(np.array([[0, 0], [t, b], [l, r], [0, 0]]), f"{tag}/paddings")
        s = self.s
        self.op(s.BuiltinOperator.PAD, 2, [src, amounts], [dst], s.BuiltinOptions.PadOptions, s.PadOptionsT())

    def concat(self, srcs: list[int], axis: int, dst: int) -> None:
        s = self.s
        opts = s.ConcatenationOptionsT()
        opts.axis = axis
        self.op(s.BuiltinOperator.CONCATENATION, 2, srcs, [dst], s.BuiltinOptions.ConcatenationOptions, opts)


@dataclass
class Rewrite:
    """What :func:`rewrite` built: the tile outputs, in concatenation order, and where each sits in
    the stage output (byte offset when the grid is strips along rows, else None)."""

    stage_output: int
    tile_outputs: list[int]
    offsets: Optional[list[int]]
    ops_added: int


def _compact(sub) -> None:
    """Drop tensors no op, input or output names; renumber the rest."""
    used = {int(t) for op in sub.operators for t in list(op.inputs) + list(op.outputs) if t >= 0}
    used |= {int(t) for t in sub.inputs} | {int(t) for t in sub.outputs}
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}
    sub.tensors = [sub.tensors[i] for i in keep]
    for op in sub.operators:
        op.inputs = np.array([remap[int(t)] if t >= 0 else -1 for t in op.inputs], np.int32)
        op.outputs = np.array([remap[int(t)] for t in op.outputs], np.int32)
    sub.inputs = np.array([remap[int(t)] for t in sub.inputs], np.int32)
    sub.outputs = np.array([remap[int(t)] for t in sub.outputs], np.int32)
    return remap


def rewrite(model_bytes: bytes, chain: list[Layer], grid: tuple[int, int]) -> tuple[bytes, Rewrite]:
    """``model_bytes`` with ``chain`` (a prefix of :func:`find_chain`) run as a ``grid`` (rows, cols) of tiles."""
    from .memplan import pack_model

    s, model = _load(model_bytes)
    sub = model.subgraphs[0]
    b = _Builder(s, model)
    names = _names(s, "BuiltinOperator")
    code = {v: k for k, v in names.items()}
    stage_in, stage_out = chain[0].src, chain[-1].dst
    tile_outs, tile_rows = [], []
    for j, (region, ops) in enumerate(tile_plan(chain, grid)):
        tag = f"patch{j}"
        cur = b.tensor(stage_in, (region[0][1] - region[0][0], region[1][1] - region[1][0]), f"{tag}/input")
        b.slice(stage_in, region[0], region[1], cur, f"{tag}/slice")
        for n, t in enumerate(ops):
            lay, orig = t.layer, sub.operators[t.layer.op]
            out_hw = (t.out[0][1] - t.out[0][0], t.out[1][1] - t.out[1][0])
            h, w = (int(x) for x in sub.tensors[cur].shape[1:3])
            padded = (h + t.pads[0] + t.pads[1], w + t.pads[2] + t.pads[3])
            if lay.name == "PAD":
                if any(t.pads):
                    nxt = b.tensor(lay.dst, padded, f"{tag}/op{lay.op}")
                    b.pad(cur, t.pads, nxt, f"{tag}/op{lay.op}")
                    cur = nxt
                continue
            if any(t.pads):
                nxt = b.tensor(lay.src, padded, f"{tag}/op{lay.op}/border")
                b.pad(cur, t.pads, nxt, f"{tag}/op{lay.op}/border")
                cur = nxt
            dst = b.tensor(lay.dst, out_hw, f"{tag}/op{lay.op}")
            opts = copy.copy(orig.builtinOptions)
            if lay.name in WINDOWED:
                opts.padding = s.Padding.VALID
            ins = [cur if int(x) == lay.src else int(x) for x in orig.inputs]
            b.op(code[lay.name], model.operatorCodes[orig.opcodeIndex].version, ins, [dst], orig.builtinOptionsType,
                 opts)
            cur = dst
        tile_outs.append(cur)
        tile_rows.append(t.out)
    # assemble: each row of tiles along W, then the rows along H (one concat for strips)
    n_cols = len({r[1] for r in tile_rows})
    rows = [tile_outs[i : i + n_cols] for i in range(0, len(tile_outs), n_cols)]
    row_tensors = []
    for i, row in enumerate(rows):
        if len(row) == 1:
            row_tensors.append(row[0])
            continue
        h = tile_rows[i * n_cols][0][1] - tile_rows[i * n_cols][0][0]
        dst = stage_out if len(rows) == 1 else b.tensor(stage_out, (h, chain[-1].out_hw[1]), f"patchrow{i}")
        b.concat(row, 2, dst)
        row_tensors.append(dst)
    if len(rows) > 1:
        b.concat(row_tensors, 1, stage_out)
    elif len(rows) == 1 and len(rows[0]) == 1:
        raise ValueError("a 1x1 grid is not a tiling")
    first = chain[0].op
    drop = {lay.op for lay in chain}
    sub.operators = [op for i, op in enumerate(sub.operators) if i < first] + b.ops + \
        [op for i, op in enumerate(sub.operators) if i >= first and i not in drop]
    remap = _compact(sub)
    for sig in model.signatureDefs or []:
        for m in list(sig.inputs or []) + list(sig.outputs or []):
            m.tensorIndex = remap[m.tensorIndex]
    offsets = None
    if n_cols == 1:
        c, w = int(sub.tensors[remap[stage_out]].shape[3]), chain[-1].out_hw[1]
        width = _itemsize(s, sub.tensors[remap[stage_out]].type)
        offsets = [int(r[0][0] * w * c * width) for r in tile_rows]
    return pack_model(model), Rewrite(stage_output=remap[stage_out], tile_outputs=[remap[t] for t in tile_outs],
                                      offsets=offsets, ops_added=len(b.ops) - len(chain))


def _itemsize(s, tensor_type: int) -> int:
    return {s.TensorType.INT8: 1, s.TensorType.UINT8: 1, s.TensorType.INT16: 2, s.TensorType.FLOAT32: 4,
            s.TensorType.INT32: 4}.get(tensor_type, 1)
