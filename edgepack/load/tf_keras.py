"""tf_keras (Keras 2) model files: ``.keras``, ``.h5`` and Keras SavedModel folders.

Everything the deserialiser would resolve is scanned first (:mod:`edgepack.load.scan`); the model
is then loaded with ``compile=False`` (its compile config, losses, metrics and optimizer are never
deserialised) and must be a graph network (Sequential or Functional).

Example::

    model = load_tf_keras(Path("model.h5"), unsafe=False)
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from ..errors import ModelLoadError
from . import savedmodel
from .formats import RawModel
from .scan import scan_all, scan_config


def scan_savedmodel(path: Path, unsafe: bool) -> list[dict]:
    """Scan every Keras metadata record of a SavedModel (``keras_metadata.pb`` and ``saved_model.pb``)."""
    records = savedmodel.keras_metadata(path)
    scan_all([r["metadata"] for r in records], str(path), unsafe)
    return records


def check_graph_network(model, source: str):
    """Refuse anything but a Sequential or Functional tf_keras model."""
    from ..keras_compat import keras

    k = keras()
    if not isinstance(model, k.Model):
        raise ModelLoadError(f"{source}: loaded object is not a Keras model")
    if not getattr(model, "_is_graph_network", False) and not isinstance(model, k.Sequential):
        raise ModelLoadError(
            f"{source}: subclassed models are not supported; rebuild it as a Sequential or Functional model")
    return model


def load_tf_keras(path: Path, unsafe: bool, raw: RawModel | None = None, scanned: bool = False):
    """Load a tf_keras file or Keras SavedModel folder (scanned first unless ``unsafe`` or ``scanned``)."""
    if raw is not None:
        scan_config(raw.config, str(path), unsafe)
    elif not scanned:
        scan_savedmodel(path, unsafe)
    from ..keras_compat import keras

    k = keras()
    try:
        try:
            model = k.models.load_model(str(path), compile=False, safe_mode=not unsafe)
        except TypeError as e:
            if "safe_mode" not in str(e):
                raise
            model = k.models.load_model(str(path), compile=False)  # loaders without the keyword
    except (OSError, ValueError, KeyError, ImportError, TypeError, AttributeError, IndexError, RuntimeError,
            zipfile.BadZipFile, zlib.error, EOFError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:300]
        raise ModelLoadError(f"{path}: cannot load the model ({first})") from e
    return check_graph_network(model, str(path))
