""""As much pruning as fits within a maximum accuracy drop": automatic per-layer ratios.

The decisions are taken on a held-out part of ``--train`` (``search_holdout``,
never on the ``--eval`` set the step reports on; with no ``--train`` the search is
one-shot and decides on ``--eval``, saying so in the report). Iterative, in the
manner of NetAdapt (Yang et al. 2018) with measured sensitivity (MLPrune's point:
choose the per-layer ratios for the user):

1. Each iteration asks every selected group for the fewest channels (in multiples
   of ``round_to``) whose removal saves ``search_step`` of the original MACs,
   prunes each candidate one-shot from the current model, re-estimates its
   BatchNorm statistics and measures the held-out loss: the per-group sensitivity.
2. The candidate losing least held-out loss per MAC saved is fine-tuned
   ``search_epochs`` and kept if the held-out accuracy drop stays within
   ``(1 + search_slack) * max_accuracy_drop`` (a short fine-tune recovers less than
   the final one); otherwise that move is ruled out and the step halved (down to
   1/8 of ``search_step``).
3. It stops when no step fits, when an optional size budget (``keep_macs`` ...) is
   met, or after ``search_iterations``; the result gets the full ``fine_tune`` and
   is checked on the held-out part against ``max_accuracy_drop`` itself, falling
   back to the most pruned accepted model that was within it during the search,
   then to earlier ones.

Example: used by ``prune_structured`` with ``target: {max_accuracy_drop: 1.0}``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..base import Labeled
from . import plan as P
from .graph import build_graph
from .surgery import plan_cost, prune_model

MIN_STEP_FRACTION = 1 / 8
MAX_FALLBACKS = 3


def split_held_out(data: Labeled, fraction: float, seed: int) -> tuple[Labeled, Labeled]:
    """(train part, held-out part) of labelled data, a seeded random split."""
    order = np.random.RandomState(seed).permutation(len(data.x))
    n = max(1, int(round(len(order) * fraction)))
    tr, ho = np.sort(order[n:]), np.sort(order[:n])
    return Labeled(data.x[tr], data.y[tr]), Labeled(data.x[ho], data.y[ho])


class _Search:
    def __init__(self, step, model, ctx, data):
        from ..training import bn_data

        self.step, self.cfg, self.ctx, self.data = step, step.config, ctx, data
        t = self.cfg.target
        self.limit = t.max_accuracy_drop
        if ctx.train is not None:
            self.train, self.held = split_held_out(ctx.train, self.cfg.search_holdout, ctx.seed)
            self.decided_on = f"held-out {len(self.held.x)} of {len(ctx.train.x)} --train samples"
        else:
            self.train, self.held = None, ctx.eval
            self.decided_on = "--eval (no --train: one-shot search)"
        self.bn_x = self.train.x if self.train is not None else bn_data(ctx)
        graph = build_graph(model)
        self.keys = {P.key(g) for g in step._select(model, graph)[0]}
        self.orig_size = {P.key(g): g.size for g in graph.prunable() if P.key(g) in self.keys}
        self.params0, self.macs0 = plan_cost(model, graph, {})
        self.budget = self._size_budget()

    def _size_budget(self) -> Optional[tuple[int, int]]:
        """(index 0 params / 1 MACs, budget) of an optional size target."""
        t = self.cfg.target
        if t.max_macs or t.keep_macs:
            return 1, t.max_macs or int(t.keep_macs * self.macs0)
        if t.max_params or t.keep_params:
            return 0, t.max_params or int(t.keep_params * self.params0)
        return None

    def scores(self, model) -> tuple[float, float]:
        from ..training import _scores

        return _scores(model, self.held)

    def _fewest(self, model, graph, grp, saving: float) -> Optional[int]:
        """Kept channels of ``grp`` that save at least ``saving`` MACs (fewer if max_ratio stops it)."""
        r = self.step.round_to
        floor = P.kept_count(self.orig_size[P.key(grp)], self.cfg.max_ratio, r)
        base = plan_cost(model, graph, {})[1]
        n = grp.size - r if grp.size % r == 0 else (grp.size // r) * r
        best = None
        while n >= floor and n >= 1:
            best = n
            if base - plan_cost(model, graph, {grp.id: np.arange(n)})[1] >= saving:
                break
            n -= r
        return best

    def candidates(self, model, saving: float, loss0: float, ruled_out: set) -> list[dict]:
        from ..training import recalibrate_batchnorm

        graph = build_graph(model)
        scores = self.step._scores(model, graph, self.data)
        macs = plan_cost(model, graph, {})[1]
        out = []
        for grp in graph.prunable():
            if P.key(grp) not in self.keys:
                continue
            n = self._fewest(model, graph, grp, saving)
            if n is None or (P.key(grp), grp.size, n) in ruled_out:
                continue
            keep = P.keep_indices(graph, scores, {P.key(grp): n})
            cand = prune_model(model, graph, keep)
            recalibrate_batchnorm(cand, self.bn_x)
            acc, loss = self.scores(cand)
            saved = macs - plan_cost(model, graph, keep)[1]
            out.append({"group": P.key(grp), "channels": [grp.size, n], "macs_saved": int(saved),
                        "held_out_accuracy": round(acc, 3), "loss_increase": round(loss - loss0, 5),
                        "_model": cand, "_rank": (loss - loss0) / max(1, saved)})
        return out

    def tune(self, model, epochs: int) -> None:
        from ..training import fit

        if self.train is None or epochs == 0:
            return
        ft = self.cfg.fine_tune.model_copy(update={"epochs": epochs, "validation_split": 0.0})
        fit(model, self.train, self.ctx, ft, label="pruning search: fine-tune")

    def within_budget(self, model) -> bool:
        if self.budget is None:
            return False
        which, limit = self.budget
        g = build_graph(model)
        return plan_cost(model, g, {})[which] <= limit

    def run(self, model):
        acc0, _ = self.scores(model)
        current, (acc, loss) = model, (acc0, self.scores(model)[1])
        accepted, log, sensitivity, ruled_out = [(model, True)], [], None, set()
        step = self.cfg.search_step
        it = 0
        while it < self.cfg.search_iterations and not self.within_budget(current):
            it += 1
            cands = self.candidates(current, step * self.macs0, loss, ruled_out)
            self.ctx.progress("pruning search", it, self.cfg.search_iterations)
            if sensitivity is None:
                sensitivity = {c["group"]: {k: c[k] for k in ("channels", "macs_saved", "held_out_accuracy",
                                                               "loss_increase")} for c in cands}
            if not cands:
                break
            best = min(cands, key=lambda c: c["_rank"])
            cand = best["_model"]
            self.tune(cand, self.cfg.search_epochs)
            c_acc, c_loss = self.scores(cand)
            ok = acc0 - c_acc <= self.limit * (1 + self.cfg.search_slack)
            log.append({"iteration": it, "group": best["group"], "channels": best["channels"],
                        "macs": int(plan_cost(cand, build_graph(cand), {})[1]),
                        "held_out_accuracy": round(c_acc, 3), "accepted": ok,
                        "within_limit": acc0 - c_acc <= self.limit})
            self.ctx.log(f"pruning search {it}: {best['group']} {best['channels'][0]}->{best['channels'][1]}, "
                         f"held-out {c_acc:.2f} % ({'kept' if ok else 'over the limit'})")
            if ok:
                current, acc, loss = cand, c_acc, c_loss
                accepted.append((cand, acc0 - c_acc <= self.limit))
            else:
                ruled_out.add((best["group"], *best["channels"]))
                step = max(step / 2, self.cfg.search_step * MIN_STEP_FRACTION)
        final = self._finish(accepted, acc0)
        return final, {"accuracy_baseline_held_out": round(acc0, 3), "search_decided_on": self.decided_on,
                       "sensitivity": sensitivity or {}, "search": log}

    def _finish(self, accepted: list, acc0: float):
        """Full fine-tune of the last accepted model; then of the most pruned one that was within the
        limit during the search, then earlier ones, until one fits (at most ``MAX_FALLBACKS`` tries)."""
        last = [accepted[-1][0]] if len(accepted) > 1 else []
        order = last + [m for m, within in reversed(accepted[1:]) if within and m is not accepted[-1][0]]
        for cand in order[:MAX_FALLBACKS]:
            self.tune(cand, self.cfg.fine_tune.epochs)
            if acc0 - self.scores(cand)[0] <= self.limit:
                return cand
        return accepted[0][0]


def accuracy_search(step, model, graph, groups, scores, ctx, data):
    """Return (pruned model, report items) for ``target.max_accuracy_drop`` (see module doc)."""
    search = _Search(step, model, ctx, data)
    pruned, items = search.run(model)
    if pruned is model:
        ctx.warn(f"no pruning fits within an accuracy drop of {search.limit} points; model left unpruned")
        items["search_result"] = "nothing fits the accuracy budget; model unchanged"
    return pruned, items
