"""DIR/report.html of a search: the Pareto plot (inline SVG, matplotlib) and the trial table.

Rendered from search.json alone (one function, so a shared report renderer can take it over).

Example::

    html = render_search_html(json.loads(Path("search/search.json").read_text()))
"""

from __future__ import annotations

import html
import io
from typing import Any, Optional

UNITS = {"size_bytes": "bytes", "download_bytes": "bytes", "macs": "MACs", "latency_us": "µs", "energy_mj": "mJ",
         "arena_bytes": "tensor arena bytes"}


def _steps(rec: dict) -> str:
    parts = []
    for s in rec.get("recipe", {}).get("steps", []):
        knobs = {k: v for k, v in s.items() if k not in ("type", "fine_tune")}
        parts.append(s["type"] + ("(" + ", ".join(f"{k}={v}" for k, v in knobs.items()) + ")" if knobs else ""))
    mode = rec.get("recipe", {}).get("quantize", {}).get("mode", "?")
    if rec.get("recipe", {}).get("tflm", {}).get("patches") == "auto":
        mode += " + patches"
    return " → ".join(parts + [mode])


def _unpatched(data: dict, key: str) -> list[tuple[float, float, float]]:
    """(arena with patches, arena without, drop) of the trials whose kept patches changed the arena."""
    out = []
    for t in data["trials"]:
        m = t.get("metrics") or {}
        if key == "arena_bytes" and m.get("arena_unpatched_bytes") not in (None, m.get(key)) \
                and m.get(key) is not None and m.get("drop_pt") is not None:
            out.append((m[key], m["arena_unpatched_bytes"], m["drop_pt"]))
    return out


def pareto_svg(data: dict) -> str:
    """The trials in (objective, accuracy drop), the front, the budget line and the best, as SVG text."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    key = data["objective_key"]
    fig = Figure(figsize=(7.5, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    front = set(data.get("pareto_front", []))
    styles = {"ok": ("o", "#1f77b4", "feasible"), "infeasible": ("x", "#d62728", "over budget")}
    for status, (marker, color, label) in styles.items():
        pts = [(t["metrics"][key], t["metrics"]["drop_pt"]) for t in data["trials"] if t["status"] == status
               and (t.get("metrics") or {}).get(key) is not None and t["metrics"].get("drop_pt") is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=color, label=label, zorder=3)
    without = _unpatched(data, key)
    for i, (with_, wo, drop) in enumerate(without):
        ax.plot([wo, with_], [drop, drop], color="#9467bd", linewidth=1, zorder=2)
        ax.scatter([wo], [drop], marker="o", facecolors="none", edgecolors="#9467bd", zorder=3,
                   label="same trial without patches" if i == 0 else None)
    fr = sorted((t["metrics"][key], t["metrics"]["drop_pt"]) for t in data["trials"] if t["number"] in front)
    if fr:
        ax.step(*zip(*fr), where="post", color="#2ca02c", label="Pareto front", zorder=2)
    if data.get("max_accuracy_drop") is not None:
        ax.axhline(data["max_accuracy_drop"], color="#7f7f7f", linestyle="--", label="accuracy budget")
    base = _trial(data, 0)
    if base and (base.get("metrics") or {}).get(key) is not None:
        ax.scatter([base["metrics"][key]], [base["metrics"]["drop_pt"] or 0], marker="s", facecolors="none",
                   edgecolors="black", s=90, label="plain int8 (trial 0)", zorder=4)
    best = data.get("best")
    if best:
        ax.scatter([best["metrics"][key]], [best["metrics"]["drop_pt"]], marker="*", color="#ff7f0e", s=220,
                   label=f"best (trial {best['trial']})", zorder=5)
    for t in data["trials"]:
        m = t.get("metrics") or {}
        if m.get(key) is not None and m.get("drop_pt") is not None:
            ax.annotate(str(t["number"]), (m[key], m["drop_pt"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{data['objective']} ({UNITS.get(key, key)})")
    ax.set_ylabel("accuracy drop (pt)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _trial(data: dict, n: int) -> Optional[dict]:
    return next((t for t in data["trials"] if t["number"] == n), None)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _arena_cells(m: dict) -> str:
    """A tflm trial's arena with and without its patches (the same figure when none were kept), and the tiling."""
    return (f"<td>{_fmt(m.get('arena_bytes'))}</td><td>{_fmt(m.get('arena_unpatched_bytes', m.get('arena_bytes')))}"
            f"</td><td class=l>{_fmt(m.get('patches'))}</td>")


def render_search_html(search_json: dict) -> str:
    """A self-contained HTML page (no external files) for one search.json."""
    d = search_json
    key = d["objective_key"]
    esc = html.escape
    best, base = d.get("best"), _trial(d, 0)
    lines = ["<!doctype html><html><head><meta charset='utf-8'><title>edgepack search</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td.l{text-align:left}"
             "tr.front{background:#eaf6ea}tr.best{background:#fff2d9}</style></head><body>",
             f"<h1>edgepack search: {esc(d['inputs']['model']['name'])} → {esc(d['target'])}"
             f"{' / ' + esc(d['device']) if d.get('device') else ''}</h1>",
             f"<p>Objective: <b>{esc(d['objective'])}</b> ({esc(key)}) within an accuracy budget of "
             f"{_fmt(d.get('max_accuracy_drop'))} pt; {len(d['trials'])} of {d['trials_budget']} trials; "
             f"state {esc(d.get('state', '?'))}; seed {d['seed']}; sampler {esc(d['space']['sampler'])}; Ray "
             f"{esc(str((d.get('ray') or {}).get('address', '?')))} with {(d.get('ray') or {}).get('workers', '?')} "
             "worker(s).</p>"]
    if d.get("latency_source"):
        lines.append(f"<p>Latency/energy from <b>{esc(d['latency_source'])}</b>"
                     f"{' (estimated by the cost model)' if d['latency_source'].startswith('estimate') else ' (measured)'}"
                     ".</p>")
    if best:
        ratio = ""
        if base and (base.get("metrics") or {}).get(key):
            ratio = f" = {base['metrics'][key] / best['metrics'][key]:.2f}x smaller than plain int8"
        lines.append(f"<p>Best: trial {best['trial']}, {key} {_fmt(best['metrics'][key])}{ratio}, drop "
                     f"{_fmt(best['metrics']['drop_pt'])} pt. Packaged in <code>best/</code>.</p>")
    else:
        lines.append("<p>No feasible trial yet.</p>")
    tflm = d.get("target") == "tflm"
    if d.get("patches"):
        lines.append(f"<p>Patch-based inference (recipe tflm.patches: auto) "
                     f"{'searched per trial' if d['patches']['searched'] else 'not searched'}: "
                     f"{esc(d['patches']['why'])}.</p>")
    arena_head = "<th>arena B</th><th>arena w/o patches B</th><th class=l>patches</th>" if tflm else ""
    lines += ["<h2>Pareto front</h2>", pareto_svg(d) if d["trials"] else "<p>(no trials)</p>", "<h2>Trials</h2>",
              "<table><tr><th>#</th><th>status</th><th class=l>recipe</th><th>tflite B</th><th>download B</th>"
              f"<th>MACs</th>{arena_head}<th>latency µs</th><th>accuracy %</th><th>drop pt</th><th>wall s</th>"
              "<th>node</th><th class=l>error</th></tr>"]
    front = set(d.get("pareto_front", []))
    for t in d["trials"]:
        m = t.get("metrics") or {}
        cls = "best" if best and t["number"] == best["trial"] else ("front" if t["number"] in front else "")
        lines.append(f"<tr class='{cls}'><td>{t['number']}</td><td>{esc(t['status'])}</td><td class=l>"
                     f"{esc(_steps(t))}</td><td>{_fmt(m.get('size_bytes'))}</td><td>{_fmt(m.get('download_bytes'))}"
                     f"</td><td>{_fmt(m.get('macs'))}</td>{_arena_cells(m) if tflm else ''}"
                     f"<td>{_fmt(m.get('latency_us'))}</td>"
                     f"<td>{_fmt(m.get('accuracy_pct'))}</td><td>{_fmt(m.get('drop_pt'))}</td>"
                     f"<td>{_fmt(t.get('wall_s'))}</td><td>{esc(str(t.get('node_id', ''))[:8])}</td>"
                     f"<td class=l>{esc(str(t.get('error', ''))[:300])}</td></tr>")
    lines.append("</table>")
    if d["space"].get("notes"):
        lines.append("<h2>Space</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in d["space"]["notes"]) + "</ul>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"
