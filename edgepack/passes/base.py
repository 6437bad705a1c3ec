"""The pass protocol: every compression technique is one ``Pass``.

A pass takes a tf_keras model and a :class:`Context` and returns a new model.
It declares the data it needs (``needs``) so the pipeline can fail before any
work starts, and records what it did with ``ctx.record(...)`` for the report.

Example::

    class Identity(Pass):
        name = "identity"
        class Config(PassConfig):
            pass
        def apply(self, model, ctx):
            ctx.record(layers=len(model.layers))
            return model
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..errors import RecipeError
from ..samples import Samples


class PassConfig(BaseModel):
    """Base of every pass's config: unknown keys are errors, not silent no-ops."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Labeled:
    """Preprocessed float inputs with optional integer labels; ``x`` is an
    :class:`~edgepack.samples.Inputs` (one array per input, model order) for a several-input model."""

    x: Samples
    y: Optional[np.ndarray] = None


@dataclass
class Context:
    """What a pass may read (data, seed) and write (its report record)."""

    seed: int = 0
    calibration: Optional[Samples] = None
    train: Optional[Labeled] = None
    eval: Optional[Labeled] = None
    progress: Callable[[str, int, int], None] = lambda label, done, total: None
    log: Callable[[str], None] = lambda msg: None
    # Per-step records for the report; the pipeline opens one dict per step.
    records: list[dict[str, Any]] = field(default_factory=list)
    # The uncompressed float model (the distillation teacher) and the recipe's accuracy budget.
    teacher: Any = None
    max_accuracy_drop: Optional[float] = None
    # The target kernels' preferred channel multiple (prune_structured's default round_to); None: unknown.
    channel_multiple: Optional[int] = None
    # Estimated latency (ms) of a Keras model on the target device's cost model (prune_structured's
    # max_latency_ms); None: the target has no device with a cost model.
    latency_ms: Optional[Callable[[Any], float]] = None
    # Warnings for the user: shown on stderr and kept in report.json / report.md.
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """A warning the user must see whatever the verbosity: logged and kept for the report."""
        self.warnings.append(message)
        self.log(f"warning: {message}")

    def record(self, **items: Any) -> None:
        """Add items to the current step's record (shown in report.json/.md)."""
        if not self.records:
            self.records.append({})
        self.records[-1].update(items)


class Pass:
    """Base class. Subclasses set ``name``, ``Config``, ``needs`` and implement ``apply``."""

    name: ClassVar[str] = ""
    # "compress" steps change the Keras model (apply); "quantize" steps plan the conversion
    # (edgepack.quantize.mixed_precision) and run after every compress step.
    stage: ClassVar[str] = "compress"
    Config: ClassVar[type[PassConfig]] = PassConfig
    # Any of "calibration", "train" (labelled training data), "eval".
    needs: ClassVar[frozenset[str]] = frozenset()
    # -- the step's facts, read by the recipe's order check and the search space (their one home) --
    # Earlier step -> why this one may not follow it (and what to do): see edgepack.passes.order.
    forbidden_after: ClassVar[dict[str, str]] = {}
    # Changes only the entropy-coded download (sparse or shared int8 weights are stored and run dense).
    download_only: ClassVar[bool] = False
    # Position in a search trial (structure first, then weight sharing, recovery, QAT last); None: not searched.
    search_rank: ClassVar[Optional[int]] = None

    def __init__(self, config: PassConfig, previous: tuple[str, ...] = ()):
        self.config = config
        # The recipe steps before this one (e.g. clustering keeps pruned zeros after pruning);
        # which orders are allowed at all is edgepack.passes.order's.
        self.previous = tuple(previous)

    @classmethod
    def fine_tune_defaults(cls) -> dict[str, Any]:
        """The step's own ``fine_tune`` defaults ({} for a step that does not fine-tune by default)."""
        spec = cls.Config.model_fields.get("fine_tune")
        if spec is None or spec.default_factory is None:
            return {}
        return spec.default_factory().model_dump()

    @classmethod
    def always_trains(cls) -> bool:
        """True for a step that needs --train whatever its options (qat, distill)."""
        return "train" in cls.needs

    def check_quantize(self, quant) -> None:
        """Raise RecipeError if this step cannot work with the recipe's ``quantize`` block."""

    def preflight(self, model) -> None:
        """Raise RecipeError if ``model`` cannot take this step; runs before any step trains."""

    def apply(self, model, ctx: Context):  # pragma: no cover - abstract
        raise NotImplementedError

    def require(self, ctx: Context, what: str) -> None:
        """Fail with a clear message when data this pass needs is missing."""
        have = {"calibration": ctx.calibration is not None, "train": ctx.train is not None,
                "eval": ctx.eval is not None, "latency": ctx.latency_ms is not None}
        if what == "latency" and not have["latency"]:
            raise RecipeError(f"step '{self.name}': a latency target needs an estimated latency: use --target "
                              "tflm --device NAME whose core has a cost model ('edgepack devices' lists them), "
                              "or give a MACs budget (keep_macs / max_macs) instead")
        if not have.get(what, False):
            flag = {"calibration": "--calibration", "train": "--train", "eval": "--eval"}[what]
            raise RecipeError(f"step '{self.name}' needs {what} data; pass {flag} DATA")
