"""Automatic mixed precision: per-op int8 / int16x8 activations / float, from measured sensitivity.

1. The model is converted to a float .tflite and calibrated once.
2. Sensitivity: for every op, the model is quantized with *only that op* in int8
   (everything else float) and run in LiteRT; the accuracy drop on ``--eval``
   data (or, without labels, the drop in top-1 agreement with the float model on
   calibration data) and the relative output error are recorded.
3. Plan: start with every op int8; while the whole model loses more than the
   budget, move the most sensitive int8 op to int16x8 activations (int8
   weights: no size cost), then, if still needed, ops to float in the same
   order (``allow`` sets the order of fallbacks: ``[float, int16x8]`` prefers
   XNNPACK-fast float over slow int16 kernels). Once the budget is met, a
   clean-up pass tries each promoted op back at int8 (or at a fallback earlier
   in ``allow``), least sensitive first, and keeps every change that still
   meets the budget: the model keeps the most int8 ops and, with the default
   ``allow``, the least float weight.
4. The plan goes to the converter as ``ctx.convert_hints["precision_plan"]``
   ({op output tensor name: "int8" | "int16x8" | "float"}); :func:`quantize_plan`
   applies it with ai-edge-quantizer (per-op recipes), and LiteRT runs the result.

The package keeps float input/output (``quantize: {mode: int8, io: float}``).

Recipe::

    steps:
      - {type: mixed_precision, max_accuracy_drop: 0.5}
    quantize: {mode: int8, io: float}

Python::

    model = MixedPrecision(MixedPrecision.Config(max_accuracy_drop=0.5)).apply(model, ctx)
    data = convert(model, QuantizeConfig(mode="int8"), ctx.calibration, ctx.convert_hints)
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from ..errors import ConversionError, RecipeError
from .base import Context, Pass, PassConfig
from .order import forbid_after

Precision = Literal["int8", "int16x8", "float"]
_ACT = {"int8": {"num_bits": 8, "symmetric": False}, "int16x8": {"num_bits": 16, "symmetric": True}}


def _op_config(precision: str, per_channel: bool) -> dict:
    return {"activation_tensor_config": {**_ACT[precision], "granularity": "TENSORWISE", "dtype": "INT"},
            "weight_tensor_config": {"num_bits": 8, "symmetric": True, "dtype": "INT",
                                     "granularity": "CHANNELWISE" if per_channel else "TENSORWISE"},
            "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
            "min_weight_elements": 0}


def plan_recipe(plan: dict[str, str], default: str = "int8", per_channel: bool = True) -> list[dict]:
    """An ai-edge-quantizer recipe (list of rules, later rules win) for a per-op plan.

    Example::

        plan_recipe({"model/fc1/MatMul": "int16x8", "StatefulPartitionedCall:0": "float"})
    """
    def rule(regex: str, precision: str) -> dict:
        if precision == "float":
            return {"regex": regex, "operation": "*", "algorithm_key": "no_quantize"}
        return {"regex": regex, "operation": "*", "algorithm_key": "min_max_uniform_quantize",
                "op_config": _op_config(precision, per_channel)}

    rules = [rule(".*", default)]
    # ai-edge-quantizer matches rules against the op's output names joined and ended by ";"
    rules += [rule("^" + re.escape(name) + ";", p) for name, p in sorted(plan.items()) if p != default]
    return rules


@contextlib.contextmanager
def _quiet():
    """ai-edge-quantizer prints sizes and progress bars; the library never prints."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


class PlanQuantizer:
    """Calibrates a float .tflite once, then quantizes it with any per-op plan.

    Example::

        pq = PlanQuantizer(float_tflite, calibration)
        int8 = pq.quantize({})
        mixed = pq.quantize({"model/fc1/MatMul;model/fc1/Relu": "int16x8"})
    """

    def __init__(self, float_tflite: bytes, calibration: np.ndarray, per_channel: bool = True):
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer

        self.float_tflite, self.per_channel = bytes(float_tflite), per_channel
        sigs = Interpreter(model_content=self.float_tflite).get_signature_list()
        if len(sigs) != 1:
            raise ConversionError(f"mixed precision needs a model with one signature, found {len(sigs)}")
        self.signature, spec = next(iter(sigs.items()))
        if len(spec["inputs"]) != 1:
            raise ConversionError("mixed precision supports single-input models; use quantize mode int8")
        name = spec["inputs"][0]
        samples = [{name: calibration[i : i + 1].astype(np.float32)} for i in range(len(calibration))]
        qt = quantizer.Quantizer(self.float_tflite, plan_recipe({}, per_channel=per_channel))
        with _quiet():
            self.qsv = qt.calibrate({self.signature: samples})

    def quantize(self, plan: dict[str, str], default: str = "int8") -> bytes:
        from ai_edge_quantizer import quantizer

        qt = quantizer.Quantizer(self.float_tflite, plan_recipe(plan, default, self.per_channel))
        try:
            with _quiet():
                return bytes(qt.quantize(copy.deepcopy(self.qsv)).quantized_model)
        except (ValueError, RuntimeError, KeyError) as e:
            raise ConversionError(f"ai-edge-quantizer could not apply the precision plan ({str(e).splitlines()[0]})") from e


def quantize_plan(float_tflite: bytes, plan: dict[str, str], calibration: np.ndarray, per_channel: bool = True) -> bytes:
    """Quantize a float .tflite with a per-op precision plan (used by ``convert`` for the hint)."""
    return PlanQuantizer(float_tflite, calibration, per_channel).quantize(plan)


def op_units(float_tflite: bytes, layer_names: list[str]) -> list[dict]:
    """The ops a plan can address: output tensor name, op type and the Keras layer it comes from."""
    from ..convert.flatbuffer import read_tflite

    info = read_tflite(float_tflite)
    units = []
    for op in info.ops:
        if not op.outputs or op.op in ("QUANTIZE", "DEQUANTIZE"):
            continue
        # Weights name the layer best (a fused conv+bn+relu output is named after all three).
        names = [info.tensors[i].name for i in op.inputs if i >= 0 and info.tensors[i].is_constant]
        names.append(info.tensors[op.outputs[0]].name)
        layer = next((p for n in names for part in n.split(";") for p in part.split("/") if p in layer_names), None)
        units.append({"node": info.tensors[op.outputs[0]].name, "op": op.op, "layer": layer or f"op{op.index}"})
    return units


class _Scorer:
    """Accuracy (labels) or top-1 agreement with the float model (no labels), in percent."""

    def __init__(self, ctx: Context, float_tflite: bytes, samples: int):
        from ..runtime import LiteRT

        if ctx.eval is not None and ctx.eval.y is not None:
            self.x, self.y, self.metric = ctx.eval.x[:samples], ctx.eval.y[:samples], "accuracy"
        else:
            self.x, self.y, self.metric = ctx.calibration[:samples], None, "agreement"
        self.ref = LiteRT(float_tflite).predict(self.x)
        if self.y is None:
            self.y = np.argmax(self.ref.reshape(len(self.x), -1), -1)
        self.float_score = self.score(self.ref)

    def score(self, pred: np.ndarray) -> float:
        return float(100.0 * np.mean(np.argmax(pred.reshape(len(self.x), -1), -1) == self.y))

    def run(self, tflite: bytes) -> tuple[float, float]:
        """(drop in pt vs float, relative RMS output error)."""
        from ..runtime import LiteRT

        pred = LiteRT(tflite).predict(self.x)
        err = float(np.sqrt(np.mean((pred - self.ref) ** 2)) / (np.sqrt(np.mean(self.ref**2)) + 1e-12))
        return round(self.float_score - self.score(pred), 4), round(err, 6)


class MixedPrecision(Pass):
    """Per-op precision chosen from measured sensitivity (see module doc)."""

    name = "mixed_precision"
    needs = frozenset({"calibration"})

    class Config(PassConfig):
        max_accuracy_drop: Optional[float] = Field(None, ge=0, description="pt; default: the recipe's verify limit, else 1.0")
        allow: list[Literal["int16x8", "float"]] = Field(["int16x8", "float"], min_length=1,
                                                          description="fallbacks in order of preference")
        samples: int = Field(1000, gt=0, description="eval (or calibration) samples used to score plans")
        per_channel: bool = True

    def check_order(self, previous: list[str]) -> None:
        forbid_after(self.name, previous, {
            "qat": "a QAT model already fixes its quantization; use either 'qat' or 'mixed_precision'",
            "mixed_precision": "remove the second 'mixed_precision' step",
        })

    def check_quantize(self, quant) -> None:
        validate_plan_hint({}, quant)

    def budget(self, ctx: Context) -> float:
        if self.config.max_accuracy_drop is not None:
            return self.config.max_accuracy_drop
        limit = ctx.max_accuracy_drop
        return 1.0 if limit is None else float(limit)

    def apply(self, model, ctx: Context):
        from ..convert.tflite import convert
        from ..recipe import QuantizeConfig

        self.require(ctx, "calibration")
        budget = self.budget(ctx)
        float_tfl = convert(model, QuantizeConfig(mode="none"))
        pq = PlanQuantizer(float_tfl, ctx.calibration, self.config.per_channel)
        scorer = _Scorer(ctx, float_tfl, self.config.samples)
        units = op_units(float_tfl, [lyr.name for lyr in model.layers])
        for i, u in enumerate(units):  # only this op quantized, all others float
            ctx.progress("sensitivity", i, len(units))
            u["drop_pt"], u["rel_error"] = scorer.run(pq.quantize({u["node"]: "int8"}, default="float"))
        ctx.progress("sensitivity", len(units), len(units))
        plan, trail = self.search(units, pq, scorer, budget)
        final_drop, final_err = trail[-1]["drop_pt"], trail[-1]["rel_error"]
        for u in units:
            u["choice"] = plan[u["node"]]
        ctx.convert_hints["precision_plan"] = plan
        ctx.record(metric=scorer.metric, float_score_pct=round(scorer.float_score, 4), budget_pt=budget,
                   met=final_drop <= budget, drop_pt=final_drop, rel_error=final_err, ops=units, search=trail,
                   counts={p: sum(v == p for v in plan.values()) for p in ("int8", "int16x8", "float")})
        return model

    def search(self, units: list[dict], pq: PlanQuantizer, scorer: _Scorer, budget: float):
        """Greedy by sensitivity, then a clean-up pass; returns the plan and the trail of trials."""
        plan = {u["node"]: "int8" for u in units}
        order = [u["node"] for u in sorted(units, key=lambda u: (-u["drop_pt"], -u["rel_error"], u["node"]))]
        trail: list[dict] = []

        def meets(change: str) -> bool:
            data = pq.quantize(plan)
            drop, err = scorer.run(data)
            trail.append({"change": change, "drop_pt": drop, "rel_error": err, "size_bytes": len(data)})
            return drop <= budget

        if meets("all int8"):
            return plan, trail
        met = False
        for level in self.config.allow:  # promote, most sensitive first
            for node in order:
                plan[node] = level
                if meets(f"{node} -> {level}"):
                    met = True
                    break
            if met:
                break
        if not met:
            return plan, trail
        # Clean-up: demote promotions that turned out unnecessary, least sensitive first.
        for node in reversed(order):
            for lower in self._lower_levels(plan[node]):
                was, plan[node] = plan[node], lower
                if meets(f"{node} -> {lower} (clean-up)"):
                    break
                plan[node] = was
        best = [t for t in trail if t["drop_pt"] <= budget][-1]
        trail.append({**best, "change": "chosen"})
        return plan, trail

    def _lower_levels(self, level: str) -> list[str]:
        """What an op at ``level`` may fall back to in clean-up: int8, then fallbacks preferred over it."""
        if level == "int8":
            return []
        allow = list(self.config.allow)
        return ["int8"] + allow[: allow.index(level)]


def validate_plan_hint(plan: dict, quant) -> None:
    """The converter accepts a precision plan only for int8 with float I/O."""
    if quant.mode != "int8" or quant.io != "float":
        raise RecipeError(f"the mixed_precision step needs quantize mode int8 with io float, not "
                          f"mode {quant.mode} io {quant.io}; set quantize: {{mode: int8, io: float}}")
    bad = {k: v for k, v in plan.items() if v not in ("int8", "int16x8", "float")}
    if bad:
        raise RecipeError(f"precision plan has unknown precisions {bad}; use int8, int16x8 or float")
