"""The firmware bundle's parts for a model with several inputs: model_config.h's per-input block, the
inference example's sample (every input's values in turn) and the README's notes. A single-input model
gets nothing from here: its files stay as they were.

Example::

    lines = inputs_block(build, [info.tensors[i] for i in info.inputs], c_float)   # [] for one input
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..build import Build
from ..samples import for_tensors, tensor_input_name
from ..tflm.c_array import c_string, comment_text


def inputs_block(build: Build, ins: list, c_float: Callable[[float], str]) -> list[str]:
    """A several-input model: each input's model input name and preprocessing (``c_float`` writes float
    literals), and the float count ep_run_inference takes (every input's values in turn, in input tensor
    order). Nothing for one input."""
    if len(ins) < 2:
        return []
    total = sum(int(np.prod(t.shape)) if t.shape else 1 for t in ins)
    lines = ["/* Every input's preprocessed floats in turn, in input tensor order: what ep_run_inference takes. */",
             f"#define EP_INPUTS_ELEMENTS {total}u", ""]
    for n, t in enumerate(ins):
        name = tensor_input_name(t.name)
        pre = build.recipe.data.for_input(name)
        means = [pre.mean] if isinstance(pre.mean, (int, float)) else list(pre.mean)
        p = f"EP_INPUT{n}"
        lines += [f"/* input {n} is model input {comment_text(name, 80)}: x = (raw - mean[channel]) * scale. */",
                  f"#define {p}_MODEL_INPUT {c_string(name)}",
                  f"#define {p}_PRE_SCALE {c_float(pre.scale)}",
                  f"#define {p}_PRE_MEAN_COUNT {len(means)}u",
                  f"static const float ep_input{n}_pre_mean[{p}_PRE_MEAN_COUNT] = "
                  f"{{{', '.join(c_float(m) for m in means)}}};", ""]
    return lines


def several_sample(build: Build, seeded) -> tuple[np.ndarray, str]:
    """Every input's float sample in turn (input tensor order), flat: the first calibration sample, else
    seeded ones over each input's range (``seeded(tensor, shape, rng)``)."""
    ts = [build.info.tensors[i] for i in build.info.inputs]
    if build.calibration is not None and len(build.calibration):
        parts = for_tensors(build.calibration[:1], [t.name for t in ts], [t.shape for t in ts])
        return np.concatenate([np.asarray(p, np.float32).reshape(-1) for p in parts]), "the first calibration sample"
    rng = np.random.default_rng(0)
    parts = [seeded(t, [int(d) for d in t.shape[1:]], rng)[0].reshape(-1) for t in ts]
    return np.concatenate(parts), "a seeded random sample"


def several_inputs_notes(count: int) -> dict[str, str]:
    """The README's notes for a model with several inputs (empty for one: its README is unchanged)."""
    if count < 2:
        return {"several_inputs": "", "fill_note": ""}
    return {"several_inputs": (
                f"\n  This model has {count} inputs: `floats` holds each input's preprocessed values in turn, in input "
                "tensor order (`EP_INPUT0_ELEMENTS`, then `EP_INPUT1_ELEMENTS`, ...; `n` = `EP_INPUTS_ELEMENTS`); "
                "`EP_INPUT<k>_MODEL_INPUT` names\n  each one, `EP_INPUT<k>_PRE_SCALE` and `ep_input<k>_pre_mean[]` "
                "give its preprocessing."),
            "fill_note": "; every input is filled so, each from its own first byte, and `in=` is their total"}

