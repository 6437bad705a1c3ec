"""Keras 3 file or live model -> verified tf_keras model (or, without twins, Keras 3's own export).

Order of work for a file: scan the config (nothing imported or constructed) -> translate it
(:mod:`.keras3`) -> build the tf_keras model from the translated, re-scanned config -> copy the
weights with h5py (:mod:`.keras3_weights`) -> run the original in Keras 3 (:mod:`.reference`) on the
same samples and refuse a difference above the tolerance, naming the first layer that diverges.

Example::

    model, translation = build_from_file(read_keras_zip(Path("m.keras")), unsafe=False)
    translation["max_abs_diff"]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .formats import RawModel, read_keras_zip_weights
from .keras3 import translate_model
from .keras3_weights import copy_h5_weights, copy_live_weights, copy_zip_weights
from .reference import Keras3Worker, Reference, compare, first_divergent, max_diff, samples
from .scan import scan_config


def _keras3_known(name: str) -> bool:
    return name in Keras3Worker.shared().builtins()


def _sha256(path: Path) -> str:
    from ..fsutil import sha256_path

    return sha256_path(path)


def build_translated(tf_cfg: dict, source: str):
    """The tf_keras model of a translated config (re-scanned: only built-in classes)."""
    from ..keras_compat import keras

    scan_config(tf_cfg, source + " (translated)")
    k = keras()
    try:
        model = k.models.model_from_config(tf_cfg)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:300]
        raise ModelLoadError(f"{source}: the translated tf_keras model does not build ({first}); "
                             "the file's graph is malformed or uses a form edgepack does not translate") from e
    if not getattr(model, "inputs", None):
        raise ModelLoadError(f"{source}: the model has no inputs (empty, or never built); "
                             "build it on keras.Input(...) and save it again")
    return model


def _verdict(model, xs, ref: Reference, rerun, source: str, version: str) -> dict:
    rep = compare(model, xs, ref.outputs)
    if not rep["ok"]:
        bad = first_divergent(model, xs, rerun())
        where = f"; first diverging layer '{bad[0]}' (max abs diff {bad[1]:.3g})" if bad else ""
        raise ModelLoadError(f"{source}: the tf_keras translation differs from Keras {version} by "
                             f"{rep['max_abs_diff']:.3g} (tolerance {rep['tolerance']:.3g}){where}; "
                             "report this model to edgepack")
    return rep


def build_from_file(raw: RawModel, unsafe: bool):
    """(tf_keras model, translation report) for a Keras 3 ``.keras``/``.h5`` file."""
    source = str(raw.path)
    scan_config(raw.config, source, unsafe, extra_known=_keras3_known)
    tf_cfg, n_layers = translate_model(raw.config, source)
    model = build_translated(tf_cfg, source)
    if raw.format == "keras_zip":
        n_values = copy_zip_weights(model, raw.config, read_keras_zip_weights(raw.path), source)
    else:
        n_values = copy_h5_weights(model, raw.path, source)
    worker, digest, xs = Keras3Worker.shared(), _sha256(raw.path), samples(model)
    ref = worker.run(raw.path, xs, digest=digest, safe=not unsafe)
    rep = _verdict(model, xs, ref, lambda: worker.run(raw.path, xs, layers=True, digest=digest, safe=not unsafe),
                   source, raw.keras_version)
    return model, {"from": f"Keras {raw.keras_version}", "layers": n_layers, "weights": n_values, **rep,
                   "reference": "Keras 3 in a child process (safe mode)" if not unsafe else "Keras 3 in a child process"}


def export_conversion_only(raw: RawModel, unsafe: bool):
    """Keras 3's own SavedModel export of a file whose layers lack tf_keras twins (scanned first).

    Returns (export folder, the TemporaryDirectory keeping it alive, a report with the export's max abs
    difference from Keras 3 on the same samples).
    """
    from ..keras_compat import tf

    source = str(raw.path)
    scan_config(raw.config, source, unsafe, extra_known=_keras3_known)
    keep = tempfile.TemporaryDirectory(prefix="edgepack-k3export-")
    out = Path(keep.name) / "saved_model"
    shapes = _input_shapes(raw.config)
    xs = [np.random.default_rng(0).normal(size=[8] + [8 if d is None else int(d) for d in s]).astype(np.float32)
          for s in shapes]
    ref = Keras3Worker.shared().run(raw.path, xs, export=out, safe=not unsafe)
    loaded = tf().saved_model.load(str(out))  # keep it referenced: its variables die with it
    ys = loaded.serve(*xs) if len(xs) > 1 else loaded.serve(xs[0])
    ys = [np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]
    diff, scale = max_diff(ys, ref.outputs)
    return out, keep, {"from": f"Keras {raw.keras_version}", "exported": "Keras 3 model.export() (safe mode)",
                       "max_abs_diff": diff, "output_scale": scale, "samples": 8}


def _input_shapes(cfg: dict) -> list[list]:
    inner = cfg.get("config", {})
    found = []
    for entry in inner.get("layers", []):
        if entry.get("class_name") == "InputLayer":
            found.append((entry.get("config") or {}).get("batch_shape", [None])[1:])
    if not found:
        shape = (cfg.get("build_config") or {}).get("input_shape") or inner.get("build_input_shape")
        if shape:
            found.append(shape[1:])
    if not found:
        raise ModelLoadError("the Keras 3 model declares no input shape; build it with keras.Input(...)")
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def build_from_live(obj: Any, unsafe: bool):
    """(tf_keras model, translation report) for a live Keras 3 model, verified against it directly."""
    keras3 = sys.modules["keras"]
    source = f"the given Keras 3 model '{getattr(obj, 'name', '?')}'"
    cfg = json.loads(json.dumps(keras3.saving.serialize_keras_object(obj), default=_jsonable))
    scan_config(cfg, source, unsafe, extra_known=_keras3_known)
    tf_cfg, n_layers = translate_model(cfg, source)
    model = build_translated(tf_cfg, source)
    n_values = copy_live_weights(model, obj, source)
    xs = samples(model)
    feed = xs[0] if len(xs) == 1 else xs
    ys = obj(feed, training=False)
    ref = Reference([np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])])

    def rerun() -> Reference:
        from .keras3_child import _layer_model

        lm, names = _layer_model(obj)
        outs = lm(feed, training=False) if names else []
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return Reference(ref.outputs, names, [np.asarray(o) for o in outs])

    rep = _verdict(model, xs, ref, rerun, source, keras3.__version__)
    return model, {"from": f"Keras {keras3.__version__} (live model)", "layers": n_layers, "weights": n_values,
                   **rep, "reference": "the live Keras 3 model"}
