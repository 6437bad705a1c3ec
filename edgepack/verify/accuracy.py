"""Accuracy (with labels) or agreement (without) of a .tflite model vs the float Keras model,
and the accuracy gate every build passes.

The gate is on by default (:data:`edgepack.recipe.DEFAULT_MAX_DROP`, 1.0 pt): with labels it
limits the accuracy drop; without labels, the top-1 disagreement with the float model when
that figure can mean something (a probability output, enough samples, a float model that
does not predict one class for nearly every sample), else the relative RMS output error
(``DEFAULT_MAX_REL_ERROR``), with a warning saying why. A failure names the step that lost
the accuracy (from the per-step Keras accuracies) and the fix for that step.

Example::

    res = compare(float_model, tflite_bytes, x, y)
    res["drop_pt"]            # float accuracy - tflite accuracy, percentage points
    gate(res, limit=1.0, steps=report["steps"])   # VerificationError when exceeded
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import VerificationError
from ..runtime import LiteRT
from ..samples import Inputs

MIN_AGREEMENT_SAMPLES = 30  # fewer: one sample moves agreement by > 3 points
MAX_DOMINANT_SHARE = 0.9  # the float model predicts one class for >= 90% of samples: agreement says nothing
DEFAULT_MAX_REL_ERROR = 0.10  # relative RMS output error when agreement cannot be used
# What to change when a step (or the conversion) lost the accuracy.
FIXES: dict[str, str] = {
    "prune_structured": "prune less (lower 'ratio', or 'target: {max_accuracy_drop: X}') or fine-tune longer "
                        "(fine_tune: {epochs: N}) with --train",
    "prune_magnitude": "lower 'sparsity' or fine-tune longer (fine_tune: {epochs: N}) with --train",
    "cluster": "use more 'clusters' or fine-tune (fine_tune: {epochs: N}) with --train",
    "lowrank": "keep more energy (raise 'energy') or fine-tune with --train",
    "distill": "fine-tune longer or lower 'temperature'",
    "qat": "fine-tune longer (fine_tune: {epochs: N})",
    "mixed_precision": "give mixed_precision a smaller max_accuracy_drop or allow float fallbacks",
    "conversion": "quantize more gently: --quantize int16x8, a mixed_precision step, or quantize.rules "
                  "pinning the sensitive ops to int16x8/float",
}


def keras_predict(model, x: "np.ndarray | Inputs", batch_size: int = 256) -> "np.ndarray | list[np.ndarray]":
    """Float outputs of a Keras model (direct calls: no tf.data pipeline); a list of one array per output,
    in Keras order, for a model with several outputs.

    Several inputs: ``x`` is an :class:`~edgepack.samples.Inputs` in the model's input order."""
    x = x.astype(np.float32)
    batches = [model(_call_arg(x[i : i + batch_size]), training=False) for i in range(0, len(x), batch_size)]
    if isinstance(batches[0], (list, tuple)):
        return [np.concatenate([np.asarray(b[k], dtype=np.float32) for b in batches], axis=0)
                for k in range(len(batches[0]))]
    return np.concatenate([np.asarray(b, dtype=np.float32) for b in batches], axis=0)


def _call_arg(x):
    return list(x.arrays) if isinstance(x, Inputs) else x


def _top1(p: np.ndarray) -> np.ndarray:
    return np.argmax(p.reshape(p.shape[0], -1), axis=-1)


def _agreement_caveat(ref: np.ndarray) -> Optional[str]:
    """Why top-1 agreement on these outputs cannot mean anything, or None when it can."""
    n = ref.shape[0]
    flat = ref.reshape(n, -1)
    if flat.shape[1] < 2:
        return "the model has a single output value, not classes"
    if not (np.all(flat >= -1e-6) and np.allclose(flat.sum(axis=1), 1.0, atol=1e-2)):
        return "the outputs are not class probabilities (no softmax), so top-1 may not be a class"
    if n < MIN_AGREEMENT_SAMPLES:
        return f"only {n} samples (fewer than {MIN_AGREEMENT_SAMPLES})"
    share = np.bincount(_top1(ref)).max() / n
    if share >= MAX_DOMINANT_SHARE:
        return (f"the float model predicts class {int(np.bincount(_top1(ref)).argmax())} for {100 * share:.0f}% "
                "of the samples")
    return None


def compare(float_model, tflite: bytes, x: np.ndarray, y: Optional[np.ndarray] = None,
            float_pred: Optional[np.ndarray] = None, output: int = 0) -> dict:
    """Accuracy and agreement figures; all percentages in points (0-100).

    ``output``: the converted model's output tensor the figures are on (the classification output,
    :mod:`edgepack.outputs`); ``float_pred`` (or the Keras model's prediction) is that same output's."""
    ref = keras_predict(float_model, x) if float_pred is None else float_pred
    if isinstance(ref, list):
        raise ValueError("compare: give the classification output's float predictions (float_pred), not a list")
    got = LiteRT(tflite).predict(x, output=output).reshape(ref.shape)
    err = np.abs(got - ref)
    out = {
        "samples": len(x),
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
        caveat = _agreement_caveat(ref)
        if caveat is not None:
            rms = float(np.sqrt(np.mean((got.astype(np.float64) - ref) ** 2)) /
                        (np.sqrt(np.mean(ref.astype(np.float64) ** 2)) + 1e-12))
            out.update(agreement_meaningful=False, agreement_caveat=caveat, rel_rms_error=round(rms, 6))
    return out


def loss_by_step(ver: dict, steps: list[dict]) -> list[tuple[str, float]]:
    """Accuracy points lost by each step and by the conversion, from the per-step Keras accuracies."""
    accs = [(s.get("step", "?"), s["keras_accuracy_pct"]) for s in steps if "keras_accuracy_pct" in s]
    if ver.get("metric") != "accuracy":
        return []
    losses = [(name, round(prev - acc, 4)) for (_, prev), (name, acc) in zip(accs, accs[1:])]
    last = accs[-1][1] if accs else ver["float_accuracy_pct"]
    losses.append(("conversion", round(last - ver["tflite_accuracy_pct"], 4)))
    return losses


def gate(ver: dict, limit: Optional[float], steps: Optional[list[dict]] = None) -> dict:
    """The accuracy gate: VerificationError (nothing written) when the build lost more than ``limit``.

    ``limit`` None turns the gate off. Returns the gate's section for the report.
    """
    if limit is None:
        return {"limit_pt": None, "applied": False, "reason": "turned off (max_accuracy_drop: none)"}
    if ver.get("agreement_meaningful") is False:
        err = ver["rel_rms_error"]
        section = {"limit_rel_rms_error": DEFAULT_MAX_REL_ERROR, "applied": True, "on": "rel_rms_error"}
        if err > DEFAULT_MAX_REL_ERROR:
            raise VerificationError(
                f"the packaged model's outputs differ from the float model's by {100 * err:.1f}% (relative RMS, limit "
                f"{100 * DEFAULT_MAX_REL_ERROR:.0f}%) on {ver['samples']} {ver['data']} samples, and top-1 agreement "
                f"cannot be used ({ver['agreement_caveat']}); nothing written: pass --eval DATA with labels, quantize "
                "more gently (--quantize int16x8), or --max-accuracy-drop none to accept it")
        return section
    section = {"limit_pt": limit, "applied": True, "on": ver["metric"]}
    if ver["drop_pt"] <= limit:
        return section
    losses = loss_by_step(ver, steps or [])
    culprit = max(losses, key=lambda kv: kv[1]) if losses else None
    where = ""
    if culprit is not None and culprit[1] > 0:
        name, lost = culprit
        what = "the conversion (quantization)" if name == "conversion" else f"step '{name}'"
        where = f"; {what} lost {lost:.2f} pt of it: {FIXES.get(name, 'make that step gentler')}"
    elif ver["metric"] == "accuracy":
        where = f"; {FIXES['conversion']}"
    raise VerificationError(
        f"{ver['metric']} dropped {ver['drop_pt']:.2f} pt (limit {limit:.2f} pt) on {ver['samples']} {ver['data']} "
        f"samples{where}; nothing written (--max-accuracy-drop sets the limit, 'none' turns it off)")


def tflite_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray, output: int = 0) -> float:
    """Top-1 accuracy (points) of a .tflite model's output tensor ``output`` in LiteRT."""
    return float(100.0 * np.mean(_top1(LiteRT(tflite).predict(x, output=output)) == y))


def tflm_accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray, output: int = 0) -> float:
    """Top-1 accuracy (points) of a .tflite model's output tensor ``output`` in the host TFLM interpreter
    (each sample from a reset state)."""
    from ..runtime import dequantize_output, quantize_input
    from ..tflm import Tflm
    from ..tflm.parity import input_sets

    micro = Tflm(tflite)
    pred = np.stack([dequantize_output(micro.invoke_all([quantize_input(xk, d) for xk, d in zip(sample, micro.inputs)])
                                       [output], micro.outputs[output]).reshape(-1)
                     for sample in input_sets(tflite, x)])
    return float(100.0 * np.mean(_top1(pred) == y))
