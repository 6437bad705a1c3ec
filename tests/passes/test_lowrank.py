"""Low-rank factorization: exact on low-rank kernels, Sequential and Functional, LiteRT runs it."""

import numpy as np
import pytest

from compress_helpers import context, copy_model, digits, mlp, tflite_accuracy
from edgepack.convert.flatbuffer import read_tflite
from edgepack.convert.tflite import convert
from edgepack.errors import RecipeError
from edgepack.passes.lowrank import LowRank
from edgepack.passes.training import evaluate_accuracy
from edgepack.recipe import QuantizeConfig, Recipe


def _set_rank(layer, rank: int, seed: int = 0) -> None:
    """Give a Dense / 1x1 Conv2D layer an exactly rank-``rank`` kernel."""
    w, *rest = layer.get_weights()
    w2 = w.reshape(-1, w.shape[-1])
    rng = np.random.RandomState(seed)
    low = rng.normal(size=(w2.shape[0], rank)) @ rng.normal(size=(rank, w2.shape[1])) * 0.05
    layer.set_weights([low.astype(np.float32).reshape(w.shape)] + rest)


def test_exact_low_rank_kernel_is_reproduced():
    ctx = context()
    model = mlp(hidden=48, epochs=0)
    _set_rank(model.get_layer("fc1"), 5)
    x = digits()[1].x
    out = LowRank(LowRank.Config(energy=0.999999)).apply(copy_model(model), ctx)
    rec = {r["layer"]: r for r in ctx.records[-1]["layers"]}
    assert rec["fc1"]["rank"] == 5
    assert rec["fc1"]["kernel_params_after"] == 5 * (64 + 48)
    assert "fc1_lowrank" in [lyr.name for lyr in out.layers]
    np.testing.assert_allclose(out.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    assert out.count_params() < model.count_params()


def test_params_ratio_with_fine_tune_on_digits_runs_in_litert():
    ctx = context()
    model = mlp()
    base = evaluate_accuracy(model, ctx.eval)
    step = LowRank(LowRank.Config(params_ratio=0.3, layers={"names": ["fc1"]},
                                  fine_tune={"epochs": 3, "learning_rate": 1e-3, "validation_split": 0}))
    out = step.apply(copy_model(model), ctx)
    rec = ctx.records[-1]["layers"][0]
    assert rec["kernel_params_after"] <= 0.3 * rec["kernel_params_before"]
    assert evaluate_accuracy(out, ctx.eval) > base - 4.0
    data = convert(out, QuantizeConfig(mode="int8"), calibration=ctx.calibration)
    assert read_tflite(data).op_counts()["FULLY_CONNECTED"] == 3
    assert tflite_accuracy(data, ctx.eval) > base - 6.0


def test_functional_residual_with_1x1_conv():
    from edgepack.keras_compat import keras

    k = keras()
    inp = k.Input((8, 8, 1))
    x = k.layers.Conv2D(24, 3, padding="same", activation="relu", name="stem")(inp)
    y = k.layers.Conv2D(24, 1, activation="relu", name="pw")(x)
    x = k.layers.Add(name="add")([x, y])
    x = k.layers.GlobalAveragePooling2D()(x)
    out = k.layers.Dense(10, name="head")(x)
    model = k.Model(inp, out)
    _set_rank(model.get_layer("pw"), 3, seed=1)
    ctx = context()
    res = LowRank(LowRank.Config(energy=0.999999, layers={"types": ["Conv2D"]})).apply(model, ctx)
    assert [r["layer"] for r in ctx.records[-1]["layers"]] == ["pw"]
    x = digits()[1].x[:64]
    np.testing.assert_allclose(res.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    data = convert(res, QuantizeConfig(mode="none"))
    assert read_tflite(data).op_counts()["CONV_2D"] == 3


def test_bad_ranks_and_order_fail_before_training():
    model = mlp(hidden=32, epochs=0)
    with pytest.raises(RecipeError, match="rank 40 for layer 'fc1' is larger"):
        LowRank(LowRank.Config(ranks={"fc1": 40})).preflight(model)  # before any step trains
    with pytest.raises(RecipeError, match="rank 40 for layer 'fc1' is larger"):
        LowRank(LowRank.Config(ranks={"fc1": 40})).apply(model, context())
    with pytest.raises(RecipeError, match="not a Dense"):
        LowRank(LowRank.Config(ranks={"flatten": 2})).preflight(model)
    with pytest.raises(RecipeError, match="cannot follow 'qat'"):
        Recipe.from_dict({"steps": [{"type": "qat"}, {"type": "lowrank"}]})
    with pytest.raises(RecipeError, match="energy"):
        Recipe.from_dict({"steps": [{"type": "lowrank", "energy": 1.5}]})
    with pytest.raises(RecipeError, match="needs train data"):
        LowRank(LowRank.Config(fine_tune={"epochs": 1})).apply(model, context(train=False))
