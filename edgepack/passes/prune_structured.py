"""Structured pruning: remove whole filters, channels and neurons (the model really shrinks).

Channels coupled through residual ``Add``/``Multiply`` or ``Concatenate`` are
pruned together as one dependency group; output layers are never pruned. The
model is rebuilt with fewer ``filters``/``units`` and sliced weights.

Recipe step (exactly one of ``ratio``, ``ratios``, ``target``)::

    - type: prune_structured
      importance: l1            # l1 | l2 | activation (mean |activation|, calibration data)
                                #  | taylor (|a * dL/da|, labelled --train or --eval data)
      scope: uniform            # uniform (each group loses the ratio) | global (least important model-wide)
      ratio: 0.5                # fraction of channels removed in every selected group
      # ratios: {conv2d_1: 0.7, "conv2d_[3-5]": 0.5}    # per layer, name or regex
      # target: {keep_macs: 0.5} | {max_macs: 3000000} | {keep_params: 0.4} | {max_params: 20000}
      #         | {max_latency_ms: 40}  (estimated on --device's cost model; --target tflm)
      #         | {max_accuracy_drop: 1.0}  (+ optionally one of the size/latency budgets: stop there)
      #   max_accuracy_drop: per-layer ratios searched on held-out --train data (see pruning/search.py)
      # round_to: 8             # kept channels a multiple of 8; default: the target kernels' multiple
      layers: {types: [Conv2D]} # which producer layers may lose channels (default: all)
      iterations: 1             # prune -> fine-tune rounds when --train is given
      fine_tune: {epochs: 8, learning_rate: 0.001}   # the default; BatchNorm statistics re-estimated

After every surgery the BatchNorm moving statistics are re-estimated from
``--train`` (or calibration) inputs, before any evaluation, importance or fine-tune.

Python::

    p = StructuredPrune(StructuredPrune.Config(ratio=0.5))
    small = p.apply(model, Context(train=Labeled(x, y)))
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..errors import BudgetError, DataError, RecipeError
from .base import Context, Labeled, Pass, PassConfig
from .order import after_quantization
from .pruning import plan as P
from .pruning.cost import layer_table, totals
from .pruning.graph import Graph, Group, build_graph
from .pruning.importance import group_scores
from .pruning.surgery import counts_keep, latency_cost, plan_cost, prune_model
from .select import LayerSelector
from .pruning.channels import channel_multiple
from .training import (FitConfig, bn_data, check_labels, evaluate_accuracy, fit, recalibrate_batchnorm, shape_problem,
                       step_fine_tune)

ONE_SHOT_WARNING = ("structured pruning without training data (--train) is one-shot: expect an accuracy "
                    "drop that fine-tuning would recover; pass --train DATA to fine-tune")


class PruneTarget(PassConfig):
    """One size budget (absolute or relative MACs/params), an accuracy-drop limit, or the limit plus
    one size budget (the search stops at whichever it meets first)."""

    max_macs: Optional[int] = Field(None, gt=0)
    max_params: Optional[int] = Field(None, gt=0)
    keep_macs: Optional[float] = Field(None, gt=0, lt=1, description="fraction of MACs kept")
    keep_params: Optional[float] = Field(None, gt=0, lt=1, description="fraction of params kept")
    max_latency_ms: Optional[float] = Field(None, gt=0, description="estimated on the --device's cost model "
                                            "(--target tflm; see edgepack devices)")
    max_accuracy_drop: Optional[float] = Field(None, ge=0, description="percentage points on --eval")

    @model_validator(mode="after")
    def _exactly_one(self) -> "PruneTarget":
        given = [k for k, v in self.model_dump().items() if v is not None and k != "max_accuracy_drop"]
        if len(given) > 1 or not (given or self.max_accuracy_drop is not None):
            raise ValueError("give one of max_macs, max_params, keep_macs, keep_params, max_latency_ms and/or "
                             f"max_accuracy_drop (got {given or 'none'})")
        return self


class StructuredPruneConfig(PassConfig):
    importance: Literal["l1", "l2", "activation", "taylor"] = "l1"
    scope: Literal["uniform", "global"] = Field(
        "uniform", description="uniform: every group loses the ratio; global: least important channels "
                               "model-wide (no group more than max_ratio)")
    ratio: Optional[float] = Field(None, gt=0, lt=1)
    ratios: dict[str, float] = Field(default_factory=dict)
    target: Optional[PruneTarget] = None
    round_to: Optional[int] = Field(None, ge=1, le=256, description="kept channels a multiple of this; "
                                    "default: the target kernels' multiple (pruning/channels.py)")
    max_ratio: float = Field(0.9, gt=0, lt=1, description="most any group may lose in a search")
    layers: LayerSelector = Field(default_factory=LayerSelector)
    force: bool = Field(False, description="error instead of skipping selected groups that cannot be pruned")
    iterations: int = Field(1, ge=1, le=50)
    fine_tune: step_fine_tune(epochs=8)
    search_allocation: Literal["sensitivity", "uniform"] = Field(
        "sensitivity", description="how a searched size is shared among groups: by measured sensitivity "
                                   "(cheapest loss per MAC first) or one ratio for all")
    search_probes: int = Field(6, ge=1, le=30, description="prune + fine-tune probes of the size bisection")
    search_epochs: Optional[int] = Field(None, ge=0, description="fine-tune epochs of each probe; default: "
                                         "fine_tune's (the winning probe is then the result)")
    search_holdout: float = Field(0.2, gt=0, lt=1, description="part of --train the search decides on")

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for name, r in v.items():
            if not 0 < r < 1:
                raise ValueError(f"ratio for '{name}' is {r}; a pruning ratio must be in (0, 1)")
            try:
                re.compile(name)
            except re.error as e:
                raise ValueError(f"'{name}' is not a valid layer regex: {e}") from None
        return v

    @model_validator(mode="after")
    def _one_target(self) -> "StructuredPruneConfig":
        given = [n for n, v in (("ratio", self.ratio), ("ratios", self.ratios or None),
                                ("target", self.target)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of ratio, ratios, target (got {given or 'none'})")
        return self


class StructuredPrune(Pass):
    """Remove the least important channels of every selected dependency group."""

    name = "prune_structured"
    forbidden_after = after_quantization("prune_structured")
    search_rank = 0
    Config = StructuredPruneConfig

    def __init__(self, config: StructuredPruneConfig, previous: tuple[str, ...] = ()):
        super().__init__(config, previous)
        needs = set()
        if config.importance == "activation":
            needs.add("calibration")
        if config.target is not None and config.target.max_latency_ms is not None:
            needs.add("latency")
        self.needs = frozenset(needs)
        self.round_to = config.round_to or 1


    def preflight(self, model) -> None:
        """Refuse recurrent models before any step trains (channel surgery does not cover RNN units)."""
        from ..keras_compat import keras

        rnn = (keras().layers.RNN, keras().layers.Bidirectional)
        layer = next((lyr for lyr in model.submodules if isinstance(lyr, rnn)), None)
        if layer is not None:
            raise RecipeError(
                f"step '{self.name}': layer '{layer.name}' ({type(layer).__name__}) is recurrent, and removing "
                "recurrent units (each cuts rows and columns of its kernel, recurrent kernel and every gate block) "
                "or the channels feeding it is not part of edgepack's channel surgery; use prune_magnitude or "
                "cluster on this model instead")

    # -- entry point ------------------------------------------------------
    def apply(self, model, ctx: Context):
        cfg = self.config
        for what in sorted(self.needs):
            self.require(ctx, what)
        self.preflight(model)
        searching = cfg.target is not None and cfg.target.max_accuracy_drop is not None
        if searching and ctx.train is None and (ctx.eval is None or ctx.eval.y is None):
            raise RecipeError(f"step '{self.name}': target max_accuracy_drop needs labelled data to decide on; "
                              "pass --train DATA (a held-out part is used) or --eval DATA")
        self.round_to, round_why = channel_multiple(ctx.channel_multiple, cfg.round_to)
        ctx.record(round_to=self.round_to, round_to_from=round_why)
        if ctx.train is not None:
            check_labels(model, ctx.train)
        if ctx.eval is not None and ctx.eval.y is not None and searching:
            check_labels(model, ctx.eval, "evaluation")
        data = self._importance_data(model, ctx)
        graph = build_graph(model)
        groups, skipped = self._select(model, graph)
        scores = self._scores(model, graph, data)
        ctx.log(f"{self.name}: {len(groups)} channel groups selected, {len(skipped)} skipped")
        if ctx.train is None:
            ctx.log(f"warning: {ONE_SHOT_WARNING}")
        search = {}
        if searching:
            pruned, search = self._accuracy_search(model, graph, groups, scores, ctx, data)
        else:
            counts = self._counts(model, graph, groups, scores, ctx)
            pruned = self._execute(model, counts, ctx, data)
        self._report(model, pruned, graph, groups, skipped, ctx, search)
        return pruned

    def _importance_data(self, model, ctx: Context) -> Optional[Labeled]:
        """Samples for data-driven importance: calibration (activation) or labelled train/eval (taylor)."""
        imp = self.config.importance
        if imp == "activation":
            data, what = Labeled(ctx.calibration), "calibration"
        elif imp == "taylor":
            src = ctx.train if ctx.train is not None and ctx.train.y is not None else ctx.eval
            if src is None or src.y is None:
                raise RecipeError(f"step '{self.name}': importance 'taylor' needs labelled data; "
                                  "pass --train or --eval DATA (an .npz with labels y)")
            data, what = src, "labelled"
        else:
            return None
        problem = shape_problem(model, data.x)
        if problem:
            raise DataError(f"{what} data {problem}")
        return Labeled(data.x[:512], None if data.y is None else data.y[:512])

    def _scores(self, model, graph: Graph, data: Optional[Labeled]):
        if data is None:
            return group_scores(model, graph, self.config.importance)
        return group_scores(model, graph, self.config.importance, data.x, data.y)

    # -- which groups -----------------------------------------------------
    def _select(self, model, graph: Graph) -> tuple[list[Group], list[dict]]:
        cfg = self.config
        producers = list(graph.produces)
        chosen = set(cfg.layers.select(model, self.name, candidates=producers))
        if cfg.ratios:
            chosen &= set(self._ratio_layers(producers))
        groups, skipped, seen = [], [], set()
        for name in producers:
            grp = graph.group_of(name)
            if name not in chosen or grp.id in seen:
                continue
            seen.add(grp.id)
            if grp.blocked is None:
                groups.append(grp)
            else:
                if cfg.force:
                    raise RecipeError(f"step '{self.name}': layer '{name}' cannot be pruned: {grp.blocked}; "
                                      "deselect it or drop force: true")
                skipped.append({"group": grp.name, "reason": grp.blocked})
        if not groups:
            why = "; ".join(f"{s['group']}: {s['reason']}" for s in skipped) or "no selected producer layer"
            raise RecipeError(f"step '{self.name}': no prunable channel group among the selected layers ({why})")
        return groups, skipped

    def _ratio_layers(self, producers: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for pattern, r in self.config.ratios.items():
            hits = [n for n in producers if n == pattern or re.fullmatch(pattern, n)]
            if not hits:
                raise RecipeError(f"step '{self.name}': ratios key '{pattern}' matches no Conv/Dense layer; "
                                  f"prunable layers: {', '.join(producers)}")
            for n in hits:
                out.setdefault(n, r)
        return out

    # -- how many channels ------------------------------------------------
    def _counts(self, model, graph: Graph, groups: list[Group], scores, ctx: Context) -> dict[str, int]:
        cfg = self.config
        if cfg.ratios:
            per_layer = self._ratio_layers(list(graph.produces))
            ratios = {P.key(g): max(per_layer.get(p, 0.0) for p in g.producers) for g in groups}
            return P.ratio_plan(groups, ratios, self.round_to)

        def plan(r: float) -> dict[str, int]:
            if cfg.scope == "global":
                return P.global_plan(groups, scores, r, cfg.max_ratio, self.round_to)
            return P.ratio_plan(groups, {P.key(g): r for g in groups}, self.round_to)

        if cfg.ratio is not None:
            return plan(cfg.ratio)
        return self._budget_counts(model, graph, groups, plan, ctx)

    def _budget_counts(self, model, graph: Graph, groups: list[Group], plan, ctx: Context) -> dict[str, int]:
        cfg, t = self.config, self.config.target
        if t.max_latency_ms is not None:
            cost = latency_cost(model, graph, groups, ctx.latency_ms)
            counts, ratio = P.budget_plan(plan, cost, t.max_latency_ms, cfg.max_ratio, iterations=10)
            if ratio < 0:
                raise BudgetError(self.latency_unmet(cost(counts), cost({})))
            return counts
        base_params, base_macs = plan_cost(model, graph, {})
        use_macs = t.max_macs is not None or t.keep_macs is not None
        base = base_macs if use_macs else base_params
        budget = t.max_macs or t.max_params or int((t.keep_macs or t.keep_params) * base)
        what = "MACs" if use_macs else "parameters"

        def cost(counts: dict[str, int]) -> int:
            return plan_cost(model, graph, counts_keep(groups, counts))[0 if not use_macs else 1]

        counts, ratio = P.budget_plan(plan, cost, budget, cfg.max_ratio)
        if ratio < 0:
            raise BudgetError(f"step '{self.name}': a budget of {budget:,} {what} cannot be met: pruning every "
                              f"selected group by max_ratio {cfg.max_ratio} leaves {cost(counts):,} of {base:,}; "
                              "raise the budget, raise max_ratio or select more layers")
        return counts

    def latency_unmet(self, lowest: float, base: float) -> str:
        return (f"step '{self.name}': a latency of {self.config.target.max_latency_ms:g} ms cannot be met: pruning "
                f"every selected group by max_ratio {self.config.max_ratio} gives {lowest:.3g} ms (estimated; "
                f"{base:.3g} ms unpruned); raise max_latency_ms, raise max_ratio or select more layers")

    # -- doing it ---------------------------------------------------------
    def _execute(self, model, counts: dict[str, int], ctx: Context, data, label: str = "prune",
                 rounds: Optional[int] = None, fine_tune: Optional[FitConfig] = None):
        """Prune to ``counts`` in ``rounds`` prune -> fine-tune rounds (one shot without --train)."""
        cfg = self.config
        fine_tune = fine_tune or cfg.fine_tune
        rounds = (rounds or cfg.iterations) if ctx.train is not None else 1
        start = {P.key(g): g.size for g in build_graph(model).prunable()}
        current = model
        for i in range(1, rounds + 1):
            step = {k: int(round(start[k] - (start[k] - n) * i / rounds)) for k, n in counts.items()}
            graph = build_graph(current)
            scores = self._scores(current, graph, data)
            current = prune_model(current, graph, P.keep_indices(graph, scores, step))
            if fine_tune.recalibrate_bn:
                recalibrate_batchnorm(current, bn_data(ctx))
            if ctx.train is not None and fine_tune.epochs > 0:
                fit(current, ctx.train, ctx, fine_tune, label=f"{label} {i}/{rounds}: fine-tune")
        return current

    def _accuracy_search(self, model, graph: Graph, groups: list[Group], scores, ctx: Context, data):
        """Largest per-group ratios (from a sensitivity scan) whose accuracy drop fits the budget."""
        from .pruning.search import accuracy_search

        return accuracy_search(self, model, graph, groups, scores, ctx, data)

    def _report(self, model, pruned, graph: Graph, groups, skipped, ctx: Context, search: dict) -> None:
        rows = layer_table(model, pruned)
        tot = totals(rows)
        ctx.record(importance=self.config.importance, layers=rows, **tot,
                   macs_reduction=round(tot["macs_before"] / max(1, tot["macs_after"]), 3),
                   groups=[{"group": g.name, "channels_before": g.size,
                            "channels_after": int(pruned.get_layer(g.producers[0]).output_shape[-1])}
                           for g in groups],
                   skipped_groups=skipped, fine_tuned=ctx.train is not None,
                   batchnorm_recalibrated=self.config.fine_tune.recalibrate_bn and bn_data(ctx) is not None,
                   **search)
        if ctx.train is None:
            ctx.record(warning=ONE_SHOT_WARNING)
        if self.config.target is not None and self.config.target.max_latency_ms is not None:
            ctx.record(latency_ms_estimated={"before": round(ctx.latency_ms(model), 4),
                                             "after": round(ctx.latency_ms(pruned), 4),
                                             "limit": self.config.target.max_latency_ms})
        if ctx.eval is not None and ctx.eval.y is not None and shape_problem(model, ctx.eval.x) is None:
            before = evaluate_accuracy(model, ctx.eval)
            after = evaluate_accuracy(pruned, ctx.eval)
            ctx.record(accuracy_before=round(before, 3), accuracy_after=round(after, 3),
                       accuracy_drop=round(before - after, 3))
