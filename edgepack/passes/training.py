"""One training loop for every pass that fine-tunes (pruning, QAT, clustering, low-rank, distillation).

What makes a fine-tune safe on residual and depthwise nets (issue 11):

* BatchNormalization moving statistics are re-estimated (:func:`recalibrate_batchnorm`)
  before training and after it: after surgery they describe the old model, and a
  short fine-tune (momentum 0.99, few steps) does not forget them.
* A held-out part of the training data is watched only when it is large enough to
  mean something (``validation_split`` unset: 10 % when that is >= 200 samples);
  otherwise every epoch runs and the last one is kept.
* When a held-out part is watched, each epoch is judged after a BN recalibration
  (held-out accuracy, then loss), so "restore the best epoch" never returns to a
  pre-recovery epoch whose figure only looked good because the statistics lagged.

Example::

    fit(model, ctx.train, ctx, FitConfig(epochs=3), label="fine-tune")
    recalibrate_batchnorm(pruned, ctx.train.x)
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import numpy as np
from pydantic import BeforeValidator, Field

from ..errors import DataError
from ..samples import Inputs, Samples, parts
from .base import Context, Labeled, PassConfig

BN_SAMPLES = 1024  # samples used to re-estimate BatchNormalization statistics
MIN_HELD_OUT = 200  # smallest held-out part worth watching for early stopping
AUTO_SPLIT = 0.1


class FitConfig(PassConfig):
    """Fine-tuning settings shared by passes (a ``fine_tune:`` block in a step)."""

    epochs: int = Field(2, ge=0)
    batch_size: int = Field(64, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    validation_split: Optional[float] = Field(
        None, ge=0, lt=1, description="fraction of --train held out to pick the best epoch; default: 0.1 when "
                                      f"that is at least {MIN_HELD_OUT} samples, else none (all epochs run)")
    patience: int = Field(3, ge=1, description="epochs without held-out improvement before stopping")
    recalibrate_bn: bool = Field(True, description="re-estimate BatchNorm statistics before/after training")


def step_fine_tune(**defaults: Any):
    """The type of a step's ``fine_tune:`` field: what the recipe leaves out takes this step's
    defaults, not FitConfig's generic ones (``fine_tune: {learning_rate: 5e-4}`` on
    prune_structured keeps its 8 epochs).

    Example: ``fine_tune: step_fine_tune(epochs=8)`` in a pass's Config.
    """
    def fill(v: Any) -> Any:
        return {**defaults, **v} if isinstance(v, dict) else v

    return Annotated[FitConfig, BeforeValidator(fill), Field(default_factory=lambda: FitConfig(**defaults))]


def held_out_fraction(cfg: FitConfig, n: int) -> float:
    """The fraction of ``n`` training samples held out (see ``FitConfig.validation_split``)."""
    if cfg.validation_split is not None:
        return cfg.validation_split
    return AUTO_SPLIT if n * AUTO_SPLIT >= MIN_HELD_OUT else 0.0


def model_arg(x: Samples):
    """What a Keras call, ``fit`` or ``predict`` takes for ``x``: the array, or a several-input model's
    arrays as a list in the model's input order (an :class:`~edgepack.samples.Inputs` keeps that order)."""
    return list(x.arrays) if isinstance(x, Inputs) else x


def shape_problem(model, x: Samples) -> Optional[str]:
    """Why ``x``'s samples do not fit ``model``'s inputs (count or per-sample shape), or None when they do."""
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    want = [tuple(s[1:]) for s in shapes]
    have = [tuple(a.shape[1:]) for a in parts(x)]
    if len(have) != len(want):
        return f"has {len(have)} input array(s), the model takes {len(want)}"
    if len(want) == 1:
        return None if have[0] == want[0] else f"has sample shape {have[0]}, the model expects {want[0]}"
    names = list(getattr(model, "input_names", None) or range(len(want)))
    bad = [f"input '{n}' {h} (the model expects {w})" for n, h, w in zip(names, have, want) if h != w]
    return f"has sample shapes {', '.join(bad)}" if bad else None


def check_labels(model, data: Labeled, what: str = "training") -> None:
    """Fail clearly when inputs or labels do not fit the model."""
    problem = shape_problem(model, data.x)
    if problem:
        raise DataError(f"{what} data {problem}")
    if data.y is None:
        raise DataError(f"{what} data has no labels; give an .npz with integer labels y")
    n_out = int(model.output_shape[-1])
    if data.y.min() < 0 or data.y.max() >= n_out:
        raise DataError(f"{what} labels range {data.y.min()}..{data.y.max()} but the model has {n_out} outputs")


def uses_softmax(model) -> bool:
    """True when the model's last layer already applies softmax (probabilities out).

    Sees through tfmot wrappers (pruning, clustering, QAT) and QAT's activation wrapper.
    """
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # PruneLowMagnitude / ClusterWeights / QuantizeWrapper
    act = getattr(last, "activation", None)
    act = getattr(act, "activation", act)  # QuantizeAwareActivation
    return getattr(act, "__name__", "") == "softmax" or last.__class__.__name__ == "Softmax"


# -- BatchNormalization statistics ---------------------------------------------
def _bn_layers(model) -> list:
    from ..keras_compat import keras

    bn = keras().layers.BatchNormalization
    return [lyr for lyr in model.layers if isinstance(lyr, bn) and getattr(lyr, "moving_mean", None) is not None]


def _bn_waves(model, layers: list) -> list[list]:
    """BN layers in waves; no layer of a wave has a BN of the same or a later wave upstream."""
    from .pruning.graph import _nodes

    try:
        nodes, _ = _nodes(model)
    except (KeyError, IndexError, TypeError):  # an unusual config: one layer per wave, model order
        return [[lyr] for lyr in layers]
    upstream: dict[str, set[str]] = {}
    for n in nodes:  # topological order
        upstream[n.name] = set().union(*[{i} | upstream.get(i, set()) for i in n.inputs]) if n.inputs else set()
    pending = {lyr.name: lyr for lyr in layers}
    waves = []
    while pending:
        ready = [lyr for name, lyr in pending.items() if not upstream.get(name, set()) & set(pending)]
        ready = ready or [next(iter(pending.values()))]
        waves.append(ready)
        for lyr in ready:
            pending.pop(lyr.name)
    return waves


def _input_in(model, layer):
    """``layer``'s input tensor in ``model``'s own graph, or None (a shared layer).

    A layer object can belong to several graphs: tfmot's wrappers (pruning, clustering, QAT)
    and ``clone_model`` reuse it, and ``layer.input`` then names a tensor of the first graph
    it was called in ("Graph disconnected"). The node that belongs to ``model`` is the one
    its network lists.
    """
    keys = getattr(model, "_network_nodes", None)
    if keys is None:
        return None
    own = [i for i in range(len(layer.inbound_nodes)) if f"{layer.name}_ib-{i}" in keys]
    if len(own) != 1:
        return None
    t = layer.get_input_at(own[0])
    return None if isinstance(t, (list, tuple)) else t


def recalibrate_batchnorm(model, x: Optional[Samples], batch_size: int = 128,
                          max_samples: int = BN_SAMPLES) -> int:
    """Set each top-level BatchNormalization's moving mean/variance to the exact statistics of its
    input over ``x`` (first ``max_samples``), in inference mode, upstream layers first.

    No weight is trained and Dropout-like layers stay in inference mode. Returns the
    number of layers updated (0 without BN layers or data); layers inside wrappers or
    nested models, and shared layers, are left alone.

    Example::

        recalibrate_batchnorm(pruned, ctx.train.x)
    """
    from ..keras_compat import keras

    layers = _bn_layers(model)
    if not layers or x is None or len(x) == 0:
        return 0
    x = x[:max_samples].astype(np.float32)
    done = 0
    for wave in _bn_waves(model, layers):
        usable = [(lyr, t) for lyr in wave if (t := _input_in(model, lyr)) is not None]
        if not usable:
            continue
        probe = keras().Model(model.inputs, [t for _, t in usable])
        usable = [lyr for lyr, _ in usable]
        acc = [[0.0, 0.0, 0] for _ in usable]  # sum, sum of squares, count per layer
        for i in range(0, len(x), batch_size):
            outs = probe(model_arg(x[i:i + batch_size]), training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for a, lyr, o in zip(acc, usable, outs):
                o = np.asarray(o, dtype=np.float64)
                axis = lyr.axis[0] if isinstance(lyr.axis, (list, tuple)) else lyr.axis
                o = np.moveaxis(o, axis, -1).reshape(-1, o.shape[axis])
                a[0], a[1], a[2] = a[0] + o.sum(axis=0), a[1] + (o * o).sum(axis=0), a[2] + o.shape[0]
        for (s, q, n), lyr in zip(acc, usable):
            mean = s / n
            lyr.moving_mean.assign((mean).astype(np.float32))
            lyr.moving_variance.assign(np.maximum(q / n - mean * mean, 0.0).astype(np.float32))
            done += 1
    return done


def bn_data(ctx: Context) -> Optional[Samples]:
    """Samples to re-estimate BatchNorm statistics with: --train inputs, else calibration data."""
    if ctx.train is not None:
        return ctx.train.x
    return ctx.calibration


# -- the loop --------------------------------------------------------------------
def _predict(model, x: Samples, batch_size: int = 256) -> np.ndarray:
    outs = [np.asarray(model(model_arg(x[i:i + batch_size]), training=False), dtype=np.float64)
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs).reshape(len(x), -1)


def _scores(model, held: Labeled) -> tuple[float, float]:
    """(accuracy %, mean cross-entropy) of ``model`` on the held-out labels."""
    p = _predict(model, held.x.astype(np.float32))
    if not uses_softmax(model):
        p = np.exp(p - p.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(np.clip(p[np.arange(len(p)), held.y], 1e-12, 1.0))))
    return float(100.0 * np.mean(np.argmax(p, axis=1) == held.y)), loss


def _best_epoch_callback(held: Labeled, bn_x: Optional[Samples], patience: int, log):
    """Judge every epoch on ``held`` after a BN recalibration; stop after ``patience`` worse epochs."""
    from ..keras_compat import keras

    class _BestEpoch(keras().callbacks.Callback):
        best: Optional[tuple] = None
        weights: Optional[list] = None
        epoch = 0
        wait = 0

        def on_epoch_end(self, epoch, logs=None):
            if bn_x is not None:
                recalibrate_batchnorm(self.model, bn_x)
            acc, loss = _scores(self.model, held)
            log(f"held-out after epoch {epoch + 1}: accuracy {acc:.2f} %, loss {loss:.4f}")
            if self.best is None or (acc, -loss) > self.best:
                self.best, self.weights, self.epoch, self.wait = (acc, -loss), self.model.get_weights(), epoch + 1, 0
            else:
                self.wait += 1
                if self.wait >= patience:
                    self.model.stop_training = True

    return _BestEpoch()


def _progress_callback(ctx: Context, label: str, epochs: int):
    from ..keras_compat import keras

    class _Progress(keras().callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ctx.progress(label, epoch + 1, epochs)
            if logs:
                ctx.log(f"{label}: epoch {epoch + 1}/{epochs} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()))

    return _Progress()


def fit(model, data: Labeled, ctx: Context, cfg: FitConfig, label: str = "fine-tune",
        loss: Any = None, callbacks: Optional[list] = None, metrics: Optional[list] = None,
        targets: Optional[np.ndarray] = None, restore_best_weights: bool = True):
    """Compile and fit ``model`` on ``data`` (see module doc); returns the Keras History
    (None for ``epochs: 0``, which leaves the model as it is).

    ``restore_best_weights=False`` keeps the last epoch's weights: a schedule that
    changes the model each epoch (gradual pruning) must not return to an earlier one.
    The History's ``best_epoch`` attribute names the epoch kept (0: the last).

    ``targets`` replaces ``data.y`` as the fit target (e.g. labels packed with a
    teacher's outputs for distillation, with a matching ``loss``); ``data.y`` is
    still checked and is what held-out epochs are judged on.
    """
    from ..keras_compat import keras, set_seed

    k = keras()
    check_labels(model, data)
    if cfg.epochs == 0:
        return None
    set_seed(ctx.seed)
    x = data.x.astype(np.float32)
    y = data.y if targets is None else targets
    frac = held_out_fraction(cfg, len(x))
    held = None
    if frac > 0:
        order = np.random.RandomState(ctx.seed).permutation(len(x))
        n_held = max(1, int(round(len(x) * frac)))
        tr, ho = np.sort(order[n_held:]), np.sort(order[:n_held])
        held, x, y = Labeled(x[ho], data.y[ho]), x[tr], y[tr]
    bn_x = x if cfg.recalibrate_bn and _bn_layers(model) else None
    if bn_x is not None:
        recalibrate_batchnorm(model, bn_x)
    if loss is None:
        loss = k.losses.SparseCategoricalCrossentropy(from_logits=not uses_softmax(model))
    model.compile(optimizer=k.optimizers.Adam(cfg.learning_rate), loss=loss,
                  metrics=metrics if metrics is not None else ["accuracy"])
    cbs = [_progress_callback(ctx, label, cfg.epochs)] + list(callbacks or [])
    best = None
    if held is not None:
        best = _best_epoch_callback(held, bn_x, cfg.patience, lambda m: ctx.log(f"{label}: {m}"))
        cbs.append(best)
    hist = model.fit(model_arg(x), y, epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True, verbose=0, callbacks=cbs)
    hist.best_epoch = 0
    if best is not None and restore_best_weights and best.weights is not None:
        model.set_weights(best.weights)  # judged after recalibration: its BN statistics are fresh
        hist.best_epoch = best.epoch
    elif bn_x is not None:
        recalibrate_batchnorm(model, bn_x)
    return hist


def evaluate_accuracy(model, data: Labeled, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of a Keras model on labelled data."""
    from ..verify.accuracy import keras_predict

    pred = keras_predict(model, data.x, batch_size)
    return float(100.0 * np.mean(np.argmax(pred.reshape(pred.shape[0], -1), axis=-1) == data.y))
