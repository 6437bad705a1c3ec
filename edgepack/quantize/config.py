"""Post-training quantization settings: the mode, the I/O types and per-op precision rules.

Rules are data (ordered; later rules win, as in ai-edge-quantizer's recipes): each names
ops by a regex over their output tensor names and/or an op type, and pins their precision.
The mixed_precision step (:mod:`edgepack.quantize.mixed_precision`) only fills in a plan
under the user's rules. Example recipe block::

    quantize:
      mode: int8
      io: float
      rules:
        - {match: "dense_1", precision: int16x8}       # ops whose output names match
        - {op: SOFTMAX, precision: float}
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, field_validator, model_serializer, model_validator

Precision = Literal["int8", "int16x8", "float"]


def per_op_io_problem(mode: str, io: str) -> Optional[str]:
    """Why per-op precision (rules or a mixed-precision plan, applied by ai-edge-quantizer) cannot give
    this mode and I/O, or None: it needs a full-integer mode and float I/O or the mode's own integer type."""
    native = {"int8": "int8", "int16x8": "int16"}.get(mode)
    if native is None or io not in ("float", native):
        return (f"per-op precision (mixed_precision step, quantize.rules) needs quantize mode int8 or int16x8 "
                f"with io float or the mode's integer type, not mode {mode} io {io}; set e.g. quantize: "
                "{mode: int8, io: float}")
    return None


class QuantRule(BaseModel):
    """Pin the precision of the ops that match ``match`` (regex, searched in the op's output
    tensor names) and/or ``op`` (a TFLite op type such as FULLY_CONNECTED)."""

    model_config = ConfigDict(extra="forbid")
    match: Optional[str] = None
    op: Optional[str] = None
    precision: Precision

    @field_validator("match")
    @classmethod
    def _regex(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"'{v}' is not a valid regular expression ({e})") from None
        return v

    @model_validator(mode="after")
    def _selects(self) -> "QuantRule":
        if self.match is None and self.op is None:
            raise ValueError("a quantize rule needs 'match' (tensor name regex) and/or 'op' (op type)")
        return self


QuantMode = Literal["none", "dynamic", "float16", "int8", "int16x8", "auto"]


class QuantizeConfig(BaseModel):
    """Post-training conversion settings.

    ``mode``: none (float32), dynamic (int8 weights), float16, int8 (full integer),
    int16x8 (16-bit activations, 8-bit weights), auto (int8 when it meets the accuracy limit,
    else the cheapest per-op plan that does: :mod:`edgepack.quantize.auto`). ``io``: the model's input/output
    dtype for full-integer modes ("float" keeps float I/O with quantize ops at
    the ends; "int8"/"int16" makes the interface integer too).
    """

    model_config = ConfigDict(extra="forbid")
    mode: QuantMode = "int8"
    io: Literal["float", "int8", "uint8", "int16"] = "float"
    per_channel: bool = True
    # FULLY_CONNECTED weights per channel? None = the target's default: per channel for
    # android, per tensor for tflm (smaller flatbuffer and arena on microcontrollers).
    dense_per_channel: Optional[bool] = None
    # Per-op precision rules, later rules win (full-integer modes only).
    rules: list[QuantRule] = []

    @property
    def needs_calibration(self) -> bool:
        return self.mode in ("int8", "int16x8", "auto")

    def resolved(self) -> "QuantizeConfig":
        """The config a conversion uses: ``auto`` starts as int8 (edgepack.quantize.auto decides the rest)."""
        return self.model_copy(update={"mode": "int8"}) if self.mode == "auto" else self

    @model_validator(mode="after")
    def _io_fits_mode(self) -> "QuantizeConfig":
        mode = "int8" if self.mode == "auto" else self.mode
        if self.io != "float" and mode not in ("int8", "int16x8"):
            raise ValueError(f"io '{self.io}' needs a full-integer mode (int8 or int16x8), not '{self.mode}'")
        if mode == "int16x8" and self.io in ("int8", "uint8"):
            raise ValueError("int16x8 models take float or int16 I/O, not int8")
        if mode == "int8" and self.io == "int16":
            raise ValueError(f"{self.mode} models take float, int8 or uint8 I/O, not int16")
        if self.rules and mode not in ("int8", "int16x8"):
            raise ValueError(f"quantize rules need a full-integer mode (int8 or int16x8), not '{self.mode}'")
        problem = per_op_io_problem(mode, self.io) if self.rules or self.mode == "auto" else None
        if problem:  # caught with the recipe, not after the compression steps have trained
            raise ValueError(problem.replace("per-op precision (mixed_precision step, quantize.rules)",
                                             "per-op precision (quantize mode auto, mixed_precision, rules)"))
        return self

    @model_serializer(mode="wrap")
    def _omit_empty_rules(self, handler):
        """Recipes without rules serialise as before rules existed (same recipe.yaml bytes)."""
        data = handler(self)
        if not data.get("rules"):
            data.pop("rules", None)
        return data
