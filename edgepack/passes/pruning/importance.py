"""Channel importance per dependency group.

* ``l1`` / ``l2``: norm of each output filter of the group's producers (Li et al.,
  "Pruning Filters for Efficient ConvNets"; the kernel is the layer rule's
  :meth:`~.rules.LayerRule.scored_kernel`), normalised per layer by its mean so
  coupled layers weigh the same, then summed.
* ``activation``: mean absolute activation of each channel on calibration data,
  measured where the group enters its consumers (data-driven; dead channels score 0).
* ``taylor``: first-order Taylor estimate of the loss change when a channel is
  removed, mean over samples of ``|sum(a * dL/da)|`` (Molchanov et al.); needs labels.

Example::

    scores = group_scores(model, graph, "l1")          # {group id: per-channel scores}
    scores = group_scores(model, graph, "activation", data=ctx.calibration)
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ...errors import DataError
from ...samples import Samples
from .groups import Graph

CRITERIA = ("l1", "l2", "activation", "taylor")


def _normalised(v: np.ndarray) -> np.ndarray:
    m = float(np.mean(v))
    return v / m if m > 0 else v


def _filter_norms(kernel: np.ndarray, order: int) -> np.ndarray:
    flat = np.abs(kernel.reshape(-1, kernel.shape[-1]))
    return flat.sum(axis=0) if order == 1 else np.sqrt((flat ** 2).sum(axis=0))


def _weight_scores(model, graph: Graph, order: int) -> dict[int, np.ndarray]:
    out = {}
    for grp in graph.prunable():
        total = np.zeros(grp.size)
        for name in grp.producers:
            kernel = graph.layer_rules[name].scored_kernel(model.get_layer(name).get_weights())
            total += _normalised(_filter_norms(kernel, order))
        out[grp.id] = total
    return out


def _activation_scores(model, graph: Graph, data: Samples, batch: int = 64) -> dict[int, np.ndarray]:
    from ...keras_compat import keras
    from ..training import model_arg

    groups = graph.prunable()
    names = sorted({c for g in groups for c, _ in g.carriers})
    if not names:
        return {g.id: np.ones(g.size) for g in groups}
    probe = keras().Model(model.inputs, [model.get_layer(n).output for n in names])
    sums = {n: None for n in names}
    for i in range(0, len(data), batch):
        outs = probe(model_arg(data[i:i + batch].astype(np.float32)), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, o in zip(names, outs):
            o = np.abs(np.asarray(o))
            s = o.reshape(-1, o.shape[-1]).sum(axis=0)
            sums[n] = s if sums[n] is None else sums[n] + s
    return _per_carrier(groups, {n: s / float(len(data)) for n, s in sums.items()})


def _per_carrier(groups, means: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    out = {}
    for grp in groups:
        total = np.zeros(grp.size)
        for name, off in grp.carriers:
            total += _normalised(means[name][off:off + grp.size])
        out[grp.id] = total
    return out


def _taylor_scores(model, graph: Graph, data: Samples, labels: np.ndarray, batch: int = 64):
    from ...keras_compat import keras, tf
    from ..training import model_arg, uses_softmax

    t, k = tf(), keras()
    groups = graph.prunable()
    names = sorted({c for g in groups for c, _ in g.carriers})
    probe = k.Model(model.inputs, [model.get_layer(n).output for n in names] + list(model.outputs))
    loss_fn = k.losses.SparseCategoricalCrossentropy(from_logits=not uses_softmax(model),
                                                     reduction=k.losses.Reduction.SUM)
    sums = {n: 0.0 for n in names}
    for i in range(0, len(data), batch):
        xb = model_arg(data[i:i + batch].astype(np.float32))
        with t.GradientTape() as tape:
            outs = probe(xb, training=False)
            loss = loss_fn(labels[i:i + batch], outs[-1])
        grads = tape.gradient(loss, outs[:-1])
        for n, a, g in zip(names, outs[:-1], grads):
            prod = np.asarray(a * g) if g is not None else np.zeros(a.shape)
            per_sample = np.abs(prod.reshape(prod.shape[0], -1, prod.shape[-1]).sum(axis=1))
            sums[n] = sums[n] + per_sample.sum(axis=0)
    return _per_carrier(groups, {n: s / float(len(data)) for n, s in sums.items()})


def group_scores(model, graph: Graph, criterion: str, data: Optional[Samples] = None,
                 labels: Optional[np.ndarray] = None) -> dict[int, np.ndarray]:
    """Per-channel importance (higher = keep) for every prunable group, keyed by group id."""
    if criterion in ("l1", "l2"):
        return _weight_scores(model, graph, 1 if criterion == "l1" else 2)
    if criterion == "taylor":
        if data is None or labels is None:
            raise DataError("importance 'taylor' needs labelled data; pass --train or --eval DATA with labels y")
        return _taylor_scores(model, graph, data, labels)
    if criterion == "activation":
        if data is None or len(data) == 0:
            raise DataError("importance 'activation' needs calibration data; pass --calibration DATA "
                            "or use importance l1/l2")
        from ..training import shape_problem

        problem = shape_problem(model, data)
        if problem:
            raise DataError(f"calibration data {problem}")
        return _activation_scores(model, graph, data)
    raise ValueError(f"unknown importance criterion {criterion!r}; use one of {CRITERIA}")
