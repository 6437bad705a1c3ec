"""Recipes: an ordered list of compression steps plus quantization and checks, as data.

YAML in, YAML out; unknown keys anywhere are errors. Example::

    version: 1
    data:
      preprocess: {scale: 0.00392156862745098, mean: 0.0}
      calibration_limit: 500
    steps:
      - {type: prune_structured, ratio: 0.5}
    quantize: {mode: int8, io: int8, per_channel: true}
    verify: {max_accuracy_drop: 1.0}

Python::

    r = Recipe.from_yaml(Path("recipe.yaml"))
    steps = r.build_passes()
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .data import DataSpec
from .quantize.config import QuantizeConfig, QuantRule  # noqa: F401 - part of the recipe API
from .errors import RecipeError, validation_message

#: The accuracy gate's limit when the recipe sets none (points of accuracy with labels, of
#: top-1 disagreement without): a build that loses more fails unless the user says otherwise.
DEFAULT_MAX_DROP = 1.0


class VerifyConfig(BaseModel):
    """The accuracy gate: ``max_accuracy_drop`` in points (unset: the default limit, see
    :mod:`edgepack.verify.accuracy`; ``none``: no gate)."""

    model_config = ConfigDict(extra="forbid")
    max_accuracy_drop: Union[Annotated[float, Field(ge=0)], Literal["none"], None] = Field(
        None, description="percentage points; unset = default limit; 'none' = no gate")
    # After each compression step, also record the float .tflite size, the entropy-coded
    # size and host LiteRT latency. Latency is measured, so report.json then varies run to run.
    step_metrics: bool = True
    # Per-op quantization error in the report's layer table (TensorFlow's QuantizationDebugger).
    layer_errors: bool = True

    def limit(self) -> Optional[float]:
        """The gate's limit in points: the recipe's, the default when unset, None when 'none'."""
        if self.max_accuracy_drop == "none":
            return None
        return DEFAULT_MAX_DROP if self.max_accuracy_drop is None else float(self.max_accuracy_drop)


def read_yaml(path: Path, what: str) -> Any:
    """A user's YAML file (recipe, search space) as data; RecipeError (one line) when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such {what} file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


class CompressConfig(BaseModel):
    """Weights kept compressed in flash for ``--target tflm``, decoded on the device by TFLM's DECODE
    op (:mod:`edgepack.tflm.compress`; lossless). ``encoding``: ``auto`` (per tensor the smallest of
    LUT / prune / Huffman / plain, when the model shrinks by more than the DECODE kernel's code),
    ``off`` (plain int8), or ``lut``/``prune``/``huffman`` only; ``lut_bits``: force the LUT index
    width; ``decode_code_bytes``: the kernel's flash weighed by ``auto`` (0 when already linked).
    Example: ``tflm: {compress: {encoding: lut, lut_bits: 4}}``."""

    model_config = ConfigDict(extra="forbid")
    encoding: Literal["auto", "off", "lut", "prune", "huffman"] = "auto"
    lut_bits: Optional[int] = Field(None, ge=1, le=7, description="LUT index width; unset: from distinct values")
    decode_code_bytes: Optional[int] = Field(None, ge=0, description="DECODE kernel flash; unset: edgepack's figure")


class TflmConfig(BaseModel):
    """``--target tflm`` settings. ``offline_plan``: write an offline memory plan into the model
    (edgepack.tflm.memplan) when TFLM then needs a smaller arena; ``false`` ships the model as converted.
    ``compress``: weights kept compressed in flash (:class:`CompressConfig`); unset: ``auto`` after
    cluster/prune_magnitude, else off. ``patches``: ``auto`` runs the first high-resolution stage tile by tile
    (edgepack.tflm.patches) when TFLM then needs a smaller arena at <= 20% more MACs, outputs bit-exact.
    Example: ``tflm: {offline_plan: true, compress: {encoding: lut}, patches: auto}``."""

    model_config = ConfigDict(extra="forbid")
    offline_plan: bool = True
    compress: Optional[CompressConfig] = None
    patches: Literal["auto", "off"] = "off"


class StepSpec(BaseModel):
    """One step: ``type`` names a registered pass; the rest is that pass's config."""

    model_config = ConfigDict(extra="allow")
    type: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    data: DataSpec = Field(default_factory=DataSpec)
    steps: list[StepSpec] = Field(default_factory=list)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    tflm: TflmConfig = Field(default_factory=TflmConfig)  # --target tflm only

    @classmethod
    def from_dict(cls, raw: Any, source: str = "recipe") -> "Recipe":
        if not isinstance(raw, dict):
            raise RecipeError(f"{source}: a recipe is a mapping with keys steps/quantize/data/verify")
        try:
            recipe = cls.model_validate(raw)
        except ValidationError as e:
            raise RecipeError(f"{source}: {validation_message(e)}") from None
        recipe.build_passes(source)  # validates every step's own config now
        return recipe

    @classmethod
    def from_yaml(cls, path: Path) -> "Recipe":
        return cls.from_dict(read_yaml(path, "recipe"), str(path))

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json")
        data["steps"] = [{"type": s.type, **s.params()} for s in self.steps]
        if data["data"].get("output") is None:  # unset (one output, or the first): recipes read as before
            data["data"].pop("output", None)
        tflm = {k: v for k, v in data.pop("tflm").items() if v != TflmConfig.model_fields[k].default}
        if tflm:  # only what differs from the defaults: recipes without it read as before (same recipe.yaml)
            data["tflm"] = tflm
        return yaml.safe_dump(data, sort_keys=False)

    def build_passes(self, source: str = "recipe") -> list:
        """Instantiate the passes, validating configs and step order."""
        from .passes import pass_class
        from .passes.order import check_order

        try:
            check_order([s.type for s in self.steps])
        except RecipeError as e:
            raise RecipeError(f"{source}: {e}") from None
        passes, names = [], []
        for i, step in enumerate(self.steps):
            cls = pass_class(step.type)
            try:
                cfg = cls.Config.model_validate(step.params())
            except ValidationError as e:
                raise RecipeError(f"{source}: steps[{i}] ({step.type}): {validation_message(e)}") from None
            p = cls(cfg, previous=tuple(names))
            p.check_quantize(self.quantize)
            passes.append(p)
            names.append(step.type)
        return passes
