"""report.html: one self-contained page (inline CSS and SVG, nothing fetched) rendered from
report.json, with the plots of :mod:`.plots` and the same tables as report.md.

Example::

    page = render_html(json.loads(Path("build/android/report.json").read_text()))
"""

from __future__ import annotations

import html
from typing import Any, Iterable, Optional

from . import plots
from .markdown import (LAYER_COLUMNS, MEMORY_COLUMNS, MEMORY_NOTE, STEP_COLUMNS, cell, fmt_bytes, gate_limit,
                       memory_rows)

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.warn{background:#fff4e0;border-left:4px solid #e08a2c;padding:.4em .8em}figure{margin:.6em 0}
svg{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 3px}"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


NA = "\u2014"  # a cell whose figure does not apply to its row


def _text(v: Any) -> str:
    """A cell in words: never empty, never "None" or "key=;" (a figure that does not apply is a dash)."""
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_text(x)}" for k, x in v.items() if x is not None and x != "") or NA
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v) or "none"
    if v is None or isinstance(v, str):
        return " ".join(str(v or "").split()) or NA
    return cell(v)


def _table(rows: Iterable[dict], cols: Iterable[str]) -> str:
    rows, cols = list(rows), list(cols)
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_e(_text(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """A figure/value table of the figures that have a value (a missing one is left out, not shown empty)."""
    return _table([{"figure": k, "value": v} for k, v in pairs if v is not None and v != "" and v != {}],
                  ["figure", "value"])


def _gate(g: dict) -> str:
    """The accuracy gate in words: "applied: 1.00 pt on accuracy", "off: turned off (max_accuracy_drop: none)"."""
    return ("applied: " if g.get("applied") else "off: ") + gate_limit(g)


def _figure(svg: Optional[str], caption: str) -> str:
    return f'<figure role="img" aria-label="{_e(caption)}">{svg}<figcaption>{_e(caption)}</figcaption></figure>' \
        if svg else ""


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{''.join(parts)}</section>"


def _patches_section(p: dict, plan: dict) -> str:
    """Patch-based inference: arena before/after, the peak op, extra MACs, memory over time."""
    def peak(x: Optional[dict]) -> Optional[str]:
        return f"op {x['op']} {x['name']}: {x['live_bytes']} B live" if x else None

    rows = [("kept", p.get("kept")), ("reason", p.get("reason")),
            ("arena without patches (B)", p.get("baseline_arena")), ("offline plan", plan.get("reason")),
            ("arena with patches (B)", p.get("patched_arena")),
            ("with patches: activations + persistent (B)",
             f"{p['patched_head']} + {p['patched_tail']}" if p.get("patched_head") is not None else None),
            ("tiling", p.get("tiling")), ("peak op before", peak(p.get("peak_op_before"))),
            ("peak op with patches", peak(p.get("peak_op_after"))),
            ("extra MACs", f"{p['extra_macs']} (+{p['extra_macs_pct']}%)" if p.get("extra_macs") is not None else None),
            ("outputs bit-exact", p.get("bit_exact")), ("samples checked", p.get("outputs_checked_samples"))]
    return _section("Memory: patch-based inference", _figure(plots.memory_svg(p), "live activation bytes per op, "
                    "before and with patches; dashed: the arena TFLM needs"), _fields(rows))


def render_html(report: dict[str, Any]) -> str:
    """The whole page as a string."""
    q, t = report.get("quantize", {}), report.get("tflite", {})
    quant = f"{q.get('mode')} (I/O {q['io']})" if q.get("io") else q.get("mode")
    out = [f"<h1>edgepack report: {_e(report.get('model', '?'))} &rarr; {_e(report.get('target', '?'))}</h1>",
           _fields([("quantization", quant), ("model I/O", t.get("io")),
                    ("TFLite size", fmt_bytes(t["size_bytes"]) if t.get("size_bytes") is not None else None),
                    ("parameters", t.get("params")), ("MACs", t.get("macs")), ("ops", t.get("ops"))])]
    for w in report.get("warnings", []):
        out.append(f'<p class="warn">{_e(w)}</p>')
    v = report.get("verification")
    if v:
        keys = [k for k in ("metric", "samples", "data", "float_accuracy_pct", "tflite_accuracy_pct", "drop_pt",
                            "top1_agreement_pct", "max_abs_error", "mean_abs_error", "rel_rms_error",
                            "agreement_caveat", "gate") if k in v]
        rows = [(k, _gate(v[k]) if k == "gate" and v[k] else v[k]) for k in keys]
        out.append(_section("Verification", _fields(rows)))
    steps = report.get("steps") or []
    if steps:
        cols = [c for c in STEP_COLUMNS if any(c in s for s in steps)]
        out.append(_section("Steps", _figure(plots.steps_svg(steps), "after each step"), _table(steps, cols)))
    layers = report.get("layers") or []
    if layers:
        cols = [c for c in LAYER_COLUMNS if any(c in r for r in layers)]
        out.append(_section("Layers", _figure(plots.layers_svg(layers), "per op: MACs and quantization error"),
                            _table(layers, cols)))
    fw = report.get("firmware")
    if fw:
        b = fw.get("budget", {})
        rows = [{"memory": k, **{x: b[k].get(x) for x in ("needed", "available", "headroom")}} for k in ("flash", "ram")
                if k in b]
        out.append(_section(f"Firmware: {fw.get('device')}", _figure(plots.budget_svg(b), "memory budget"),
                            _table(rows, ["memory", "needed", "available", "headroom"]),
                            _fields((k, fw.get(k)) for k in ("arena", "parity", "harness"))))
        if fw.get("memory_plan") or fw.get("patches"):
            rows = memory_rows(fw.get("memory_plan") or {}, fw.get("patches"), fw.get("arena") or {})
            out.append(_section("Memory: tensor arena", f"<p>{_e(MEMORY_NOTE)}</p>", _table(rows, MEMORY_COLUMNS)))
        if fw.get("patches"):
            out.append(_patches_section(fw["patches"], fw.get("memory_plan") or {}))
    profiles = report.get("profiles") or []
    if profiles:
        rows = [{"device": p["device"]["id"], **{k: p["latency"].get(k) for k in ("median_us", "p95_us", "source")}}
                for p in profiles]
        out.append(_section("Profiles", _figure(plots.profiles_svg(profiles), "latency per device"),
                            _table(rows, ["device", "median_us", "p95_us", "source"])))
    if report.get("entropy"):
        e = report["entropy"]
        out.append(_section("Download package", _fields(e.items())))
    pv = report.get("provenance")
    if pv:
        rows = [{"input": k, "path": i["path"], "sha256": i["sha256"]} for k, i in pv.get("inputs", {}).items()]
        out.append(_section("Provenance", _table(rows, ["input", "path", "sha256"]),
                            _table([{"tool": k, "version": x} for k, x in pv.get("versions", {}).items()],
                                   ["tool", "version"])))
    title = _e(f"edgepack: {report.get('model', '?')}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
            f'img-src data:"><style>{_CSS}</style></head><body>{"".join(out)}</body></html>\n')
