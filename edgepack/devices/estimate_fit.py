"""Calibrating the per-op cost model on published MLPerf Tiny latencies, with leave-one-out.

With three models that have a .tflite (KWS, IC, AD; VWW has none), only very few
parameters may be fitted or leave-one-out says nothing. So the *shape* of the
cost model - the relative cost of each op class per MAC and per element - is not
fitted on the published latencies at all: it is the instruction count of TFLM's
reference kernels compiled for Cortex-M4, measured per op class on synthetic
single-op models in QEMU (``-icount shift=0``, exact counts; see
bench/estimate_bench.py). The published latencies fit **one** parameter, the cycles
per instruction (CPI) of the real core, by least squares on relative error.

Example::

    base = InstructionModel(per_mac={"CONV_2D": 5.1}, per_element={"ADD": 30.0}, per_op=900.0)
    cpi, rows = leave_one_out(base, load_mlperf_reference(models_dir))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .estimate import estimate_cycles

# Published MLPerf Tiny v0.5 results, TFLM reference implementation on the STM32
# NUCLEO-L4R5ZI (Cortex-M4 @ 120 MHz): latency per inference in ms
# (../shared/models/mlperf_tiny/README.md; mlcommons/tiny_results_v0.5).
MLPERF_TINY_TFLM_REFERENCE_MS = {
    "kws_ref_model.tflite": 181.9,
    "pretrainedResnet_quant.tflite": 704.2,
    "ad01_int8.tflite": 10.05,
}
MLPERF_CLOCK_HZ = 120_000_000
SOURCE = ("MLPerf Tiny v0.5 closed division, reference (TFLM) on NUCLEO-L4R5ZI @ 120 MHz: "
          "KWS 181.9 ms, IC 704.2 ms, AD 10.05 ms (mlcommons/tiny_results_v0.5)")


@dataclass
class InstructionModel:
    """Instructions per MAC / per element / per op, by op class (QEMU-measured)."""

    per_mac: dict[str, float] = field(default_factory=dict)
    per_element: dict[str, float] = field(default_factory=dict)
    per_op: float = 0.0

    def scaled(self, cpi: float) -> "ScaledModel":
        return ScaledModel({k: v * cpi for k, v in self.per_mac.items()},
                           {k: v * cpi for k, v in self.per_element.items()}, self.per_op * cpi)


@dataclass
class ScaledModel:
    """Cycles per MAC / element / op (the tables estimate.op_cycles reads)."""

    cycles_per_mac: dict[str, float]
    cycles_per_element: dict[str, float]
    cycles_per_op: float


@dataclass
class Sample:
    name: str
    info: object  # TfliteInfo
    measured_cycles: float


def load_mlperf_reference(models_dir: Path) -> list[Sample]:
    """The MLPerf Tiny .tflite files with their published TFLM-reference cycles at 120 MHz."""
    from ..convert.flatbuffer import read_tflite

    out = []
    for name, ms in MLPERF_TINY_TFLM_REFERENCE_MS.items():
        path = Path(models_dir) / name
        out.append(Sample(name, read_tflite(path.read_bytes(), str(path)), ms * 1e-3 * MLPERF_CLOCK_HZ))
    return out


def fit_cpi(base: InstructionModel, samples: list[Sample]) -> float:
    """The CPI minimising the sum of squared relative errors: closed form."""
    r = [estimate_cycles(s.info, base.scaled(1.0))[0] / s.measured_cycles for s in samples]
    return sum(r) / sum(x * x for x in r)


def leave_one_out(base: InstructionModel, samples: list[Sample]) -> tuple[float, list[dict]]:
    """CPI fitted on all samples, and for each sample its error when fitted on the others."""
    rows = []
    for i, s in enumerate(samples):
        cpi = fit_cpi(base, samples[:i] + samples[i + 1:])
        pred = estimate_cycles(s.info, base.scaled(cpi))[0]
        rows.append({"model": s.name, "measured_ms": s.measured_cycles / MLPERF_CLOCK_HZ * 1e3,
                     "predicted_ms": pred / MLPERF_CLOCK_HZ * 1e3, "cpi_fitted_on_others": cpi,
                     "error_pct": 100.0 * (pred - s.measured_cycles) / s.measured_cycles})
    return fit_cpi(base, samples), rows
