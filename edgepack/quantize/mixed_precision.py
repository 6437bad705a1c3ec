"""Automatic mixed precision: per-op int8 / int16x8 activations / float, from measured sensitivity.

1. The model is converted to a float .tflite and calibrated once.
2. Sensitivity: for every op, the model is quantized with *only that op* in int8
   (everything else float) and run in LiteRT; the accuracy drop on ``--eval``
   data (or, without labels, the drop in top-1 agreement with the float model on
   calibration data) and the relative output error are recorded. Plans are judged by
   the accuracy gate itself (:func:`edgepack.verify.accuracy.compare` and ``gate``):
   when top-1 agreement cannot mean anything (e.g. fewer than 30 samples) that is the
   relative RMS output error, and ops are ordered by it.
3. Plan: start with every op int8; while the whole model loses more than the
   budget, move the most sensitive int8 op to int16x8 activations (int8
   weights: no size cost), then, if still needed, ops to float in the same
   order (``allow`` sets the order of fallbacks: ``[float, int16x8]`` prefers
   XNNPACK-fast float over slow int16 kernels). Once the budget is met, a
   clean-up pass tries each promoted op back at int8 (or at a fallback earlier
   in ``allow``), least sensitive first, and keeps every change that still
   meets the budget: the model keeps the most int8 ops and, with the default
   ``allow``, the least float weight.
4. The plan ({op output tensor name: "int8" | "int16x8" | "float"}) is what the step
   returns; the pipeline hands it to the converter, which applies it with
   ai-edge-quantizer (:func:`edgepack.quantize.plan.quantize_plan`) under the user's
   ``quantize.rules`` (pinned ops are never searched: the rules win).

This is a recipe step of the quantize stage: it runs after every compression step and
does not change the Keras model.

The package keeps float input/output (``quantize: {mode: int8, io: float}``).

Recipe::

    steps:
      - {type: mixed_precision, max_accuracy_drop: 0.5}
    quantize: {mode: int8, io: float}

Python::

    plan = MixedPrecision(MixedPrecision.Config(max_accuracy_drop=0.5)).plan(model, ctx, quant)
    data = convert(model, quant, ctx.calibration, plan=plan)
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import Field

from ..errors import LiteRTLoadError, RecipeError
from ..passes.base import Context, Pass, PassConfig
from .config import QuantizeConfig, per_op_io_problem
from .plan import PlanQuantizer, check_rules_match, op_units

Precision = Literal["int8", "int16x8", "float"]


class _Scorer:
    """Scores a candidate with the accuracy gate's own figures and test (:func:`edgepack.verify.accuracy.compare`
    and :func:`~edgepack.verify.accuracy.gate`): accuracy drop on labelled eval data; without labels, top-1
    disagreement with the float model, or the relative RMS output error when agreement cannot mean anything
    (too few samples, no class probabilities, one dominant class). A plan the search accepts is one the gate
    accepts on the same samples."""

    def __init__(self, ctx: Context, float_tflite: bytes, samples: int):
        from ..runtime import LiteRT
        from ..verify.accuracy import compare

        labels = ctx.eval is not None and ctx.eval.y is not None
        self.data = "eval" if labels else "calibration"
        self.x = (ctx.eval.x if labels else ctx.calibration)[:samples]
        self.y = ctx.eval.y[:samples] if labels else None
        self.ref = LiteRT(float_tflite).predict(self.x)
        probe = compare(None, float_tflite, self.x, self.y, float_pred=self.ref)
        self.on_error = probe.get("agreement_meaningful") is False  # the gate judges the relative RMS error
        self.metric = "rel_rms_error" if self.on_error else ("accuracy" if labels else "agreement")
        self.float_score = probe.get("float_accuracy_pct", 100.0)

    def run(self, tflite: bytes) -> tuple[float, float, dict]:
        """(drop in pt vs float, relative RMS output error, the gate's figures for ``tflite``)."""
        from ..runtime import LiteRT
        from ..verify.accuracy import compare

        ver = compare(None, tflite, self.x, self.y, float_pred=self.ref) | {"data": self.data}
        if "rel_rms_error" in ver:
            return round(ver["drop_pt"], 4), ver["rel_rms_error"], ver
        pred = LiteRT(tflite).predict(self.x)  # the error is only a tie-break and a report figure here
        err = float(np.sqrt(np.mean((pred - self.ref) ** 2)) / (np.sqrt(np.mean(self.ref**2)) + 1e-12))
        return round(ver["drop_pt"], 4), round(err, 6), ver

    @staticmethod
    def passes(ver: dict, budget: float) -> bool:
        """Whether the accuracy gate with limit ``budget`` accepts a candidate with figures ``ver``."""
        from ..errors import VerificationError
        from ..verify.accuracy import gate

        try:
            gate(ver, budget)
        except VerificationError:
            return False
        return True


class MixedPrecision(Pass):
    """Per-op precision chosen from measured sensitivity (see module doc)."""

    name = "mixed_precision"
    forbidden_after = {"qat": "a QAT model already fixes its quantization; use either 'qat' or 'mixed_precision'",
                       "mixed_precision": "remove the second 'mixed_precision' step"}
    stage = "quantize"
    needs = frozenset({"calibration"})

    class Config(PassConfig):
        max_accuracy_drop: Optional[float] = Field(None, ge=0, description="pt; default: the recipe's verify limit, else 1.0")
        allow: list[Literal["int16x8", "float"]] = Field(["int16x8", "float"], min_length=1,
                                                          description="fallbacks in order of preference")
        samples: int = Field(1000, gt=0, description="eval (or calibration) samples used to score plans")
        per_channel: bool = True


    def check_quantize(self, quant) -> None:
        validate_plan(quant)

    def budget(self, ctx: Context) -> float:
        if self.config.max_accuracy_drop is not None:
            return self.config.max_accuracy_drop
        limit = ctx.max_accuracy_drop
        return 1.0 if limit is None else float(limit)

    def apply(self, model, ctx: Context):  # pragma: no cover - a quantize-stage step
        raise RecipeError("mixed_precision runs in the quantize stage: call plan(model, ctx, quant)")

    def plan(self, model, ctx: Context, quant: QuantizeConfig) -> dict[str, str]:
        """Measure per-op sensitivity and return the precision plan (also recorded in ``ctx``)."""
        from ..convert.tflite import convert

        self.require(ctx, "calibration")
        budget = self.budget(ctx)
        float_tfl = convert(model, QuantizeConfig(mode="none"))
        check_rules_match(float_tfl, quant.rules)
        pq = PlanQuantizer(float_tfl, ctx.calibration, self.config.per_channel, quant.rules, quant.io)
        scorer = _Scorer(ctx, float_tfl, self.config.samples)
        units = op_units(float_tfl, [lyr.name for lyr in model.layers])
        plan, trail = {u["node"]: "int8" for u in units}, []
        if self._trial(plan, "all int8", pq, scorer, budget, trail):  # every op int8 meets it: nothing to rank
            for u in units:
                u["drop_pt"] = u["rel_error"] = None
        else:
            for i, u in enumerate(units):  # only this op quantized, all others float
                ctx.progress("sensitivity", i, len(units))
                u["drop_pt"], u["rel_error"], _ = scorer.run(pq.quantize({u["node"]: "int8"}, default="float"))
            ctx.progress("sensitivity", len(units), len(units))
            self.search(units, plan, pq, scorer, budget, trail)
        final = [t for t in trail if "drop_pt" in t][-1]  # the plan's own trial (refused candidates were undone)
        final_drop, final_err, met = final["drop_pt"], final["rel_error"], final["meets"]
        for u in units:
            u["choice"] = plan[u["node"]]
        ctx.record(metric=scorer.metric, float_score_pct=round(scorer.float_score, 4), budget_pt=budget,
                   met=met, drop_pt=final_drop, rel_error=final_err, ops=units, search=trail,
                   counts={p: sum(v == p for v in plan.values()) for p in ("int8", "int16x8", "float")})
        return plan

    @staticmethod
    def _trial(plan: dict[str, str], change: str, pq: PlanQuantizer, scorer: _Scorer, budget: float,
               trail: list[dict]) -> Optional[bool]:
        """Whether the accuracy gate accepts ``plan`` with limit ``budget`` (the trial is added to ``trail``);
        None when LiteRT cannot load its model (e.g. an int16x8 ADD whose input scales its kernel cannot
        rescale): that plan is no candidate."""
        data = pq.quantize(plan)
        try:
            drop, err, ver = scorer.run(data)
        except LiteRTLoadError as e:
            trail.append({"change": change, "refused": str(e), "size_bytes": len(data)})
            return None
        ok = scorer.passes(ver, budget)
        trail.append({"change": change, "drop_pt": drop, "rel_error": err, "meets": ok, "size_bytes": len(data)})
        return ok

    def search(self, units: list[dict], plan: dict[str, str], pq: PlanQuantizer, scorer: _Scorer, budget: float,
               trail: list[dict]) -> None:
        """From ``plan`` (all int8, which missed ``budget``): greedy by sensitivity, then a clean-up pass;
        changes ``plan`` in place and adds each trial to ``trail``."""
        key = (lambda u: (-u["rel_error"], -u["drop_pt"], u["node"])) if scorer.on_error else \
            (lambda u: (-u["drop_pt"], -u["rel_error"], u["node"]))  # the gate's own figure first
        order = [u["node"] for u in sorted(units, key=key)]

        def meets(change: str) -> Optional[bool]:
            return self._trial(plan, change, pq, scorer, budget, trail)

        met = False
        for level in self.config.allow:  # promote, most sensitive first
            for node in order:
                was, plan[node] = plan[node], level
                ok = meets(f"{node} -> {level}")
                if ok is None:
                    plan[node] = was  # this op cannot run at this level: keep it where it was
                elif ok:
                    met = True
                    break
            if met:
                break
        if not met:
            return
        # Clean-up: demote promotions that turned out unnecessary, least sensitive first.
        for node in reversed(order):
            for lower in self._lower_levels(plan[node]):
                was, plan[node] = plan[node], lower
                if meets(f"{node} -> {lower} (clean-up)"):
                    break
                plan[node] = was
        best = [t for t in trail if t.get("meets")][-1]
        trail.append({**best, "change": "chosen"})

    def _lower_levels(self, level: str) -> list[str]:
        """What an op at ``level`` may fall back to in clean-up: int8, then fallbacks preferred over it."""
        if level == "int8":
            return []
        allow = list(self.config.allow)
        return ["int8"] + allow[: allow.index(level)]


def validate_plan(quant) -> None:
    """Per-op precision needs a full-integer mode; I/O float or the mode's own integer type."""
    problem = per_op_io_problem(quant.mode, quant.io)
    if problem:
        raise RecipeError(problem)
