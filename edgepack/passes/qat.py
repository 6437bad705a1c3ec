"""Quantization-aware training (tfmot), whole-model or partial, then int8 conversion.

Every layer tfmot's 8-bit scheme can annotate gets fake-quantization and the
model is fine-tuned on ``--train`` data; layers it cannot annotate (Rescaling,
Multiply, slicing lambdas ...: tfmot issues #602, #647, #733, #1139) stay in
float during training and are listed in the report with the reason, instead of
failing the whole model. The converter then calibrates those post-training. The
returned model is the QAT model; the recipe's ``quantize: {mode: int8}`` turns
it into a full-integer .tflite.

After clustering and/or magnitude pruning, the collaborative schemes keep what
those steps made (``preserve: auto`` picks them from the step order):
PQAT (sparsity), CQAT (clusters), PCQAT (both).

Recipe::

    steps:
      - {type: qat, fine_tune: {epochs: 2, learning_rate: 0.0001}}
    quantize: {mode: int8}

Python::

    qat_model = QAT(QAT.Config()).apply(model, ctx)   # ctx.train must be set
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import RecipeError
from .base import Context, Pass, PassConfig
from .select import LayerSelector
from .training import FitConfig, fit, step_fine_tune

Preserve = Literal["auto", "none", "sparsity", "clusters", "sparsity_clusters"]


def scheme_for(preserve: str):
    """The tfmot quantize scheme for a preserve mode (none, sparsity, clusters, sparsity_clusters)."""
    from ..keras_compat import tfmot

    mot = tfmot()
    if preserve == "none":
        return mot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    if preserve == "sparsity":
        return mot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    return mot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
        preserve_sparsity=preserve == "sparsity_clusters")


class QAT(Pass):
    """Quantization-aware fine-tuning (see module doc)."""

    name = "qat"
    forbidden_after = {"qat": "a model is made quantization-aware once; remove the second 'qat' step",
                       "mixed_precision": "mixed precision chooses per-layer post-training precision; use it "
                                          "instead of 'qat', not before it"}
    search_rank = 5
    needs = frozenset({"train"})

    class Config(PassConfig):
        fine_tune: step_fine_tune(epochs=2, learning_rate=1e-4)
        preserve: Preserve = Field("auto", description="collaborative QAT: keep sparsity/clusters")
        float_layers: LayerSelector = Field(default_factory=LayerSelector,
                                            description="layers to leave without fake-quant (kept float in QAT)")

    def __init__(self, config: "QAT.Config", previous: tuple[str, ...] = ()):
        super().__init__(config, previous)

    def preflight(self, model) -> None:
        """Check the float_layers selector against the input model before any step trains."""
        if not self.config.float_layers.empty:
            self.config.float_layers.select(model, step=self.name)

    @property
    def preserve(self) -> str:
        if self.config.preserve != "auto":
            return self.config.preserve
        pruned = "prune_magnitude" in self.previous
        if "cluster" in self.previous:
            return "sparsity_clusters" if pruned else "clusters"
        return "sparsity" if pruned else "none"

    def annotate(self, model, fold_bn: bool = True):
        """Annotate supported layers; return (annotated model, skipped [{layer, reason}]).

        BatchNormalization is not in tfmot's registries but its layout transforms
        fold it into the preceding convolution, so it is annotated too (``fold_bn``).
        """
        from ..keras_compat import keras, tfmot

        mot = tfmot()
        registry = scheme_for(self.preserve).get_quantize_registry()
        keep_float = set()
        if not self.config.float_layers.empty:
            keep_float = set(self.config.float_layers.select(model, step=self.name))
        skipped: list[dict] = []

        def annotate(layer):
            if isinstance(layer, keras().layers.InputLayer):
                return layer
            if layer.name in keep_float:
                skipped.append({"layer": layer.name, "reason": "kept float by float_layers"})
                return layer
            if fold_bn and type(layer).__name__ == "BatchNormalization":
                return mot.quantization.keras.quantize_annotate_layer(layer)
            if not registry.supports(layer):
                skipped.append({"layer": layer.name, "reason": f"tfmot has no 8-bit QAT config for "
                                f"{type(layer).__name__}; the converter calibrates it post-training"})
                return layer
            return mot.quantization.keras.quantize_annotate_layer(layer)

        annotated = keras().models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        return annotated, skipped

    def apply(self, model, ctx: Context):
        self.require(ctx, "train")
        try:
            qat, skipped = self._quantize(model, fold_bn=True)
        except RecipeError:
            qat, skipped = self._quantize(model, fold_bn=False)
            for s in skipped:
                if s["layer"] in {lyr.name for lyr in model.layers if type(lyr).__name__ == "BatchNormalization"}:
                    s["reason"] = "tfmot could not fold this BatchNormalization; it stays float in QAT"
        hist = fit(qat, ctx.train, ctx, self.config.fine_tune, label="qat")
        ctx.record(preserve=self.preserve, quantized_layers=sum(type(lyr).__name__.startswith("QuantizeWrapper")
                                                                for lyr in qat.layers),
                   float_layers=skipped, epochs_run=len(hist.history.get("loss", [])))
        return qat

    def _quantize(self, model, fold_bn: bool):
        from ..keras_compat import tfmot

        mot = tfmot()
        annotated, skipped = self.annotate(model, fold_bn)
        if len(skipped) == len([lyr for lyr in model.layers if type(lyr).__name__ != "InputLayer"]):
            raise RecipeError("step 'qat': no layer of the model can be made quantization-aware "
                              f"({skipped[0]['reason'] if skipped else 'empty model'}); use post-training "
                              "int8 (drop the 'qat' step)")
        try:
            with mot.quantization.keras.quantize_scope():
                qat = mot.quantization.keras.quantize_apply(annotated, scheme_for(self.preserve))
        except (ValueError, RuntimeError, TypeError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RecipeError(f"step 'qat': tfmot could not make this model quantization-aware ({first}); "
                              "list the failing layer under float_layers or drop the 'qat' step") from e
        return qat, skipped
