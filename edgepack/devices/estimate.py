"""Latency and energy estimates for a device profile, from a per-op cost model.

cycles = sum over ops of  cycles_per_mac[op] x MACs  +  cycles_per_element[op] x elements
         + cycles_per_op

where MACs and elements come from the .tflite itself (:mod:`edgepack.convert.flatbuffer`;
elements = output elements, input elements for pooling/reductions). An op missing
from a table uses its ``DEFAULT`` entry. Latency = cycles / clock_hz; energy = latency x
the profile's active power. Every figure is labelled "estimated". For a firmware folder
written by ``edgepack package``, memory (tensor arena, flash and RAM needed) is carried
from its report.json (computed when packaging, not measured), and ``estimate`` without a
profile uses the device profile that folder was packaged for.

The cost model comes from the profile's ``cost_model`` block when present, else from
the per-core file ``device_profiles/cores/<core>.yaml`` (how it was calibrated, and
its leave-one-out error on the MLPerf Tiny models, are written in that file; see
bench/estimate_bench.py).

Example::

    with open_device("estimate:nucleo-l4r5zi") as dev:
        r = dev.profile(Path("model.tflite"))
    r.latency.median_us, r.energy.per_inference_mj      # both source="estimated"
    with open_device("estimate") as dev:                # the profile of build/firmware/report.json
        r = dev.profile(Path("build/firmware"))
    r.memory.arena_bytes                                # from that report, source="estimated"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from pydantic import ValidationError

from ..boards import CostModel
from ..errors import DeviceError, UsageError
from .base import ENERGY_ESTIMATE, LATENCY, OP_PROFILE, Device, ResolvedArtifact, firmware_report
from .result import DeviceInfo, Energy, Latency, Memory, OpTime, ProfileResult, Settings

POOLING = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "MEAN", "SUM", "REDUCE_MAX",
                     "REDUCE_MIN", "REDUCE_PROD"})
DEFAULT = "DEFAULT"


@dataclass(frozen=True)
class OpWork:
    """The work of one op: its name, MACs and elements."""

    op: str
    macs: int
    elements: int


def keras_latency_ms(profile) -> Optional[Callable[[Any], float]]:
    """A function giving the estimated latency (ms) of a Keras model on ``profile``'s cost model, or
    None when there is no profile or its core has no cost model.

    It estimates from the model's float conversion (the same ops and MACs as its int8 build, without
    a calibration pass); deterministic, so a pruning search driven by it gives the same bytes every run.
    Example: ``ms = keras_latency_ms(load_profile("nucleo-l4r5zi"))(model)``.
    """
    if profile is None:
        return None
    try:
        cm = profile_cost_model(profile)
    except DeviceError:
        return None

    def latency_ms(model) -> float:
        from ..convert.flatbuffer import read_tflite
        from ..convert.tflite import convert
        from ..quantize.config import QuantizeConfig

        cycles, _ = estimate_cycles(read_tflite(convert(model, QuantizeConfig(mode="none"))), cm)
        return 1000.0 * cycles / profile.clock_hz

    return latency_ms


def op_work(info) -> list[OpWork]:
    """MACs and elements of every op in a TfliteInfo, in execution order."""
    out = []
    for o in info.ops:
        ref = o.inputs[0] if (o.op in POOLING and o.inputs) else (o.outputs[0] if o.outputs else -1)
        shape = info.tensors[ref].shape if ref >= 0 else []
        n = 1
        for d in shape:
            n *= max(int(d), 1)
        out.append(OpWork(o.op, int(info.op_macs(o)), n if ref >= 0 else 0))
    return out


def op_cycles(w: OpWork, cm) -> float:
    """Cycles of one op under cost model ``cm`` (anything with the three tables)."""
    per_mac = cm.cycles_per_mac.get(w.op, cm.cycles_per_mac.get(DEFAULT, 0.0))
    per_el = cm.cycles_per_element.get(w.op, cm.cycles_per_element.get(DEFAULT, 0.0))
    return per_mac * w.macs + per_el * w.elements + cm.cycles_per_op


def estimate_cycles(info, cm) -> tuple[float, list[tuple[OpWork, float]]]:
    """Total cycles and (work, cycles) per op.

    Example: ``total, per_op = estimate_cycles(read_tflite(data), load_cost_model("cortex-m4"))``.
    """
    rows = [(w, op_cycles(w, cm)) for w in op_work(info)]
    return sum(c for _, c in rows), rows


def cores_dir() -> Path:
    from ..paths import data_dir

    return data_dir("device_profiles") / "cores"


def load_cost_model(core: str) -> CostModel:
    """The per-core cost model; DeviceError naming the file to add when there is none."""
    path = cores_dir() / f"{core}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in cores_dir().glob("*.yaml"))) or "none"
        raise DeviceError(f"no latency cost model for core {core} (cores with one: {known}); add "
                          f"{path} or a cost_model block to the device profile")
    try:
        return CostModel.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as e:
        raise UsageError(f"{path}: invalid cost model ({str(e).splitlines()[0]}); fix the file") from None


def profile_cost_model(profile):
    """The profile's own cost_model block, else its core's file."""
    if getattr(profile, "cost_model", None) is not None:
        return profile.cost_model
    return load_cost_model(profile.core)


def _op_table(rows: list[tuple[OpWork, float]], clock_hz: int) -> list[OpTime]:
    total = sum(c for _, c in rows) or 1.0
    agg: dict[str, list[float]] = {}
    for w, c in rows:
        agg.setdefault(w.op, []).append(c)
    return [OpTime(op=op, count=len(cs), avg_us=sum(cs) / len(cs) * 1e6 / clock_hz,
                   percent=100.0 * sum(cs) / total) for op, cs in sorted(agg.items(), key=lambda kv: -sum(kv[1]))]


def report_memory(fw: Optional[dict]) -> tuple[Memory, Optional[str]]:
    """Memory block from a firmware report: arena, flash and RAM needed, labelled estimated."""
    budget = (fw or {}).get("budget") or {}
    flash, ram = budget.get("flash") or {}, budget.get("ram") or {}
    arena = ram.get("arena", ((fw or {}).get("arena") or {}).get("recommended_bytes"))
    if arena is None:
        return Memory(), None
    mem = Memory(source="estimated", arena_bytes=int(arena), flash_bytes=flash.get("needed"),
                 ram_bytes=ram.get("needed"))
    note = (f"memory from the firmware report (packaged for {fw.get('device', '?')}): arena {int(arena):,d} B "
            f"(bisected on the host TFLM plus margin), flash {flash.get('needed', 0):,d} B = model "
            f"{flash.get('model', 0):,d} B + runtime estimate, RAM {ram.get('needed', 0):,d} B = arena + runtime "
            "estimate; computed from the package, not measured")
    return mem, note


class EstimateDevice(Device):
    """A device profile without the device: latency and energy from the per-op cost model.

    ``target`` is a profile name (``estimate:nucleo-l4r5zi``) or a profile .yaml path; empty
    (``estimate``) means the profile recorded in the firmware folder's report.json.
    """

    kind = "estimate"
    capabilities = frozenset({LATENCY, ENERGY_ESTIMATE, OP_PROFILE})
    option_names = frozenset()

    def __init__(self, target: str):
        super().__init__(target)
        self.profile_ = self.cost_model = None
        if target:
            self._load(target)
        self._art: Optional[ResolvedArtifact] = None
        self._fw: Optional[dict] = None

    def _load(self, name: str) -> None:
        from ..boards import load_profile

        self.profile_ = load_profile(name)
        self.cost_model = profile_cost_model(self.profile_)

    def prepare(self, artifact: ResolvedArtifact) -> None:
        self._art = artifact
        self._fw = firmware_report(artifact.path)
        if self.profile_ is None:
            device = (self._fw or {}).get("device")
            if not device:
                raise DeviceError(f"--device estimate: {artifact.path} is not a firmware folder whose report.json "
                                  "names a device profile; use --device estimate:PROFILE (see `edgepack devices`)")
            self._load(device)

    def run(self, settings: Settings) -> ProfileResult:
        """Estimate one inference (``settings`` are recorded; an estimate needs no runs)."""
        from ..convert.flatbuffer import read_tflite

        if self._art is None:
            raise DeviceError("estimate device: prepare(artifact) must come before run()")
        p, cm = self.profile_, self.cost_model
        info = read_tflite(self._art.model, str(self._art.path))
        cycles, rows = estimate_cycles(info, cm)
        us = cycles * 1e6 / p.clock_hz
        lat = Latency(source="estimated", n=0, min_us=us, median_us=us, mean_us=us, p95_us=us, max_us=us,
                      cycles=cycles)
        energy = Energy(source="estimated", per_inference_mj=p.power.active_mw * us / 1e6,
                        method=f"estimated latency x profile active power {p.power.active_mw:g} mW")
        cal = getattr(cm, "calibration", {}) or {}
        notes = [f"estimated with the {getattr(cm, 'core', p.core)} cost model at {p.clock_hz / 1e6:g} MHz "
                 f"({sum(w.macs for w in op_work(info))} MACs); nothing was run"]
        if getattr(cm, "stack", ""):
            notes.append(f"cost model calibrated on published figures of: {cm.stack}")
        if cal.get("loo_max_abs_error_pct") is not None:
            notes.append(f"cost model leave-one-out error on MLPerf Tiny: up to {cal['loo_max_abs_error_pct']:.1f}%")
        elif cal:
            notes.append("cost model has no leave-one-out check (too few published points)")
        if cal.get("zero_scales"):
            notes.append(f"cost model limit: {cal['zero_scales']}")
        if cal.get("proxy"):
            notes.append(f"proxy calibration: {cal['proxy']}")
        memory, mem_note = report_memory(self._fw)
        if mem_note:
            notes.append(mem_note)
        return ProfileResult(
            device=DeviceInfo(kind="estimate", id=p.name, name=p.board, profile=p.name,
                              details={"core": p.core, "clock_hz": str(p.clock_hz)}),
            artifact=self._art.artifact(), settings=settings, latency=lat, energy=energy, memory=memory,
            ops=_op_table(rows, p.clock_hz), notes=notes)
