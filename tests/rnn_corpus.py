"""Recurrent models for the tests: tiny, seeded, trained a few epochs on a synthetic sequence task, buildable
with tf_keras or Keras 3 (same code, ``k`` = the Keras module).

The task: ``T`` steps of ``F`` noisy features; class ``c`` adds a bump to feature ``c`` in the second half
of the sequence, so the class is read from the sequence (a recurrent net learns it in a few epochs).

Keras 3 models are built in a separate process (``python tests/rnn_corpus.py OUT NAME...``, run without
``TF_USE_LEGACY_KERAS``), each saved as ``NAME.keras`` with ``NAME.npz`` holding the eval inputs ``x``,
labels ``y`` and Keras 3's own outputs ``p``; ``data.npz``/``calib.npz`` hold the eval and calibration sets.
tf_keras models are built in the test process with :func:`train` (and saved as ``.h5`` by the tests).

Example::

    python tests/rnn_corpus.py /tmp/rnn lstm gru bilstm
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

T, F, CLASSES = 12, 3, 3
SPECS: dict = {}


def spec(fn):
    SPECS[fn.__name__] = fn
    return fn


@spec
def lstm(k, steps: int = T):
    L = k.layers
    return k.Sequential([k.Input((steps, F), name="seq"), L.LSTM(8), L.Dense(CLASSES, activation="softmax")],
                        name="lstm")


@spec
def lstm_seq(k, steps: int = T):
    """Two stacked LSTMs (return_sequences) in a functional model."""
    L = k.layers
    i = k.Input((steps, F), name="seq")
    x = L.LSTM(8, return_sequences=True)(i)
    x = L.LSTM(6)(x)
    return k.Model(i, L.Dense(CLASSES, activation="softmax")(x), name="lstm_seq")


@spec
def gru(k, steps: int = T):
    L = k.layers
    return k.Sequential([k.Input((steps, F), name="seq"), L.GRU(8), L.Dense(CLASSES, activation="softmax")],
                        name="gru")


@spec
def simple_rnn(k, steps: int = T):
    L = k.layers
    return k.Sequential([k.Input((steps, F), name="seq"), L.SimpleRNN(8),
                         L.Dense(CLASSES, activation="softmax")], name="simple_rnn")


@spec
def bilstm(k, steps: int = T):
    L = k.layers
    return k.Sequential([k.Input((steps, F), name="seq"), L.Bidirectional(L.LSTM(6)),
                         L.Dense(CLASSES, activation="softmax")], name="bilstm")


def sequences(n: int, seed: int, steps: int = T) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of the synthetic task: x (n, steps, F) float32, y (n,) int32."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n).astype(np.int32)
    x = rng.normal(0.0, 0.6, size=(n, steps, F)).astype(np.float32)
    x[np.arange(n), steps // 2:, y] += 1.0
    return x, y


def train(k, name: str, epochs: int = 6, seed: int = 0, steps: int = T, n: int = 600):
    """The model ``name`` built with Keras module ``k`` and trained ``epochs`` epochs (seeded)."""
    k.utils.set_random_seed(seed)
    model = SPECS[name](k, steps)
    x, y = sequences(n, seed + 100, steps)
    model.compile(optimizer=k.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def write_data(out: Path) -> None:
    """``calib.npz`` (x) and ``eval.npz`` (x, y), the sets every recurrent test packages with."""
    xc, _ = sequences(64, 1)
    xe, ye = sequences(300, 2)
    np.savez(out / "calib.npz", x=xc)
    np.savez(out / "eval.npz", x=xe, y=ye)


def build_keras3(out: Path, names: list[str]) -> None:
    """Train and save the Keras 3 models ``names`` into ``out`` (run where ``keras`` is Keras 3)."""
    import keras

    assert keras.__version__.startswith("3."), keras.__version__
    write_data(out)
    xe, ye = sequences(300, 2)
    for name in names:
        model = train(keras, name)
        model.save(out / f"{name}.keras")
        np.savez(out / f"{name}.npz", x=xe, y=ye, p=np.asarray(model.predict(xe, verbose=0)))


if __name__ == "__main__":
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    build_keras3(Path(sys.argv[1]), sys.argv[2:])
