"""Issue 11 point 4: the accuracy-budget search shares a size among groups by measured sensitivity."""

from __future__ import annotations

import pytest

from compress_helpers import digits, residual_cnn
from edgepack.passes.base import Context
from edgepack.passes.prune_structured import StructuredPrune
from edgepack.passes.pruning.search import allocate


def _cost(counts):  # two equally expensive groups of 32 channels, 100 units per channel
    return 100 * (counts["a"] + counts["b"])


CURVES = {"a": [(24, 0.5), (16, 2.0), (8, 4.0)],   # sensitive
          "b": [(24, 0.01), (16, 0.02), (8, 0.3)]}  # insensitive


def test_allocation_prunes_the_insensitive_group_first():
    counts = allocate({"a": 32, "b": 32}, CURVES, _cost, 0.65 * _cost({"a": 32, "b": 32}))
    assert counts == {"a": 32, "b": 8}


def test_allocation_meets_the_budget_and_stops_at_the_cheapest_when_it_cannot():
    full = _cost({"a": 32, "b": 32})
    counts = allocate({"a": 32, "b": 32}, CURVES, _cost, 0.4 * full)
    assert _cost(counts) <= 0.4 * full and counts["b"] == 8
    assert allocate({"a": 32, "b": 32}, CURVES, _cost, 0) == {"a": 8, "b": 8}


def test_noisy_curves_are_made_monotone():
    # a loss that falls again at 8 channels must not make the move to 8 look free
    curves = {"a": [(24, 0.0), (16, 3.0), (8, 1.0)], "b": [(24, 0.1), (16, 0.2), (8, 0.5)]}
    counts = allocate({"a": 32, "b": 32}, curves, _cost, 0.5 * _cost({"a": 32, "b": 32}))
    assert counts == {"a": 24, "b": 8}


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="known failure, open: on the 2026-12-07 fresh install the sensitivity allocation "
                   "kept 274,832 MACs vs uniform 256,320, identically at 615cb1b (before that session's changes); it "
                   "passed in the previous CI. To investigate: which package version changed the probes")
def test_searched_ratios_beat_one_ratio_for_all_at_the_same_budget():
    """Residual digits CNN, 1 pt budget: the sensitivity allocation keeps fewer MACs than the uniform one."""
    tr, ev = digits()
    out = {}
    for alloc in ("sensitivity", "uniform"):
        ctx = Context(train=tr, eval=ev, calibration=tr.x[:100])
        StructuredPrune(StructuredPrune.Config(target={"max_accuracy_drop": 1.0}, search_allocation=alloc)).apply(
            residual_cnn(), ctx)
        out[alloc] = ctx.records[-1]
    s, u = out["sensitivity"], out["uniform"]
    for rec in (s, u):
        assert rec["search_result"]["held_out_drop"] <= 1.0
        assert rec["search_allocation"] in ("sensitivity", "uniform")
    assert s["macs_after"] < u["macs_after"], (s["search"], u["search"])
    assert s["macs_after"] <= 0.35 * s["macs_before"]
    assert s["accuracy_drop"] <= 1.5  # the step's --eval figure (397 samples) is not what the search decided on


def _latency_context(**kw):
    from edgepack.profiles import load_profile
    from edgepack.costmodel.estimate import keras_latency_ms

    return Context(latency_ms=keras_latency_ms(load_profile("nucleo-l4r5zi")), **kw)


def test_a_latency_budget_prunes_until_the_estimated_latency_fits():
    tr, ev = digits()
    ctx = _latency_context(calibration=tr.x[:64], eval=ev)
    base_ms = ctx.latency_ms(residual_cnn())
    StructuredPrune(StructuredPrune.Config(target={"max_latency_ms": 0.5 * base_ms})).apply(residual_cnn(), ctx)
    est = ctx.records[-1]["latency_ms_estimated"]
    assert est["before"] == pytest.approx(base_ms, rel=1e-3)
    assert 0.3 * base_ms < est["after"] <= 0.5 * base_ms  # met, without pruning far past it


def test_a_latency_budget_needs_a_device_with_a_cost_model():
    from edgepack.errors import RecipeError

    step = StructuredPrune(StructuredPrune.Config(target={"max_latency_ms": 1.0}))
    with pytest.raises(RecipeError, match="latency target needs an estimated latency: use --target tflm --device"):
        step.apply(residual_cnn(), Context(calibration=digits()[0].x[:8]))


def test_an_unmeetable_latency_budget_is_refused_with_the_lowest_reachable():
    from edgepack.errors import BudgetError

    tr, _ = digits()
    ctx = _latency_context(calibration=tr.x[:64])
    with pytest.raises(BudgetError, match=r"a latency of 1e-06 ms cannot be met: pruning every selected group"):
        StructuredPrune(StructuredPrune.Config(target={"max_latency_ms": 1e-6})).apply(residual_cnn(), ctx)


def test_the_accuracy_search_stops_at_a_latency_budget_that_fits():
    tr, ev = digits()
    ctx = _latency_context(train=tr, eval=ev, calibration=tr.x[:64])
    base_ms = ctx.latency_ms(residual_cnn())
    StructuredPrune(StructuredPrune.Config(target={"max_accuracy_drop": 5.0, "max_latency_ms": 0.7 * base_ms},
                                           search_epochs=0, fine_tune={"epochs": 1})).apply(residual_cnn(), ctx)
    rec = ctx.records[-1]
    assert len(rec["search"]) == 1 and rec["search"][0]["within_limit"]  # the floor fits: no further probe
    assert rec["latency_ms_estimated"]["after"] <= 0.7 * base_ms


def _latency_recipe(tmp_path, mnist, ms):
    import yaml

    recipe = yaml.safe_load(mnist.recipe.read_text())
    recipe["steps"] = [{"type": "prune_structured", "target": {"max_latency_ms": ms}}]
    recipe["verify"] = {"max_accuracy_drop": "none"}  # one-shot pruning: the latency is what is checked here
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_cli_latency_budget_on_a_board_and_refused_for_android(tmp_path, mnist, run_cli):
    import json

    out = tmp_path / "fw"
    res = run_cli("package", mnist.model, "--recipe", _latency_recipe(tmp_path, mnist, 30.0), "--target", "tflm",
                  "--device", "nucleo-l4r5zi", "--calibration", mnist.calib, "-o", out, "--quiet")
    assert res.exit_code == 0, res.err
    step = next(s for s in json.loads((out / "report.json").read_text())["steps"] if s["step"] == "prune_structured")
    assert step["latency_ms_estimated"]["before"] > 30.0 >= step["latency_ms_estimated"]["after"]
    res = run_cli("package", mnist.model, "--recipe", _latency_recipe(tmp_path, mnist, 30.0), "--target", "android",
                  "--calibration", mnist.calib, "-o", tmp_path / "a", "--quiet")
    assert res.exit_code == 1 and "latency target needs an estimated latency" in res.err
    assert not (tmp_path / "a").exists()


def test_a_held_out_part_the_model_was_trained_on_is_detected():
    """Random labels on 300 samples, memorised by an MLP: 'held-out' training samples measure no drop."""
    import numpy as np

    from edgepack.keras_compat import keras, set_seed
    from edgepack.passes.base import Labeled
    from edgepack.passes.pruning.search import memorized

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20)).astype(np.float32)
    y = rng.integers(0, 4, size=600)
    set_seed(0)
    k = keras()
    m = k.Sequential([k.Input((20,)), k.layers.Dense(256, activation="relu"), k.layers.Dense(4)])
    m.compile(k.optimizers.Adam(1e-2), k.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x[:300], y[:300], epochs=60, batch_size=32, verbose=0)
    seen, unseen = Labeled(x[:150], y[:150]), Labeled(x[300:], y[300:])
    why = memorized(m, seen, unseen)
    assert why is not None and why.startswith("--eval: the held-out part of --train was in the model's training")
    assert memorized(m, Labeled(x[450:], y[450:]), Labeled(x[300:450], y[300:450])) is None  # both unseen
    assert memorized(m, seen, None) is None
