"""The ``estimate`` device: a device profile without the device, figures from the cost model.

Latency comes from :mod:`edgepack.costmodel.estimate` (cycles / clock_hz); energy = latency x
the profile's active power. Every figure is labelled "estimated". For a firmware folder
written by ``edgepack package``, memory (tensor arena, flash and RAM needed) is carried
from its report.json (computed when packaging, not measured), and ``estimate`` without a
profile uses the device profile that folder was packaged for.

Example::

    with open_device("estimate:nucleo-l4r5zi") as dev:
        r = dev.profile(Path("model.tflite"))
    r.latency.median_us, r.energy.per_inference_mj      # both source="estimated"
    with open_device("estimate") as dev:                # the profile of build/firmware/report.json
        r = dev.profile(Path("build/firmware"))
    r.memory.arena_bytes                                # from that report, source="estimated"
"""

from __future__ import annotations

from typing import Optional

from ..costmodel.estimate import estimate_cycles, op_work, profile_cost_model
from ..errors import DeviceError
from .artifact import ResolvedArtifact, firmware_report
from .lifecycle import ENERGY_ESTIMATE, LATENCY, OP_PROFILE, Device
from .result import DeviceInfo, Energy, Latency, Memory, OpTime, ProfileResult, Settings


def _op_table(rows: list[tuple[OpWork, float]], clock_hz: int) -> list[OpTime]:
    total = sum(c for _, c in rows) or 1.0
    agg: dict[str, list[float]] = {}
    for w, c in rows:
        agg.setdefault(w.op, []).append(c)
    return [OpTime(op=op, count=len(cs), avg_us=sum(cs) / len(cs) * 1e6 / clock_hz,
                   percent=100.0 * sum(cs) / total) for op, cs in sorted(agg.items(), key=lambda kv: -sum(kv[1]))]


def report_memory(fw) -> tuple[Memory, Optional[str]]:
    """Memory block from a firmware report section (:class:`edgepack.report.schema.Firmware`): arena,
    flash and RAM needed, labelled estimated."""
    if fw is None:
        return Memory(), None
    arena, flash, ram = fw.arena_bytes, fw.budget.flash, fw.budget.ram
    mem = Memory(source="estimated", arena_bytes=arena, flash_bytes=flash.needed, ram_bytes=ram.needed)
    note = (f"memory from the firmware report (packaged for {fw.device or '?'}): arena {arena:,d} B "
            f"(bisected on the host TFLM plus margin), flash {flash.needed:,d} B = model "
            f"{flash.model_extra.get('model', 0):,d} B + runtime estimate, RAM {ram.needed:,d} B = arena + runtime "
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
        self._fw = None  # the package's firmware report section, when the artifact is a firmware folder

    def _load(self, name: str) -> None:
        from ..profiles import load_profile

        self.profile_ = load_profile(name)
        self.cost_model = profile_cost_model(self.profile_)

    def prepare(self, artifact: ResolvedArtifact) -> None:
        self._art = artifact
        self._fw = firmware_report(artifact.path)
        if self.profile_ is None:
            device = self._fw.device if self._fw is not None else None
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
