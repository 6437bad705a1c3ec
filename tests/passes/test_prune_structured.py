"""Structured pruning: dependency groups, exactness of surgery, targets, bad input, end to end."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.errors import BudgetError, DataError, RecipeError
from edgepack.keras_compat import keras
from edgepack.passes.base import Context, Labeled
from edgepack.passes.prune_structured import StructuredPrune
from edgepack.passes.pruning.graph import build_graph
from edgepack.recipe import Recipe


def _prune(model, ctx=None, **cfg):
    ctx = ctx or Context()
    cfg.setdefault("round_to", 1)  # exact channel counts (the default follows the target's kernels)
    out = StructuredPrune(StructuredPrune.Config(**cfg)).apply(model, ctx)
    return out, ctx.records[-1]


def _zero(model, layer: str, idx, bias_only: bool = False) -> None:
    """Make channels ``idx`` of ``layer`` produce exact zeros (kernel columns and bias)."""
    lyr = model.get_layer(layer)
    w = lyr.get_weights()
    cls = type(lyr).__name__
    if cls == "BatchNormalization":  # gamma, beta, mean, var: output = beta for a zero input
        w[1][idx] = 0.0
    elif cls == "DepthwiseConv2D":
        w[-1][idx] = 0.0
    else:
        k = 1 if cls == "SeparableConv2D" else 0
        w[k][..., idx] = 0.0
        w[-1][idx] = 0.0
    lyr.set_weights(w)


def _randomise_bn(model, seed=0) -> None:
    rng = np.random.default_rng(seed)
    for lyr in model.layers:
        if type(lyr).__name__ == "BatchNormalization":
            g, b, m, v = lyr.get_weights()
            lyr.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                             rng.normal(0, 0.1, m.shape) * 0, rng.uniform(0.5, 2, v.shape)])


def sequential_cnn():
    k = keras()
    L = k.layers
    return k.Sequential([k.Input((10, 10, 3)), L.Conv2D(8, 3, name="c1"), L.BatchNormalization(name="bn1"),
                         L.ReLU(name="r1"), L.Conv2D(12, 3, activation="relu", name="c2"),
                         L.Flatten(name="flat"), L.Dense(16, activation="relu", name="fc"),
                         L.Dropout(0.1, name="drop"), L.Dense(5, name="out")], name="seq")


def residual_model():
    """Residual Add, Multiply gate, DepthwiseConv, SeparableConv, Concatenate, GAP: every coupling kind."""
    k = keras()
    L = k.layers
    i = k.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(i)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.Conv2D(8, 1, name="pw")(y)
    y = L.BatchNormalization(name="pw_bn")(y)
    z = L.Add(name="add")([x, y])
    z = L.Multiply(name="gate")([z, L.Conv2D(8, 1, activation="sigmoid", name="gate_conv")(z)])
    s = L.SeparableConv2D(6, 3, padding="same", activation="relu", name="sep")(z)
    c = L.Concatenate(name="cat")([z, s])
    g = L.GlobalAveragePooling2D(name="gap")(c)
    o = L.Dense(4, name="out")(g)
    return k.Model(i, o, name="res")


def test_sequential_zero_channels_removed_exactly():
    m = sequential_cnn()
    _randomise_bn(m)
    for layer in ("c1",):
        _zero(m, layer, [1, 5])
    _zero(m, "bn1", [1, 5])
    _zero(m, "c2", [0, 3, 7])
    _zero(m, "fc", [2, 9, 11, 15])
    x = np.random.default_rng(1).normal(size=(8, 10, 10, 3)).astype(np.float32)
    out, rec = _prune(m, ratios={"c1": 0.25, "c2": 0.25, "fc": 0.25})
    assert [lyr.output_shape[-1] for lyr in out.layers if lyr.name in ("c1", "c2", "fc")] == [6, 9, 12]
    np.testing.assert_allclose(out.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert rec["params_after"] == out.count_params() < m.count_params() == rec["params_before"]
    assert isinstance(out, keras().Sequential)


def test_residual_concat_gate_zero_channels_removed_exactly():
    m = residual_model()
    _randomise_bn(m, 3)
    g = build_graph(m)
    coupled = g.group_of("stem")
    assert set(coupled.producers) == {"stem", "pw", "gate_conv"}
    assert set(coupled.channelwise) == {"stem_bn", "dw", "pw_bn"}
    assert g.group_of("sep").producers == ["sep"] and g.group_of("sep").blocked is None
    idx = [2, 6]
    for layer in ("stem", "stem_bn", "dw", "pw", "pw_bn", "gate_conv"):
        _zero(m, layer, idx)
    _zero(m, "sep", [4])
    x = np.random.default_rng(2).normal(size=(6, 12, 12, 3)).astype(np.float32)
    out, rec = _prune(m, ratios={"stem": 0.25, "sep": 0.17})
    assert out.get_layer("stem").filters == 6 and out.get_layer("pw").filters == 6
    assert out.get_layer("gate_conv").filters == 6 and out.get_layer("sep").filters == 5
    assert out.get_layer("out").input_shape[-1] == 11
    np.testing.assert_allclose(out.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert {r["name"] for r in rec["layers"]} >= {"stem", "dw", "pw", "sep", "gate_conv", "out"}


def test_merge_of_different_layouts_blocks_with_reason():
    k = keras()
    L = k.layers
    i = k.Input((6, 6, 2))
    a = L.Conv2D(4, 1, name="a")(i)
    b = L.Conv2D(3, 1, name="b")(i)
    c = L.Concatenate(name="cat")([a, b])
    m = L.Multiply(name="mul")([c, L.Conv2D(7, 1, name="gate")(c)])
    model = k.Model(i, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(m)))
    g = build_graph(model)
    for name in ("a", "b", "gate"):
        assert "different channel layouts" in g.group_of(name).blocked


@pytest.mark.parametrize("criterion", ["activation", "taylor"])
def test_data_driven_importance_drops_dead_channels(criterion):
    m = sequential_cnn()
    _zero(m, "fc", [0, 4, 8, 12])
    x = np.random.default_rng(3).normal(size=(32, 10, 10, 3)).astype(np.float32)
    y = np.arange(32) % 5
    # the model's BN statistics are random: keep them (recalibration would change the outputs)
    out, rec = _prune(m, Context(calibration=x, eval=Labeled(x, y)), importance=criterion, ratios={"fc": 0.25},
                      fine_tune={"recalibrate_bn": False})
    assert out.get_layer("fc").units == 12
    np.testing.assert_allclose(out.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_macs_match_the_converted_tflite():
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.convert.tflite import convert
    from edgepack.recipe import QuantizeConfig

    m = residual_model()
    out, rec = _prune(m, ratio=0.5, round_to=2)
    info = read_tflite(convert(out, QuantizeConfig(mode="none")))
    assert info.macs() == rec["macs_after"] < rec["macs_before"]
    for r in rec["layers"]:
        if r["name"] in ("stem", "sep"):
            assert r["channels_after"] % 2 == 0 and r["channels_after"] < r["channels_before"]


def test_blocked_group_is_skipped_or_error_when_forced():
    k = keras()
    L = k.layers
    m = k.Sequential([k.Input((6, 6, 2)), L.Conv2D(4, 3, name="c1"), L.Reshape((16, 4 // 1 * 1), name="rs"),
                      L.Flatten(name="f"), L.Dense(8, name="d1"), L.Dense(3, name="out")])
    out, rec = _prune(m, ratio=0.5)
    assert out.get_layer("c1").filters == 4 and out.get_layer("d1").units == 4
    reasons = {s["group"]: s["reason"] for s in rec["skipped_groups"]}
    assert "rs" in reasons["c1"] and "Reshape" in reasons["c1"]
    with pytest.raises(RecipeError, match="'c1' cannot be pruned.*Reshape"):
        _prune(m, ratio=0.5, force=True, layers={"names": ["c1"]})


def test_output_layer_never_pruned():
    m = sequential_cnn()
    out, _ = _prune(m, ratio=0.6)
    assert out.output_shape == m.output_shape
    with pytest.raises(RecipeError, match="no prunable channel group.*output"):
        _prune(m, ratio=0.5, layers={"names": ["out"]})


@pytest.mark.parametrize("raw, match", [
    ({"ratio": 1.5}, "ratio"),
    ({"ratio": 0.0}, "ratio"),
    ({"ratios": {"c1": 1.0}}, "must be in \\(0, 1\\)"),
    ({"ratio": 0.5, "target": {"keep_macs": 0.5}}, "exactly one"),
    ({"target": {"keep_macs": 0.5, "max_params": 10}}, "give one of max_macs"),
    ({"ratio": 0.5, "importance": "taylorish"}, "importance"),
    ({"ratio": 0.5, "layers": {"regex": "("}}, "regular expression"),
])
def test_bad_recipe_steps_are_clear_errors(raw, match):
    with pytest.raises(RecipeError, match=match):
        Recipe.from_dict({"steps": [{"type": "prune_structured", **raw}]})


def test_selector_and_ratio_keys_that_match_nothing_are_errors():
    m = sequential_cnn()
    with pytest.raises(RecipeError, match="no layer named 'conv9'"):
        _prune(m, ratio=0.5, layers={"names": ["conv9"]})
    with pytest.raises(RecipeError, match="regex 'block_.\\*' matches no layer"):
        _prune(m, ratio=0.5, layers={"regex": "block_.*"})
    with pytest.raises(RecipeError, match="ratios key 'conv_.\\*' matches no"):
        _prune(m, ratios={"conv_.*": 0.5})


def test_budget_targets_are_met_or_refused():
    m = sequential_cnn()
    out, rec = _prune(m, target={"keep_macs": 0.5})
    assert rec["macs_after"] <= 0.5 * rec["macs_before"]
    assert rec["macs_after"] > 0.3 * rec["macs_before"]  # the smallest ratio that fits, not any ratio
    out, rec = _prune(m, target={"max_params": 4000}, round_to=4)
    assert out.count_params() <= 4000
    assert all(r["channels_after"] % 4 == 0 for r in rec["layers"] if r["name"] in ("c1", "c2", "fc"))
    with pytest.raises(BudgetError, match="budget of 10 MACs cannot be met"):
        _prune(m, target={"max_macs": 10})


def test_training_data_of_wrong_shape_is_refused():
    m = sequential_cnn()
    bad = Labeled(np.zeros((4, 8, 8, 3), np.float32), np.zeros(4, np.int64))
    with pytest.raises(DataError, match="shape"):
        _prune(m, Context(train=bad), ratio=0.5)
    with pytest.raises(DataError, match="calibration data has sample shape"):
        _prune(m, Context(calibration=np.zeros((4, 3), np.float32)), importance="activation", ratio=0.5)
    with pytest.raises(RecipeError, match="'taylor' needs labelled data"):
        _prune(m, Context(calibration=np.zeros((4, 10, 10, 3), np.float32)), importance="taylor", ratio=0.5)


def test_one_shot_without_training_data_warns():
    logs = []
    _, rec = _prune(sequential_cnn(), Context(log=logs.append), ratio=0.5)
    assert "one-shot" in rec["warning"] and any("one-shot" in line for line in logs)
    assert rec["fine_tuned"] is False


def test_deterministic_weights():
    m = residual_model()
    x = np.random.default_rng(5).normal(size=(16, 12, 12, 3)).astype(np.float32)
    runs = [_prune(m, Context(calibration=x), importance="activation", target={"keep_macs": 0.5})[0]
            for _ in range(2)]
    a, b = ([w.tobytes() for w in r.get_weights()] for r in runs)
    assert a == b and runs[0].to_json() == runs[1].to_json()


def test_resnet8_groups_and_int8_run(mlperf_dir):
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.convert.tflite import convert
    from edgepack.load import load_model
    from edgepack.recipe import QuantizeConfig
    from edgepack.runtime import LiteRT

    m = load_model(mlperf_dir / "pretrainedResnet.h5", unsafe=False)
    g = build_graph(m)
    coupled = sorted(tuple(sorted(grp.producers)) for grp in g.prunable() if len(grp.producers) > 1)
    assert coupled == [("conv2d", "conv2d_2"), ("conv2d_4", "conv2d_5"), ("conv2d_7", "conv2d_8")]
    out, rec = _prune(m, ratio=0.5)
    assert rec["macs_before"] / rec["macs_after"] > 3  # halving in and out channels: ~4x fewer MACs
    x = np.random.default_rng(0).uniform(0, 1, (16, 32, 32, 3)).astype(np.float32)
    tfl = convert(out, QuantizeConfig(mode="int8", io="int8"), calibration=x)
    assert read_tflite(tfl).macs() == rec["macs_after"]
    y = LiteRT(tfl).predict(x[:4])
    np.testing.assert_allclose(y, out.predict(x[:4], verbose=0), atol=0.1)


def test_global_scope_takes_least_important_channels_model_wide():
    m = sequential_cnn()
    _zero(m, "c2", [0, 3, 7])
    x = np.random.default_rng(4).normal(size=(8, 10, 10, 3)).astype(np.float32)
    out, rec = _prune(m, ratio=3 / 36, scope="global")  # 8 + 12 + 16 prunable channels
    assert [out.get_layer(n).output_shape[-1] for n in ("c1", "c2", "fc")] == [8, 9, 16]
    np.testing.assert_allclose(out.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    out, rec = _prune(m, target={"keep_params": 0.5}, scope="global", max_ratio=0.75)
    assert rec["params_after"] <= 0.5 * rec["params_before"]
    assert all(g["channels_after"] >= g["channels_before"] // 4 for g in rec["groups"])
