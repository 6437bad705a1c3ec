"""Side-by-side comparison of profile results: two (ratios b/a) or many (spread max/min).

A ratio is ``b / a`` and is given only when both figures exist and come from the
same kind of source (measured vs measured, estimated vs estimated); otherwise
it is None and the row says why, so a measured figure is never divided by an
estimate silently.

Example::

    rows = compare(result_int8, result_float)
    for r in rows: print(r.metric, r.a, r.b, r.ratio)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

from .result import ProfileResult


@dataclass
class Row:
    metric: str
    unit: str
    a: Optional[float]
    b: Optional[float]
    source_a: str
    source_b: str
    ratio: Optional[float]  # b / a
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


Getter = Callable[[ProfileResult], tuple[Optional[float], str]]

METRICS: list[tuple[str, str, Getter]] = [
    ("latency median", "us", lambda r: (r.latency.median_us, r.latency.source)),
    ("latency mean", "us", lambda r: (r.latency.mean_us, r.latency.source)),
    ("latency p95", "us", lambda r: (r.latency.p95_us, r.latency.source)),
    ("first run", "us", lambda r: (r.latency.first_us, r.latency.source)),
    ("cycles", "cycles", lambda r: (r.latency.cycles, r.latency.source)),
    ("instructions", "instr", lambda r: (r.latency.instructions, r.latency.source)),
    ("init", "us", lambda r: (r.init_us, "measured" if r.init_us is not None else "not_available")),
    ("peak memory", "bytes", lambda r: (r.memory.peak_bytes, r.memory.source)),
    ("arena", "bytes", lambda r: (r.memory.arena_bytes, r.memory.source)),
    ("flash", "bytes", lambda r: (r.memory.flash_bytes, r.memory.source)),
    ("energy / inference", "mJ", lambda r: (r.energy.per_inference_mj, r.energy.source)),
    ("model size", "bytes", lambda r: (r.artifact.size_bytes, "measured")),
]


def _row(metric: str, unit: str, get: Getter, a: ProfileResult, b: ProfileResult) -> Row:
    (va, sa), (vb, sb) = get(a), get(b)
    sa, sb = (sa if va is not None else "not_available"), (sb if vb is not None else "not_available")
    if va is None or vb is None:
        return Row(metric, unit, va, vb, sa, sb, None, "not available on both")
    if sa != sb:
        return Row(metric, unit, va, vb, sa, sb, None, f"{sa} vs {sb}: not compared")
    if va == 0:
        return Row(metric, unit, va, vb, sa, sb, None, "zero baseline")
    return Row(metric, unit, float(va), float(vb), sa, sb, float(vb) / float(va))


def compare(a: ProfileResult, b: ProfileResult, keep_empty: bool = False) -> list[Row]:
    """Rows of (metric, a, b, b/a); rows where neither result has the figure are dropped."""
    rows = [_row(m, u, g, a, b) for m, u, g in METRICS]
    return [r for r in rows if keep_empty or r.a is not None or r.b is not None]


@dataclass
class SpreadRow:
    """One figure across N results (e.g. the same build on several phones)."""

    metric: str
    unit: str
    values: list[Optional[float]]
    sources: list[str]
    spread: Optional[float]  # max / min of the values, when they are comparable
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def spread(results: list[ProfileResult], keep_empty: bool = False) -> list[SpreadRow]:
    """Rows of (metric, one value per result, max/min); same-source values only are compared.

    Example::

        rows = spread([pixel, galaxy, moto])
        [(r.metric, r.spread) for r in rows]  # [("latency median", 1.8), ...]
    """
    rows = []
    for metric, unit, get in METRICS:
        got = [get(r) for r in results]
        values = [v for v, _ in got]
        sources = [s if v is not None else "not_available" for v, s in got]
        present = [(float(v), s) for v, s in zip(values, sources) if v is not None]
        if not present and not keep_empty:
            continue
        note, ratio = "", None
        kinds = {s for _, s in present}
        if len(present) < len(results):
            note = "not available on every device"
        elif len(kinds) > 1:
            note = " vs ".join(sorted(kinds)) + ": not compared"
        elif min(v for v, _ in present) <= 0:
            note = "zero baseline"
        else:
            ratio = max(v for v, _ in present) / min(v for v, _ in present)
        rows.append(SpreadRow(metric, unit, [None if v is None else float(v) for v in values], sources,
                              ratio, note))
    return rows
