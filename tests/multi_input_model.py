"""A tiny seeded two-input classifier (an 8x8 image branch + a 3-value metadata vector, Concatenate,
Dense) trained a few epochs on synthetic, learnable data, and its data files.

The class is the brightest image quadrant (0..3) when the metadata flag is low, shifted by one when
it is high: both inputs are needed. Inputs are named ``image`` and ``meta``.

Example::

    model, (xi, xm, y) = build_two_input(k)
    write_data(tmp_path, xi, xm, y)          # calib.npz (by name), eval.npz (x0/x1), ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def two_input_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 [n, 8, 8, 1], meta float32 [n, 3], labels int64 [n])."""
    rng = np.random.default_rng(seed)
    quad = rng.integers(0, 4, n)
    img = rng.integers(0, 150, (n, 8, 8, 1))
    for i, q in enumerate(quad):
        r, c = divmod(int(q), 2)
        img[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4, 0] += 60
    flag = rng.integers(0, 2, n)
    meta = np.stack([flag + rng.normal(0, 0.35, n), rng.normal(0, 1, n), rng.normal(0, 1, n)], axis=1)
    return img.astype(np.uint8), meta.astype(np.float32), ((quad + flag) % 4).astype(np.int64)


def build_two_input(k, seed: int = 0, epochs: int = 12):
    """The model (inputs 'image' then 'meta') trained on :func:`two_input_data`, and that data."""
    k.utils.set_random_seed(seed)
    L = k.layers
    image, meta = k.Input((8, 8, 1), name="image"), k.Input((3,), name="meta")
    h = L.Conv2D(8, 3, activation="relu", padding="same")(image)
    h = L.MaxPooling2D(2)(h)
    h = L.Flatten()(h)
    m = L.Dense(8, activation="relu")(meta)
    z = L.Concatenate()([h, m])
    z = L.Dense(16, activation="relu")(z)
    out = L.Dense(4, activation="softmax")(z)
    model = k.Model([image, meta], out, name="two_input")
    xi, xm, y = two_input_data(1200, seed)
    model.compile(optimizer=k.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit([xi.astype(np.float32) / 255.0, xm], y, epochs=epochs, batch_size=64, verbose=0)
    return model, (xi, xm, y)


def write_data(folder: Path, seed: int = 7) -> dict[str, Path]:
    """calib.npz (arrays by input name), eval.npz (x0, x1 and y), and the recipe scaling the image only."""
    xi, xm, y = two_input_data(800, seed)
    paths = {"calib": folder / "calib.npz", "eval": folder / "eval.npz", "recipe": folder / "recipe.yaml"}
    np.savez(paths["calib"], image=xi[:200], meta=xm[:200])
    np.savez(paths["eval"], x0=xi[200:], x1=xm[200:], y=y[200:])
    paths["recipe"].write_text("data:\n  inputs:\n    image: {scale: 0.00392156862745098}\n")
    return paths
