"""Turning importance scores and a target into kept channels per group.

A *plan* maps a group's key (its first producer's name, stable across rebuilds)
to the number of channels it keeps. :func:`keep_indices` picks the most
important channels; :func:`budget_plan` finds the smallest uniform ratio that
meets a MACs/params budget (per-layer ratios from measured sensitivity are
``search.allocate``'s).

Example::

    counts = ratio_plan(graph.prunable(), {g.producers[0]: 0.5 for g in graph.prunable()}, round_to=8)
    keep = keep_indices(graph, scores, counts)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .groups import Graph, Group


def key(grp: Group) -> str:
    return grp.producers[0]


def kept_count(size: int, ratio: float, round_to: int = 1) -> int:
    """Channels left when removing ``ratio`` of ``size``, rounded up to a multiple of ``round_to``."""
    n = size - int(math.floor(size * ratio + 1e-9))
    n = int(math.ceil(n / round_to) * round_to) if round_to > 1 else n
    return min(size, max(n, min(size, round_to), 1))


def ratio_plan(groups: list[Group], ratios: dict[str, float], round_to: int = 1) -> dict[str, int]:
    """Kept channels per group key for the given per-group ratios (missing keys: unpruned)."""
    return {key(g): kept_count(g.size, ratios.get(key(g), 0.0), round_to) for g in groups}


def keep_indices(graph: Graph, scores: dict[int, np.ndarray], counts: dict[str, int]) -> dict[int, np.ndarray]:
    """Indices of the ``counts[key]`` highest-scoring channels of each group (ties: lower index)."""
    out = {}
    for grp in graph.prunable():
        n = counts.get(key(grp), grp.size)
        if n >= grp.size:
            continue
        order = np.argsort(-scores[grp.id], kind="stable")
        out[grp.id] = np.sort(order[:n])
    return out


def global_plan(groups: list[Group], scores: dict[int, np.ndarray], ratio: float, max_ratio: float,
                round_to: int = 1) -> dict[str, int]:
    """Remove ``ratio`` of all channels, least important first across groups (scores normalised per group).

    No group loses more than ``max_ratio`` of its channels (Torch-Pruning's global pruning).
    """
    cand = []
    for g in groups:
        s = scores[g.id]
        norm = s / (float(np.mean(s)) or 1.0)
        order = np.argsort(norm, kind="stable")[: int(math.floor(g.size * max_ratio))]
        cand += [(float(norm[i]), k, key(g)) for k, i in enumerate(order)]
    cand.sort()
    n_remove = int(math.floor(sum(g.size for g in groups) * ratio))
    removed: dict[str, int] = {}
    for _, _, name in cand[:n_remove]:
        removed[name] = removed.get(name, 0) + 1
    return {key(g): kept_count(g.size, removed.get(key(g), 0) / g.size, round_to) for g in groups}


def budget_plan(plan: Callable[[float], dict[str, int]], cost: Callable[[dict[str, int]], float], budget: float,
                max_ratio: float, iterations: int = 24) -> tuple[dict[str, int], float]:
    """Smallest ratio (up to ``max_ratio``) whose ``plan(ratio)`` costs at most ``budget``.

    Returns (plan, ratio); the ratio is ``-1`` when even ``max_ratio`` is over budget.
    """
    if cost(plan(0.0)) <= budget:
        return plan(0.0), 0.0
    if cost(plan(max_ratio)) > budget:
        return plan(max_ratio), -1.0
    lo, hi = 0.0, max_ratio
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if cost(plan(mid)) <= budget:
            hi = mid
        else:
            lo = mid
    return plan(hi), hi

