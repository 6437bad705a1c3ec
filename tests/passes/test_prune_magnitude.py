"""Unstructured magnitude pruning and 2:4 sparsity (tfmot), stripped before returning."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.errors import DataError, RecipeError
from edgepack.keras_compat import keras
from edgepack.passes.base import Context, Labeled
from edgepack.passes.prune_magnitude import MagnitudePrune, m_by_n_mask
from edgepack.recipe import Recipe


def _model():
    k = keras()
    L = k.layers
    return k.Sequential([k.Input((8, 8, 4)), L.Conv2D(8, 3, activation="relu", name="c1"),
                         L.DepthwiseConv2D(3, name="dw"), L.Flatten(name="f"),
                         L.Dense(16, activation="relu", name="fc"), L.Dense(10, name="out")])


def _prune(model, ctx=None, **cfg):
    ctx = ctx or Context()
    return MagnitudePrune(MagnitudePrune.Config(**cfg)).apply(model, ctx), ctx.records[-1]


def tfmot_tf():
    from edgepack.keras_compat import tf

    return tf()


def _sparsity(w):
    return float((w == 0).mean())


def test_one_shot_unstructured_hits_target_and_keeps_largest():
    m = _model()
    out, rec = _prune(m, sparsity=0.8)
    assert _sparsity(out.get_layer("dw").get_weights()[0]) == 0  # tfmot does not prune depthwise kernels
    for name in ("c1", "fc", "out"):
        w0, w1 = m.get_layer(name).get_weights()[0], out.get_layer(name).get_weights()[0]
        assert _sparsity(w1) == pytest.approx(0.8, abs=0.01)
        kept = w1 != 0
        assert np.abs(w0[kept]).min() >= np.abs(w0[~kept]).max()  # the largest magnitudes survive
        np.testing.assert_array_equal(w1[kept], w0[kept])
    assert rec["sparsity"] == pytest.approx(0.8, abs=0.01) and "one-shot" in rec["warning"]
    assert out.count_params() == m.count_params()  # shapes unchanged: only zeros


def test_two_four_matches_tfmot_checker():
    from edgepack.keras_compat import tfmot

    tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_utils import is_pruned_m_by_n

    m = _model()
    out, rec = _prune(m, m_by_n=(2, 4), layers={"types": ["Conv2D", "Dense"]})
    tf = tfmot_tf()
    for name in ("c1", "fc"):
        k = out.get_layer(name).get_weights()[0]
        assert bool(is_pruned_m_by_n(tf.constant(k), (2, 4))) and _sparsity(k) == 0.5
    assert not bool(is_pruned_m_by_n(tf.constant(m.get_layer("c1").get_weights()[0]), (2, 4)))
    # 'out' has 16 inputs per unit: pruned too; the depthwise layer is not a 2:4 candidate
    assert _sparsity(out.get_layer("dw").get_weights()[0]) == 0
    assert rec["m_by_n"] == [2, 4]


def test_m_by_n_mask_blocks_along_input_axis():
    w = np.arange(1, 9, dtype=np.float32).reshape(8, 1)  # 8 inputs, 1 output
    mask = m_by_n_mask(w, 2, 4)
    np.testing.assert_array_equal(mask[:, 0], [False, False, True, True, False, False, True, True])


def test_fine_tuned_with_tfmot_and_stripped():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.repeat((d.images / 16.0).astype(np.float32)[..., None], 4, axis=-1)[:400]
    y = d.target[:400].astype(np.int64)
    m = _model()
    k = keras()
    m.compile(k.optimizers.Adam(3e-3), k.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=8, batch_size=32, verbose=0)
    logs = []
    _, one_shot = _prune(m, Context(eval=Labeled(x, y)), sparsity=0.7)
    out, rec = _prune(m, Context(train=Labeled(x, y), eval=Labeled(x, y), log=logs.append), sparsity=0.7,
                      fine_tune={"epochs": 2, "validation_split": 0.0, "batch_size": 32})
    assert [type(lyr).__name__ for lyr in out.layers] == [type(lyr).__name__ for lyr in m.layers]
    assert rec["fine_tuned"] is True and rec["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert rec["accuracy_after"] > one_shot["accuracy_after"]
    assert any("fine-tune: epoch 2/2" in line for line in logs)


@pytest.mark.parametrize("raw, match", [
    ({"sparsity": 1.0}, "sparsity"),
    ({"sparsity": 0.5, "m_by_n": [2, 4]}, "exactly one"),
    ({"m_by_n": [4, 2]}, "0 < m < n"),
    ({"sparsity": 0.5, "initial_sparsity": 0.6}, "initial_sparsity"),
    ({}, "exactly one"),
])
def test_bad_steps(raw, match):
    with pytest.raises(RecipeError, match=match):
        Recipe.from_dict({"steps": [{"type": "prune_magnitude", **raw}]})


def test_bad_selection_and_data():
    m = _model()
    with pytest.raises(RecipeError, match="no layer named 'fc9'"):
        _prune(m, sparsity=0.5, layers={"names": ["fc9"]})
    k = keras()
    first = k.Sequential([k.Input((6, 6, 3)), k.layers.Conv2D(4, 3, name="c0"), k.layers.Flatten(),
                          k.layers.Dense(2, name="o")])
    with pytest.raises(RecipeError, match="'c0' cannot take 2:4 sparsity: 3 input weights"):
        _prune(first, m_by_n=(2, 4), layers={"names": ["c0"]})
    with pytest.raises(DataError, match="shape"):
        _prune(m, Context(train=Labeled(np.zeros((3, 8, 8, 1), np.float32), np.zeros(3, np.int64))), sparsity=0.5)
