"""Plots for report.html, drawn with matplotlib as inline SVG (no files, no network).

Deterministic: a fixed SVG hash salt, no date metadata, glyphs as paths (no font needed to view).

Example::

    svg = budget_svg(report["firmware"]["budget"])   # '<svg ...>...</svg>'
"""

from __future__ import annotations

import io
from typing import Optional

_RC = {"svg.hashsalt": "edgepack", "svg.fonttype": "path", "font.size": 8, "axes.spines.top": False,
       "axes.spines.right": False}
_BLUE, _ORANGE, _GREY = "#3b6ea5", "#e08a2c", "#c8c8c8"


def _svg(draw, size=(7.0, 2.4)) -> str:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=size, dpi=100)
        draw(fig)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def steps_svg(steps: list[dict]) -> Optional[str]:
    """Size, accuracy, MACs and latency after each compression step (small multiples)."""
    panels = [(k, t) for k, t in (("float_tflite_bytes", "float .tflite bytes"), ("entropy_coded_bytes", "download bytes"),
                                  ("keras_accuracy_pct", "accuracy %"), ("macs", "MACs"), ("host_latency_us", "host latency us"))
              if any(k in s for s in steps)]
    if not steps or not panels:
        return None
    names = [s.get("step", "?") for s in steps]

    def draw(fig):
        for i, (key, title) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            vals = [s.get(key, 0) or 0 for s in steps]
            ax.bar(range(len(vals)), vals, color=_BLUE)
            ax.set_title(title)
            ax.set_xticks(range(len(vals)), names, rotation=45, ha="right")
            if key == "keras_accuracy_pct":
                lo = min(vals)
                ax.set_ylim(max(0, lo - 5), 100)

    return _svg(draw, (max(7.0, 1.8 * len(panels)), 2.6))


def layers_svg(layers: list[dict]) -> Optional[str]:
    """MACs per op, and the quantization error each op adds (in steps) where measured."""
    if not layers:
        return None
    has_err = any(r.get("rmse_steps") is not None for r in layers)
    labels = [f"{r['index']} {r['op']}" for r in layers]

    def draw(fig):
        ax = fig.add_subplot(1, 2 if has_err else 1, 1)
        ax.barh(range(len(layers)), [r.get("macs", 0) for r in layers], color=_BLUE)
        ax.set_yticks(range(len(layers)), labels)
        ax.invert_yaxis()
        ax.set_title("MACs per op")
        if has_err:
            ax2 = fig.add_subplot(1, 2, 2)
            ax2.barh(range(len(layers)), [r.get("rmse_steps") or 0 for r in layers], color=_ORANGE)
            ax2.axvline(0.2887, color=_GREY, linestyle="--", linewidth=1)
            ax2.set_yticks(range(len(layers)), [""] * len(layers))
            ax2.invert_yaxis()
            ax2.set_title("quant. RMS error (steps)\ndashed: rounding alone", loc="left")

    return _svg(draw, (7.0, max(1.6, 0.22 * len(layers) + 0.8)))


def budget_svg(budget: dict) -> Optional[str]:
    """Flash and RAM: what the model and runtime need against what the board has."""
    if not budget or "flash" not in budget or "ram" not in budget:
        return None
    f, r = budget["flash"], budget["ram"]
    rows = [("flash", [("model", f.get("model", 0)), ("TFLM runtime (est.)", f.get("runtime_estimate", 0))],
             f["available"]),
            ("RAM", [("tensor arena", r.get("arena", 0)), ("runtime (est.)", r.get("runtime_estimate", 0))],
             r["available"])]

    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        for y, (name, parts, avail) in enumerate(rows):
            left = 0
            for j, (label, n) in enumerate(parts):
                ax.barh(y, n / 1024, left=left / 1024, color=(_BLUE, _ORANGE)[j], label=label if y == 0 else None)
                left += n
            ax.barh(y, (avail - left) / 1024, left=left / 1024, color=_GREY, label="free" if y == 0 else None)
            ax.text(avail / 1024, y, f" {100 * left / avail:.0f}% of {avail / 1024:.0f} KiB", va="center")
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.set_xlabel("KiB")
        ax.legend(loc="lower right", fontsize=7, frameon=False)

    return _svg(draw, (7.0, 1.8))


def profiles_svg(profiles: list[dict]) -> Optional[str]:
    """Latency per device: min, median, p95 and max (the distribution's summary)."""
    rows = [(p["device"]["id"], p["latency"]) for p in profiles or [] if p.get("latency", {}).get("median_us")]
    if not rows:
        return None

    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        for y, (_, lat) in enumerate(rows):
            lo, hi = lat.get("min_us") or lat["median_us"], lat.get("max_us") or lat["median_us"]
            ax.plot([lo, hi], [y, y], color=_GREY, linewidth=1)
            p95 = lat.get("p95_us") or lat["median_us"]
            ax.plot([lat["median_us"], p95], [y, y], color=_BLUE, linewidth=5)
            ax.plot([lat["median_us"]], [y], "o", color=_ORANGE)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.set_xlabel("latency per inference (us): min-max line, median dot, median-p95 bar")

    return _svg(draw, (7.0, max(1.4, 0.4 * len(rows) + 0.8)))


def memory_svg(patches: dict) -> Optional[str]:
    """Live activation bytes per op before and after patch-based inference (memory over time), with the
    arena TFLM needs each way (persistent part included) as dashed lines."""
    before, after = patches.get("live_bytes_before"), patches.get("live_bytes_after")
    if not before:
        return None

    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        ax.step(range(len(before)), [b / 1024 for b in before], where="mid", color=_GREY, label="live, before")
        if after:
            ax.step(range(len(after)), [b / 1024 for b in after], where="mid", color=_BLUE, label="live, with patches")
        for key, color, label in (("baseline_arena", _GREY, "arena before"), ("patched_arena", _ORANGE, "arena with patches")):
            if patches.get(key):
                ax.axhline(patches[key] / 1024, color=color, linestyle="--", linewidth=1, label=label)
        ax.set_xlabel("op (execution order)")
        ax.set_ylabel("KiB")
        ax.legend(loc="upper right", fontsize=7, frameon=False)

    return _svg(draw, (7.0, 2.4))
