"""Weight clustering (k-means weight sharing) with tfmot, optionally fine-tuned.

Each selected layer's kernel is replaced by ``clusters`` shared values (per
output channel for Conv2D with ``per_channel: true``); with
``preserve_sparsity`` zeros left by pruning stay zero (the "PC" of PCQAT). The
returned model is stripped: plain layers whose kernels hold few distinct
values, which the int8 converter keeps and the entropy package (``.epk``)
compresses.

Recipe::

    steps:
      - {type: prune_magnitude, sparsity: 0.9}
      - type: cluster
        clusters: 16
        preserve_sparsity: true        # default: true when a pruning step came before
        fine_tune: {epochs: 2, learning_rate: 0.0001}

Python::

    model = Cluster(Cluster.Config(clusters=8)).apply(model, ctx)
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import Field

from ..errors import RecipeError
from .base import Context, Pass, PassConfig
from .order import after_quantization
from .select import LayerSelector
from .training import FitConfig, bn_data, fit, recalibrate_batchnorm

PRUNING_STEPS = ("prune_magnitude",)
_INIT = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}


def kernel_of(layer) -> Optional[np.ndarray]:
    """The main weight (kernel) of a layer (an RNN's: its cell's), or None for weightless layers."""
    for attr in ("kernel", "depthwise_kernel", "embeddings"):
        w = getattr(layer, attr, None)
        w = getattr(getattr(layer, "cell", None), attr, None) if w is None else w
        if w is not None:
            return np.asarray(w.numpy())
    return None


def weight_stats(model) -> list[dict]:
    """Per layer with a kernel: distinct values, sparsity and size (for the report)."""
    out = []
    for layer in model.layers:
        w = kernel_of(layer)
        if w is not None:
            out.append({"layer": layer.name, "weights": int(w.size), "unique_values": int(np.unique(w).size),
                        "sparsity": round(float(np.mean(w == 0)), 4)})
    return out


class Cluster(Pass):
    """k-means weight sharing over the selected layers (see module doc)."""

    name = "cluster"
    forbidden_after = after_quantization("cluster")
    download_only = True
    search_rank = 3

    class Config(PassConfig):
        clusters: int = Field(16, ge=2, le=256, description="shared values per kernel (or per channel)")
        init: Literal["kmeans++", "linear", "density", "random"] = "kmeans++"
        per_channel: bool = Field(False, description="one codebook per output channel (Conv2D only)")
        preserve_sparsity: Optional[bool] = Field(None, description="keep pruned zeros; default: after pruning")
        layers: LayerSelector = Field(default_factory=LayerSelector)
        fine_tune: Optional[FitConfig] = Field(None, description="fine-tune the clustered model (needs --train)")

    def __init__(self, config: "Cluster.Config", previous: tuple[str, ...] = ()):
        super().__init__(config, previous)
        self.needs = frozenset({"train"}) if config.fine_tune is not None and config.fine_tune.epochs else frozenset()

    @property
    def preserve_sparsity(self) -> bool:
        cfg = self.config
        after_pruning = any(p in PRUNING_STEPS for p in self.previous)
        return after_pruning if cfg.preserve_sparsity is None else cfg.preserve_sparsity

    def preflight(self, model) -> None:
        """Check the layer selector against the input model before any step trains."""
        ok, skipped = self._candidates(model)
        if not ok:
            raise RecipeError(f"step 'cluster': no layer of the model can be clustered into {self.config.clusters} "
                              "values (" + "; ".join(f"{s['layer']}: {s['reason']}" for s in skipped) + ")")
        self.config.layers.select(model, step=self.name, candidates=ok)

    def _candidates(self, model) -> tuple[list[str], list[dict]]:
        """Layers tfmot can cluster and that have enough weights; the rest with a reason."""
        from ..keras_compat import tfmot

        tfmot()
        from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import (
            ClusteringRegistry as registry,
        )

        ok, skipped = [], []
        for layer in model.layers:
            w = kernel_of(layer)
            if w is None:
                continue
            per = w.size // w.shape[-1] if self.config.per_channel and w.ndim == 4 else w.size
            if self.preserve_sparsity:  # k-means runs on the non-zero weights only (tfmot samples centroids there)
                nz = np.count_nonzero(w.reshape(-1, w.shape[-1]), axis=0) if self.config.per_channel and w.ndim == 4 \
                    else np.array([np.count_nonzero(w)])
                per = int(nz.min())
            if not registry.supports(layer):
                skipped.append({"layer": layer.name, "reason": f"tfmot cannot cluster {type(layer).__name__}"})
            elif per <= self.config.clusters:
                what = "non-zero weights" if self.preserve_sparsity else "weights"
                skipped.append({"layer": layer.name, "reason": f"only {per} {what} for {self.config.clusters} clusters"})
            else:
                ok.append(layer.name)
        return ok, skipped

    def apply(self, model, ctx: Context):
        from ..keras_compat import keras, tfmot

        cfg = self.config
        if cfg.fine_tune is not None and cfg.fine_tune.epochs:
            self.require(ctx, "train")
        self.preflight(model)
        ok, skipped = self._candidates(model)
        chosen = set(cfg.layers.select(model, step=self.name, candidates=ok))
        mot = tfmot()
        init = getattr(mot.clustering.keras.CentroidInitialization, _INIT[cfg.init])
        kw = dict(number_of_clusters=cfg.clusters, cluster_centroids_init=init,
                  preserve_sparsity=self.preserve_sparsity)

        def wrap(layer):
            if layer.name not in chosen:
                return layer.__class__.from_config(layer.get_config())
            per = cfg.per_channel and isinstance(layer, keras().layers.Conv2D)
            return mot.clustering.keras.cluster_weights(layer, cluster_per_channel=per, **kw)

        before = {s["layer"]: s for s in weight_stats(model)}
        with mot.clustering.keras.cluster_scope():
            clustered = keras().models.clone_model(model, clone_function=wrap)
            _copy_plain_weights(model, clustered)
        if cfg.fine_tune is not None and cfg.fine_tune.epochs:
            fit(clustered, ctx.train, ctx, cfg.fine_tune, label="cluster fine-tune")
        out = mot.clustering.keras.strip_clustering(clustered)
        if not (cfg.fine_tune is not None and cfg.fine_tune.epochs):  # one-shot: fit() did not recalibrate
            stripped, out = out, keras().models.clone_model(out)  # strip_clustering reuses layer objects: a fresh
            out.set_weights(stripped.get_weights())  # graph, or the BN probe model is "disconnected"
            recalibrate_batchnorm(out, bn_data(ctx))
        after = weight_stats(out)
        ctx.record(clusters=cfg.clusters, per_channel=cfg.per_channel, preserve_sparsity=self.preserve_sparsity,
                   layers=[{**a, "unique_values_before": before[a["layer"]]["unique_values"],
                            "sparsity_before": before[a["layer"]]["sparsity"]}
                           for a in after if a["layer"] in chosen],
                   skipped=skipped)
        return out


def _copy_plain_weights(src, dst) -> None:
    """Give ``dst``'s re-created (unwrapped) layers the weights of ``src``'s layers of the same name.

    Wrapped layers keep the original layer object and its weights already.
    """
    for layer in dst.layers:
        if layer.weights and not type(layer).__name__.startswith("ClusterWeights"):  # ClusterWeightsRNN too
            layer.set_weights(src.get_layer(layer.name).get_weights())
