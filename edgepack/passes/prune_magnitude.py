"""Unstructured magnitude pruning and N:M (e.g. 2:4) sparsity via tfmot, stripped before returning.

Zeroes weights but keeps every shape: the model gets smaller only once
compressed (zip, ``.epk``) or run by a sparse kernel, and no faster on dense
kernels (``prune_structured`` removes whole channels instead).

With training data (``--train``) the selected layers are wrapped with tfmot's
``prune_low_magnitude`` (polynomial schedule from ``initial_sparsity`` to
``sparsity``, or ``sparsity_m_by_n``) and fine-tuned; ``strip_pruning`` removes
the wrappers. Without it the smallest weights are zeroed one-shot (same masks,
no recovery: a warning is logged and recorded).

Recipe step (exactly one of ``sparsity``, ``m_by_n``)::

    - type: prune_magnitude
      sparsity: 0.8                 # final fraction of zero weights per layer
      # m_by_n: [2, 4]              # 2 zeros in every 4 consecutive input weights
      layers: {types: [Conv2D, Dense]}
      fine_tune: {epochs: 3}

Python::

    p = MagnitudePrune(MagnitudePrune.Config(sparsity=0.8))
    sparse = p.apply(model, Context(train=Labeled(x, y)))
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import Field, model_validator

from ..errors import RecipeError
from .base import Context, Pass, PassConfig
from .order import after_quantization
from .pruning.cost import layer_table
from .select import LayerSelector
from .training import FitConfig, bn_data, check_labels, evaluate_accuracy, fit, recalibrate_batchnorm, shape_problem

# tfmot prunes these (DepthwiseConv2D deliberately not: few, sensitive weights).
PRUNABLE = ("Conv1D", "Conv2D", "Conv3D", "Dense", "SeparableConv1D", "SeparableConv2D", "LSTM", "GRU", "SimpleRNN")
RECURRENT = ("LSTM", "GRU", "SimpleRNN")  # tfmot prunes their kernel and recurrent kernel
M_BY_N_TYPES = ("Conv2D", "Dense")
ONE_SHOT_WARNING = ("magnitude pruning without training data (--train) is one-shot: expect an accuracy "
                    "drop; pass --train DATA to prune gradually while fine-tuning")


class MagnitudePruneConfig(PassConfig):
    sparsity: Optional[float] = Field(None, gt=0, lt=1)
    initial_sparsity: float = Field(0.0, ge=0, lt=1)
    m_by_n: Optional[tuple[int, int]] = None
    layers: LayerSelector = Field(default_factory=LayerSelector)
    fine_tune: FitConfig = Field(default_factory=FitConfig)

    @model_validator(mode="after")
    def _one_kind(self) -> "MagnitudePruneConfig":
        if (self.sparsity is None) == (self.m_by_n is None):
            raise ValueError("give exactly one of sparsity (e.g. 0.8) or m_by_n (e.g. [2, 4])")
        if self.m_by_n is not None and not 0 < self.m_by_n[0] < self.m_by_n[1]:
            raise ValueError(f"m_by_n {list(self.m_by_n)}: need 0 < m < n (m zeros in every n weights)")
        if self.sparsity is not None and self.initial_sparsity >= self.sparsity:
            raise ValueError(f"initial_sparsity {self.initial_sparsity} must be below sparsity {self.sparsity}")
        return self


def _kernel_indices(layer) -> tuple[int, ...]:
    if type(layer).__name__ in RECURRENT:
        return (0, 1)
    return (1,) if type(layer).__name__.startswith("SeparableConv") else (0,)


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask keeping the largest-magnitude ``1 - sparsity`` of ``w`` (ties by position)."""
    n_zero = int(round(w.size * sparsity))
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    mask = np.ones(w.size, dtype=bool)
    mask[order[:n_zero]] = False
    return mask.reshape(w.shape)


def m_by_n_mask(w: np.ndarray, m: int, n: int) -> np.ndarray:
    """Mask with ``m`` zeros in every ``n`` consecutive weights along the input axis (axis -2), as tfmot."""
    moved = np.moveaxis(w, -2, -1)  # (..., out, in) -> blocks along in
    blocks = np.abs(moved).reshape(-1, n)
    order = np.argsort(blocks, axis=1, kind="stable")
    mask = np.ones_like(blocks, dtype=bool)
    np.put_along_axis(mask, order[:, :m], False, axis=1)
    return np.moveaxis(mask.reshape(moved.shape), -1, -2)


class MagnitudePrune(Pass):
    """Zero the smallest weights (unstructured) or m of every n (N:M) in the selected layers."""

    name = "prune_magnitude"
    forbidden_after = after_quantization("prune_magnitude")
    download_only = True
    search_rank = 2
    Config = MagnitudePruneConfig


    def apply(self, model, ctx: Context):
        if ctx.train is not None:
            check_labels(model, ctx.train)
        names, skipped = self._select(model)
        if ctx.train is None:
            ctx.warn(ONE_SHOT_WARNING)
            pruned = self._one_shot(model, names)
        else:
            pruned = self._train(model, names, ctx)
            pruned = self._one_shot(pruned, names)  # guard: the masks are exact after stripping
        if self.config.fine_tune.recalibrate_bn:  # zeroed weights shift what later BatchNorms see
            recalibrate_batchnorm(pruned, bn_data(ctx))
        self._report(model, pruned, names, skipped, ctx)
        return pruned

    def _select(self, model) -> tuple[list[str], list[dict]]:
        cfg = self.config
        types = M_BY_N_TYPES if cfg.m_by_n else PRUNABLE
        chosen = cfg.layers.select(model, self.name, candidates=[lyr.name for lyr in model.layers
                                                                  if type(lyr).__name__ in types])
        names, skipped = [], []
        for name in chosen:
            layer = model.get_layer(name)
            if cfg.m_by_n:
                cin = layer.get_weights()[0].shape[-2]
                if cin % cfg.m_by_n[1]:
                    why = f"{cin} input weights per output are not a multiple of {cfg.m_by_n[1]}"
                    if not cfg.layers.empty:
                        raise RecipeError(f"step '{self.name}': layer '{name}' cannot take "
                                          f"{cfg.m_by_n[0]}:{cfg.m_by_n[1]} sparsity: {why}; deselect it")
                    skipped.append({"layer": name, "reason": why})
                    continue
            names.append(name)
        if not names:
            raise RecipeError(f"step '{self.name}': no selected layer can be pruned ({skipped})")
        return names, skipped

    def _one_shot(self, model, names: list[str]):
        from ..keras_compat import keras

        cfg = self.config
        out = keras().models.clone_model(model)
        out.set_weights(model.get_weights())
        for name in names:
            layer = out.get_layer(name)
            w = layer.get_weights()
            for i in _kernel_indices(layer):
                mask = (m_by_n_mask(w[i], *cfg.m_by_n) if cfg.m_by_n else magnitude_mask(w[i], cfg.sparsity))
                w[i] = np.where(mask, w[i], 0).astype(w[i].dtype)
            layer.set_weights(w)
        return out

    def _train(self, model, names: list[str], ctx: Context):
        from ..keras_compat import keras, tfmot

        cfg, k, sp = self.config, keras(), tfmot().sparsity.keras
        n = len(ctx.train.x)
        total = max(1, int(np.ceil(n / cfg.fine_tune.batch_size)) * max(1, cfg.fine_tune.epochs))
        if cfg.m_by_n:
            params = {"sparsity_m_by_n": tuple(cfg.m_by_n)}
        else:
            end = max(1, int(total * 0.7))
            params = {"pruning_schedule": sp.PolynomialDecay(cfg.initial_sparsity, cfg.sparsity, begin_step=0,
                                                             end_step=end, frequency=max(1, end // 20))}
        wanted = set(names)
        base = k.models.clone_model(model)  # a private copy: wrapping reuses the layers it is given
        base.set_weights(model.get_weights())
        wrapped = k.models.clone_model(
            base, clone_function=lambda lyr: sp.prune_low_magnitude(lyr, **params) if lyr.name in wanted else lyr)
        # No early stopping while sparsity ramps up: restoring an earlier epoch would restore a denser mask.
        fit(wrapped, ctx.train, ctx, cfg.fine_tune.model_copy(update={"validation_split": 0.0}),
            label=f"{self.name}: fine-tune", callbacks=[sp.UpdatePruningStep()])
        return sp.strip_pruning(wrapped)

    def _report(self, model, pruned, names, skipped, ctx: Context) -> None:
        rows = [r for r in layer_table(model, pruned) if r["name"] in names]
        kernels = [pruned.get_layer(n).get_weights()[i] for n in names for i in _kernel_indices(pruned.get_layer(n))]
        zeros, size = sum(int((w == 0).sum()) for w in kernels), sum(w.size for w in kernels)
        ctx.record(layers=rows, skipped_layers=skipped, pruned_weights=zeros, sparsity=round(zeros / size, 4),
                   m_by_n=list(self.config.m_by_n) if self.config.m_by_n else None,
                   fine_tuned=ctx.train is not None)
        if ctx.train is None:
            ctx.record(warning=ONE_SHOT_WARNING)
        if ctx.eval is not None and ctx.eval.y is not None and shape_problem(model, ctx.eval.x) is None:
            before, after = evaluate_accuracy(model, ctx.eval), evaluate_accuracy(pruned, ctx.eval)
            ctx.record(accuracy_before=round(before, 3), accuracy_after=round(after, 3),
                       accuracy_drop=round(before - after, 3))
