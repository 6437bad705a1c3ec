"""Models that look like the ones users bring, trained briefly on the bundled MNIST data.

* ``bn_cnn``: Conv+BatchNorm+ReLU stem, a depthwise block with a residual Add, 1x1 conv, BatchNorm,
  global pooling and a softmax head (tf_keras ``.h5``);
* ``mlp``: a Sequential MLP (Flatten, Dense+ReLU, Dropout, Dense softmax) (tf_keras ``.h5``);
* ``keras3_cnn``: the ``bn_cnn`` architecture built, trained and saved by Keras 3 itself (``.keras``),
  in a child process without ``TF_USE_LEGACY_KERAS`` (``python user_models.py OUT``).

The same builder code serves both Keras versions (``k`` is the keras module). Deterministic for the seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data" / "mnist"
TRAIN_SAMPLES = 3744
EPOCHS = 8


def bn_cnn(k):
    L = k.layers
    i = k.Input((28, 28, 1), name="image")
    x = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(i)
    x = L.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = L.BatchNormalization(momentum=0.9, name="dw_bn")(y)
    y = L.ReLU(name="dw_relu")(y)
    y = L.Conv2D(16, 1, use_bias=False, name="pw")(y)
    y = L.BatchNormalization(momentum=0.9, name="pw_bn")(y)
    x = L.Add(name="residual")([x, y])
    x = L.ReLU(name="res_relu")(x)
    x = L.Conv2D(32, 3, strides=2, padding="same", name="down")(x)
    x = L.BatchNormalization(momentum=0.9, name="down_bn")(x)
    x = L.ReLU(name="down_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(32, activation="relu", name="fc")(x)
    return k.Model(i, L.Dense(10, activation="softmax", name="probs")(x), name="bn_cnn")


def mlp(k):
    L = k.layers
    return k.Sequential([k.Input((28, 28, 1), name="image"), L.Flatten(name="flatten"),
                         L.Dense(64, activation="relu", name="fc1"), L.Dropout(0.1, name="drop"),
                         L.Dense(10, activation="softmax", name="probs")], name="mlp")


BUILDERS = {"bn_cnn": bn_cnn, "mlp": mlp}


def train_set() -> tuple[np.ndarray, np.ndarray]:
    z = np.load(DATA / "train.npz")
    return z["x"][:TRAIN_SAMPLES].astype(np.float32) / 255.0, z["y"][:TRAIN_SAMPLES]


def train(k, name: str, seed: int = 0):
    """Build ``name`` with keras module ``k`` and fit it for a few epochs on bundled MNIST samples."""
    k.utils.set_random_seed(seed)
    model = BUILDERS[name](k)
    x, y = train_set()
    model.compile(optimizer=k.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=EPOCHS, batch_size=64, verbose=0, shuffle=True)
    return model


def build_tf_keras(out: Path, name: str) -> Path:
    from edgepack.keras_compat import keras

    path = out / f"{name}.h5"
    train(keras(), name).save(path)
    return path


def build_keras3(out: Path) -> Path:
    """``keras3_cnn.keras``, built by Keras 3 in a child process (Keras 3 cannot be the tf.keras here)."""
    path = out / "keras3_cnn.keras"
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    r = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0 or not path.exists():
        raise RuntimeError(f"building the Keras 3 model failed:\n{r.stderr[-3000:]}")
    return path


if __name__ == "__main__":
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    import keras

    assert keras.__version__.startswith("3."), keras.__version__
    train(keras, "bn_cnn").save(Path(sys.argv[1]) / "keras3_cnn.keras")
