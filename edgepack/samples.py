"""Samples of a model with several inputs: one array per input, kept together along the sample axis.

A single-input model's samples stay one numpy array everywhere (nothing changes for it). A model
with several inputs gets an :class:`Inputs`: the arrays in the Keras model's input order, with the
input names. Code that runs a converted model arranges them by tensor name (:func:`for_tensors`):
the converter names an input tensor ``serving_default_<name>:0`` and keeps its signature's inputs
sorted by name, so position is never assumed when names are there.

Example::

    x = Inputs((images, meta), ("image", "meta"))
    len(x), x[:8]                                      # 100 samples; the first 8 of each input
    for_tensors(x[:1], ["serving_default_meta:0", "serving_default_image:0"])  # [meta, image]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from .errors import DataError

_SIGNATURE_PREFIX = "serving_default_"


@dataclass(frozen=True)
class Inputs:
    """One array per model input (same number of samples), in the model's input order, with names."""

    arrays: tuple[np.ndarray, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def __getitem__(self, idx: Any) -> "Inputs":
        return Inputs(tuple(a[idx] for a in self.arrays), self.names)

    def astype(self, dtype: Any) -> "Inputs":
        return Inputs(tuple(a.astype(dtype) for a in self.arrays), self.names)


Samples = Union[np.ndarray, Inputs]


def parts(x: Samples) -> list[np.ndarray]:
    """The per-input arrays (one for a single-input model's array)."""
    return list(x.arrays) if isinstance(x, Inputs) else [x]


def tensor_input_name(tensor_name: str) -> str:
    """The model input a converted tensor stands for: ``serving_default_meta:0`` -> ``meta``."""
    name = tensor_name.removeprefix(_SIGNATURE_PREFIX)
    return name.rsplit(":", 1)[0] if name.rsplit(":", 1)[-1].isdigit() else name


def tensor_order(names: Sequence[str], tensor_names: Sequence[str], shapes: Sequence[Sequence[int]] = (),
                 have: Sequence[Sequence[int]] = ()) -> list[int]:
    """For each tensor (in the converted model's input order), the index of the model input it takes.

    By name first; a model whose tensor names were shortened (``--compact``) falls back to the
    per-sample shapes (``shapes`` of the tensors vs ``have`` of the inputs), then to the same order.
    """
    short = [tensor_input_name(t) for t in tensor_names]
    if sorted(short) == sorted(names) and len(set(short)) == len(short):
        return [list(names).index(s) for s in short]
    if shapes and have:
        want = [tuple(int(d) for d in s) for s in shapes]
        got = [tuple(int(d) for d in s) for s in have]
        if want != got and sorted(want) == sorted(got) and len(set(got)) == len(got):
            return [got.index(s) for s in want]
    return list(range(len(tensor_names)))


def for_tensors(x: Samples, tensor_names: Sequence[str], shapes: Sequence[Sequence[int]] = ()) -> list[np.ndarray]:
    """``x``'s arrays in the order of a converted model's input tensors (see :func:`tensor_order`)."""
    if not isinstance(x, Inputs):
        return [x]
    if len(tensor_names) != len(x.arrays):
        raise DataError(f"the data has {len(x.arrays)} inputs ({', '.join(x.names)}) but the converted model takes "
                        f"{len(tensor_names)}; give one array per model input")
    order = tensor_order(x.names, tensor_names, [s[1:] for s in shapes], [a.shape[1:] for a in x.arrays])
    return [x.arrays[i] for i in order]
