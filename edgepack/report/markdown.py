"""report.md: the package report as Markdown tables, rendered from report.json (no JSON dumps).

Example::

    text = render_markdown(json.loads(Path("build/android/report.json").read_text()))
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

STEP_COLUMNS = ("step", "params", "macs", "keras_accuracy_pct", "float_tflite_bytes", "entropy_coded_bytes",
                "host_latency_us")
LAYER_COLUMNS = ("index", "op", "layer", "params", "weight_bytes", "macs", "dtype", "scale", "rmse_steps",
                 "max_abs_error")


def fmt_bytes(n: Any) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)" if isinstance(n, int) else "n/a"


def cell(v: Any) -> str:
    """One table cell: thousands separators for ints, 4 significant digits for floats, '|' escaped."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(cell(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}={cell(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|").replace("\n", " ")


def table(rows: Iterable[dict], cols: Iterable[str]) -> list[str]:
    rows, cols = list(rows), list(cols)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return out + [""]


def _kv(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    return table(({"figure": k, "value": v} for k, v in pairs), ["figure", "value"])


def _summary(report: dict) -> list[str]:
    q, t = report.get("quantize", {}), report.get("tflite", {})
    io = t.get("io", {})
    return [f"# edgepack report: {report.get('model', '?')} -> {report.get('target', '?')}", "",
            f"- Quantization: {q.get('mode')} (I/O asked {q.get('io')}, model has inputs "
            f"{cell(io.get('inputs'))} / outputs {cell(io.get('outputs'))}; per-channel {q.get('per_channel')})",
            f"- TFLite size: {fmt_bytes(t.get('size_bytes'))}",
            f"- Parameters: {t.get('params', 0):,}; MACs per inference: {t.get('macs', 0):,}",
            f"- Ops: {', '.join(t.get('ops', []))}", ""]


def _verification(v: dict) -> list[str]:
    lines = ["## Verification", ""]
    if v.get("metric") == "accuracy":
        lines.append(f"- Accuracy on {v['samples']} {v['data']} samples: float {v['float_accuracy_pct']:.2f}%, "
                     f"packaged {v['tflite_accuracy_pct']:.2f}% (drop {v['drop_pt']:.2f} pt)")
    if "top1_agreement_pct" in v:  # absent for a .tflite input: no float model to compare with
        lines.append(f"- Top-1 agreement with the float model: {v['top1_agreement_pct']:.2f}%; "
                     f"max |error| {v['max_abs_error']:.4g}, mean {v['mean_abs_error']:.4g}")
    if v.get("agreement_caveat"):
        lines.append(f"- Agreement cannot mean anything here: {v['agreement_caveat']}; relative RMS output error "
                     f"{100 * v['rel_rms_error']:.2f}%")
    g = v.get("gate") or {}
    if g:
        lines.append(f"- Accuracy gate: {gate_limit(g)}")
    return lines + [""]


def gate_limit(g: dict) -> str:
    """The accuracy gate in words: its limit when applied, else why not.

    Example: ``gate_limit({"applied": False, "limit_pt": None, "reason": "turned off (max_accuracy_drop: none)"})``
    -> ``"turned off (max_accuracy_drop: none)"``.
    """
    if g.get("limit_pt") is not None:
        return f"{g['limit_pt']:.2f} pt on {g['on']}"
    if g.get("applied"):
        return f"{100 * g['limit_rel_rms_error']:.0f}% relative RMS error"
    return g.get("reason") or "not applied"


def _steps(steps: list[dict]) -> list[str]:
    cols = [c for c in STEP_COLUMNS if any(c in s for s in steps)]
    lines = ["## Steps", ""] + table(steps, cols)
    for s in steps:
        for key, val in s.items():
            if isinstance(val, list) and val and isinstance(val[0], dict):
                keys = list(dict.fromkeys(k for row in val for k in row))
                lines += [f"### {s.get('step')}: {key}", ""] + table(val, keys)
        if isinstance(s.get("sensitivity"), dict) and s["sensitivity"]:
            lines += _sensitivity(s)
    return lines


def _sensitivity(s: dict) -> list[str]:
    """The pruning search's one-shot scan: held-out accuracy per kept channel count, and its result."""
    col = "one-shot held-out accuracy % by kept channels"
    rows = [{"group": g, col: ", ".join(f"{c['channels']}: {cell(c['held_out_accuracy'])}" for c in curve)}
            for g, curve in s["sensitivity"].items()]
    res = s.get("search_result")
    tail = [f"Search ({s.get('search_allocation')}, decided on {s.get('search_decided_on')}): "
            + (cell(res) if isinstance(res, dict) else str(res)), ""] if res else []
    return [f"### {s.get('step')}: sensitivity", ""] + table(rows, ["group", col]) + tail


def _firmware(fw: dict) -> list[str]:
    a, b, p, h = fw.get("arena", {}), fw.get("budget", {}), fw.get("parity", {}), fw.get("harness", {})
    mp = fw.get("memory_plan") or {}
    lines = ["## Firmware", "", f"Device profile `{fw.get('device')}` ({fw.get('board')}); array `{fw.get('array_name')}`.", ""]
    lines += table(({"memory": k, "needed": b[k].get("needed"), "available": b[k].get("available"),
                     "headroom": b[k].get("headroom"),
                     "parts": cell({x: y for x, y in b[k].items() if x not in ("needed", "available", "headroom")})}
                    for k in ("flash", "ram") if k in b), ["memory", "needed", "available", "headroom", "parts"])
    lines += _kv([("arena (recommended)", a.get("recommended_bytes")), ("arena (smallest on host)", a.get("min_bytes")),
                  ("arena margin", a.get("margin_bytes")), ("TFLM recorded total", a.get("recorded_bytes")),
                  ("parity", f"not checked: {p['skipped']}" if p.get("skipped") else "bit-exact" if p.get("bit_exact")
                   else f"max {cell(p.get('max_step_diff', p.get('max_raw_diff')))} "
                   f"steps ({cell(p.get('max_abs_diff'))} in output units)"),
                  ("parity samples", f"{p.get('samples')} {p.get('data')}"),
                  ("harness expected CRC-32", h.get("expected_crc32")),
                  ("op registrations", ", ".join(fw.get("op_registrations", [])))])
    lines += [f"- {adv}" for adv in fw.get("advice", [])]
    return (lines + ([""] if fw.get("advice") else []) + memory(fw.get("memory_plan") or {}, fw.get("patches"), a)
            + _compression(fw.get("compression") or {}))


MEMORY_COLUMNS = ("arena", "total B", "activations B", "persistent B", "peak op", "decision")
TILING_COLUMNS = ("tiling", "arena", "planned_head", "tail", "extra_macs", "tiles_in_concat_output")


def _peak(p: Optional[dict]) -> Optional[str]:
    if not p or p.get("op") is None:
        return None
    return f"op {p['op']}{' ' + p['name'] if p.get('name') else ''} ({p.get('live_bytes', p.get('bytes')):,} B live)"


def _decision(d: dict) -> str:
    return ("kept: " if d.get("kept") else "not kept: ") + str(d.get("reason"))


MEMORY_NOTE = ("Host TFLM figures (64-bit: an upper bound of a 32-bit board's); activations = TFLM's non-persistent "
               "head, persistent = its tail (tensor structs, per-channel quantization data, op data).")


def memory_rows(mp: dict, patches: Optional[dict], arena: dict) -> list[dict]:
    """The tensor arena three ways (:data:`MEMORY_COLUMNS`), activations (TFLM's head) and persistent part (its
    tail) apart: TFLM's own planner, the offline plan (edgepack.tflm.memplan), patch-based inference
    (edgepack.tflm.patches), the live-set bound of the activations, the peak op, and what ships."""
    own, planned, bound = mp.get("own_arena") or {}, mp.get("planned_arena") or {}, mp.get("live_set_bound") or {}
    p = patches or {}
    peak = _peak(p.get("peak_op_before")) or _peak(bound)
    rows = [{"arena": "TFLM's own planner", "total B": own.get("bytes"), "activations B": own.get("head"),
             "persistent B": own.get("tail"), "peak op": peak},
            {"arena": "offline plan", "total B": planned.get("bytes"), "activations B": planned.get("head"),
             "persistent B": planned.get("tail"), "decision": _decision(mp) if mp else None}]
    if p.get("tiling"):
        rows.append({"arena": f"patches: {p['tiling']}", "total B": p.get("patched_arena"),
                     "activations B": p.get("patched_head"), "persistent B": p.get("patched_tail"),
                     "peak op": _peak(p.get("peak_op_after")), "decision": _decision(p)})
    else:
        rows.append({"arena": "patches", "decision": _decision(p) if p else
                     "off (--patches auto or recipe tflm.patches: auto tries them)"})
    if bound.get("bytes"):
        rows.append({"arena": "live-set bound", "activations B": bound["bytes"], "peak op": _peak(bound)})
    rows.append({"arena": "shipped (smallest that runs)", "total B": arena.get("min_bytes"),
                 "decision": f"firmware reserves {cell(arena.get('recommended_bytes'))} B with the margin"})
    return rows


def tiling_figures(p: dict) -> list[tuple[str, Any]]:
    """The tiling measured (kept or not): grid, stage ops, extra MACs, budget, bit-exactness; [] without one."""
    if not p.get("tiling"):
        return []
    macs = f"{cell(p.get('extra_macs'))} (+{cell(p.get('extra_macs_pct'))}% of {cell(p.get('macs'))})"
    pairs = [("patches: grid (rows x cols)", "x".join(str(g) for g in p.get("grid", [])) or None),
             ("patches: stage ops", p.get("stage_ops")), ("patches: extra MACs", macs),
             ("patches: MAC budget", f"{cell(p.get('mac_budget_pct'))}%"),
             ("patches: outputs bit-exact", None if p.get("bit_exact") is None else
              f"{cell(p['bit_exact'])} on {p.get('outputs_checked_samples')} samples")]
    return [kv for kv in pairs if kv[1] is not None]


def memory(mp: dict, patches: Optional[dict], arena: dict) -> list[str]:
    """report.md's memory section: :func:`memory_rows`, then the tiling's :func:`tiling_figures` and the
    tilings measured; [] when neither a memory plan nor patches were decided."""
    if not mp and not patches:
        return []
    p = patches or {}
    lines = ["### Memory: tensor arena", "", MEMORY_NOTE, ""] + table(memory_rows(mp, patches, arena), MEMORY_COLUMNS)
    if p.get("tiling"):
        lines += _kv(tiling_figures(p))
        if p.get("measured"):
            lines += ["Tilings measured (host TFLM arena by bisection):", ""] + table(p["measured"], TILING_COLUMNS)
    return lines


COMPRESSION_COLUMNS = ("tensor", "name", "op", "encoding", "bits", "per_channel", "bytes_before", "bytes_after",
                       "reason")


def _compression(c: dict) -> list[str]:
    """Weights kept compressed in flash for TFLM's DECODE op: the model before/after and one row per tensor."""
    if not c.get("tensors"):
        return []
    arena = c.get("arena_bytes") or {}
    exact = (c.get("bit_exact") or {}).get("bit_exact")
    lines = ["### Weights in flash (TFLM DECODE)", ""]
    lines += _kv([("model", f"{cell(c.get('plain_bytes'))} B plain int8 -> {cell(c.get('compressed_bytes'))} B "
                            f"({'DECODE op' if c.get('decode_op') else 'plain int8 kept'})"),
                  ("DECODE kernel code weighed", c.get("decode_code_bytes")),
                  ("arena (host)", f"{cell(arena.get('plain'))} -> {cell(arena.get('compressed'))} B"
                   if arena else None),
                  ("outputs vs plain", "bit-exact" if exact else None), ("why plain", c.get("dropped"))])
    rows = [{**t, "bits": t.get("bits"), "reason": t.get("reason") or ""} for t in c["tensors"]]
    return lines + table(rows, COMPRESSION_COLUMNS)


def _entropy(e: dict) -> list[str]:
    return ["## Download package", ""] + _kv([("model.tflite", fmt_bytes(e.get("tflite_bytes"))),
                                              ("model.tflite.epk", fmt_bytes(e.get("package_bytes"))),
                                              ("ratio", e.get("ratio"))])


def _profiles(profiles: list[dict]) -> list[str]:
    rows = []
    for p in profiles:
        lat, mem, en = p.get("latency", {}), p.get("memory", {}), p.get("energy", {})
        rows.append({"device": p["device"]["id"], "median_us": lat.get("median_us"), "p95_us": lat.get("p95_us"),
                     "latency": lat.get("source"), "peak/arena bytes": mem.get("peak_bytes") or mem.get("arena_bytes"),
                     "mJ/inference": en.get("per_inference_mj"), "energy": en.get("source")})
    return ["## Profiles", ""] + table(rows, ["device", "median_us", "p95_us", "latency", "peak/arena bytes",
                                              "mJ/inference", "energy"])


def _provenance(pv: dict) -> list[str]:
    lines = ["## Provenance", ""]
    lines += [f"- {name}: `{item['path']}` sha256 {item['sha256']}" for name, item in pv.get("inputs", {}).items()]
    lines += [f"- {name}: sha256 {digest}" for name, digest in pv.get("outputs", {}).items()]
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in pv.get("versions", {}).items()))
    return lines + [""]


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of a package report."""
    lines = _summary(report)
    if report.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    if report.get("verification"):
        lines += _verification(report["verification"])
    if report.get("steps"):
        lines += _steps(report["steps"])
    if report.get("layers"):
        cols = [c for c in LAYER_COLUMNS if any(c in r for r in report["layers"])]
        lines += ["## Layers", "", "Quantization error per op (TensorFlow's QuantizationDebugger on calibration "
                  "samples): `rmse_steps` is the RMS error in quantization steps (0.29 is the rounding floor).", ""]
        if report.get("layer_errors_note"):
            lines += [f"No error figures: {report['layer_errors_note']}.", ""]
        lines += table(report["layers"], cols)
    if report.get("firmware"):
        lines += _firmware(report["firmware"])
    if report.get("entropy"):
        lines += _entropy(report["entropy"])
    if report.get("profiles"):
        lines += _profiles(report["profiles"])
    if report.get("provenance"):
        lines += _provenance(report["provenance"])
    return "\n".join(lines)
