""""As much pruning as fits within a maximum accuracy drop" (needs labelled eval data).

1. Sensitivity scan: each group alone is pruned one-shot at every ratio of
   ``search_grid`` and the accuracy drop on ``ctx.eval`` is measured.
2. A threshold ``t`` gives a per-group plan: each group takes the largest ratio
   whose solo drop is <= ``t`` (automatic per-layer ratios, as in MLPrune).
3. Bisection over the distinct thresholds: each candidate plan is pruned from
   the original, fine-tuned ``search_epochs`` when ``--train`` is given, and
   evaluated; the most pruned candidate within the budget wins, then gets the
   full ``fine_tune`` (kept only if it stays within the budget).

Example: used by ``prune_structured`` with ``target: {max_accuracy_drop: 1.0}``.
"""

from __future__ import annotations

from . import plan as P
from .surgery import prune_model


def _scan(step, model, graph, groups, scores, ctx, base: float) -> dict[str, dict[float, float]]:
    from ..training import evaluate_accuracy

    cfg = step.config
    grid = [r for r in cfg.search_grid if r <= cfg.max_ratio]
    drops: dict[str, dict[float, float]] = {}
    total, done = len(groups) * len(grid), 0
    for g in groups:
        drops[P.key(g)] = {}
        for r in grid:
            counts = {P.key(g): P.kept_count(g.size, r, cfg.round_to)}
            cand = prune_model(model, graph, P.keep_indices(graph, scores, counts))
            drops[P.key(g)][r] = round(base - evaluate_accuracy(cand, ctx.eval), 3)
            done += 1
            ctx.progress("pruning sensitivity scan", done, total)
    return drops


def _candidate(step, model, counts, ctx, data, epochs: int):
    from ..training import evaluate_accuracy

    ft = step.config.fine_tune.model_copy(update={"epochs": epochs})
    m = step._execute(model, counts, ctx, data, label="search candidate", rounds=1, fine_tune=ft)
    return m, evaluate_accuracy(m, ctx.eval)


def accuracy_search(step, model, graph, groups, scores, ctx, data):
    """Return (pruned model, report items) for ``target.max_accuracy_drop``."""
    from ..training import evaluate_accuracy, fit

    cfg = step.config
    limit = cfg.target.max_accuracy_drop
    base = evaluate_accuracy(model, ctx.eval)
    drops = _scan(step, model, graph, groups, scores, ctx, base)
    epochs = cfg.search_epochs if ctx.train is not None else 0
    thresholds = sorted({max(0.0, d) for per in drops.values() for d in per.values()})
    plans, seen = [], set()
    for t in thresholds:
        counts = P.sensitivity_plan(groups, drops, t, cfg.round_to)
        sig = tuple(sorted(counts.items()))
        if sig not in seen and any(counts[P.key(g)] < g.size for g in groups):
            seen.add(sig)
            plans.append((t, counts))
    best, tried = None, []
    lo, hi = 0, len(plans) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        t, counts = plans[mid]
        cand, acc = _candidate(step, model, counts, ctx, data, epochs)
        tried.append({"threshold": t, "accuracy": round(acc, 3), "channels": counts})
        if base - acc <= limit:
            best, lo = (cand, acc, counts), mid + 1
        else:
            hi = mid - 1
    items = {"accuracy_baseline": round(base, 3), "sensitivity": drops, "search": tried}
    if best is None:
        ctx.warn(f"no pruning fits within an accuracy drop of {limit} points; model left unpruned")
        return model, {**items, "search_result": "nothing fits the accuracy budget; model unchanged"}
    cand, acc, counts = best
    if ctx.train is not None and cfg.fine_tune.epochs > 0:
        weights = cand.get_weights()
        fit(cand, ctx.train, ctx, cfg.fine_tune, label="search result: fine-tune")
        if base - evaluate_accuracy(cand, ctx.eval) > limit:
            cand.set_weights(weights)
    return cand, {**items, "search_result": {"channels": counts}}
