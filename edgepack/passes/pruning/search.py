""""As much pruning as fits within a maximum accuracy drop": automatic per-layer ratios.

The decisions are taken on a held-out part of ``--train`` (``search_holdout``), not
on the ``--eval`` set the step reports on, unless the model was trained on that part
(then on ``--eval``); with no ``--train`` the search is one-shot and decides on
``--eval``. The report says which. In two stages:

1. **Sensitivity** (measured, as in Distiller's sensitivity analysis and MLPrune's
   point of choosing the per-layer ratios for the user): every selected group is
   pruned alone, one-shot, at each ratio of ``SCAN`` (in multiples of ``round_to``,
   up to ``max_ratio``), its BatchNorm statistics re-estimated, and the held-out
   loss increase measured.
2. **Size by bisection** (as AMC and NetAdapt search the resource level): for a
   kept fraction ``f`` of the MACs (of the parameters with a parameter budget),
   :func:`allocate` gives per-group channel counts, cheapest loss per MAC saved
   first (``search_allocation: sensitivity``) or one ratio for all
   (``uniform``: the baseline the bench compares against). Each probe prunes the
   input model to that allocation, fine-tunes it exactly as the final model is
   fine-tuned (``fine_tune``; ``search_epochs`` shortens it) and measures the
   held-out accuracy drop. ``f`` is halved until a probe is over the limit, then
   bisected geometrically, ``search_probes`` probes in all; the smallest ``f``
   within the limit wins, so the result lands close to the budget rather than
   far inside it. The drop is the input model's accuracy minus the probe's, on the
   held-out part; when that part was in the model's training data (the model is
   clearly more accurate there than on --eval: :func:`memorized`), its accuracy
   there is inflated, so the search decides on --eval instead and says so. An
   optional size or latency budget (``keep_macs``, ``max_latency_ms`` ...) is the
   first probe and the floor: the search stops there when it fits.

Example: used by ``prune_structured`` with ``target: {max_accuracy_drop: 1.0}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ...errors import BudgetError
from ..base import Labeled
from . import plan as P
from .surgery import counts_keep, latency_cost, plan_cost, prune_model

SCAN = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)  # one-shot ratios of the sensitivity scan
CLOSE_ENOUGH = 1.05  # stop bisecting when the within/over kept fractions are this close
MAX_STEPS_PER_PROBE = 4  # bisection steps (most reuse a probed staircase level) per probe


def split_held_out(data: Labeled, fraction: float, seed: int) -> tuple[Labeled, Labeled]:
    """(train part, held-out part) of labelled data, a seeded random split."""
    order = np.random.RandomState(seed).permutation(len(data.x))
    n = max(1, int(round(len(order) * fraction)))
    tr, ho = np.sort(order[n:]), np.sort(order[:n])
    return Labeled(data.x[tr], data.y[tr]), Labeled(data.x[ho], data.y[ho])


def memorized(model, held: Labeled, ev: Optional[Labeled]) -> Optional[str]:
    """Why the search decides on ``ev`` instead of ``held`` (None: it need not).

    A held-out part of --train that the model was trained on measures no drop: the unpruned
    model's accuracy there is inflated, a pruned one's much less. When the model is more accurate
    on ``held`` than on the --eval labels by more than ``max(1 pt, 2 standard errors)``, those
    samples were in its training data and the search decides on --eval (its probes then
    fine-tune on all of --train).
    """
    if ev is None or ev.y is None or len(ev.x) < 100:
        return None
    from ..training import _scores

    a_held, _ = _scores(model, held)
    a_ev, _ = _scores(model, ev)
    p = min(max((a_held + a_ev) / 200, 0.01), 0.99)
    se = 100 * math.sqrt(p * (1 - p) * (1 / len(held.x) + 1 / len(ev.x)))
    if a_held - a_ev <= max(1.0, 2 * se):
        return None
    return (f"--eval: the held-out part of --train was in the model's training data (accuracy {a_held:.2f} % "
            f"there, {a_ev:.2f} % on --eval)")


def _cummax(values: list[float]) -> list[float]:
    out, m = [], 0.0
    for v in values:
        m = max(m, v)
        out.append(m)
    return out


def allocate(sizes: dict[str, int], curves: dict[str, list[tuple[int, float]]], cost, budget: float
             ) -> dict[str, int]:
    """Kept channels per group key whose ``cost(counts)`` is at most ``budget``, spending one-shot loss
    where it buys the most: repeatedly move the group whose next scanned count adds the least loss
    increase per unit of cost saved (loss increases made monotone along each curve).

    ``curves[key]`` lists (kept channels, held-out loss increase) by decreasing kept channels.
    Returns the cheapest allocation reached when ``budget`` cannot be met.
    """
    counts = {k: sizes[k] for k in curves}
    at = {k: -1 for k in curves}  # index into the curve; -1: unpruned
    mono = {k: _cummax([max(0.0, d) for _, d in c]) for k, c in curves.items()}
    current = cost(counts)
    while current > budget:
        best = None
        for k, c in curves.items():
            i = at[k] + 1
            if i >= len(c):
                continue
            trial = {**counts, k: c[i][0]}
            saved = current - cost(trial)
            if saved <= 0:
                continue
            added = mono[k][i] - (mono[k][at[k]] if at[k] >= 0 else 0.0)
            rank = (added / saved, -saved, k)
            if best is None or rank < best[0]:
                best = (rank, k, i, trial)
        if best is None:
            break
        _, k, i, counts = best
        at[k] = i
        current = cost(counts)
    return counts


@dataclass
class Probe:
    fraction: float  # asked kept fraction of the cost
    counts: dict
    model: object
    accuracy: float
    cost: int

    def row(self, acc0: float, limit: float) -> dict:
        drop = acc0 - self.accuracy
        return {"kept_fraction_asked": round(self.fraction, 4), "macs_or_params": int(self.cost),
                "held_out_accuracy": round(self.accuracy, 3), "held_out_drop": round(drop, 3),
                "within_limit": drop <= limit, "channels": dict(self.counts)}


class _Search:
    def __init__(self, step, model, graph, groups, scores, ctx, data):
        from ..training import bn_data

        self.step, self.cfg, self.ctx, self.data, self.model = step, step.config, ctx, data, model
        self.limit = self.cfg.target.max_accuracy_drop
        if ctx.train is not None:
            self.train, self.held = split_held_out(ctx.train, self.cfg.search_holdout, ctx.seed)
            self.decided_on = f"held-out {len(self.held.x)} of {len(ctx.train.x)} --train samples"
            seen = memorized(model, self.held, ctx.eval)
            if seen:
                self.train, self.held, self.decided_on = ctx.train, ctx.eval, seen
        else:
            self.train, self.held = None, ctx.eval
            self.decided_on = "--eval (no --train: one-shot search)"
        self.bn_x = self.train.x if self.train is not None else bn_data(ctx)
        self.graph, self.groups, self.scores0 = graph, groups, scores
        self.sizes = {P.key(g): g.size for g in self.groups}
        self.metric, self.size_budget = self._metric()
        self.cost0 = self.cost({})

    def _metric(self) -> tuple[int, Optional[int]]:
        """(0 params / 1 MACs, the optional size budget in that unit; a latency budget is floored apart)."""
        t = self.cfg.target
        params0, macs0 = plan_cost(self.model, self.graph, {})
        if t.max_params or t.keep_params:
            return 0, t.max_params or int(t.keep_params * params0)
        return 1, (t.max_macs or int(t.keep_macs * macs0)) if (t.max_macs or t.keep_macs) else None

    def _floor(self, curves, lowest: float) -> Optional[float]:
        """The largest kept fraction that meets the size or latency budget (None: no budget)."""
        if self.size_budget is not None:
            return max(lowest, self.size_budget / self.cost0)
        limit = self.cfg.target.max_latency_ms
        if limit is None:
            return None
        latency = latency_cost(self.model, self.graph, self.groups, self.ctx.latency_ms)
        if latency({}) <= limit:
            return 1.0
        if latency(self.plan(lowest, curves)) > limit:
            raise BudgetError(self.step.latency_unmet(latency(self.plan(lowest, curves)), latency({})))
        ok, over = lowest, 1.0
        while over / ok > CLOSE_ENOUGH:
            mid = math.sqrt(ok * over)
            if latency(self.plan(mid, curves)) <= limit:
                ok = mid
            else:
                over = mid
        return ok

    def cost(self, counts: dict[str, int]) -> int:
        return plan_cost(self.model, self.graph, counts_keep(self.groups, counts))[self.metric]

    def scores(self, model) -> tuple[float, float]:
        from ..training import _scores

        return _scores(model, self.held)

    # -- stage 1 ----------------------------------------------------------
    def sensitivity(self, loss0: float) -> dict[str, list[tuple[int, float, float]]]:
        """Per group key: (kept channels, held-out loss increase, held-out accuracy), decreasing kept."""
        from ..training import recalibrate_batchnorm

        out = {}
        for n, grp in enumerate(self.groups, 1):
            self.ctx.progress("pruning search: sensitivity", n, len(self.groups))
            k = P.key(grp)
            seen, curve = set(), []
            for r in SCAN:
                if r > self.cfg.max_ratio + 1e-9:
                    break
                kept = P.kept_count(grp.size, r, self.step.round_to)
                if kept >= grp.size or kept in seen:
                    continue
                seen.add(kept)
                cand = prune_model(self.model, self.graph, P.keep_indices(self.graph, self.scores0, {k: kept}))
                recalibrate_batchnorm(cand, self.bn_x)
                acc, loss = self.scores(cand)
                curve.append((kept, loss - loss0, acc))
            out[k] = curve
        return out

    def plan(self, fraction: float, curves) -> dict[str, int]:
        budget = fraction * self.cost0
        if self.cfg.search_allocation == "uniform":
            def uniform(r: float) -> dict[str, int]:
                return P.ratio_plan(self.groups, {P.key(g): r for g in self.groups}, self.step.round_to)
            return P.budget_plan(uniform, self.cost, int(budget), self.cfg.max_ratio)[0]
        return allocate(self.sizes, {k: [(n, d) for n, d, _ in c] for k, c in curves.items()},
                        self.cost, budget)

    # -- stage 2 ----------------------------------------------------------
    def probe(self, fraction: float, counts: dict[str, int], epochs: int) -> Probe:
        ft = self.cfg.fine_tune.model_copy(update={"epochs": epochs})
        sub = replace(self.ctx, train=self.train, records=[], warnings=self.ctx.warnings)
        model = self.step._execute(self.model, counts, sub, self.data, label=f"pruning search {fraction:.3f}",
                                   fine_tune=ft)
        acc, _ = self.scores(model)
        self.ctx.log(f"pruning search: kept {fraction:.3f} of the {self._unit()} -> {acc:.2f} % on the decision set")
        return Probe(fraction, counts, model, acc, self.cost(counts))

    def _unit(self) -> str:
        return "MACs" if self.metric == 1 else "parameters"

    def run(self):
        acc0, loss0 = self.scores(self.model)
        curves = self.sensitivity(loss0) if self.cfg.search_allocation == "sensitivity" else {}
        epochs = self.cfg.fine_tune.epochs if self.cfg.search_epochs is None else self.cfg.search_epochs
        lowest = self.cost(self.plan(0.0, curves)) / self.cost0
        budget = self._floor(curves, lowest)
        floor = lowest if budget is None else budget
        items = {"accuracy_baseline_held_out": round(acc0, 3), "search_decided_on": self.decided_on,
                 "search_allocation": self.cfg.search_allocation, "search_metric": self._unit()}
        if floor >= 1.0:
            return self.model, {**items, "search_result": "the unpruned model already meets the latency budget"}
        ok_f, over_f = 1.0, None  # asked kept fractions known within / over the limit (1.0: unpruned)
        ok: Optional[Probe] = None
        probes: list[Probe] = []
        for step in range(MAX_STEPS_PER_PROBE * self.cfg.search_probes):
            if len(probes) >= self.cfg.search_probes:
                break
            if step == 0 and budget is not None:
                f = floor
            elif over_f is None:
                f = max(floor, ok_f / 2)
            else:
                f = math.sqrt(ok_f * over_f)
            if f >= ok_f / CLOSE_ENOUGH:
                break
            counts = self.plan(f, curves)
            if counts == self.sizes:  # too little to remove a channel anywhere
                ok_f = f
                continue
            # rounding makes allocations a staircase: a size already probed is not probed again
            p = next((q for q in probes if q.counts == counts), None)
            if p is None:
                self.ctx.progress("pruning search: probes", len(probes) + 1, self.cfg.search_probes)
                p = self.probe(f, counts, epochs)
                probes.append(p)
            if acc0 - p.accuracy <= self.limit:
                ok_f = f
                ok = p if ok is None or p.cost <= ok.cost else ok
                if f <= floor * (1 + 1e-6):
                    break
            else:
                over_f = f
        final = ok.model if ok is not None else self.model
        if ok is not None and epochs != self.cfg.fine_tune.epochs and self.train is not None:
            tuned = self.probe(ok.fraction, ok.counts, self.cfg.fine_tune.epochs)
            final = tuned.model if acc0 - tuned.accuracy <= self.limit else ok.model
        if budget is not None and (ok is None or ok.fraction > floor * (1 + 1e-6)):
            what = "latency" if self.size_budget is None else self._unit()
            self.ctx.warn(f"the accuracy limit of {self.limit} points stops pruning before the {what} target: "
                          "the target is not met; raise max_accuracy_drop or fine-tune longer")
        items["sensitivity"] = {k: [{"channels": n, "loss_increase": round(d, 5), "held_out_accuracy": round(a, 3)}
                                    for n, d, a in c] for k, c in curves.items()}
        items["search"] = [p.row(acc0, self.limit) for p in probes]
        if ok is not None:
            items["search_result"] = {"kept_fraction": round(ok.cost / self.cost0, 4),
                                      "held_out_drop": round(acc0 - ok.accuracy, 3), "limit": self.limit}
        return final, items


def accuracy_search(step, model, graph, groups, scores, ctx, data):
    """Return (pruned model, report items) for ``target.max_accuracy_drop`` (see module doc)."""
    search = _Search(step, model, graph, groups, scores, ctx, data)
    pruned, items = search.run()
    if pruned is model and "search_result" not in items:
        ctx.warn(f"no pruning fits within an accuracy drop of {search.limit} points; model left unpruned")
        items["search_result"] = "nothing fits the accuracy budget; model unchanged"
    return pruned, items
