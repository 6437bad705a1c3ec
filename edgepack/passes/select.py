"""Layer selection by name, regular expression or layer type, shared by passes.

A selector that matches no layer is an error (a misspelt name must not silently
turn a step into a no-op).

Example (recipe YAML)::

    layers: {names: [conv1], regex: "block_.*_conv", types: [Conv2D, Dense]}

Python::

    sel = LayerSelector(regex="conv.*", types=["Conv2D"])
    names = sel.select(model, step="prune_structured")   # ["conv1", "conv2"]
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from pydantic import Field, field_validator

from ..errors import RecipeError
from .base import PassConfig


class LayerSelector(PassConfig):
    """Layers picked by exact ``names``, a ``regex`` (full match) or class ``types``.

    Criteria are OR-ed: a layer is selected when any one of them matches. An
    empty selector selects every candidate.
    """

    names: list[str] = Field(default_factory=list)
    regex: Optional[str] = None
    types: list[str] = Field(default_factory=list)

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"invalid regular expression {v!r}: {e}") from None
        return v

    @property
    def empty(self) -> bool:
        return not self.names and self.regex is None and not self.types

    def matches(self, name: str, type_name: str) -> bool:
        """True when a layer called ``name`` of class ``type_name`` is selected."""
        if self.empty:
            return True
        if name in self.names or type_name in self.types:
            return True
        return self.regex is not None and re.fullmatch(self.regex, name) is not None

    def select(self, model, step: str = "step", candidates: Optional[Iterable[str]] = None) -> list[str]:
        """Names of the selected layers of ``model`` (optionally only among ``candidates``).

        Raises RecipeError naming the criterion when any name, type or the regex
        matches nothing.
        """
        layers = [(lyr.name, type(lyr).__name__) for lyr in model.layers]
        allowed = None if candidates is None else set(candidates)
        self._check_each_matches(layers, step)
        out = [n for n, t in layers if (allowed is None or n in allowed) and self.matches(n, t)]
        if not out:
            raise RecipeError(f"step '{step}': layer selector {self.describe()} matches no layer it can "
                              "work on; check the names/regex/types against `edgepack inspect`")
        return out

    def _check_each_matches(self, layers: list[tuple[str, str]], step: str) -> None:
        names = {n for n, _ in layers}
        types = {t for _, t in layers}
        for n in self.names:
            if n not in names:
                raise RecipeError(f"step '{step}': no layer named '{n}' in the model; "
                                  f"known layers: {', '.join(sorted(names))}")
        for t in self.types:
            if t not in types:
                raise RecipeError(f"step '{step}': the model has no layer of type '{t}'; "
                                  f"types present: {', '.join(sorted(types))}")
        if self.regex is not None and not any(re.fullmatch(self.regex, n) for n in names):
            raise RecipeError(f"step '{step}': regex {self.regex!r} matches no layer name; "
                              "it must match the whole name")

    def describe(self) -> str:
        parts = []
        if self.names:
            parts.append(f"names={self.names}")
        if self.regex is not None:
            parts.append(f"regex={self.regex!r}")
        if self.types:
            parts.append(f"types={self.types}")
        return "{" + ", ".join(parts or ["all"]) + "}"
