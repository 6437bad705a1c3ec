"""Tiny real data and models for the compression-pass tests (issue 4): sklearn digits, few epochs."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgepack.passes.base import Context, Labeled


@lru_cache(maxsize=1)
def digits() -> tuple[Labeled, Labeled]:
    """sklearn's 8x8 digits as (train, eval), pixels scaled to 0..1, shape (n, 8, 8, 1)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.RandomState(0).permutation(len(x))
    x, y = x[idx], y[idx]
    return Labeled(x[:1400], y[:1400]), Labeled(x[1400:], y[1400:])


def context(seed: int = 0, train: bool = True) -> Context:
    tr, ev = digits()
    return Context(seed=seed, calibration=tr.x[:100], train=tr if train else None, eval=ev)


def mlp(hidden: int = 64, epochs: int = 8, seed: int = 0, softmax: bool = False):
    """A trained Flatten-Dense-Dense digits classifier (logits out unless ``softmax``).

    Trained once per argument set; every call returns a fresh copy.
    """
    return copy_model(_mlp(hidden, epochs, seed, softmax))


@lru_cache(maxsize=None)
def _mlp(hidden: int, epochs: int, seed: int, softmax: bool):
    from edgepack.keras_compat import keras, set_seed
    from edgepack.passes.training import FitConfig, fit

    k = keras()
    set_seed(seed)
    m = k.Sequential([k.layers.InputLayer((8, 8, 1)), k.layers.Flatten(name="flatten"),
                      k.layers.Dense(hidden, activation="relu", name="fc1"),
                      k.layers.Dense(10, activation="softmax" if softmax else None, name="out")])
    if epochs:
        fit(m, digits()[0], context(seed), FitConfig(epochs=epochs, learning_rate=3e-3, validation_split=0))
    return m


def cnn(epochs: int = 6, seed: int = 0):
    """A trained Conv-Conv-Dense digits classifier with logits out."""
    from edgepack.keras_compat import keras, set_seed
    from edgepack.passes.training import FitConfig, fit

    k = keras()
    set_seed(seed)
    m = k.Sequential([k.layers.InputLayer((8, 8, 1)),
                      k.layers.Conv2D(16, 3, activation="relu", padding="same", name="conv1"),
                      k.layers.Conv2D(16, 3, activation="relu", name="conv2"),
                      k.layers.Flatten(name="flatten"), k.layers.Dense(10, name="out")])
    fit(m, digits()[0], context(seed), FitConfig(epochs=epochs, learning_rate=3e-3, validation_split=0))
    return m


def copy_model(m):
    from edgepack.keras_compat import keras

    c = keras().models.clone_model(m)
    c.set_weights(m.get_weights())
    if m.optimizer is not None:  # keep it usable for predict/evaluate like the original
        c.compile(loss=m.loss)
    return c


def tflite_accuracy(data: bytes, ev: Labeled) -> float:
    """Top-1 accuracy (percent) of a .tflite model run in LiteRT."""
    from edgepack.runtime import LiteRT

    pred = LiteRT(data).predict(ev.x)
    return float(100.0 * np.mean(np.argmax(pred, -1) == ev.y))


def magnitude_prune(model, sparsity: float, epochs: int = 3, seed: int = 0):
    """Prune with tfmot directly (prune_low_magnitude + strip), fine-tuning on digits."""
    from edgepack.keras_compat import keras, tfmot
    from edgepack.passes.training import FitConfig, fit

    mot = tfmot()
    sched = mot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=10)
    pm = mot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=sched)
    fit(pm, digits()[0], context(seed), FitConfig(epochs=epochs, learning_rate=1e-3, validation_split=0),
        callbacks=[mot.sparsity.keras.UpdatePruningStep()])
    out = mot.sparsity.keras.strip_pruning(pm)
    keras()  # keep Keras 2 selected
    return out


def residual_cnn(epochs: int = 12, seed: int = 0):
    """A trained residual digits CNN: Conv-BN stem, a residual block with a DepthwiseConv2D and
    BatchNorms (coupled channels through Add), a strided Conv-BN, global pooling, logits out.

    The shape of issue 11's model; trained once per argument set, every call returns a copy.
    """
    return copy_model(_residual_cnn(epochs, seed))


@lru_cache(maxsize=None)
def _residual_cnn(epochs: int, seed: int):
    from edgepack.keras_compat import keras, set_seed
    from edgepack.passes.training import FitConfig, fit

    k = keras()
    L = k.layers
    set_seed(seed)
    inp = k.Input((8, 8, 1))
    x = L.ReLU(name="r0")(L.BatchNormalization(name="bn0")(L.Conv2D(32, 3, padding="same", name="stem")(inp)))
    y = L.ReLU(name="r1")(L.BatchNormalization(name="bn1")(L.Conv2D(32, 3, padding="same", name="b1")(x)))
    y = L.ReLU(name="r2")(L.BatchNormalization(name="bn2")(L.DepthwiseConv2D(3, padding="same", name="dw")(y)))
    y = L.BatchNormalization(name="bn3")(L.Conv2D(32, 1, name="pw")(y))
    x = L.ReLU(name="r3")(L.Add(name="add")([x, y]))
    x = L.ReLU(name="r4")(L.BatchNormalization(name="bn4")(L.Conv2D(64, 3, strides=2, padding="same",
                                                                     name="down")(x)))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    m = k.Model(inp, L.Dense(10, name="out")(x), name="residual_cnn")
    fit(m, digits()[0], context(seed), FitConfig(epochs=epochs, learning_rate=3e-3, validation_split=0))
    return m


def outlier_model(scale: float = 3000.0):
    """A trained digits MLP with one fc1 neuron scaled by ``scale`` in and 1/scale out.

    ReLU is positively homogeneous, so the float function is unchanged, but fc1's
    output range grows ``scale``-fold: per-tensor int8 activations crush the other
    neurons (the "outlier feature" failure of plain int8).
    """
    m = mlp()
    w, b = m.get_layer("fc1").get_weights()
    j = int(np.argmax(np.abs(w).sum(0)))
    w[:, j] *= scale
    b[j] *= scale
    m.get_layer("fc1").set_weights([w, b])
    w2, b2 = m.get_layer("out").get_weights()
    w2[j] /= scale
    m.get_layer("out").set_weights([w2, b2])
    return m
