"""The firmware bundle's parts for a model with several outputs: model_config.h's per-output block (each
output's model output name, the classification output ep_run_inference ranks, the float count
ep_run_inference_outputs fills) and the README's note. A single-output model gets nothing from here: its
files stay as they were (the harness's protocol bytes too: one output's CRC is its own).

Example::

    lines = outputs_block(build, [info.tensors[i] for i in info.outputs])   # [] for one output
"""

from __future__ import annotations

import numpy as np

from ..build import Build
from ..tflm.c_array import c_string
from ..outputs import build_output_names as output_names


def outputs_block(build: Build, outs: list, c_types: dict) -> list[str]:
    """model_config.h lines for a several-output model (``c_types``: dtype -> C type of the I/O tensors)."""
    if len(outs) < 2:
        return []
    names, k = output_names(build), build.output
    total = sum(int(np.prod(t.shape)) if t.shape else 1 for t in outs)
    lines = ["/* Several outputs, in output tensor order (the TFLite converter's, not the Keras order): output k is",
             " * model output EP_OUTPUT<k>_MODEL_OUTPUT. The classification output (labels, ep_run_inference's top",
             " * class) is output EP_CLASS_OUTPUT; ep_run_inference_outputs gives every output's floats in turn. */",
             f"#define EP_OUTPUTS_ELEMENTS {total}u"]
    for n, name in enumerate(names):
        lines.append(f"#define EP_OUTPUT{n}_MODEL_OUTPUT {c_string(name)}")
    t = outs[k]
    lines += [f"#define EP_CLASS_OUTPUT {k}u", f"#define EP_CLASS_MODEL_OUTPUT EP_OUTPUT{k}_MODEL_OUTPUT",
              f"#define EP_CLASS_ELEMENTS EP_OUTPUT{k}_ELEMENTS", f"#define EP_CLASS_QUANTIZED EP_OUTPUT{k}_QUANTIZED",
              f"#define EP_CLASS_TFLITE_TYPE EP_OUTPUT{k}_TFLITE_TYPE"]
    if t.dtype in c_types:
        lines.append(f"#define EP_CLASS_CTYPE EP_OUTPUT{k}_CTYPE")
    if t.dtype == "float32" or (len(t.scale) == 1 and t.scale[0] > 0):
        lines.append(f"#define ep_class_dequantize ep_output{k}_dequantize")
    return lines + [""]


def several_outputs_note(build: Build) -> str:
    """The README's note for a model with several outputs ('' for one)."""
    outs = len(build.info.outputs)
    if outs < 2:
        return ""
    names = output_names(build)
    return (f"\n  This model has {outs} outputs ({', '.join(f'`{n}`' for n in names)}, in output tensor order): "
            f"`ep_run_inference` ranks the classification output `{names[build.output]}` (`EP_CLASS_OUTPUT` "
            f"{build.output}); `ep_run_inference_outputs(floats, n, out, EP_OUTPUTS_ELEMENTS)` also gives every "
            "output's dequantized values in turn. The harness's `crc32` and `out_bytes` cover every output in turn.")
