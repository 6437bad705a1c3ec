"""Issue 10's done-when check: a Keras 3 residual CNN (Rescaling, BatchNorm, DepthwiseConv2D) trained on
sklearn's digits, saved as .keras and export()-ed, then packaged by edgepack: int8 (accuracy vs Keras 3's
own), prune_structured + fine-tune, and its export converted int8 by the stock converter.

Example::

    python bench/keras3_residual_check.py --epochs 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN_K3 = r'''
import json, sys
import numpy as np, keras
from keras import layers as L
out, epochs = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(0)
d = np.load(out + "/data.npz")
i = keras.Input((8, 8, 1), name="digit")
x = L.Rescaling(1 / 16.0)(i)
x = L.Conv2D(16, 3, padding="same", use_bias=False)(x)
x = L.BatchNormalization()(x)
x = L.ReLU()(x)
y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
y = L.BatchNormalization()(y)
y = L.ReLU()(y)
y = L.Conv2D(16, 1)(y)
x = L.Add()([x, y])
x = L.MaxPooling2D()(x)
x = L.Conv2D(24, 3, padding="same", activation="relu")(x)
x = L.GlobalAveragePooling2D()(x)
m = keras.Model(i, L.Dense(10, activation="softmax")(x))
m.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(),
          metrics=[keras.metrics.SparseCategoricalAccuracy()])
m.fit(d["xt"], d["yt"], epochs=epochs, batch_size=64, verbose=0)
acc = float(np.mean(np.argmax(m.predict(d["xe"], verbose=0), 1) == d["ye"]) * 100)
m.save(out + "/resnet_digits.keras")
m.export(out + "/resnet_digits_export", verbose=False)
print(json.dumps({"keras3_accuracy_pct": acc}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    from sklearn.datasets import load_digits

    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe

    digits = load_digits()
    x = digits.images.astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    tr, ev = order[:1400], order[1400:]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        np.savez(t / "data.npz", xt=x[tr], yt=y[tr], xe=x[ev], ye=y[ev])
        np.savez(t / "train.npz", x=x[tr], y=y[tr])
        np.savez(t / "eval.npz", x=x[ev], y=y[ev])
        np.savez(t / "calib.npz", x=x[tr][:300])
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        res = subprocess.run([sys.executable, "-c", TRAIN_K3, tmp, str(args.epochs)], env=env, check=True,
                             capture_output=True, text=True)
        k3_acc = json.loads(res.stdout.strip().splitlines()[-1])["keras3_accuracy_pct"]
        print(f"Keras 3 float accuracy (eval, {len(ev)} digits): {k3_acc:.2f}%")
        model = t / "resnet_digits.keras"
        rep = package(PackageRequest(model=model, out=t / "int8", quantize="int8", calibration=t / "calib.npz",
                                     eval=t / "eval.npz"))
        v = rep["verification"]
        tr_rep = rep["source"]["translation"]
        print(f"translation: {tr_rep['layers']} layers, max abs diff vs Keras 3 {tr_rep['max_abs_diff']:.3g} "
              f"(tolerance {tr_rep['tolerance']:.3g})")
        print(f"int8 package: {rep['tflite']['size_bytes']:,} B, verification {json.dumps(v)}")
        recipe = Recipe.from_dict({"steps": [{"type": "prune_structured", "ratio": 0.5,
                                              "fine_tune": {"epochs": 10, "learning_rate": 0.001}}],
                                   "quantize": {"mode": "int8"}})
        rep2 = package(PackageRequest(model=model, out=t / "pruned", recipe=recipe, calibration=t / "calib.npz",
                                      eval=t / "eval.npz", train=t / "train.npz"))
        print("prune_structured 0.5 + fine-tune, then int8:")
        for s in rep2["steps"]:
            print("  step", json.dumps({k: s.get(k) for k in ("step", "params", "macs", "keras_accuracy_pct")}))
        print(f"  package {rep2['tflite']['size_bytes']:,} B, verification {json.dumps(rep2['verification'])}")
        from edgepack.keras_compat import tf
        from edgepack.runtime import LiteRT

        conv = tf().lite.TFLiteConverter.from_saved_model(str(t / "resnet_digits_export"))
        conv.optimizations = [tf().lite.Optimize.DEFAULT]
        calib = x[tr][:300]
        conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
        data = conv.convert()
        pred = LiteRT(data).predict(x[ev])
        acc = float(np.mean(np.argmax(pred, 1) == y[ev]) * 100)
        print(f"export() SavedModel -> TFLiteConverter int8: {len(data):,} B, accuracy {acc:.2f}%")


if __name__ == "__main__":
    main()
