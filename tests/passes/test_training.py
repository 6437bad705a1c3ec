"""The shared training loop's helpers."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.errors import DataError
from edgepack.keras_compat import keras, tfmot
from edgepack.passes.base import Context, Labeled
from edgepack.passes.training import FitConfig, check_labels, fit, uses_softmax
from locations import TESTS


def _model(softmax: bool):
    k = keras()
    return k.Sequential([k.Input((4,)), k.layers.Dense(8, activation="relu"),
                         k.layers.Dense(3, activation="softmax" if softmax else None)])


@pytest.mark.parametrize("softmax", [True, False])
def test_uses_softmax_sees_through_tfmot_wrappers(softmax):
    m, t = _model(softmax), tfmot()
    wrapped = [m, t.sparsity.keras.prune_low_magnitude(m), t.quantization.keras.quantize_model(m),
               t.clustering.keras.cluster_weights(m, number_of_clusters=2)]
    assert [uses_softmax(w) for w in wrapped] == [softmax] * 4


def test_zero_epochs_leaves_the_model_alone_and_bad_labels_fail():
    m = _model(True)
    before = [w.copy() for w in m.get_weights()]
    data = Labeled(x=np.zeros((8, 4), np.float32), y=np.zeros(8, np.int64))
    assert fit(m, data, Context(), FitConfig(epochs=0)) is None
    assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
    with pytest.raises(DataError, match="labels range 0..5 but the model has 3 outputs"):
        check_labels(m, Labeled(x=data.x, y=np.arange(8) % 6))


def test_the_kept_epoch_carries_recalibrated_batchnorm_statistics():
    """With a held-out part, each epoch is judged after a BN recalibration on the training part,
    and the kept epoch's weights include those statistics (not Keras' lagging moving averages)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(TESTS))
    from compress_helpers import copy_model, digits, residual_cnn
    from edgepack.passes.training import recalibrate_batchnorm

    m = residual_cnn(epochs=0)
    tr = digits()[0]
    data = Labeled(tr.x[:600], tr.y[:600])
    logs: list[str] = []
    hist = fit(m, data, Context(log=logs.append), FitConfig(epochs=2, validation_split=0.25, learning_rate=3e-3))
    assert 1 <= hist.best_epoch <= 2
    assert sum("held-out after epoch" in s for s in logs) == 2
    order = np.random.RandomState(0).permutation(600)  # fit's seeded split: 150 held out
    again = copy_model(m)
    recalibrate_batchnorm(again, data.x[np.sort(order[150:])])
    for name in ("bn0", "bn2", "bn4"):
        np.testing.assert_allclose(m.get_layer(name).moving_variance.numpy(),
                                   again.get_layer(name).moving_variance.numpy(), rtol=1e-4, atol=1e-6)
