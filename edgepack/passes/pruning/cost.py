"""Parameters and multiply-accumulates per layer, for any channel counts.

Costs are computed from the layer's kernel geometry and output shape, so the
cost of a pruning plan is known without rebuilding the model.

Example::

    params, macs = layer_cost(model.get_layer("conv1"), cin=3, cout=8)
"""

from __future__ import annotations

import numpy as np


def _spatial(layer) -> int:
    shape = layer.output_shape
    return int(np.prod([d for d in shape[1:-1]])) if len(shape) > 2 else 1


def layer_cost(layer, cin: int, cout: int) -> tuple[int, int]:
    """(params, MACs) of ``layer`` with ``cin`` input and ``cout`` output channels."""
    cls = type(layer).__name__
    bias = int(bool(getattr(layer, "use_bias", False)))
    if cls in ("Conv1D", "Conv2D", "Conv3D"):
        k = int(np.prod(layer.kernel_size))
        return k * cin * cout + bias * cout, _spatial(layer) * k * cin * cout
    if cls == "Dense":
        return cin * cout + bias * cout, _spatial(layer) * cin * cout
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D"):
        k, dm = int(np.prod(layer.kernel_size)), int(layer.depth_multiplier)
        return k * cin * dm + bias * cin * dm, _spatial(layer) * k * cin * dm
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        k, dm = int(np.prod(layer.kernel_size)), int(layer.depth_multiplier)
        return (k * cin * dm + cin * dm * cout + bias * cout,
                _spatial(layer) * (k * cin * dm + cin * dm * cout))
    if cls == "BatchNormalization":
        return cin * len(layer.weights), 0
    return int(layer.count_params()), 0


def full_channels(layer) -> tuple[int, int]:
    """(input channels, output channels) of an unpruned layer."""
    ins, outs = layer.input_shape, layer.output_shape
    cin = int(ins[-1]) if isinstance(ins, tuple) and ins[-1] is not None else 0
    cout = int(outs[-1]) if isinstance(outs, tuple) and outs[-1] is not None else 0
    return cin, cout


def _sparsity(layer) -> float:
    kernels = [w for w in layer.get_weights() if w.ndim >= 2]
    total = sum(w.size for w in kernels)
    return round(float(sum(int((w == 0).sum()) for w in kernels)) / total, 4) if total else 0.0


def layer_table(before, after) -> list[dict]:
    """Per layer with weights or MACs: channels, params, MACs before/after and kernel sparsity.

    Layers are matched by name; ``after`` is the pruned model.
    """
    rows = []
    for old in before.layers:
        try:
            new = after.get_layer(old.name)
        except ValueError:
            continue
        cin, cout = full_channels(old)
        cin2, cout2 = full_channels(new)
        p0, m0 = layer_cost(old, cin, cout)
        p1, m1 = layer_cost(new, cin2, cout2)
        if p0 == 0 and m0 == 0:
            continue
        rows.append({"name": old.name, "type": type(old).__name__, "channels_before": cout,
                     "channels_after": cout2, "params_before": p0, "params_after": p1,
                     "macs_before": m0, "macs_after": m1, "sparsity": _sparsity(new)})
    return rows


def totals(rows: list[dict]) -> dict:
    """Whole-model sums of a :func:`layer_table`."""
    keys = ("params_before", "params_after", "macs_before", "macs_after")
    return {k: int(sum(r[k] for r in rows)) for k in keys}
