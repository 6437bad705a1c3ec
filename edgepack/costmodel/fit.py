"""Calibrating per-core cost models on published MLPerf Tiny latencies, with leave-one-out.

The *shape* of every cost model - the relative cost of each op class per MAC, per
element and per op - is the instruction count of TFLM's reference kernels compiled for
Cortex-M4, measured per op class on synthetic single-op models in QEMU
(``-icount shift=0``; bench/estimate_bench.py; stored in
``device_profiles/cores/cortex-m4.yaml`` under ``calibration.instructions``). The
published latencies of one core fit only a few non-negative **scales** on that shape
(:data:`FORMS`): one scale for everything, a MAC scale and an overhead scale, or
separate dense-MAC / depthwise-MAC / overhead scales. The fit is
``scipy.optimize.nnls`` on relative error (each row divided by its measured cycles).

Leave-one-out holds out one *model* (on every board of the core at once) and predicts
it from the others: it says how well the cost model carries to a model it never saw.

Example::

    ins = InstructionModel.from_calibration(load_cost_model("cortex-m4").calibration)
    pts = [Point(**p) for p in load_cost_model("cortex-m7").calibration["data"]]
    scales = fit(pts, "mac_rest")
    rows = leave_one_out(pts, "mac_rest")
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict

from .estimate import DEFAULT, op_work

DEPTHWISE = "DEPTHWISE_CONV_2D"
# form -> {scale name: the work terms it multiplies}
FORMS: dict[str, dict[str, tuple[str, ...]]] = {
    "one_scale": {"all": ("dense", "dw", "rest")},
    "mac_rest": {"mac": ("dense", "dw"), "rest": ("rest",)},
    "dense_dw_rest": {"dense": ("dense",), "dw": ("dw",), "rest": ("rest",)},
}
MLPERF_FILES = {"kws": "kws_ref_model.tflite", "ic": "pretrainedResnet_quant.tflite", "ad": "ad01_int8.tflite"}
_FIGURE_RE = re.compile(r"Median throughput is\s+([\d.]+)\s*inf\./sec|([\d.]+)\s*ms")


@dataclass
class InstructionModel:
    """Instructions per MAC / per element / per op, by op class (QEMU-measured)."""

    per_mac: dict[str, float] = field(default_factory=dict)
    per_element: dict[str, float] = field(default_factory=dict)
    per_op: float = 0.0

    @classmethod
    def from_calibration(cls, calibration: dict) -> "InstructionModel":
        ins = calibration["instructions"]
        return cls(per_mac=dict(ins["per_mac"]), per_element=dict(ins["per_element"]), per_op=float(ins["per_op"]))

    def scaled(self, cpi: float) -> "ScaledModel":
        return self.tables("one_scale", {"all": cpi})

    def tables(self, form: str, scales: dict[str, float]) -> "ScaledModel":
        """Cycles per MAC / element / op: this shape times the form's scales."""
        groups = FORMS[form]

        def scale_of(term: str) -> float:
            return next(scales[g] for g, terms in groups.items() if term in terms)

        mac = {op: v * scale_of("dw" if op == DEPTHWISE else "dense") for op, v in self.per_mac.items()}
        rest = scale_of("rest")
        return ScaledModel(mac, {op: v * rest for op, v in self.per_element.items()}, self.per_op * rest)

    def work(self, info) -> dict[str, float]:
        """The instruction count of a model split into the terms the forms scale."""
        one = self.scaled(1.0)
        out = {"dense": 0.0, "dw": 0.0, "rest": 0.0}
        for w in op_work(info):
            per_mac = one.cycles_per_mac.get(w.op, one.cycles_per_mac.get(DEFAULT, 0.0))
            per_el = one.cycles_per_element.get(w.op, one.cycles_per_element.get(DEFAULT, 0.0))
            out["dw" if w.op == DEPTHWISE else "dense"] += per_mac * w.macs
            out["rest"] += per_el * w.elements + one.cycles_per_op
        return out


@dataclass
class ScaledModel:
    """Cycles per MAC / element / op (the tables estimate.op_cycles reads)."""

    cycles_per_mac: dict[str, float]
    cycles_per_element: dict[str, float]
    cycles_per_op: float


class Point(BaseModel):
    """One published figure: a model on a board, and exactly where it was published."""

    model_config = ConfigDict(extra="forbid")
    model: str  # kws | ic | ad | vww | other name
    board: str
    clock_hz: int
    stack: str
    latency_ms: float
    published: str  # the figure as printed, e.g. "Median throughput is 19.774 inf./sec."
    source: str  # repository@commit:path line N
    work: dict[str, float]  # instruction counts of the model under the shape: dense, dw, rest
    macs: int
    energy_uj: Optional[float] = None
    energy_source: Optional[str] = None

    @property
    def cycles(self) -> float:
        return self.latency_ms * 1e-3 * self.clock_hz


def latency_from_published(text: str) -> float:
    """Milliseconds per inference from the figure as published (throughput or ms)."""
    m = _FIGURE_RE.search(text)
    if not m:
        raise ValueError(f"no latency figure in {text!r}")
    return 1000.0 / float(m.group(1)) if m.group(1) else float(m.group(2))


def _row(p: Point, form: str) -> list[float]:
    return [sum(p.work[t] for t in terms) / p.cycles for terms in FORMS[form].values()]


def fit(points: list[Point], form: str) -> dict[str, float]:
    """Non-negative scales minimising the squared relative errors (scipy.optimize.nnls)."""
    import numpy as np
    from scipy.optimize import nnls

    A = np.array([_row(p, form) for p in points], dtype=np.float64)
    x, _ = nnls(A, np.ones(len(points)))
    return {g: float(v) for g, v in zip(FORMS[form], x)}


def predict_cycles(work: dict[str, float], form: str, scales: dict[str, float]) -> float:
    return sum(scales[g] * sum(work[t] for t in terms) for g, terms in FORMS[form].items())


def leave_one_out(points: list[Point], form: str) -> list[dict]:
    """For each model: fit on the other models (all boards), predict this one on each board."""
    rows = []
    for model in dict.fromkeys(p.model for p in points):
        train = [p for p in points if p.model != model]
        usable = len({p.model for p in train}) >= len(FORMS[form])
        scales = fit(train, form) if train else {}
        for p in (q for q in points if q.model == model):
            pred = predict_cycles(p.work, form, scales) / p.clock_hz * 1e3 if usable else None
            rows.append({"model": model, "board": p.board, "measured_ms": p.latency_ms, "predicted_ms": pred,
                         "error_pct": None if pred is None else 100.0 * (pred / p.latency_ms - 1.0)})
    return rows


def max_abs_error(rows: list[dict]) -> Optional[float]:
    errs = [abs(r["error_pct"]) for r in rows if r["error_pct"] is not None]
    return max(errs) if len(errs) == len(rows) and errs else None


def energy_leave_one_out(points: list[Point], form: str) -> list[dict]:
    """Energy = leave-one-out latency x the board's mean power on the other models (energy / latency)."""
    lat = {(r["model"], r["board"]): r["predicted_ms"] for r in leave_one_out(points, form)}
    rows = []
    for p in (q for q in points if q.energy_uj is not None):
        others = [q for q in points if q.board == p.board and q.model != p.model and q.energy_uj is not None]
        if not others or lat[(p.model, p.board)] is None:
            continue
        mw = sum(q.energy_uj / q.latency_ms for q in others) / len(others)  # uJ/ms = mW
        pred = mw * lat[(p.model, p.board)]
        rows.append({"model": p.model, "board": p.board, "measured_uj": p.energy_uj, "predicted_uj": pred,
                     "mean_power_mw_others": mw, "error_pct": 100.0 * (pred / p.energy_uj - 1.0)})
    return rows


def mlperf_work(models_dir: Path, ins: InstructionModel) -> dict[str, tuple[dict[str, float], int]]:
    """Work terms and MACs of the MLPerf Tiny .tflite files in ``models_dir`` (kws, ic, ad)."""
    from ..convert.flatbuffer import read_tflite

    out = {}
    for key, name in MLPERF_FILES.items():
        path = Path(models_dir) / name
        info = read_tflite(path.read_bytes(), str(path))
        out[key] = (ins.work(info), int(sum(w.macs for w in op_work(info))))
    return out

