"""The search space: which compression steps a trial may use and the ranges of their knobs.

A space is data, validated like a recipe (unknown keys are errors). Every trial turns a
sample of it into an ordinary :class:`~edgepack.recipe.Recipe`. YAML form::

    version: 1
    sampler: tpe              # tpe (multi-objective TPE) | nsga2
    epochs: 2                 # fine-tune epochs of every step that trains (short: a trial is one build)
    quantize: [int8, int16x8, mixed]          # modes to try; "mixed" = int8 + a mixed_precision step
    steps:                    # tried in this order; each is on/off unless `optional: false`
      prune_structured: {ratio: {low: 0.1, high: 0.75}, round_to: [1, 8]}
      lowrank: {energy: {low: 0.6, high: 0.99}}
      prune_magnitude: {sparsity: {low: 0.5, high: 0.95}}
      cluster: {clusters: [8, 16, 32]}
      distill: {}
      qat: {}
    patches: when_ram_short   # tflm: fixed (the base recipe's tflm.patches) | searched | when_ram_short

``patches: searched`` lets every trial package with or without patch-based inference (recipe
``tflm.patches: auto``, :mod:`edgepack.tflm.patches`); ``when_ram_short`` does so only once trial 0
(plain int8) does not fit the board's RAM or leaves it under 10% (:func:`patches_decision`).

A knob is a fixed value (passed through to the step), a list (a categorical choice) or a
range ``{low, high, log?, int?}``. Any other key of the step's own config (e.g.
``importance: l2``) may be given as a fixed value.

Example::

    space = default_space(model, target="android", objective="size", has_train=True)
    recipe_dict, params = space.sample(optuna_trial, base_recipe)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import RecipeError, validation_message

QUANT_CHOICES = ("int8", "int16x8", "mixed")
PATCH_CHOICES = ("off", "auto")  # the values of recipe tflm.patches a searched trial takes
RAM_SHORT = 0.10  # trial 0 leaves less than this fraction of the board's RAM: RAM is short


def _searched() -> list:
    """The Pass classes a search may use, in trial order (their ``search_rank``)."""
    from ..passes import REGISTRY, pass_class

    classes = [pass_class(name) for name in REGISTRY]
    return sorted((c for c in classes if c.search_rank is not None), key=lambda c: c.search_rank)


def step_order() -> tuple[str, ...]:
    """Trial order of the steps (structure first, then weight sharing, then recovery, QAT last)."""
    return tuple(c.name for c in _searched())


def download_only_steps() -> tuple[str, ...]:
    """Steps that change only the entropy-coded download (their Pass's ``download_only``)."""
    return tuple(c.name for c in _searched() if c.download_only)


def training_steps() -> tuple[str, ...]:
    """Steps that always fine-tune on --train (their Pass's ``needs``)."""
    return tuple(c.name for c in _searched() if c.always_trains())


class Range(BaseModel):
    """A numeric range; ``int: true`` samples integers, ``log: true`` on a log scale."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    low: float
    high: float
    log: bool = False
    integer: bool = Field(False, alias="int")

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not self.low < self.high:
            raise ValueError(f"range low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


Knob = Union[Range, list, str, int, float, bool, dict]


class StepSpace(BaseModel):
    """One step's knobs. ``optional`` (default true): the sampler decides whether it is used."""

    model_config = ConfigDict(extra="allow")
    optional: bool = True

    def knobs(self) -> dict[str, Any]:
        out = {}
        for k, v in (self.model_extra or {}).items():
            if isinstance(v, dict) and {"low", "high"} <= set(v):
                try:
                    v = Range.model_validate(v)
                except ValidationError as e:
                    raise ValueError(f"{k}: {validation_message(e)}") from None
            elif isinstance(v, list) and not v:
                raise ValueError(f"{k}: an empty list of choices")
            out[k] = v
        return out


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    sampler: Literal["tpe", "nsga2"] = "tpe"
    epochs: int = Field(2, ge=0, le=100, description="fine-tune epochs of each training step in a trial")
    quantize: list[Literal["int8", "int16x8", "mixed"]] = Field(default_factory=lambda: ["int8"], min_length=1)
    steps: dict[str, StepSpace] = Field(default_factory=dict)
    patches: Literal["fixed", "searched", "when_ram_short"] = Field(
        "fixed", description="tflm: patch-based inference per trial (recipe tflm.patches) or the base recipe's")
    notes: list[str] = Field(default_factory=list, description="why steps were left out (default spaces)")

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, v: dict[str, StepSpace]) -> dict[str, StepSpace]:
        order = step_order()
        unknown = [s for s in v if s not in order]
        if unknown:
            raise ValueError(f"unknown step(s) {', '.join(unknown)}; a search space may use {', '.join(order)}")
        for name, st in v.items():
            try:
                st.knobs()
            except ValueError as e:
                raise ValueError(f"{name}.{e}") from None
        return v

    # -- loading -------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: Path) -> "SearchSpace":
        from ..recipe import read_yaml

        return cls.from_dict(read_yaml(path, "search space"), str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "space") -> "SearchSpace":
        if not isinstance(raw, dict):
            raise RecipeError(f"{source}: a search space is a mapping with keys version/sampler/epochs/quantize/steps")
        try:
            space = cls.model_validate(raw)
        except ValidationError as e:
            raise RecipeError(f"{source}: {validation_message(e)}") from None
        space.check(source)
        return space

    def check(self, source: str = "space") -> None:
        """Validate every step at both ends of its ranges as a recipe would (unknown keys, bad values)."""
        from ..recipe import Recipe

        for end in (0, -1):
            for mode in self.quantize:
                steps = [self._step(name, {k: _corner(v, end) for k, v in st.knobs().items()})
                         for name, st in self._ordered() if not (name == "qat" and mode != "int8")]
                raw = {"steps": steps, "quantize": {"mode": "int8" if mode == "mixed" else mode}}
                if mode == "mixed":
                    raw["steps"].append({"type": "mixed_precision"})
                try:
                    Recipe.from_dict(raw, source)
                except RecipeError as e:
                    raise RecipeError(f"{e} (search space, {'low' if end == 0 else 'high'} end of the ranges)") from None

    def to_dict(self) -> dict:
        out = self.model_dump(mode="json", exclude={"steps"})
        out["steps"] = {n: {"optional": s.optional, **{k: (v.model_dump(by_alias=True) if isinstance(v, Range) else v)
                                                       for k, v in s.knobs().items()}}
                        for n, s in self.steps.items()}
        return out

    # -- sampling ------------------------------------------------------------
    def _ordered(self):
        return [(n, self.steps[n]) for n in step_order() if n in self.steps]

    def _step(self, name: str, values: dict) -> dict:
        from ..passes import pass_class
        from ..passes.training import FitConfig

        step = {"type": name, **values}
        own = pass_class(name).fine_tune_defaults()
        if "fine_tune" not in step:  # the space's (short) epochs at the step's own learning rate
            step["fine_tune"] = {"epochs": self.epochs}
            if own and own["learning_rate"] != FitConfig.model_fields["learning_rate"].default:
                step["fine_tune"]["learning_rate"] = own["learning_rate"]
        return step

    def sample(self, trial, base: dict, max_accuracy_drop: Optional[float], patches: bool = False) -> dict:
        """An ordinary recipe dict for one Optuna trial (define-by-run), built on ``base``; with ``patches``
        (the driver's :func:`patches_decision`) the trial also picks recipe ``tflm.patches``."""
        mode = trial.suggest_categorical("quantize", list(self.quantize)) if len(self.quantize) > 1 \
            else self.quantize[0]
        steps = []
        for name, st in self._ordered():
            if name == "qat" and mode != "int8":
                continue  # QAT fixes int8 fake-quant; mixed precision and int16x8 replace it
            if st.optional and not trial.suggest_categorical(f"{name}", [False, True]):
                continue
            values = {k: _suggest(trial, f"{name}.{k}", v) for k, v in st.knobs().items()}
            steps.append(self._step(name, values))
        recipe = {k: v for k, v in base.items() if k not in ("steps",)}
        quant = dict(base.get("quantize", {}))
        quant["mode"] = "int8" if mode == "mixed" else mode
        if quant["mode"] == "int16x8" and quant.get("io") in ("int8", "uint8"):
            quant["io"] = "int16"
        if mode == "mixed":
            quant["io"] = "float"  # float fallbacks need float I/O (mixed_precision's rule)
        recipe["quantize"] = quant
        if mode == "mixed":
            steps.append({"type": "mixed_precision", "max_accuracy_drop":
                          1.0 if max_accuracy_drop is None else float(max_accuracy_drop)})
        recipe["steps"] = steps
        recipe["verify"] = {**base.get("verify", {}), "max_accuracy_drop":
                            "none" if max_accuracy_drop is None else float(max_accuracy_drop),
                            "step_metrics": False}
        if patches:
            recipe["tflm"] = {**base.get("tflm", {}),
                              "patches": trial.suggest_categorical("patches", list(PATCH_CHOICES))}
        return recipe


def patches_decision(space: SearchSpace, objective: str, baseline: Optional[dict],
                     ram_bytes: Optional[int]) -> Optional[dict]:
    """Whether trials search patch-based inference: ``{"searched": bool, "why": str}``, or None while
    ``space.patches`` is ``when_ram_short`` and trial 0 (``baseline``, its record) has not finished.

    ``when_ram_short`` searches them when trial 0 does not fit the board's RAM (``ram_bytes``) or leaves
    under 10% of it, and always for ``--objective ram``.

    Example::

        patches_decision(space, "size", {"status": "ok", "metrics": {"ram_bytes": 95_000}}, 100_000)
        # {"searched": True, "why": "trial 0 (plain int8) needs 95,000 B of the board's 100,000 B RAM ..."}
    """
    if space.patches == "fixed":
        return {"searched": False, "why": "space patches: fixed (the base recipe's tflm.patches in every trial)"}
    if space.patches == "searched":
        return {"searched": True, "why": "space patches: searched"}
    if objective == "ram":
        return {"searched": True, "why": "the objective is RAM (the tensor arena)"}
    if baseline is None or baseline.get("status") not in ("ok", "infeasible", "failed"):
        return None
    need = (baseline.get("metrics") or {}).get("ram_bytes")
    if need is not None and ram_bytes:
        left = ram_bytes - need
        short = left < RAM_SHORT * ram_bytes
        return {"searched": short, "why": f"trial 0 (plain int8) needs {need:,} B of the board's {ram_bytes:,} B "
                                          f"RAM ({left:,} B left: {'short' if short else 'room enough'})"}
    err = str(baseline.get("error", ""))
    if baseline.get("error_type") == "BudgetError" and " RAM: needs " in err:
        return {"searched": True, "why": f"trial 0 (plain int8) does not fit the board's RAM: {err.split('; ')[0]}"}
    return {"searched": False, "why": f"trial 0 gave no RAM figure ({baseline.get('status')}): patches not searched"}


def _corner(v, end: int):
    if isinstance(v, Range):
        x = v.low if end == 0 else v.high
        return int(round(x)) if v.integer else x
    if isinstance(v, list):
        return v[end]
    return v


def _suggest(trial, name: str, v):
    if isinstance(v, Range):
        if v.integer:
            return trial.suggest_int(name, int(v.low), int(v.high), log=v.log)
        return round(trial.suggest_float(name, v.low, v.high, log=v.log), 4)
    if isinstance(v, list):
        if all(isinstance(c, (str, int, float, bool)) or c is None for c in v):
            return trial.suggest_categorical(name, v)
        idx = trial.suggest_categorical(name, list(range(len(v))))  # dict/list choices: by index
        return v[idx]
    return v


def _worth_factoring(layer) -> bool:
    """A kernel whose factors at half its rank would be smaller (both sides at least 16 wide)."""
    import numpy as np

    w = layer.get_weights()[0]
    n_in, n_out = int(np.prod(w.shape[:-1])), int(w.shape[-1])
    return min(n_in, n_out) >= 16 and (min(n_in, n_out) // 2) * (n_in + n_out) < n_in * n_out


def default_space(model, target: str, objective: str, has_train: bool, channel_multiple: int = 1,
                  epochs: int = 2) -> SearchSpace:
    """The space that fits ``model`` and ``target``: only steps that apply and can move ``objective``.

    ``channel_multiple`` (the target kernels', edgepack.passes.pruning.channels) is the channel rounding
    tried by structured pruning besides 1.
    """
    from ..passes.lowrank import factorable

    kinds = {type(lyr).__name__ for lyr in model.layers}
    prunable = kinds & {"Conv2D", "Dense", "SeparableConv2D", "DepthwiseConv2D", "Conv1D"}
    notes, steps = [], {}
    hw = channel_multiple
    if prunable:  # the main lever on bytes, MACs and latency: in every trial (a low ratio is nearly a no-op)
        steps["prune_structured"] = {"optional": False, "ratio": {"low": 0.1, "high": 0.75},
                                     "round_to": sorted({1, hw})}
    if any(factorable(lyr) and _worth_factoring(lyr) for lyr in model.layers):
        steps["lowrank"] = {"energy": {"low": 0.6, "high": 0.95}, "if_none": "skip"}  # pruning may leave nothing
    else:
        notes.append("lowrank left out: no Dense or 1x1 Conv2D layer large enough to gain from factorisation")
    # tflm keeps clustered / pruned weights compressed in flash (TFLM's DECODE): they shrink its model bytes
    if objective == "download" or (target == "tflm" and objective == "size"):
        if prunable & {"Conv2D", "Dense", "SeparableConv2D", "Conv1D"}:
            steps["prune_magnitude"] = {"sparsity": {"low": 0.5, "high": 0.95}}
        steps["cluster"] = {"clusters": [8, 16, 32]}
    else:
        notes.append(f"prune_magnitude and cluster left out: they shrink the entropy-coded download (and, for "
                     f"tflm, the flash), not the {objective} (sparse or shared int8 weights run dense)")
    if has_train:
        steps["distill"] = {}
        steps["qat"] = {}
    else:
        notes.append("distill and qat left out, fine-tunes off: no --train data")
    if target == "android" and objective in ("size", "download", "macs"):
        quant = ["int8", "mixed"]
        notes.append(f"int16x8 left out: its .tflite is larger than int8's and it does not lower the {objective}; "
                     "mixed (int8 with per-op fallbacks) stays to rescue accuracy")
    elif target == "android":
        quant = ["int8"]
        notes.append("int16x8 and mixed left out: 16-bit and float ops are slower than int8 on XNNPACK")
    else:
        quant = ["int8"]
        notes.append("tflm: int8 only (int16x8 and float fallbacks need kernels many boards lack)")
    patches = "fixed"
    if target == "tflm":
        patches = "searched" if objective == "ram" else "when_ram_short"
        why = ("the objective is RAM" if patches == "searched" else
               "only if trial 0 (plain int8) leaves under 10% of the board's RAM or does not fit it")
        notes.append(f"patches (recipe tflm.patches: auto) searched per trial: {why}")
    raw = {"epochs": epochs if has_train else 0, "quantize": quant, "steps": steps, "notes": notes,
           "patches": patches}
    return SearchSpace.from_dict(raw, "default space")
