"""A tiny seeded three-output model (one 8x8 image in; a 4-class head, a regression head, a 2-class head)
trained a few epochs on synthetic, learnable data, and its data files.

Outputs in Keras order: ``quadrant`` (the brightest image quadrant, softmax over 4), ``level`` (the mean
pixel value / 255, linear) and ``flag`` (whether the whole image was brightened, softmax over 2). The
TFLite converter does not keep this order (it put ``flag`` before ``level``), which is what the tests
check edgepack copes with.

Example::

    model, (x, yq, yf) = build_three_output(k)
    paths = write_data(tmp_path)           # calib.npz, eval_quadrant.npz, eval_flag.npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUTPUTS = ("quadrant", "level", "flag")


def three_output_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 [n, 8, 8, 1], quadrant labels [n], flag labels [n])."""
    rng = np.random.default_rng(seed)
    quad, flag = rng.integers(0, 4, n), rng.integers(0, 2, n)
    img = rng.integers(0, 120, (n, 8, 8, 1)) + 70 * flag[:, None, None, None]
    for i, q in enumerate(quad):
        r, c = divmod(int(q), 2)
        img[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4, 0] += 60
    return np.clip(img, 0, 255).astype(np.uint8), quad.astype(np.int64), flag.astype(np.int64)


def build_three_output(k, seed: int = 0, epochs: int = 10):
    """The model (outputs quadrant, level, flag) trained on :func:`three_output_data`, and that data."""
    k.utils.set_random_seed(seed)
    L = k.layers
    image = k.Input((8, 8, 1), name="image")
    h = L.Conv2D(8, 3, activation="relu", padding="same")(image)
    h = L.MaxPooling2D(2)(h)
    h = L.Flatten()(h)
    h = L.Dense(16, activation="relu")(h)
    quadrant = L.Dense(4, activation="softmax", name="quadrant")(h)
    level = L.Dense(1, name="level")(h)
    flag = L.Dense(2, activation="softmax", name="flag")(h)
    model = k.Model(image, [quadrant, level, flag], name="three_output")
    x, yq, yf = three_output_data(1200, seed)
    xf = x.astype(np.float32) / 255.0
    model.compile(optimizer=k.optimizers.Adam(0.01),
                  loss=["sparse_categorical_crossentropy", "mse", "sparse_categorical_crossentropy"])
    model.fit(xf, [yq, xf.mean(axis=(1, 2, 3)), yf], epochs=epochs, batch_size=64, verbose=0)
    return model, (x, yq, yf)


def write_data(folder: Path, seed: int = 7) -> dict[str, Path]:
    """calib.npz (x), eval_quadrant.npz / eval_flag.npz (x and that head's labels y), the recipe scaling x."""
    x, yq, yf = three_output_data(700, seed)
    paths = {"calib": folder / "calib.npz", "eval_quadrant": folder / "eval_quadrant.npz",
             "eval_flag": folder / "eval_flag.npz", "recipe": folder / "recipe.yaml"}
    np.savez(paths["calib"], x=x[:200])
    np.savez(paths["eval_quadrant"], x=x[200:], y=yq[200:])
    np.savez(paths["eval_flag"], x=x[200:], y=yf[200:])
    paths["recipe"].write_text("data:\n  preprocess: {scale: 0.00392156862745098}\n")
    return paths
