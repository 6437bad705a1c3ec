"""report.json (the source of truth) and report.md rendered from it.

Example::

    write_report(Path("build/android"), report)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt_bytes(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"


def _table(rows: list[dict], cols: list[str]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of a package report."""
    q = report.get("quantize", {})
    lines = [f"# edgepack report: {report.get('model', '?')} -> {report.get('target', '?')}", ""]
    t = report.get("tflite", {})
    lines += [f"- Quantization: {q.get('mode')} (I/O {q.get('io')}, per-channel {q.get('per_channel')})",
              f"- TFLite size: {_fmt_bytes(t.get('size_bytes', 0))}",
              f"- Parameters: {t.get('params', 0):,}; MACs per inference: {t.get('macs', 0):,}",
              f"- Ops: {', '.join(t.get('ops', []))}", ""]
    if report.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    v = report.get("verification")
    if v:
        lines += ["## Verification", ""]
        if v.get("metric") == "accuracy":
            lines.append(f"- Accuracy on {v['samples']} {v['data']} samples: float {v['float_accuracy_pct']:.2f}%, "
                         f"packaged {v['tflite_accuracy_pct']:.2f}% (drop {v['drop_pt']:.2f} pt)")
        lines.append(f"- Top-1 agreement with the float model: {v['top1_agreement_pct']:.2f}%; "
                     f"max |error| {v['max_abs_error']:.4g}, mean {v['mean_abs_error']:.4g}")
        lines.append("")
    steps = report.get("steps", [])
    if steps:
        lines += ["## Steps", ""]
        cols = [c for c in ("step", "params", "macs", "keras_accuracy_pct") if any(c in s for s in steps)]
        lines += _table(steps, cols) + [""]
        for s in steps:
            for key, val in s.items():
                if isinstance(val, list) and val and isinstance(val[0], dict):
                    lines += [f"### {s.get('step')}: {key}", ""] + _table(val, list(val[0].keys())) + [""]
    for section in ("firmware", "entropy"):
        if section in report:
            lines += [f"## {section.replace('_', ' ').title()}", "", "```json",
                      json.dumps(report[section], indent=2), "```", ""]
    prof = report.get("profiles")
    if prof:
        lines += ["## Profiles", ""]
        rows = [{"device": p["device"]["id"], "median_us": p["latency"].get("median_us"),
                 "source": p["latency"].get("source")} for p in prof]
        lines += _table(rows, ["device", "median_us", "source"]) + [""]
    pv = report.get("provenance", {})
    if pv:
        lines += ["## Provenance", ""]
        for name, item in pv.get("inputs", {}).items():
            lines.append(f"- {name}: `{item['path']}` sha256 {item['sha256']}")
        for name, digest in pv.get("outputs", {}).items():
            lines.append(f"- {name}: sha256 {digest}")
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in pv.get("versions", {}).items()))
        lines.append("")
    return "\n".join(lines)


def write_report(folder: Path, report: dict[str, Any]) -> None:
    """Write report.json and report.md into ``folder`` (a staging folder)."""
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (folder / "report.md").write_text(render_markdown(report) + "\n")
