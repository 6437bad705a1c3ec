"""Knowledge distillation: fine-tune the compressed student against a teacher.

The loss is ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(y, s)``
(Hinton et al.), with ``t``/``s`` the teacher's/student's logits (log-probabilities
when a model ends in softmax: softmax of ``log p / T`` equals softmax of ``z / T``).
The teacher is the model the recipe started from (the pipeline sets
``ctx.teacher``) or a model file given as ``teacher:``. Put the step after any
step that costs accuracy (pruning, clustering, low-rank, QAT).

Recipe::

    steps:
      - {type: lowrank, params_ratio: 0.3}
      - {type: distill, temperature: 4, alpha: 0.7, fine_tune: {epochs: 3}}

Python::

    ctx.teacher = float_model
    student = Distill(Distill.Config()).apply(student, ctx)
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import Field

from ..errors import RecipeError
from .base import Context, Pass, PassConfig
from .training import FitConfig, evaluate_accuracy, fit, model_arg, step_fine_tune, uses_softmax


def logits_of(pred: np.ndarray, softmax: bool) -> np.ndarray:
    """Logits (or log-probabilities, equivalent under softmax) of model outputs."""
    if softmax:
        return np.log(np.clip(pred, 1e-12, 1.0)).astype(np.float32)
    return pred.astype(np.float32)


def distill_loss(temperature: float, alpha: float, student_softmax: bool):
    """Keras loss over packed targets ``[label, teacher logits...]``."""
    from ..keras_compat import tf

    t = tf()

    def loss(y_true, y_pred):
        label = t.cast(y_true[:, 0], "int32")
        teacher = y_true[:, 1:]
        s = t.math.log(t.clip_by_value(y_pred, 1e-12, 1.0)) if student_softmax else y_pred
        p_t = t.nn.softmax(teacher / temperature)
        log_p_s = t.nn.log_softmax(s / temperature)
        kl = t.reduce_sum(p_t * (t.math.log(t.clip_by_value(p_t, 1e-12, 1.0)) - log_p_s), axis=-1)
        ce = t.nn.sparse_softmax_cross_entropy_with_logits(labels=label, logits=s)
        return alpha * temperature**2 * kl + (1.0 - alpha) * ce

    return loss


def packed_accuracy():
    """A Keras metric: top-1 accuracy against the label column of packed targets."""
    from ..keras_compat import tf

    t = tf()  # resolved here, not inside the traced function

    def accuracy(y_true, y_pred):
        return t.reduce_mean(t.cast(t.equal(t.cast(y_true[:, 0], "int64"), t.argmax(y_pred, axis=-1)), "float32"))

    return accuracy


def structure_of(model, max_values: int = 256, min_sparsity: float = 0.3) -> list[tuple]:
    """Kernels whose pruning or clustering must survive fine-tuning.

    Returns (layer name, variable, segment ids or None, segments, zero mask or None):
    a kernel with at most ``max_values`` distinct values is clustered (ids index
    its values; the zero value is pinned), one with at least ``min_sparsity``
    exact zeros is pruned.
    """
    out = []
    for layer in model.layers:
        for var in getattr(layer, "trainable_weights", []):
            if "kernel" not in var.name or len(var.shape) < 2:
                continue
            w = var.numpy()
            values, ids = np.unique(w, return_inverse=True)
            mask = (w != 0).astype(np.float32)
            sparse = float(np.mean(w == 0)) >= min_sparsity
            if values.size <= min(max_values, w.size // 4):
                out.append((layer.name, var, ids.reshape(-1).astype(np.int32), int(values.size),
                            mask if sparse or 0.0 in values else None))
            elif sparse:
                out.append((layer.name, var, None, 0, mask))
    return out


def preserving_callback(structure: list[tuple]):
    """A Keras callback that, after every batch, projects kernels back onto their structure.

    Clustered kernels: every weight becomes its cluster's mean (the shared value
    moves by the mean of its members' updates, as in Deep Compression's centroid
    fine-tuning); pruned weights are reset to zero.
    """
    from ..keras_compat import keras, tf

    t = tf()
    prepared = [(var, None if ids is None else t.constant(ids), n, None if mask is None else t.constant(mask))
                for _, var, ids, n, mask in structure]

    @t.function
    def project():
        for var, ids, n, mask in prepared:  # unrolled when traced: one graph for all kernels
            value = var
            if ids is not None:
                means = t.math.unsorted_segment_mean(t.reshape(var, [-1]), ids, n)
                value = t.reshape(t.gather(means, ids), var.shape)
            if mask is not None:
                value = value * mask
            var.assign(value)

    class _Project(keras().callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            project()

    return _Project()


class Distill(Pass):
    """Distillation fine-tuning from a teacher (see module doc)."""

    name = "distill"
    forbidden_after = {"mixed_precision": "the precision plan was measured on the earlier weights; move "
                                          "'distill' before 'mixed_precision'"}
    search_rank = 4
    needs = frozenset({"train"})

    class Config(PassConfig):
        temperature: float = Field(4.0, gt=0)
        alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft (teacher) loss")
        teacher: Optional[str] = Field(None, description="teacher model file; default: the recipe's input model")
        preserve: Literal["auto", "none"] = Field("auto", description="auto: keep pruned zeros and shared "
                                                  "(clustered) values found in the kernels")
        fine_tune: step_fine_tune(epochs=3, learning_rate=5e-4)


    def preflight(self, model) -> None:
        """Load a ``teacher:`` file and check it fits the input model before any step trains."""
        if self.config.teacher is not None:
            self._check_pair(self.teacher(None), model)

    @staticmethod
    def _check_pair(teacher, model) -> None:
        def io(m) -> tuple[str, str]:
            ins = m.input_shape if isinstance(m.input_shape, list) else [m.input_shape]
            outs = m.output_shape if isinstance(m.output_shape, list) else [m.output_shape]
            return ", ".join(str(tuple(s[1:])) for s in ins), ", ".join(str(tuple(s[1:])) for s in outs)

        if io(teacher) != io(model):
            (ti, to), (si, so) = io(teacher), io(model)
            raise RecipeError(f"step 'distill': teacher maps {ti} -> {to} but the student maps {si} -> {so}; "
                              "give a teacher for the same task")

    def teacher(self, ctx: Optional[Context]):
        """The teacher model: the ``teacher`` file if given, else ``ctx.teacher``."""
        if self.config.teacher is not None:
            from ..load import load_model

            return load_model(self.config.teacher, unsafe=False)
        teacher = ctx.teacher
        if teacher is None:
            raise RecipeError("step 'distill' has no teacher: give teacher: path/to/model.h5 in the step "
                              "(the pipeline did not provide the input model)")
        return teacher

    def apply(self, model, ctx: Context):
        self.require(ctx, "train")
        teacher = self.teacher(ctx)
        self._check_pair(teacher, model)
        cfg = self.config
        t_logits = logits_of(teacher.predict(model_arg(ctx.train.x.astype(np.float32)), batch_size=256, verbose=0),
                             uses_softmax(teacher))
        packed = np.concatenate([ctx.train.y.reshape(-1, 1).astype(np.float32), t_logits], axis=1)
        before = evaluate_accuracy(model, ctx.eval) if ctx.eval is not None and ctx.eval.y is not None else None
        structure = structure_of(model) if cfg.preserve == "auto" else []
        cbs = [preserving_callback(structure)] if structure else []
        hist = fit(model, ctx.train, ctx, cfg.fine_tune, label="distill",
                   loss=distill_loss(cfg.temperature, cfg.alpha, uses_softmax(model)),
                   metrics=[packed_accuracy()], targets=packed, callbacks=cbs)
        rec = {"temperature": cfg.temperature, "alpha": cfg.alpha, "epochs_run": len(hist.history.get("loss", [])),
               "teacher": cfg.teacher or "input model",
               "preserved": [{"layer": name, "shared_values": n or None, "pruned": mask is not None}
                             for name, _, _, n, mask in structure]}
        if before is not None:
            rec["accuracy_before_pct"] = round(before, 4)
            rec["accuracy_after_pct"] = round(evaluate_accuracy(model, ctx.eval), 4)
        ctx.record(**rec)
        return model
