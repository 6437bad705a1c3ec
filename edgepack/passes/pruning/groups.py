"""The data of channel dependency groups: groups, tensor layouts, layer calls and the union-find graph.

:mod:`.graph` traces a model into a :class:`Graph` by asking :mod:`.rules` how each layer type carries
channels; surgery, importance and planning read the result.

Example::

    g = Graph()
    a, b = g.new_group(8), g.new_group(8)
    g.union(a, b)                      # coupled (e.g. by an Add): pruned together
    assert g.find(b) == a and g.group(b).size == 8
    g.keep_index(Layout([(a, 8)]), {a: np.array([0, 2])})   # -> array([0, 2])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


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
    """The last axis of a tensor: segments (group id, size); ``spatial`` > 1 after Flatten.

    ``parts``: a concatenation of flattened tensors (e.g. an image branch's flattened feature map beside
    a metadata branch's Dense output), the parts side by side; ``segments`` then lists every part's groups.
    """

    segments: list[tuple[int, int]]
    spatial: int = 1
    flat: bool = False
    parts: tuple["Layout", ...] = ()

    @property
    def channels(self) -> int:
        return sum(s for _, s in self.segments)

    @property
    def width(self) -> int:
        """Positions along the tensor's last axis."""
        if self.parts:
            return sum(p.width for p in self.parts)
        return self.channels * (self.spatial if self.flat else 1)


@dataclass
class Node:
    name: str
    cls: str
    config: dict
    inputs: list[str]
    shared: bool = False
    call: Optional[dict] = None  # a TFOpLambda's call keyword arguments
    other_inputs: list[str] = field(default_factory=list)  # a shared layer's later calls' inputs

    @property
    def is_input(self) -> bool:
        """A model input (no layer object in a Sequential's ``get_layer``)."""
        return self.cls == "InputLayer"


def is_ref(v) -> bool:
    """Whether a value of a TFOpLambda's call arguments is a tensor reference ``[layer, node, tensor]``."""
    return isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int)


class Graph:
    """Groups, plus each layer's input layout and output group, and the layer rule (:mod:`.rules`) that
    traced each layer: surgery and importance ask the same rule how to slice and score it."""

    def __init__(self) -> None:
        self.groups: dict[int, Group] = {}
        self._parent: dict[int, int] = {}
        self.in_layout: dict[str, Layout] = {}
        self.out_layout: dict[str, Layout] = {}
        self.produces: dict[str, int] = {}  # producer layer -> group id
        self.nodes: list[Node] = []
        self.layer_rules: dict[str, object] = {}  # layer name -> its rules.LayerRule

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
        if layout.parts:
            offsets = np.cumsum([0] + [p.width for p in layout.parts])
            return np.concatenate([self.keep_index(p, keep) + o for p, o in zip(layout.parts, offsets)])
        parts, off = [], 0
        for gid, size in layout.segments:
            k = keep.get(self.find(gid))
            parts.append((np.arange(size) if k is None else np.asarray(k)) + off)
            off += size
        ch = np.concatenate(parts) if parts else np.arange(0)
        if not layout.flat:
            return ch.astype(np.int64)
        return np.add.outer(np.arange(layout.spatial) * off, ch).ravel().astype(np.int64)
