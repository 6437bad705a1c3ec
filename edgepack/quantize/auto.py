"""``quantize: {mode: auto}`` (``--quantize auto``): plain int8 when it meets the accuracy limit, otherwise
the cheapest per-op plan that does.

The pipeline converts plain int8 first and verifies it; only when the accuracy gate refuses that build
does :func:`wider_plan` run the mixed-precision search (:mod:`edgepack.quantize.mixed_precision`: per-op
sensitivity, the most sensitive ops moved to int16x8 activations, then float, the unneeded promotions
undone), with the gate's limit as its budget: each candidate is judged by the accuracy gate's own figures and
test (:mod:`edgepack.verify.accuracy`; the relative RMS output error when top-1 agreement cannot mean anything,
e.g. fewer than 30 samples), so a plan the search accepts is one the gate accepts. The report lists the ops
kept wide, what each alone lost in int8, and what the plan costs in bytes.

Example::

    plan, section = wider_plan(model, ctx, QuantizeConfig(mode="int8"), limit=1.0, int8_refusal=str(err))
    data = quantize_model(model, QuantizeConfig(mode="int8"), ctx.calibration, plan=plan)
"""

from __future__ import annotations

from typing import Any, Optional

from ..passes.base import Context
from .config import QuantizeConfig


def wider_plan(model, ctx: Context, quant: QuantizeConfig, limit: Optional[float],
               int8_refusal: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The per-op precision plan for ``model`` within ``limit`` and the report's ``quantize.auto`` section."""
    from .mixed_precision import MixedPrecision

    ctx.log("quantize auto: plain int8 missed the accuracy limit; searching a per-op plan")
    step = MixedPrecision(MixedPrecision.Config(max_accuracy_drop=1.0 if limit is None else float(limit)))
    ctx.records.append({})  # the search records into the current record: keep it out of the steps table
    try:
        plan = step.plan(model, ctx, quant)
    finally:
        rec = ctx.records.pop()
    wide = [{"op": u["op"], "layer": u["layer"], "precision": u["choice"], "int8_alone_drop_pt": u["drop_pt"],
             "int8_alone_rel_error": u["rel_error"]}
            for u in rec.get("ops", []) if u.get("choice") != "int8"]
    chosen = next((t for t in reversed(rec.get("search", [])) if t.get("meets")), None)  # the plan's trial
    first = (rec.get("search") or [{}])[0]
    # ai-edge-quantizer's all-int8 plan can meet the limit where the TFLite converter's int8 did not
    label = "per-op plan" if wide else "all int8 (per-op quantizer)"
    section = {"chosen": label, "int8": int8_refusal, "metric": rec.get("metric"),
               "budget_pt": rec.get("budget_pt"), "met": rec.get("met"), "drop_pt": rec.get("drop_pt"),
               "counts": rec.get("counts"), "kept_wide": wide,
               "size_bytes": {"all_int8": first.get("size_bytes"), "plan": (chosen or {}).get("size_bytes")}}
    if rec.get("metric") == "rel_rms_error":  # the gate's figure when top-1 agreement cannot mean anything
        from ..verify.accuracy import DEFAULT_MAX_REL_ERROR

        section.update(rel_rms_error=rec.get("rel_error"), limit_rel_rms_error=DEFAULT_MAX_REL_ERROR)
    return plan, section


def int8_section(drop_pt: Optional[float]) -> dict[str, Any]:
    """The ``quantize.auto`` section when plain int8 met the limit."""
    return {"chosen": "int8", "drop_pt": drop_pt, "kept_wide": []}
