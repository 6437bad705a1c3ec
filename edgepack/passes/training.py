"""One training loop for every pass that fine-tunes (pruning, QAT, clustering, distillation).

Example::

    fit(model, ctx.train, ctx, FitConfig(epochs=3), label="fine-tune")
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from pydantic import Field

from ..errors import DataError
from .base import Context, Labeled, PassConfig


class FitConfig(PassConfig):
    """Fine-tuning settings shared by passes (a ``fine_tune:`` block in a step)."""

    epochs: int = Field(2, ge=0)
    batch_size: int = Field(64, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    validation_split: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(2, ge=1, description="early stopping on validation loss")


def check_labels(model, data: Labeled, what: str = "training") -> None:
    """Fail clearly when inputs or labels do not fit the model."""
    want = tuple(model.input_shape[1:])
    if tuple(data.x.shape[1:]) != want:
        raise DataError(f"{what} data has sample shape {tuple(data.x.shape[1:])}, the model expects {want}")
    if data.y is None:
        raise DataError(f"{what} data has no labels; give an .npz with integer labels y")
    n_out = int(model.output_shape[-1])
    if data.y.min() < 0 or data.y.max() >= n_out:
        raise DataError(f"{what} labels range {data.y.min()}..{data.y.max()} but the model has {n_out} outputs")


def _progress_callback(ctx: Context, label: str, epochs: int):
    from ..keras_compat import keras

    class _Progress(keras().callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ctx.progress(label, epoch + 1, epochs)
            if logs:
                ctx.log(f"{label}: epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()))

    return _Progress()


def uses_softmax(model) -> bool:
    """True when the model's last layer already applies softmax (probabilities out).

    Sees through tfmot wrappers (pruning, clustering, QAT) and QAT's activation wrapper.
    """
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # PruneLowMagnitude / ClusterWeights / QuantizeWrapper
    act = getattr(last, "activation", None)
    act = getattr(act, "activation", act)  # QuantizeAwareActivation
    return getattr(act, "__name__", "") == "softmax" or last.__class__.__name__ == "Softmax"


def fit(model, data: Labeled, ctx: Context, cfg: FitConfig, label: str = "fine-tune",
        loss: Any = None, callbacks: Optional[list] = None, metrics: Optional[list] = None,
        targets: Optional[np.ndarray] = None, restore_best_weights: bool = True):
    """Compile and fit ``model`` on ``data`` with early stopping; returns the Keras History
    (None for ``epochs: 0``, which leaves the model as it is).

    ``restore_best_weights=False`` keeps the last epoch's weights: a schedule that
    changes the model each epoch (gradual pruning) must not return to an earlier one.

    ``targets`` replaces ``data.y`` as the fit target (e.g. labels packed with a
    teacher's outputs for distillation, with a matching ``loss``); ``data.y`` is
    still checked.
    """
    from ..keras_compat import keras, set_seed

    k = keras()
    check_labels(model, data)
    if cfg.epochs == 0:
        return None
    set_seed(ctx.seed)
    if loss is None:
        loss = k.losses.SparseCategoricalCrossentropy(from_logits=not uses_softmax(model))
    model.compile(optimizer=k.optimizers.Adam(cfg.learning_rate), loss=loss,
                  metrics=metrics if metrics is not None else ["accuracy"])
    cbs = [_progress_callback(ctx, label, cfg.epochs)] + list(callbacks or [])
    if cfg.validation_split > 0:
        cbs.append(k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                             restore_best_weights=restore_best_weights))
    y = data.y if targets is None else targets
    return model.fit(data.x.astype(np.float32), y, epochs=cfg.epochs, batch_size=cfg.batch_size,
                     validation_split=cfg.validation_split, shuffle=True, verbose=0, callbacks=cbs)


def evaluate_accuracy(model, data: Labeled, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of a Keras model on labelled data."""
    from ..verify.accuracy import keras_predict

    pred = keras_predict(model, data.x, batch_size)
    return float(100.0 * np.mean(np.argmax(pred.reshape(pred.shape[0], -1), axis=-1) == data.y))
