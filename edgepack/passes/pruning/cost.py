"""Per-layer cost tables of a pruning (before/after), on edgepack.keras_stats' cost formulas.

Example::

    rows = layer_table(model, pruned)
"""

from __future__ import annotations

from ...keras_stats import full_channels, layer_cost


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
