"""Channel dependency groups of a tf_keras model (the idea of Torch-Pruning's DepGraph).

Every tensor's last axis is described as a list of *segments*, each a whole
channel group. A producer (Conv, Dense, SeparableConv) opens a group of its
``filters``/``units``; channel-wise layers (BatchNormalization, DepthwiseConv,
activations, pooling) pass it through; ``Add``/``Multiply``/... merge the groups
of their inputs into one (coupled channels are pruned together);
``Concatenate`` lays segments side by side; ``Flatten`` repeats them per
spatial position. A group that reaches a model output, the model input, or a
layer this module does not know is *blocked*, with the reason kept for the report.

Example::

    g = build_graph(model)
    for grp in g.prunable():
        print(grp.producers, grp.size)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

PRODUCERS = {"Conv1D", "Conv2D", "Conv3D", "Dense", "SeparableConv1D", "SeparableConv2D"}
CHANNELWISE = {"BatchNormalization", "DepthwiseConv1D", "DepthwiseConv2D"}
PASSTHROUGH = {
    "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D",
    "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D",
    "UpSampling2D", "UpSampling3D",
}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
# tf_keras TFOpLambda functions (translated Keras 3 operations): element-wise, so channel-preserving with a
# scalar constant; two tensors through a binary one couple their channels like a merge layer.
OP_UNARY = {"nn.relu", "nn.relu6", "math.sigmoid", "nn.silu", "nn.gelu", "math.tanh", "math.abs",
            "math.negative", "nn.leaky_relu", "nn.elu", "math.softplus"}
OP_BINARY = {"math.add", "__operators__.add", "math.subtract", "math.multiply", "math.truediv", "math.maximum",
             "math.minimum"}


@dataclass
class Group:
    """Channels that must be pruned together; ``blocked`` says why they cannot be."""

    id: int
    size: int
    producers: list[str] = field(default_factory=list)
    channelwise: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    carriers: list[tuple[str, int]] = field(default_factory=list)  # (layer whose output carries it, offset)
    blocked: Optional[str] = None

    @property
    def name(self) -> str:
        return "+".join(self.producers) or f"group{self.id}"

    def layers(self) -> list[str]:
        return self.producers + self.channelwise + self.consumers


@dataclass
class Layout:
    """The last axis of a tensor: segments (group id, size); ``spatial`` > 1 after Flatten."""

    segments: list[tuple[int, int]]
    spatial: int = 1
    flat: bool = False

    @property
    def channels(self) -> int:
        return sum(s for _, s in self.segments)


@dataclass
class Node:
    name: str
    cls: str
    config: dict
    inputs: list[str]
    shared: bool = False
    call: Optional[dict] = None  # a TFOpLambda's call keyword arguments


class Graph:
    """Groups, plus each layer's input layout and output group (see module doc)."""

    def __init__(self) -> None:
        self.groups: dict[int, Group] = {}
        self._parent: dict[int, int] = {}
        self.in_layout: dict[str, Layout] = {}
        self.out_layout: dict[str, Layout] = {}
        self.produces: dict[str, int] = {}  # producer layer -> group id
        self.nodes: list[Node] = []

    # -- union-find -------------------------------------------------------
    def find(self, gid: int) -> int:
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def group(self, gid: int) -> Group:
        return self.groups[self.find(gid)]

    def new_group(self, size: int, blocked: Optional[str] = None) -> int:
        gid = len(self._parent)
        self._parent[gid] = gid
        self.groups[gid] = Group(id=gid, size=size, blocked=blocked)
        return gid

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        ga, gb = self.groups.pop(ra), self.groups.pop(rb)
        keep, drop = (ga, gb) if ra < rb else (gb, ga)
        self._parent[drop.id] = keep.id
        for attr in ("producers", "channelwise", "consumers", "carriers"):
            getattr(keep, attr).extend(x for x in getattr(drop, attr) if x not in getattr(keep, attr))
        keep.blocked = keep.blocked or drop.blocked
        self.groups[keep.id] = keep

    def add_carrier(self, gid: int, layer: str, offset: int) -> None:
        grp = self.group(gid)
        if (layer, offset) not in grp.carriers:
            grp.carriers.append((layer, offset))

    def block(self, layout: Layout, reason: str) -> None:
        for gid, _ in layout.segments:
            g = self.group(gid)
            if g.blocked is None:
                g.blocked = reason

    # -- queries ----------------------------------------------------------
    def prunable(self) -> list[Group]:
        """Groups that can lose channels, in model order."""
        return [g for g in self.all_groups() if g.blocked is None and g.producers]

    def all_groups(self) -> list[Group]:
        return sorted(self.groups.values(), key=lambda g: g.id)

    def group_of(self, layer: str) -> Optional[Group]:
        """The group a producer or channel-wise layer belongs to (its output channels)."""
        if layer in self.produces:
            return self.group(self.produces[layer])
        lay = self.in_layout.get(layer)
        if lay is not None and len(lay.segments) == 1 and not lay.flat:
            g = self.group(lay.segments[0][0])
            if layer in g.channelwise:
                return g
        return None

    def keep_index(self, layout: Layout, keep: dict[int, np.ndarray]) -> np.ndarray:
        """Indices of the kept positions along a tensor's last axis under ``keep`` (root id -> indices)."""
        parts, off = [], 0
        for gid, size in layout.segments:
            k = keep.get(self.find(gid))
            parts.append((np.arange(size) if k is None else np.asarray(k)) + off)
            off += size
        ch = np.concatenate(parts) if parts else np.arange(0)
        if not layout.flat:
            return ch.astype(np.int64)
        return np.add.outer(np.arange(layout.spatial) * off, ch).ravel().astype(np.int64)


def _nodes(model) -> tuple[list[Node], list[str]]:
    """Layer calls in topological order and the names of the output layers."""
    cfg = model.get_config()
    entries = cfg["layers"]
    nodes: list[Node] = []
    if "inbound_nodes" not in (entries[0] if entries else {}):  # Sequential
        prev = None
        if not entries or entries[0]["class_name"] != "InputLayer":
            nodes.append(Node("__input__", "InputLayer", {}, []))
            prev = "__input__"
        for e in entries:
            nodes.append(Node(e["config"]["name"], e["class_name"], e["config"], [prev] if prev else []))
            prev = e["config"]["name"]
        return nodes, [prev]
    for e in entries:
        inbound = e.get("inbound_nodes") or []
        refs = inbound[0] if inbound else []
        call = None
        if e["class_name"] == "TFOpLambda" and refs and isinstance(refs[0], str):  # one entry, tensors in kwargs
            call = dict(refs[3]) if len(refs) > 3 else {}
            if refs[0] == "_CONSTANT_VALUE":
                call["_first"] = refs[2]
            refs = ([refs] if refs[0] != "_CONSTANT_VALUE" else []) + [v for v in call.values() if _is_ref(v)]
        names = [r[0] for r in refs] if isinstance(refs, list) else []
        bad_ref = any(isinstance(r, list) and (r[1] != 0 or r[2] != 0) for r in refs)
        nodes.append(Node(e["name"], e["class_name"], e["config"], names, shared=len(inbound) > 1 or bad_ref,
                          call=call))
    return nodes, [o[0] for o in cfg["output_layers"]]


def _is_ref(v) -> bool:
    return isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int)


def _op_lambda(g: Graph, n: Node, layer, ins: list[Layout]) -> Layout:
    fn = n.config.get("function")
    consts = [v for v in (n.call or {}).values() if not _is_ref(v) and v is not None]
    if len(ins) == 1 and (fn in OP_UNARY or fn in OP_BINARY) and all(isinstance(v, (int, float)) for v in consts):
        return ins[0]
    if len(ins) == 2 and fn in OP_BINARY:
        return _merge(g, n, layer, ins)
    return _unsupported(g, n, layer, ins, f"channel pruning does not support the operation '{fn}' here")


def build_graph(model) -> Graph:
    """Trace ``model`` (Sequential or Functional tf_keras) into channel groups."""
    g = Graph()
    nodes, outputs = _nodes(model)
    g.nodes = nodes
    for n in nodes:
        layer = None if n.cls == "InputLayer" else model.get_layer(n.name)
        ins = [g.out_layout[i] for i in n.inputs]
        g.out_layout[n.name] = _trace(g, n, layer, ins, model)
    for name in outputs:
        g.block(g.out_layout[name], f"reaches the model output '{name}' (output layers are never pruned)")
    return g


def _unsupported(g: Graph, n: Node, layer, ins: list[Layout], why: str) -> Layout:
    for lay in ins:
        g.block(lay, f"feeds layer '{n.name}' ({n.cls}): {why}")
    size = int(layer.output_shape[-1]) if layer is not None and isinstance(layer.output_shape, tuple) else 0
    return Layout([(g.new_group(size, f"output of unsupported layer '{n.name}' ({n.cls})"), size)])


def _trace(g: Graph, n: Node, layer, ins: list[Layout], model) -> Layout:
    c = n.config
    if n.cls == "InputLayer":
        shape = model.input_shape if n.name == "__input__" else c["batch_input_shape"]
        size = int(shape[-1] or 0)
        return Layout([(g.new_group(size, "channels of the model input"), size)])
    if n.shared:
        return _unsupported(g, n, layer, ins, "layer is shared or has several outputs")
    if n.cls == "TFOpLambda":
        return _op_lambda(g, n, layer, ins)
    if len(ins) != 1 and n.cls not in MERGES | {"Concatenate"}:
        return _unsupported(g, n, layer, ins, "layer has several inputs")
    if n.cls in PRODUCERS:
        return _producer(g, n, layer, ins[0])
    if n.cls in CHANNELWISE:
        return _channelwise(g, n, layer, ins[0])
    if n.cls in PASSTHROUGH:
        if n.cls == "Activation" and c.get("activation") == "softmax":
            return _unsupported(g, n, layer, ins, "softmax mixes channels")
        if ins[0].flat and not n.cls.startswith(("Activation", "ReLU", "LeakyReLU", "ELU", "Dropout")):
            return _unsupported(g, n, layer, ins, "spatial layer after Flatten")
        return ins[0]
    if n.cls == "Flatten":
        return _flatten(g, n, layer, ins[0])
    if n.cls in MERGES:
        return _merge(g, n, layer, ins)
    if n.cls == "Concatenate":
        return _concat(g, n, layer, ins)
    return _unsupported(g, n, layer, ins, "channel pruning does not support this layer type")


def _consume(g: Graph, n: Node, lay: Layout) -> None:
    g.in_layout[n.name] = lay
    for gid, _ in lay.segments:
        grp = g.group(gid)
        if n.name not in grp.consumers:
            grp.consumers.append(n.name)
    if not lay.flat:
        off = 0
        for gid, size in lay.segments:
            g.add_carrier(gid, n.inputs[0], off)
            off += size


def _producer(g: Graph, n: Node, layer, lay: Layout) -> Layout:
    c = n.config
    if c.get("groups", 1) != 1:
        return _unsupported(g, n, layer, [lay], "grouped convolution")
    if c.get("data_format", "channels_last") != "channels_last":
        return _unsupported(g, n, layer, [lay], "channels_first data format")
    if lay.flat and n.cls != "Dense":
        return _unsupported(g, n, layer, [lay], "convolution after Flatten")
    _consume(g, n, lay)
    size = int(c.get("filters") or c.get("units"))
    gid = g.new_group(size)
    g.groups[gid].producers.append(n.name)
    g.produces[n.name] = gid
    if c.get("activation") == "softmax":
        g.groups[gid].blocked = f"layer '{n.name}' applies softmax across its channels"
    return Layout([(gid, size)])


def _channelwise(g: Graph, n: Node, layer, lay: Layout) -> Layout:
    c = n.config
    if n.cls.startswith("Depthwise") and int(c.get("depth_multiplier", 1)) != 1:
        return _unsupported(g, n, layer, [lay], "depth_multiplier > 1")
    if n.cls == "BatchNormalization":
        axis = c.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if axis not in (-1, len(layer.input_shape) - 1):
            return _unsupported(g, n, layer, [lay], "normalizes an axis other than the channels")
    if lay.flat and n.cls != "BatchNormalization":
        return _unsupported(g, n, layer, [lay], "depthwise layer after Flatten")
    g.in_layout[n.name] = lay
    for gid, _ in lay.segments:
        grp = g.group(gid)
        if n.name not in grp.channelwise:
            grp.channelwise.append(n.name)
    return lay


def _flatten(g: Graph, n: Node, layer, lay: Layout) -> Layout:
    if lay.flat:
        return lay
    shape = layer.input_shape
    spatial = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
    if spatial == 1:  # e.g. after pooling to 1x1: channels stay channels
        return Layout(list(lay.segments))
    off = 0
    for gid, size in lay.segments:
        g.add_carrier(gid, n.inputs[0], off)
        off += size
    return Layout(list(lay.segments), spatial=spatial, flat=True)


def _merge(g: Graph, n: Node, layer, ins: list[Layout]) -> Layout:
    first = ins[0]
    sizes = [s for _, s in first.segments]
    for lay in ins[1:]:
        if [s for _, s in lay.segments] != sizes or lay.spatial != first.spatial or lay.flat != first.flat:
            return _unsupported(g, n, layer, ins, "inputs have different channel layouts")
    for lay in ins[1:]:
        for (a, _), (b, _) in zip(first.segments, lay.segments):
            g.union(a, b)
    return Layout(list(first.segments), first.spatial, first.flat)


def _concat(g: Graph, n: Node, layer, ins: list[Layout]) -> Layout:
    axis = n.config.get("axis", -1)
    rank = len(layer.output_shape)
    if any(lay.flat for lay in ins) and rank > 2:
        return _unsupported(g, n, layer, ins, "concatenates flattened tensors")
    if axis in (-1, rank - 1):
        if any(lay.flat and lay.spatial > 1 for lay in ins):
            return _unsupported(g, n, layer, ins, "concatenates flattened feature maps")
        return Layout([seg for lay in ins for seg in lay.segments])
    return _merge(g, n, layer, ins)  # concatenation along a spatial axis couples the channels
