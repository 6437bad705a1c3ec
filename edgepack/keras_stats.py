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


def _spatial(layer) -> int:
    shape = layer.output_shape
    return int(np.prod([d for d in shape[1:-1]])) if len(shape) > 2 else 1


# tfmot wrappers (QAT, pruning, clustering): costs are the wrapped layer's, shapes the wrapper's.
WRAPPERS = ("QuantizeWrapper", "QuantizeWrapperV2", "PruneLowMagnitude", "ClusterWeights", "ClusterWeightsMHA")


def unwrap(layer):
    """The layer a tfmot wrapper holds (the layer itself when not wrapped)."""
    inner = getattr(layer, "layer", None)
    return inner if inner is not None and type(layer).__name__ in WRAPPERS else layer


def layer_cost(layer, cin: int, cout: int) -> tuple[int, int]:
    """(params, MACs per sample) of ``layer`` with ``cin`` input and ``cout`` output channels.

    Computed from the kernel geometry and output shape, so a pruning plan's cost is
    known without rebuilding the model; layers without MAC-heavy kernels give 0 MACs.

    Example::

        params, macs = layer_cost(model.get_layer("conv1"), cin=3, cout=8)

    A tfmot wrapper (QAT's ``QuantizeWrapperV2``, pruning, clustering) costs what the
    layer it wraps costs; its quantizer variables are not counted as parameters.
    """
    outer, layer = layer, unwrap(layer)
    cls = type(layer).__name__
    bias = int(bool(getattr(layer, "use_bias", False)))
    if cls in ("Conv1D", "Conv2D", "Conv3D"):
        k, g = int(np.prod(layer.kernel_size)), int(getattr(layer, "groups", 1) or 1)
        return k * cin * cout // g + bias * cout, _spatial(outer) * k * cin * cout // g
    if cls == "Dense":
        return cin * cout + bias * cout, _spatial(outer) * cin * cout
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D"):
        k, dm = int(np.prod(layer.kernel_size)), int(layer.depth_multiplier)
        return k * cin * dm + bias * cin * dm, _spatial(outer) * k * cin * dm
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        k, dm = int(np.prod(layer.kernel_size)), int(layer.depth_multiplier)
        return (k * cin * dm + cin * dm * cout + bias * cout,
                _spatial(outer) * (k * cin * dm + cin * dm * cout))
    if cls == "BatchNormalization":
        return cin * len(layer.weights), 0
    return int(layer.count_params()), 0


def full_channels(layer) -> tuple[int, int]:
    """(input channels, output channels) of a layer as built (0 where not a single tensor, or a scalar:
    ``3.0 + x`` has the constant's shape ``()`` as its input shape)."""
    ins, outs = layer.input_shape, layer.output_shape
    cin = int(ins[-1]) if isinstance(ins, tuple) and ins and ins[-1] is not None else 0
    cout = int(outs[-1]) if isinstance(outs, tuple) and outs and outs[-1] is not None else 0
    return cin, cout


def layer_macs(layer) -> int:
    """Multiply-accumulates per sample of one layer (0 where none are significant)."""
    try:
        return layer_cost(layer, *full_channels(layer))[1]
    except AttributeError:  # a layer called on several inputs has no single shape
        return 0


def _params(layer) -> int:
    """Parameters of a layer; of a tfmot wrapper, the wrapped layer's (not its quantizer/mask variables)."""
    if type(layer).__name__ == "QuantizeLayer":  # QAT's input quantizer: a range, no weights
        return 0
    if unwrap(layer) is layer:
        return int(layer.count_params())
    own = layer.name + "/"  # the wrapper's own variables (min/max, masks, step counters)
    return int(sum(int(np.prod(w.shape)) for w in layer.weights if not w.name.startswith(own)))


def layer_stats(model) -> list[dict]:
    rows = []
    for layer in model.layers:
        try:
            shape = _shape(layer.output_shape)
        except AttributeError:
            shape = []
        rows.append({"name": layer.name, "type": layer.__class__.__name__, "output_shape": shape,
                     "params": _params(layer), "macs": layer_macs(layer)})
    return rows


def model_summary(model) -> dict:
    rows = layer_stats(model)
    return {"name": model.name, "layers": rows, "params": int(sum(r["params"] for r in rows)),
            "macs": int(sum(r["macs"] for r in rows)),
            "input_shape": _shape(model.input_shape), "output_shape": _shape(model.output_shape)}
