"""Per-layer cost tables of a pruning (before/after), on edgepack.keras_stats' cost formulas.

Example::

    rows = layer_table(model, pruned)
"""

from __future__ import annotations

from ...keras_stats import full_channels, layer_cost


def channels(layer) -> tuple[int, int]:
    """(input, output channels) of ``layer``; of a layer called several times on different shapes (a shared
    layer, never pruned), its first call's.

    Example: ``channels(model.get_layer("conv1"))`` -> ``(3, 16)``.
    """
    try:
        return full_channels(layer)
    except AttributeError:
        ins, outs = layer.get_input_shape_at(0), layer.get_output_shape_at(0)
        last = [int(s[-1]) if isinstance(s, tuple) and s and s[-1] is not None else 0 for s in (ins, outs)]
        return last[0], last[1]


def cost_of(layer, cin: int, cout: int) -> tuple[int, int]:
    """:func:`edgepack.keras_stats.layer_cost`; a layer called on several shapes has no single output size:
    its parameters and no MACs (as :func:`edgepack.keras_stats.layer_macs` counts it).

    Example: ``cost_of(model.get_layer("conv1"), 3, 8)`` -> ``(params, macs)``.
    """
    try:
        return layer_cost(layer, cin, cout)
    except AttributeError:
        return int(layer.count_params()), 0


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
        cin, cout = channels(old)
        cin2, cout2 = channels(new)
        p0, m0 = cost_of(old, cin, cout)
        p1, m1 = cost_of(new, cin2, cout2)
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
