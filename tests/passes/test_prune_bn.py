"""Issue 11: structured pruning keeps residual/depthwise nets correct by default.

BatchNorm statistics are re-estimated after surgery, fine-tuning judges epochs only
after that, the default round_to follows the target's kernels, and the
accuracy-budget search decides on held-out training data.
"""

from __future__ import annotations

import numpy as np
import pytest

from compress_helpers import context, digits, residual_cnn
from edgepack.passes.base import Context, Labeled
from edgepack.passes.prune_structured import StructuredPrune
from edgepack.passes.training import FitConfig, evaluate_accuracy, held_out_fraction, recalibrate_batchnorm


def _prune(model, ctx, **cfg):
    out = StructuredPrune(StructuredPrune.Config(**cfg)).apply(model, ctx)
    return out, ctx.records[-1]


@pytest.fixture(scope="module")
def trained():
    m = residual_cnn()
    assert evaluate_accuracy(m, digits()[1]) >= 98.0
    return m


def test_default_fine_tune_keeps_a_residual_depthwise_net_within_one_point(trained):
    """Issue 11's case: ratio 0.5 (about a quarter to a third of the MACs), default fine-tune."""
    out, rec = _prune(trained, context(), ratio=0.5)
    assert rec["macs_after"] <= 0.35 * rec["macs_before"]
    assert rec["batchnorm_recalibrated"] is True
    assert rec["accuracy_drop"] <= 1.0, rec
    assert {g["group"]: g["channels_after"] for g in rec["groups"]} == {"stem+pw": 16, "b1": 16, "down": 32}


def test_without_batchnorm_recalibration_the_same_recipe_is_wrecked(trained):
    _, rec = _prune(trained, context(), ratio=0.5, fine_tune={"epochs": 2, "recalibrate_bn": False})
    assert rec["accuracy_drop"] > 20, rec  # the symptom: train accuracy fine, inference wrecked


def test_one_shot_pruning_recalibrates_on_calibration_data(trained):
    ctx = context(train=False)
    _, rec = _prune(trained, ctx, ratio=0.25)
    _, stale = _prune(trained, context(train=False), ratio=0.25, fine_tune={"recalibrate_bn": False})
    assert rec["batchnorm_recalibrated"] is True and stale["batchnorm_recalibrated"] is False
    assert rec["accuracy_after"] > stale["accuracy_after"] + 5


def test_recalibration_sets_the_exact_statistics_upstream_first():
    from edgepack.keras_compat import keras

    k, L = keras(), keras().layers
    inp = k.Input((6, 6, 2))
    a = L.BatchNormalization(name="bn_a")(L.Conv2D(3, 3, name="c")(inp))
    b = L.BatchNormalization(name="bn_b")(L.Dense(4, name="d")(L.ReLU()(a)))
    m = k.Model(inp, b)
    for name in ("bn_a", "bn_b"):
        lyr = m.get_layer(name)
        lyr.set_weights([np.full(w.shape, 3.0, np.float32) for w in lyr.get_weights()])
    x = np.random.default_rng(0).normal(2.0, 1.5, size=(50, 6, 6, 2)).astype(np.float32)
    assert recalibrate_batchnorm(m, x, batch_size=16) == 2
    for name in ("bn_a", "bn_b"):  # each layer's input, computed with the already-updated upstream layer
        lyr = m.get_layer(name)
        feats = np.asarray(k.Model(inp, lyr.input)(x, training=False)).reshape(-1, lyr.input.shape[-1])
        np.testing.assert_allclose(lyr.moving_mean.numpy(), feats.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(lyr.moving_variance.numpy(), feats.var(axis=0), rtol=1e-4, atol=1e-5)
    assert recalibrate_batchnorm(m, None) == 0


def test_held_out_part_only_when_large_enough():
    assert held_out_fraction(FitConfig(), 1400) == 0.0
    assert held_out_fraction(FitConfig(), 5000) == 0.1
    assert held_out_fraction(FitConfig(validation_split=0.2), 100) == 0.2


def test_default_round_to_follows_the_target_and_is_reported(trained):
    ctx = Context(calibration=digits()[0].x[:64], channel_multiple=4)
    out, rec = _prune(trained, ctx, ratio=0.4)
    assert rec["round_to"] == 4 and rec["round_to_from"] == "the target's kernels"
    assert all(g["channels_after"] % 4 == 0 for g in rec["groups"])
    _, rec = _prune(trained, Context(calibration=ctx.calibration), ratio=0.4)
    assert rec["round_to"] == 8 and "XNNPACK" in rec["round_to_from"]
    _, rec = _prune(trained, Context(calibration=ctx.calibration, channel_multiple=4), ratio=0.4, round_to=2)
    assert rec["round_to"] == 2 and rec["round_to_from"] == "recipe round_to"


@pytest.mark.slow
def test_accuracy_search_decides_on_held_out_train_data_and_prunes_per_layer(trained):
    tr, ev = digits()
    ctx = Context(train=tr, eval=ev, calibration=tr.x[:100])
    _, rec = _prune(trained, ctx, target={"max_accuracy_drop": 1.0}, search_probes=4, fine_tune={"epochs": 4})
    assert rec["search_decided_on"] == "held-out 280 of 1400 --train samples"
    assert set(rec["sensitivity"]) == {"stem", "b1", "down"}
    assert 1 <= len(rec["search"]) <= 4 and any(p["within_limit"] for p in rec["search"])
    assert rec["search_result"]["held_out_drop"] <= 1.0
    assert rec["macs_after"] <= 0.5 * rec["macs_before"]
    after = {g["group"]: g["channels_after"] for g in rec["groups"]}
    ratios = {g["group"]: g["channels_after"] / g["channels_before"] for g in rec["groups"]}
    assert len(set(ratios.values())) > 1, after  # per-layer, not one ratio for all


def test_accuracy_search_with_a_macs_budget_stops_there(trained):
    tr, ev = digits()
    ctx = Context(train=Labeled(tr.x[:400], tr.y[:400]), eval=ev)
    _, rec = _prune(trained, ctx, target={"max_accuracy_drop": 5.0, "keep_macs": 0.85}, search_epochs=0,
                    fine_tune={"epochs": 1})
    assert rec["macs_after"] <= 0.85 * rec["macs_before"]
    assert len(rec["search"]) == 1 and rec["search"][0]["within_limit"]  # the budget fits: no further probe


def test_a_partial_fine_tune_block_keeps_the_steps_own_defaults():
    from edgepack.passes.distill import Distill
    from edgepack.passes.qat import QAT

    assert StructuredPrune.Config(ratio=0.5, fine_tune={"learning_rate": 5e-4}).fine_tune.epochs == 8
    assert StructuredPrune.Config(ratio=0.5, fine_tune={}).fine_tune == StructuredPrune.Config(ratio=0.5).fine_tune
    assert QAT.Config(fine_tune={"epochs": 5}).fine_tune.learning_rate == 1e-4
    assert Distill.Config(fine_tune={"epochs": 1}).fine_tune.learning_rate == 5e-4
    assert StructuredPrune.Config(ratio=0.5, fine_tune={"epochs": 1}).fine_tune.epochs == 1
