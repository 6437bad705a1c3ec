"""Model surgery: rebuild a tf_keras model with fewer channels and sliced weights (no masks).

``keep`` maps a group id (see :mod:`.graph`) to the sorted channel indices that
stay. Producers get smaller ``filters``/``units``; BatchNormalization and
DepthwiseConv lose the same channels; consumers lose the matching input rows
(expanded per spatial position after ``Flatten``). How a layer's weights are
sliced is its rule's (:meth:`.rules.LayerRule.slice`), the rule the graph traced it with.

Example::

    g = build_graph(model)
    small = prune_model(model, g, {grp.id: np.arange(4) for grp in g.prunable()})
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from ...errors import RecipeError
from .cost import channels, cost_of
from .groups import Graph
from .rules import UNSUPPORTED


def layer_channels(model, graph: Graph, keep: dict[int, np.ndarray]) -> dict[str, tuple[int, int, int, int]]:
    """Per layer: (cin before, cin after, cout before, cout after) under ``keep``."""
    out = {}
    for n in graph.nodes:
        if n.is_input:
            continue
        layer = model.get_layer(n.name)
        cin, cout = channels(layer)
        cin2 = len(graph.keep_index(graph.in_layout[n.name], keep)) if n.name in graph.in_layout else cin
        if n.name in graph.produces:
            k = keep.get(graph.find(graph.produces[n.name]))
            cout2 = cout if k is None else len(k)
        elif n.name in graph.in_layout:  # channel-wise: out follows in
            cout2 = cin2
        else:
            cout2 = cout
        out[n.name] = (cin, cin2, cout, cout2)
    return out


def plan_cost(model, graph: Graph, keep: dict[int, np.ndarray]) -> tuple[int, int]:
    """(params, MACs) of the whole model after applying ``keep``, without rebuilding it."""
    params = macs = 0
    for name, (_, cin2, _, cout2) in layer_channels(model, graph, keep).items():
        p, m = cost_of(model.get_layer(name), cin2, cout2)
        params, macs = params + p, macs + m
    return params, macs


def counts_keep(groups, counts: dict[str, int]) -> dict[int, np.ndarray]:
    """A keep map for costing a plan (group key -> kept channels): the first ``n`` channels of each
    group that loses some (which channels does not change a cost)."""
    return {g.id: np.arange(counts[g.producers[0]]) for g in groups if counts.get(g.producers[0], g.size) < g.size}


def latency_cost(model, graph: Graph, groups, estimate) -> Callable[[dict[str, int]], float]:
    """A cost function for plans (group key -> kept channels): ``estimate`` (ms) of the pruned model,
    cached, since rounded plans repeat."""
    cache: dict[tuple, float] = {}

    def cost(counts: dict[str, int]) -> float:
        keep = counts_keep(groups, counts)
        key = tuple(sorted((i, len(k)) for i, k in keep.items()))
        if key not in cache:
            cache[key] = float(estimate(prune_model(model, graph, keep) if keep else model))
        return cache[key]

    return cost


def _layer_configs(cfg: dict) -> dict[str, dict]:
    return {e["config"]["name"]: e["config"] for e in cfg["layers"]}


def prune_model(model, graph: Graph, keep: dict[int, np.ndarray]):
    """A new model with the channels outside ``keep`` removed and weights sliced."""
    from ...keras_compat import keras

    k = keras()
    keep = {graph.find(g): np.sort(np.asarray(v, dtype=np.int64)) for g, v in keep.items()}
    for gid, idx in keep.items():
        grp = graph.groups[gid]
        if grp.blocked is not None and len(idx) != grp.size:
            raise RecipeError(f"channel group '{grp.name}' cannot be pruned: {grp.blocked}")
        if len(idx) == 0:
            raise RecipeError(f"channel group '{grp.name}' would lose all {grp.size} channels; lower the ratio")
    cfg = copy.deepcopy(model.get_config())
    confs = _layer_configs(cfg)
    for name, gid in graph.produces.items():
        if graph.find(gid) in keep:
            confs[name][graph.layer_rules[name].width_key] = int(len(keep[graph.find(gid)]))
    is_seq = isinstance(model, k.Sequential)
    new = (k.Sequential if is_seq else k.Model).from_config(cfg)
    for layer in new.layers:
        old = model.get_layer(layer.name)
        in_idx = out_idx = None
        if layer.name in graph.in_layout:
            in_idx = graph.keep_index(graph.in_layout[layer.name], keep)
        if layer.name in graph.produces:
            out_idx = keep.get(graph.find(graph.produces[layer.name]))
        dm = int(getattr(old, "depth_multiplier", 1) or 1)
        weights = old.get_weights()
        rule = graph.layer_rules.get(layer.name, UNSUPPORTED)
        layer.set_weights(rule.slice(weights, in_idx, out_idx, dm) if weights else weights)
    return new
