"""Weight clustering: real tfmot k-means on trained digits models, then int8 in LiteRT."""

import numpy as np
import pytest

from compress_helpers import cnn, context, copy_model, magnitude_prune, mlp, tflite_accuracy
from edgepack.errors import RecipeError
from edgepack.passes.cluster import Cluster, kernel_of
from edgepack.passes.training import FitConfig, evaluate_accuracy
from edgepack.recipe import QuantizeConfig, Recipe


@pytest.fixture(scope="module")
def trained_mlp():
    return mlp()


def test_clustering_shares_weights_and_keeps_accuracy(trained_mlp):
    from edgepack.convert.tflite import convert

    ctx = context()
    base = evaluate_accuracy(trained_mlp, ctx.eval)
    step = Cluster(Cluster.Config(clusters=8, fine_tune=FitConfig(epochs=2, learning_rate=1e-4, validation_split=0)))
    out = step.apply(copy_model(trained_mlp), ctx)
    for name in ("fc1", "out"):
        assert np.unique(kernel_of(out.get_layer(name))).size <= 8
    acc = evaluate_accuracy(out, ctx.eval)
    assert acc > base - 5.0
    rec = ctx.records[-1]
    assert {r["layer"] for r in rec["layers"]} == {"fc1", "out"}
    assert all(r["unique_values"] <= 8 < r["unique_values_before"] for r in rec["layers"])
    # The int8 model keeps at most 8 distinct values per output channel and runs in LiteRT.
    tfl = convert(out, QuantizeConfig(mode="int8"), calibration=ctx.calibration)
    assert tflite_accuracy(tfl, ctx.eval) > base - 6.0


def test_sparsity_preserved_after_pruning(trained_mlp):
    ctx = context()
    pruned = magnitude_prune(copy_model(trained_mlp), 0.8, epochs=2)
    before = np.mean(kernel_of(pruned.get_layer("fc1")) == 0)
    assert before >= 0.79
    step = Cluster(Cluster.Config(clusters=4, fine_tune=FitConfig(epochs=1, learning_rate=1e-4, validation_split=0)),
                   previous=("prune_magnitude",))  # preserve_sparsity defaults to true after pruning
    assert step.preserve_sparsity
    out = step.apply(pruned, ctx)
    w = kernel_of(out.get_layer("fc1"))
    assert np.mean(w == 0) >= before - 1e-6
    assert np.unique(w[w != 0]).size <= 4


def test_per_channel_conv_clustering():
    ctx = context()
    m = cnn(epochs=2)
    step = Cluster(Cluster.Config(clusters=4, per_channel=True, layers={"types": ["Conv2D"]}))
    out = step.apply(m, ctx)
    w = kernel_of(out.get_layer("conv2"))
    per_channel = [np.unique(w[..., c]).size for c in range(w.shape[-1])]
    assert max(per_channel) <= 4 and np.unique(w).size > 4  # own codebook per filter
    assert np.unique(kernel_of(out.get_layer("out"))).size > 4  # not selected: untouched
    w1 = kernel_of(out.get_layer("conv1"))
    assert max(np.unique(w1[..., c]).size for c in range(w1.shape[-1])) <= 4


def test_bad_recipes_fail_before_training():
    with pytest.raises(RecipeError, match="clusters"):
        Recipe.from_dict({"steps": [{"type": "cluster", "clusters": 1}]})
    with pytest.raises(RecipeError, match="cannot follow 'qat'"):
        Recipe.from_dict({"steps": [{"type": "qat"}, {"type": "cluster"}]})
    with pytest.raises(RecipeError, match="no layer named 'nope'"):
        Cluster(Cluster.Config(layers={"names": ["nope"]})).preflight(mlp(epochs=0))
    with pytest.raises(RecipeError, match="no layer named 'nope'"):
        Cluster(Cluster.Config(layers={"names": ["nope"]})).apply(mlp(epochs=0), context())
    step = Cluster(Cluster.Config(fine_tune={"epochs": 1}))
    assert "train" in step.needs
    with pytest.raises(RecipeError, match="needs train data"):
        step.apply(mlp(epochs=0), context(train=False))


def test_after_pruning_a_layer_with_too_few_nonzeros_is_skipped_not_a_crash():
    """tfmot's k-means on the non-zero weights needs more of them than clusters (else a TF traceback)."""
    from edgepack.keras_compat import keras
    from edgepack.passes.base import Context
    from edgepack.passes.cluster import Cluster
    from edgepack.passes.prune_magnitude import MagnitudePrune

    k = keras()
    m = k.Sequential([k.layers.InputLayer((8, 8, 1)), k.layers.Flatten(), k.layers.Dense(3, name="narrow"),
                      k.layers.Dense(10, name="tiny")])  # tiny: 30 weights, ~8 non-zero after pruning
    ctx = Context()
    pruned = MagnitudePrune(MagnitudePrune.Config(sparsity=0.75)).apply(m, ctx)
    step = Cluster(Cluster.Config(clusters=16), previous=("prune_magnitude",))
    out = step.apply(pruned, ctx)
    skipped = {s["layer"]: s["reason"] for s in ctx.records[-1]["skipped"]}
    assert "non-zero weights for 16 clusters" in skipped["tiny"]
    assert len(np.unique(out.get_layer("narrow").get_weights()[0])) <= 17  # 16 values + the pruned zeros
