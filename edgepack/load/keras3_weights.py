"""Keras 3 weights, read with h5py, copied into the translated tf_keras model.

Two layouts:

* ``.keras`` (``model.weights.h5`` in the zip): one group per saveable, named after the *class* in
  snake case with a counter per container (``layers/conv2d``, ``layers/conv2d_1``; nested models
  under ``layers/<model>/layers/...``). A layer's own variables are ``vars/0..n`` (trainable then
  non-trainable, in creation order; the group's ``name`` attribute is the layer name), then its child
  saveables in attribute order (an RNN's ``cell``). Seed-generator state is not a weight.
* legacy ``.h5`` (``model_weights/<layer name>``, ``weight_names`` attribute) and live Keras 3 models:
  per top-level layer, ``trainable_weights + non_trainable_weights``, as Keras 3's own loader assigns.

Every array is shape-checked against the tf_keras variable it lands in.

Example::

    copy_zip_weights(tf_model, k3_config, weights_h5_bytes, "model.keras")
"""

from __future__ import annotations

import io
import re
from typing import Any, Iterator

import numpy as np

from ..errors import ModelLoadError
from .formats import _first_line

_MODELS = ("Functional", "Sequential", "Model")
# Layers whose child saveables tf_keras creates in another order than Keras 3's alphabetical file order.
CHILD_ORDER = {"MultiHeadAttention": ("query_dense", "key_dense", "value_dense", "output_dense"),
               "Bidirectional": ("forward_layer", "backward_layer")}


def snake(name: str) -> str:
    """Keras 3's ``naming.to_snake_case``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _child_key(name: str) -> str:
    return f"~{name}" if name.startswith("_") else name


def _leaf_arrays(group, cls: str = "") -> list[np.ndarray]:
    out: list[np.ndarray] = []
    own = group.get("vars")
    if own is not None:
        out += [np.asarray(own[k]) for k in sorted(own.keys(), key=int)]
    # children in attribute order: alphabetical unless the layer's class orders them (CHILD_ORDER)
    order = CHILD_ORDER.get(cls, ())
    children = sorted((k for k in group.keys() if k != "vars"), key=_child_key)
    for child in sorted(children, key=lambda c: order.index(c) if c in order else len(order)):
        if child.startswith("seed_generator") or not hasattr(group[child], "keys"):
            continue
        out += _leaf_arrays(group[child])
    return out


def _walk_zip(cfg: dict, group, path: tuple, source: str) -> Iterator[tuple[tuple, list, str]]:
    """(tf_keras layer path, arrays, class) for every leaf layer of a Keras 3 model config."""
    inner = cfg["config"]
    entries = inner.get("layers", [])
    if cfg["class_name"] == "Sequential" and entries and entries[0].get("class_name") == "InputLayer":
        entries = entries[1:]
    used: dict[str, int] = {}
    layers = group.get("layers") if group is not None else None
    for entry in entries:
        if str(entry.get("module") or "").startswith("keras.src.ops."):
            continue  # operation nodes are not saveables: no weights, no group in the file
        base = snake(entry["class_name"])
        if base in used:
            used[base] += 1
            base = f"{base}_{used[base]}"
        else:
            used[base] = 0
        name = entry["config"].get("name")
        sub = layers.get(base) if layers is not None else None
        if sub is not None and "vars" in sub:
            stored = sub["vars"].attrs.get("name")
            stored = stored.decode() if isinstance(stored, bytes) else stored
            if stored is not None and stored != name:
                raise ModelLoadError(f"{source}: model.weights.h5 holds layer '{stored}' where the config has "
                                     f"'{name}'; the weights do not belong to this config")
        if entry["class_name"] in _MODELS:
            yield from _walk_zip(entry, sub, path + (name,), source)
        else:
            yield path + (name,), ([] if sub is None else _leaf_arrays(sub, entry["class_name"])), entry["class_name"]


def _layer(model, path: tuple):
    layer = model
    for name in path:
        layer = layer.get_layer(name)
    return layer


def _assign(model, path: tuple, arrays: list, source: str) -> int:
    layer = _layer(model, path)
    variables = layer.trainable_weights + layer.non_trainable_weights
    where = "/".join(path)
    if len(variables) == 3 and len(arrays) == 2 and type(layer).__name__ == "Normalization":
        arrays = [*arrays, np.zeros((), np.int64)]  # tf_keras keeps an adapt() sample count; Keras 3 does not
    if len(variables) != len(arrays):
        raise ModelLoadError(f"{source}: layer '{where}' has {len(arrays)} weight arrays in the file but its "
                             f"tf_keras twin has {len(variables)}; the weights do not match the config")
    for var, arr in zip(variables, arrays):
        if tuple(var.shape) != tuple(arr.shape):
            raise ModelLoadError(f"{source}: layer '{where}' weight {var.name.split('/')[-1]} has shape "
                                 f"{tuple(arr.shape)} in the file but {tuple(var.shape)} in the model")
        var.assign(np.asarray(arr, dtype=var.dtype.as_numpy_dtype))
    return sum(int(a.size) for a in arrays)


def _open_h5(data: bytes, source: str):
    import h5py

    try:
        return h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{source}: model.weights.h5 is not a readable HDF5 file ({_first_line(e)}); "
                             "the file is truncated or corrupt") from e


def copy_zip_weights(model, k3_cfg: dict, weights: bytes, source: str) -> int:
    """Copy the weights of a Keras 3 ``.keras`` file into ``model``; return the values copied."""
    n = 0
    with _open_h5(weights, source) as f:
        try:
            leaves = list(_walk_zip(k3_cfg, f, (), source))
            arrays = [(p, a) for p, a, _ in leaves]
        except (KeyError, ValueError, OSError, TypeError) as e:
            raise ModelLoadError(f"{source}: model.weights.h5 is damaged ({_first_line(e)})") from e
    for path, arr in arrays:
        n += _assign(model, path, arr, source)
    return n


def copy_h5_weights(model, path, source: str) -> int:
    """Copy the weights of a Keras 3 legacy ``.h5`` file (``model_weights`` group) into ``model``."""
    import h5py

    n = 0
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            plan = []
            for layer in model.layers:
                if layer.name not in root:
                    if layer.weights:
                        raise ModelLoadError(f"{source}: no weights for layer '{layer.name}' in the file")
                    continue
                g = root[layer.name]
                names = [x.decode() if isinstance(x, bytes) else str(x) for x in g.attrs.get("weight_names", [])]
                plan.append(((layer.name,), [np.asarray(g[w]) for w in names]))
    except (KeyError, OSError, ValueError, TypeError) as e:
        raise ModelLoadError(f"{source}: the weights are damaged ({_first_line(e)})") from e
    for p, arrays in plan:
        n += _assign(model, p, arrays, source)
    return n


def copy_live_weights(model, k3_model: Any, source: str) -> int:
    """Copy a live Keras 3 model's weights into its tf_keras translation ``model``."""
    n = 0
    for layer in k3_model.layers:
        arrays = [np.asarray(v.numpy()) for v in layer.trainable_weights + layer.non_trainable_weights]
        try:
            model.get_layer(layer.name)
        except ValueError:
            if arrays:
                raise ModelLoadError(f"{source}: layer '{layer.name}' has no twin in the translation") from None
            continue
        n += _assign(model, (layer.name,), arrays, source)
    return n
