"""Human-readable tables of profile results (rich, on stdout); JSON is the machine format."""

from __future__ import annotations

from typing import Optional

from ..devices.compare import Row, SpreadRow
from ..devices.result import ProfileResult

TAG = {"measured": "measured", "estimated": "ESTIMATED", "not_available": "n/a"}


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _us(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v / 1e3:.3f} ms" if v >= 1000 else f"{v:.1f} us"


def _bytes(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v / 1024 / 1024:.2f} MiB" if v >= 1024 * 1024 else f"{v / 1024:.1f} KiB"


def _fmt(v: Optional[float], unit: str) -> str:
    if v is None:
        return "-"
    return {"us": _us, "bytes": _bytes}.get(unit, lambda x: f"{x:.4g} {unit}")(v)


def render_result(r: ProfileResult) -> None:
    """Print one result: figures with their source, the op table, and notes."""
    from rich.table import Table

    t = Table(title=f"{r.device.kind}:{r.device.id} {r.device.name}  |  {r.artifact.path}  "
                    f"({_bytes(r.artifact.size_bytes)})", title_justify="left")
    for col in ("figure", "value", "source"):
        t.add_column(col)
    lat, src = r.latency, TAG[r.latency.source]
    t.add_row("latency median", _us(lat.median_us), src)
    t.add_row("latency mean +/- std", f"{_us(lat.mean_us)} +/- {_us(lat.std_us)}", src)
    t.add_row("latency min / p95 / max", f"{_us(lat.min_us)} / {_us(lat.p95_us)} / {_us(lat.max_us)}", src)
    t.add_row("first run (apart)", _us(lat.first_us), src)
    t.add_row("timed runs", str(lat.n), src)
    if lat.cycles is not None:
        t.add_row("cycles / inference", f"{lat.cycles:,.0f}", src)
    if lat.instructions is not None:
        t.add_row("instructions / inference", f"{lat.instructions:,}", src)
    t.add_row("init", _us(r.init_us), "measured" if r.init_us is not None else "n/a")
    mem = TAG[r.memory.source]
    for label, v in (("peak memory", r.memory.peak_bytes), ("arena", r.memory.arena_bytes),
                     ("flash", r.memory.flash_bytes), ("RAM", r.memory.ram_bytes)):
        if v is not None or label == "peak memory":
            t.add_row(label, _bytes(v), mem if v is not None else "n/a")
    e = r.energy
    energy = "-" if e.per_inference_mj is None else (
        f"{e.per_inference_mj:.4g} mJ" + (f" +/- {e.uncertainty_mj:.2g}" if e.uncertainty_mj is not None else ""))
    t.add_row("energy / inference", energy, TAG[e.source])
    console = _console()
    console.print(t)
    if r.ops:
        ops = Table(title="per-op time (regular runs)", title_justify="left")
        for col in ("op", "count", "avg", "%"):
            ops.add_column(col)
        for o in r.ops[:15]:
            ops.add_row(o.op, str(o.count), _us(o.avg_us), f"{o.percent:.1f}" if o.percent is not None else "-")
        console.print(ops)
    for n in ([f"energy: {e.method}"] if e.method else []) + r.notes:
        console.print(f"note: {n}")


def render_comparison(results: list[ProfileResult], rows: list[Row]) -> None:
    """Print A and B side by side with B/A ratios."""
    from rich.table import Table

    a, b = results
    t = Table(title=f"A = {a.artifact.path}   B = {b.artifact.path}   on {a.device.kind}:{a.device.id}",
              title_justify="left")
    for col in ("figure", "A", "B", "B/A", "source"):
        t.add_column(col)
    for r in rows:
        ratio = f"{r.ratio:.3f}x" if r.ratio is not None else f"- ({r.note})"
        src = TAG[r.source_a] if r.source_a == r.source_b else f"{TAG[r.source_a]} / {TAG[r.source_b]}"
        t.add_row(r.metric, _fmt(r.a, r.unit), _fmt(r.b, r.unit), ratio, src)
    _console().print(t)


def render_spread(results: list[ProfileResult], rows: list[SpreadRow], failed: list[dict]) -> None:
    """Print one column per device and the max/min spread of each figure."""
    from rich.table import Table

    t = Table(title=f"{results[0].artifact.path} on {len(results)} devices", title_justify="left")
    t.add_column("figure")
    for r in results:
        t.add_column(f"{r.device.id}\n{r.device.name} ({r.device.details.get('abi', '') or '?'})")
    t.add_column("max/min")
    t.add_column("source")
    for row in rows:
        srcs = sorted(set(row.sources))
        t.add_row(row.metric, *(_fmt(v, row.unit) for v in row.values),
                  f"{row.spread:.3f}x" if row.spread is not None else f"- ({row.note})",
                  " / ".join(TAG[s] for s in srcs))
    console = _console()
    console.print(t)
    for f in failed:
        console.print(f"failed: {f['device']}: {f['error']}")
