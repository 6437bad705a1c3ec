"""Per-layer parameters and MACs of a tf_keras model (for inspect and reports).

Example::

    rows = layer_stats(model)    # [{name, type, output_shape, params, macs}, ...]
"""

from __future__ import annotations

import numpy as np


def _shape(s) -> list:
    if isinstance(s, list):  # multi-output layer: first output
        s = s[0]
    return [None if d is None else int(d) for d in s]


def layer_macs(layer) -> int:
    """Multiply-accumulates per sample of one layer (0 where none are significant)."""
    cls = layer.__class__.__name__
    try:
        out = _shape(layer.output_shape)
    except AttributeError:
        return 0
    spatial = int(np.prod([d for d in out[1:-1] if d])) if len(out) > 2 else 1
    if cls == "Conv2D":
        kh, kw = layer.kernel_size
        cin = int(layer.kernel.shape[2])
        return spatial * int(out[-1]) * kh * kw * cin // max(1, layer.groups if hasattr(layer, "groups") else 1)
    if cls == "DepthwiseConv2D":
        kh, kw = layer.kernel_size
        return spatial * int(out[-1]) * kh * kw
    if cls == "SeparableConv2D":
        kh, kw = layer.kernel_size
        cin = int(layer.depthwise_kernel.shape[2])
        mult = int(layer.depthwise_kernel.shape[3])
        return spatial * (cin * mult * kh * kw + cin * mult * int(out[-1]))
    if cls == "Dense":
        return spatial * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return 0


def layer_stats(model) -> list[dict]:
    rows = []
    for layer in model.layers:
        try:
            shape = _shape(layer.output_shape)
        except AttributeError:
            shape = []
        rows.append({"name": layer.name, "type": layer.__class__.__name__, "output_shape": shape,
                     "params": int(layer.count_params()), "macs": layer_macs(layer)})
    return rows


def model_summary(model) -> dict:
    rows = layer_stats(model)
    return {"name": model.name, "layers": rows, "params": int(sum(r["params"] for r in rows)),
            "macs": int(sum(r["macs"] for r in rows)),
            "input_shape": _shape(model.input_shape), "output_shape": _shape(model.output_shape)}
