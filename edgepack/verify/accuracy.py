"""Accuracy (with labels) or agreement (without) of a .tflite model vs the float Keras model.

Example::

    res = compare(float_model, tflite_bytes, x, y)
    res["drop_pt"]            # float accuracy - tflite accuracy, percentage points
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import VerificationError
from ..runtime import LiteRT


def keras_predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Float outputs of a Keras model (direct calls: no tf.data pipeline)."""
    x = x.astype(np.float32)
    outs = [np.asarray(model(x[i : i + batch_size], training=False), dtype=np.float32)
            for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(outs, axis=0)


def _top1(p: np.ndarray) -> np.ndarray:
    return np.argmax(p.reshape(p.shape[0], -1), axis=-1)


def compare(float_model, tflite: bytes, x: np.ndarray, y: Optional[np.ndarray] = None,
            float_pred: Optional[np.ndarray] = None) -> dict:
    """Accuracy and agreement figures; all percentages in points (0-100)."""
    ref = keras_predict(float_model, x) if float_pred is None else float_pred
    got = LiteRT(tflite).predict(x)
    err = np.abs(got.reshape(ref.shape) - ref)
    out = {
        "samples": int(x.shape[0]),
        "top1_agreement_pct": round(float(100.0 * np.mean(_top1(ref) == _top1(got))), 4),
        "max_abs_error": float(err.max()),
        "mean_abs_error": float(err.mean()),
    }
    if y is not None:
        fa = float(100.0 * np.mean(_top1(ref) == y))
        ta = float(100.0 * np.mean(_top1(got) == y))
        out.update(float_accuracy_pct=round(fa, 4), tflite_accuracy_pct=round(ta, 4),
                   drop_pt=round(fa - ta, 4), metric="accuracy")
    else:
        out.update(drop_pt=round(100.0 - out["top1_agreement_pct"], 4), metric="top1_disagreement")
    return out


def tflite_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (points) of a .tflite model in LiteRT."""
    return float(100.0 * np.mean(_top1(LiteRT(tflite).predict(x)) == y))


def gate(ver: dict, limit: Optional[float]) -> None:
    """The accuracy gate: VerificationError (nothing written) when the drop exceeds ``limit``."""
    if limit is not None and ver["drop_pt"] > limit:
        raise VerificationError(
            f"{ver['metric']} dropped {ver['drop_pt']:.2f} pt (limit {limit:.2f} pt) on {ver['data']} data; "
            "nothing written: relax --max-accuracy-drop or use a gentler recipe (e.g. --quantize int16x8)")
