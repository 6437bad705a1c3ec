"""Latency estimates for a device profile, from a per-op cost model.

cycles = sum over ops of  cycles_per_mac[op] x MACs  +  cycles_per_element[op] x elements
         + cycles_per_op

where MACs and elements come from the .tflite itself (:mod:`edgepack.convert.flatbuffer`;
elements = output elements, input elements for pooling/reductions). An op missing
from a table uses its ``DEFAULT`` entry. Latency = cycles / clock_hz (the ``estimate``
device, :mod:`edgepack.devices.estimate`, adds energy = latency x the profile's active power
and labels every figure "estimated"; :mod:`edgepack.costmodel.fit` fits the tables).

The cost model comes from the profile's ``cost_model`` block when present, else from
the per-core file ``device_profiles/cores/<core>.yaml`` (how it was calibrated, and
its leave-one-out error on the MLPerf Tiny models, are written in that file; see
bench/estimate_bench.py).

Example::

    cm = load_cost_model("cortex-m4")
    cycles, per_op = estimate_cycles(read_tflite(Path("model.tflite").read_bytes()), cm)
    cycles / load_profile("nucleo-l4r5zi").clock_hz     # seconds per inference
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml
from pydantic import ValidationError

from ..errors import DeviceError, UsageError
from ..profiles import CostModel

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
