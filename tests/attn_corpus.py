"""The corpus' attention models (tests/model_corpus.py ``transformer_features``, ``transformer_tokens``) trained
a few epochs on synthetic tasks, so that accuracy (not only agreement) can be gated.

- features: 16 steps x 8 noisy features; class ``c`` (0..3) adds a bump to feature ``c`` in the second half.
- tokens: 8 token ids in 3..31 with one marker token (0, 1 or 2: the class) at a random position.

Keras 3 models are built in a separate process (``python tests/attn_corpus.py OUT NAME...``, run without
``TF_USE_LEGACY_KERAS``), each saved as ``NAME.keras`` with ``NAME_calib.npz`` (x) and ``NAME_eval.npz``
(x, y) and ``NAME_keras3.npz`` (Keras 3's own eval outputs ``p``).

Example::

    python tests/attn_corpus.py /tmp/attn transformer_features transformer_tokens
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_corpus  # noqa: E402

MODELS = ("transformer_features", "transformer_tokens")


def task(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples (x, integer labels y) of the model ``name``'s synthetic task."""
    rng = np.random.default_rng(seed)
    if name == "transformer_features":
        y = rng.integers(0, 4, size=n).astype(np.int32)
        x = rng.normal(0.0, 0.6, size=(n, 16, 8)).astype(np.float32)
        x[np.arange(n), 8:, y] += 1.0
        return x, y
    y = rng.integers(0, 3, size=n).astype(np.int32)
    x = rng.integers(3, 32, size=(n, 8)).astype(np.int32)
    x[np.arange(n), rng.integers(0, 8, size=n)] = y
    return x, y


def train(k, name: str, epochs: int = 8, seed: int = 0, n: int = 800):
    """The corpus model ``name`` built with Keras module ``k`` and trained on its task (seeded)."""
    k.utils.set_random_seed(seed)
    model = model_corpus.SPECS[name][0](k)
    x, y = task(name, n, seed + 100)
    logits = name == "transformer_features"  # its head is logits; the tokens model ends in a softmax
    model.compile(optimizer=k.optimizers.Adam(0.005),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=logits), metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def build_keras3(out: Path, names: list[str]) -> None:
    """Train and save the Keras 3 models ``names`` with their data into ``out`` (``keras`` must be Keras 3)."""
    import keras

    assert keras.__version__.startswith("3."), keras.__version__
    for name in names:
        xc, _ = task(name, 64, 1)
        xe, ye = task(name, 400, 2)
        np.savez(out / f"{name}_calib.npz", x=xc)
        np.savez(out / f"{name}_eval.npz", x=xe, y=ye)
        model = train(keras, name)
        model.save(out / f"{name}.keras")
        np.savez(out / f"{name}_keras3.npz", p=np.asarray(model.predict(xe, verbose=0)))


if __name__ == "__main__":
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    build_keras3(Path(sys.argv[1]), sys.argv[2:] or list(MODELS))
