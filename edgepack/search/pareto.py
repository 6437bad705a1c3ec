"""Pareto bookkeeping over trial records: minimise (objective, accuracy drop) among feasible trials.

Example::

    front = pareto_front([{"number": 0, "status": "ok", "metrics": {"size_bytes": 90, "drop_pt": 0.1}}, ...],
                         key="size_bytes")
    best = best_trial(records, key="size_bytes")
"""

from __future__ import annotations

from typing import Optional, Sequence

OK = "ok"


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` in every coordinate and better in one (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def point(rec: dict, key: str) -> Optional[tuple[float, float]]:
    """(objective, drop) of a feasible trial with both figures, else None."""
    if rec.get("status") != OK:
        return None
    m = rec.get("metrics") or {}
    if m.get(key) is None or m.get("drop_pt") is None:
        return None
    return float(m[key]), float(m["drop_pt"])


def pareto_front(records: list[dict], key: str) -> list[int]:
    """Trial numbers on the front, sorted by objective; equal points keep the earliest trial."""
    pts = [(r["number"], p) for r in records if (p := point(r, key)) is not None]
    front = []
    for n, p in pts:
        if any(dominates(q, p) or (q == p and m < n) for m, q in pts if m != n):
            continue
        front.append((p, n))
    return [n for _, n in sorted(front)]


def best_trial(records: list[dict], key: str) -> Optional[dict]:
    """The feasible trial with the smallest objective (ties: smaller drop, then earlier trial)."""
    cands = [(p, r["number"], r) for r in records if (p := point(r, key)) is not None]
    return min(cands, key=lambda c: (c[0], c[1]))[2] if cands else None
