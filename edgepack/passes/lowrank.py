"""Low-rank factorization: SVD of Dense and 1x1 Conv2D kernels into two thinner layers.

A kernel ``W`` (n_in x n_out) becomes ``A @ B`` with ``A = U_r * S_r`` (n_in x r,
no bias, linear) and ``B = V_r^T`` (r x n_out, the original bias and activation),
which saves parameters and MACs when ``r * (n_in + n_out) < n_in * n_out``.
The rank per layer comes from, in this order of precedence: an explicit
``ranks`` entry, a ``params_ratio`` (keep at most this fraction of the kernel's
parameters), or an ``energy`` threshold (the smallest rank whose singular values
keep this fraction of the squared Frobenius norm). Layers where factoring would
not save parameters are skipped with a reason. Optionally fine-tuned.

The model is rebuilt from its config (Sequential or Functional), so the result
is made of plain Dense/Conv2D layers that every converter and runtime support.

Recipe::

    steps:
      - type: lowrank
        energy: 0.95                    # or params_ratio: 0.3, or ranks: {fc1: 16}
        fine_tune: {epochs: 2}

Python::

    model = LowRank(LowRank.Config(ranks={"fc1": 16})).apply(model, ctx)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, Annotated, Optional

import numpy as np
from pydantic import Field

from ..errors import RecipeError
from .base import Context, Pass, PassConfig
from .order import after_quantization
from .select import LayerSelector
from .training import FitConfig, bn_data, fit, recalibrate_batchnorm

SUFFIX = "_lowrank"


@dataclass
class Plan:
    """One layer's factorization: its 2-D kernel, the chosen rank and what is kept."""

    layer: str
    kind: str  # "Dense" or "Conv2D"
    n_in: int
    n_out: int
    rank: int
    energy: float
    a: np.ndarray
    b: np.ndarray

    def record(self) -> dict:
        before = self.n_in * self.n_out
        return {"layer": self.layer, "shape": [self.n_in, self.n_out], "rank": self.rank,
                "energy_kept": round(self.energy, 5), "kernel_params_before": before,
                "kernel_params_after": self.rank * (self.n_in + self.n_out)}


def factorable(layer) -> bool:
    """Dense layers and 1x1 Conv2D layers (no groups) can be factorised."""
    kind = type(layer).__name__
    if kind == "Dense":
        return True
    if kind == "Conv2D":
        cfg = layer.get_config()
        return tuple(cfg["kernel_size"]) == (1, 1) and cfg.get("groups", 1) == 1
    return False


class LowRank(Pass):
    """SVD factorization of Dense / 1x1 Conv2D kernels (see module doc)."""

    name = "lowrank"
    forbidden_after = after_quantization("lowrank")
    search_rank = 1

    class Config(PassConfig):
        energy: float = Field(0.9, gt=0, le=1, description="fraction of squared singular values kept")
        params_ratio: Optional[float] = Field(None, gt=0, lt=1, description="max fraction of kernel params kept")
        ranks: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict,
                                                              description="explicit rank per layer name")
        layers: LayerSelector = Field(default_factory=LayerSelector)
        fine_tune: Optional[FitConfig] = None
        if_none: Literal["error", "skip"] = Field(
            "error", description="when no selected layer would get smaller: error, or skip the step with a "
                                 "warning (what a search uses: earlier pruning may have left nothing to factorise)")

    def __init__(self, config: "LowRank.Config", previous: tuple[str, ...] = ()):
        super().__init__(config, previous)
        self.needs = frozenset({"train"}) if config.fine_tune is not None and config.fine_tune.epochs else frozenset()


    def preflight(self, model) -> None:
        """Check layer names and explicit ranks against the input model before any step trains."""
        cands = [lyr.name for lyr in model.layers if factorable(lyr)]
        if not cands:
            raise RecipeError("step 'lowrank': the model has no Dense or 1x1 Conv2D layer to factorise")
        self.config.layers.select(model, step=self.name, candidates=cands)
        for name, rank in self.config.ranks.items():
            if name not in cands:
                raise RecipeError(f"step 'lowrank': ranks names '{name}', which is not a Dense or 1x1 Conv2D "
                                  "layer of the model; check the name with `edgepack inspect`")
            w = model.get_layer(name).get_weights()[0]
            self._rank(name, np.ones(1), int(np.prod(w.shape[:-1])), int(w.shape[-1]))

    def _rank(self, name: str, s: np.ndarray, n_in: int, n_out: int) -> int:
        cfg = self.config
        full = min(n_in, n_out)
        if name in cfg.ranks:
            if cfg.ranks[name] > full:
                raise RecipeError(f"step 'lowrank': rank {cfg.ranks[name]} for layer '{name}' is larger than "
                                  f"the layer allows ({n_in}x{n_out}: at most {full}); lower it")
            return cfg.ranks[name]
        if cfg.params_ratio is not None:
            return max(1, int(cfg.params_ratio * n_in * n_out / (n_in + n_out)))
        energy = np.cumsum(s**2) / max(float(np.sum(s**2)), 1e-30)
        return int(min(full, np.searchsorted(energy, cfg.energy - 1e-12) + 1))

    def plan(self, model) -> tuple[list[Plan], list[dict]]:
        """SVD of every selected layer; returns (plans, skipped [{layer, reason}])."""
        self.preflight(model)
        cands = [lyr.name for lyr in model.layers if factorable(lyr)]
        chosen = self.config.layers.select(model, step=self.name, candidates=cands)
        plans, skipped = [], []
        for name in chosen:
            layer = model.get_layer(name)
            w = layer.get_weights()[0]
            w2 = w.reshape(-1, w.shape[-1]).astype(np.float64)
            n_in, n_out = w2.shape
            u, s, vt = np.linalg.svd(w2, full_matrices=False)
            r = self._rank(name, s, n_in, n_out)
            if r * (n_in + n_out) >= n_in * n_out and name not in self.config.ranks:
                skipped.append({"layer": name, "reason": f"rank {r} of {n_in}x{n_out} would not save parameters"})
                continue
            kept = float(np.sum(s[:r] ** 2) / max(float(np.sum(s**2)), 1e-30))
            a = (u[:, :r] * s[:r]).astype(np.float32)
            b = vt[:r].astype(np.float32)
            plans.append(Plan(name, type(layer).__name__, n_in, n_out, r, kept, a, b))
        return plans, skipped

    def apply(self, model, ctx: Context):
        cfg = self.config
        if cfg.fine_tune is not None and cfg.fine_tune.epochs:
            self.require(ctx, "train")
        plans, skipped = self.plan(model)
        if not plans:
            why = "no selected layer would get smaller (" + "; ".join(f"{s['layer']}: {s['reason']}" for s in skipped)
            if cfg.if_none == "skip":
                ctx.warn(f"step 'lowrank' skipped: {why})")
                ctx.record(layers=[], skipped=skipped)
                return model
            raise RecipeError(f"step 'lowrank': {why}); lower energy or params_ratio")
        out = rebuild(model, plans)
        if cfg.fine_tune is not None and cfg.fine_tune.epochs:
            fit(out, ctx.train, ctx, cfg.fine_tune, label="lowrank fine-tune")
        else:  # factorised kernels shift what later BatchNorms see; fit() recalibrates when it runs
            recalibrate_batchnorm(out, bn_data(ctx))
        ctx.record(layers=[p.record() for p in plans], skipped=skipped)
        return out


def _split_config(entry: dict, plan: Plan, functional: bool) -> list[dict]:
    """Two layer-config entries (A then B) replacing one Dense/Conv2D entry."""
    first = copy.deepcopy(entry)
    cfg = first["config"]
    cfg.update(name=plan.layer + SUFFIX, use_bias=False, activation="linear", bias_regularizer=None,
               activity_regularizer=None, kernel_constraint=None, bias_constraint=None)
    cfg["units" if plan.kind == "Dense" else "filters"] = plan.rank
    second = copy.deepcopy(entry)
    if plan.kind == "Conv2D":  # the second 1x1 conv runs at the first one's output resolution
        second["config"].update(strides=(1, 1), padding="valid", dilation_rate=(1, 1))
    second["config"].pop("batch_input_shape", None)
    if functional:
        first["name"] = plan.layer + SUFFIX
        second["inbound_nodes"] = [[[plan.layer + SUFFIX, 0, 0, {}]]]
    return [first, second]


def rebuild(model, plans: list[Plan]):
    """A new model with each planned layer replaced by its two factors; other weights copied."""
    from ..keras_compat import keras

    k = keras()
    by_name = {p.layer: p for p in plans}
    config = model.get_config()
    functional = not isinstance(model, k.Sequential)
    layers = []
    for entry in config["layers"]:
        name = entry["config"].get("name")
        if name in by_name:
            if functional and len(entry.get("inbound_nodes", [])) != 1:
                raise RecipeError(f"step 'lowrank': layer '{name}' is shared by several inputs; "
                                  "exclude it with layers: {names: [...]}")
            layers += _split_config(entry, by_name[name], functional)
        else:
            layers.append(entry)
    config["layers"] = layers
    new = (k.Sequential if not functional else k.Model).from_config(config)
    for layer in new.layers:
        if layer.name.endswith(SUFFIX) and layer.name[: -len(SUFFIX)] in by_name:
            p = by_name[layer.name[: -len(SUFFIX)]]
            layer.set_weights([p.a.reshape(layer.get_weights()[0].shape)])
        elif layer.name in by_name:
            p = by_name[layer.name]
            old = model.get_layer(layer.name).get_weights()
            layer.set_weights([p.b.reshape(layer.get_weights()[0].shape)] + old[1:])
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new
