"""The issue-24 corpus trained briefly on small seeded synthetic tasks, so that the packaged accuracy (labels, not
only top-1 agreement with random weights) can be compared with Keras' own.

Models (name: builder; task):

- ``mobilenet_v3_small``, ``efficientnet_b0`` (tests/model_corpus.py), ``mobilenet_v2`` (here):
  ``keras.applications`` at 32x32, ``weights=None``; :func:`images`: 5 pattern classes (horizontal, vertical,
  diagonal stripes, checkerboard, disc) in random colours with pixel noise, uint8 pixels. MobileNetV3/EfficientNet
  rescale pixels themselves; MobileNetV2 takes [-1, 1], so its recipe scales them.
- ``lstm``, ``gru``, ``bilstm``: tests/rnn_corpus.py (Keras 3) on its sequence task; ``lstm_h5``: the same
  LSTM built and trained by tf_keras, saved as ``.h5``.
- ``transformer_tokens``: tests/attn_corpus.py (Embedding + MultiHeadAttention) on its marker-token task.
- ``two_input``: tests/multi_input_model.py (an image and a metadata vector; data with ``x0``/``x1``).

``python tests/trained_corpus.py OUT NAME...`` trains and writes, for each NAME, the model file
(``NAME.keras``, or ``NAME.h5`` for ``lstm_h5``), ``NAME_calib.npz``, ``NAME_eval.npz`` (with labels ``y``),
``NAME_recipe.yaml`` when the model needs preprocessing, and ``NAME.json`` (the file names, Keras' own float
accuracy on the eval set, the training time). Keras 3 names run where ``keras`` is Keras 3 (no
``TF_USE_LEGACY_KERAS``), ``lstm_h5`` where it is set (tf_keras): :func:`child_env` gives either.

Example::

    subprocess.run([sys.executable, "tests/trained_corpus.py", "/tmp/t", "mobilenet_v3_small"],
                   env=child_env(legacy=False), check=True)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attn_corpus  # noqa: E402
import model_corpus  # noqa: E402
import multi_input_model  # noqa: E402
import rnn_corpus  # noqa: E402

IMAGE_MODELS = ("mobilenet_v3_small", "efficientnet_b0", "mobilenet_v2")
RNN_MODELS = ("lstm", "gru", "bilstm")
MODELS = (*IMAGE_MODELS, *RNN_MODELS, "lstm_h5", "transformer_tokens", "two_input")
TF_KERAS = ("lstm_h5",)  # built by tf_keras (TF_USE_LEGACY_KERAS=1); the others by Keras 3
IMAGE_CLASSES, SIZE = 5, 32
# MobileNetV2 wants [-1, 1]: x = (v - 127.5) / 127.5
PIXEL_RECIPES = {"mobilenet_v2": "version: 1\ndata:\n  preprocess: {mean: 127.5, scale: 0.00784313725490196}\n"}
# (epochs, training samples, Adam learning rate, batch) per image model. EfficientNetB0 from scratch at 32x32
# needs more: 6 epochs of 1000 at 2e-3 left it at 38 % eval (chance 20 %); 12 of 3000 at 1e-3 reach 83.5 %
# (about 5 min on 2 shared cores).
IMAGE_TRAINING = {"mobilenet_v3_small": (6, 1000, 2e-3, 32), "mobilenet_v2": (6, 1000, 2e-3, 32),
                  "efficientnet_b0": (12, 3000, 1e-3, 32)}


def child_env(legacy: bool) -> dict[str, str]:
    """The environment of a child that builds tf_keras (``legacy``) or Keras 3 models."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    return env


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images [n, 32, 32, 3] of 5 pattern classes and their labels (int32): stripes of period 4-10
    px (horizontal, vertical, diagonal), a checkerboard, a disc of radius 5-12 px; random foreground colour,
    a background 80-175 levels away per channel, Gaussian pixel noise (sigma 30)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, IMAGE_CLASSES, size=n).astype(np.int32)
    r, c = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    x = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i, k in enumerate(y):
        w, phase = 2 * np.pi / rng.uniform(4, 10), rng.uniform(0, 2 * np.pi)
        if k == 0:
            mask = np.sin(w * r + phase) > 0
        elif k == 1:
            mask = np.sin(w * c + phase) > 0
        elif k == 2:
            mask = np.sin(w * (r + c) / np.sqrt(2) + phase) > 0
        elif k == 3:
            mask = (np.sin(w * r + phase) > 0) ^ (np.sin(w * c + phase) > 0)
        else:
            cy, cx, rad = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(5, 12)
            mask = (r - cy) ** 2 + (c - cx) ** 2 < rad ** 2
        fg = rng.uniform(0, 255, 3)
        bg = (fg + rng.uniform(80, 175, 3)) % 256
        img = np.where(mask[..., None], fg, bg) + rng.normal(0, 30, (SIZE, SIZE, 3))
        x[i] = np.clip(img, 0, 255).astype(np.uint8)
    return x, y


def mobilenet_v2(k):
    """``keras.applications`` MobileNetV2 at 32x32 (kept out of tests/model_corpus.py, whose slow sweep packages
    with the gate every model it does not list as an untrained application)."""
    return k.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), weights=None, classes=10, name="mobilenet_v2")


IMAGE_BUILDERS = {"mobilenet_v3_small": model_corpus.SPECS["mobilenet_v3_small"][0],
                  "efficientnet_b0": model_corpus.SPECS["efficientnet_b0"][0], "mobilenet_v2": mobilenet_v2}


def _fast_batchnorm(model) -> None:
    """BatchNorm moving statistics that follow a few hundred steps (the applications use momentum 0.99-0.999,
    made for long training: after a brief one their inference statistics would still be the initial 0/1)."""
    for layer in model._flatten_layers() if hasattr(model, "_flatten_layers") else model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = 0.9


def _train_image(k, name: str, epochs: int = 0, seed: int = 0):
    default_epochs, n, lr, batch = IMAGE_TRAINING[name]
    k.utils.set_random_seed(seed)
    model = IMAGE_BUILDERS[name](k)
    _fast_batchnorm(model)
    x, y = images(n, seed + 100)
    x = _preprocess(name, x)
    model.compile(optimizer=k.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs or default_epochs, batch_size=batch, verbose=0)
    return model


def _preprocess(name: str, x: np.ndarray) -> np.ndarray:
    """What the recipe does to the raw samples (Keras' own accuracy is measured on the same model input)."""
    x = x.astype(np.float32)
    return (x - 127.5) / 127.5 if name == "mobilenet_v2" else x


def _accuracy(model, x, y) -> float:
    p = np.asarray(model.predict(x, batch_size=64, verbose=0))
    return round(float(100.0 * np.mean(p.reshape(len(p), -1).argmax(-1) == y)), 4)


def build(k, name: str, out: Path, epochs: int = 0) -> dict:
    """Train the model ``name`` with Keras module ``k`` and write its files into ``out``; its NAME.json entry.
    ``epochs`` 0: the model's default."""
    t0 = time.perf_counter()
    suffix = ".h5" if name in TF_KERAS else ".keras"
    entry = {"model": name + suffix, "calibration": f"{name}_calib.npz", "eval": f"{name}_eval.npz"}
    if name in IMAGE_MODELS:
        model = _train_image(k, name, epochs)
        xc, _ = images(200, 1)
        xe, ye = images(400, 2)
        np.savez(out / entry["calibration"], x=xc)
        np.savez(out / entry["eval"], x=xe, y=ye)
        acc = _accuracy(model, _preprocess(name, xe), ye)
    elif name in RNN_MODELS or name in TF_KERAS:
        model = rnn_corpus.train(k, "lstm" if name in TF_KERAS else name, **({"epochs": epochs} if epochs else {}))
        xc, _ = rnn_corpus.sequences(64, 1)
        xe, ye = rnn_corpus.sequences(300, 2)
        np.savez(out / entry["calibration"], x=xc)
        np.savez(out / entry["eval"], x=xe, y=ye)
        acc = _accuracy(model, xe, ye)
    elif name == "transformer_tokens":
        model = attn_corpus.train(k, name, **({"epochs": epochs} if epochs else {}))
        xc, _ = attn_corpus.task(name, 64, 1)
        xe, ye = attn_corpus.task(name, 400, 2)
        np.savez(out / entry["calibration"], x=xc)
        np.savez(out / entry["eval"], x=xe, y=ye)
        acc = _accuracy(model, xe, ye)
    elif name == "two_input":
        model, _ = multi_input_model.build_two_input(k, **({"epochs": epochs} if epochs else {}))
        xi, xm, y = multi_input_model.two_input_data(800, 7)
        np.savez(out / entry["calibration"], image=xi[:200], meta=xm[:200])
        np.savez(out / entry["eval"], x0=xi[200:], x1=xm[200:], y=y[200:])
        recipe = "version: 1\ndata:\n  inputs:\n    image: {scale: 0.00392156862745098}\n"  # the metadata as is
        (out / f"{name}_recipe.yaml").write_text(recipe)
        entry["recipe"] = f"{name}_recipe.yaml"
        acc = _accuracy(model, [xi[200:].astype(np.float32) / 255.0, xm[200:]], y[200:])
    else:
        raise SystemExit(f"unknown model {name!r}; one of: {', '.join(MODELS)}")
    if name in PIXEL_RECIPES:
        (out / f"{name}_recipe.yaml").write_text(PIXEL_RECIPES[name])
        entry["recipe"] = f"{name}_recipe.yaml"
    model.save(out / entry["model"])
    entry.update(keras=k.__version__, keras_accuracy_pct=acc, train_s=round(time.perf_counter() - t0, 1))
    (out / f"{name}.json").write_text(json.dumps(entry, indent=1))
    return entry


def main(argv: list[str]) -> None:
    out, names = Path(argv[0]), argv[1:]
    legacy = os.environ.get("TF_USE_LEGACY_KERAS") == "1"
    wrong = [n for n in names if (n in TF_KERAS) != legacy]
    if wrong:
        raise SystemExit(f"{', '.join(wrong)}: build {'without' if legacy else 'with'} TF_USE_LEGACY_KERAS=1 "
                         "(trained_corpus.child_env)")
    if legacy:
        import tf_keras as k
    else:
        import keras as k

        assert k.__version__.startswith("3."), k.__version__
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        build(k, name, out)


if __name__ == "__main__":
    main(sys.argv[1:])
