"""Loading Keras models safely.

Supported: tf_keras (Keras 2) ``.keras`` files, ``.h5`` files and Keras
SavedModel folders. The model's config is read and checked *before* any
deserialisation, so a ``Lambda`` layer or an unknown (custom) class is refused
without running its code unless ``unsafe=True``.

Example::

    model = load_model("examples/mnist/model.h5")
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ModelLoadError

UNSAFE_CLASSES = {"Lambda", "TFOpLambda", "SlicingOpLambda"}


def _walk_classes(cfg: Any) -> Iterator[tuple[str, str]]:
    """Yield (class_name, layer name) for every nested layer config."""
    if isinstance(cfg, dict):
        if "class_name" in cfg and isinstance(cfg.get("config"), dict):
            yield cfg["class_name"], str(cfg["config"].get("name", "?"))
        for v in cfg.values():
            yield from _walk_classes(v)
    elif isinstance(cfg, list):
        for v in cfg:
            yield from _walk_classes(v)


def _known_classes() -> set[str]:
    from .keras_compat import keras

    k = keras()
    names = {n for n in dir(k.layers) if not n.startswith("_")}
    names |= {"Functional", "Sequential", "Model", "InputLayer"}
    names |= {n for n in dir(k.initializers)} | {n for n in dir(k.regularizers)}
    names |= {n for n in dir(k.constraints)}
    return names


def check_config(cfg: Any, source: str, unsafe: bool) -> None:
    """Refuse Lambda layers and custom classes in a model config unless ``unsafe``."""
    if unsafe:
        return
    known = _known_classes()
    for cls, name in _walk_classes(cfg):
        if cls in UNSAFE_CLASSES:
            raise ModelLoadError(
                f"{source}: layer '{name}' is a {cls}, which runs arbitrary Python code when "
                "loaded; pass --unsafe if you trust this file"
            )
        if cls not in known:
            raise ModelLoadError(
                f"{source}: layer '{name}' has custom class '{cls}', which edgepack cannot "
                "load without running its code; pass --unsafe and make the class importable"
            )


def _read_keras_zip(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("metadata.json"))
            cfg = json.loads(z.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as e:
        raise ModelLoadError(f"{path}: not a valid .keras file ({e}); re-save it with model.save()") from e
    version = str(meta.get("keras_version", "?"))
    if not version.startswith("2."):
        raise ModelLoadError(
            f"{path}: saved by Keras {version}; edgepack supports tf_keras (Keras 2) models: "
            "re-save with tf_keras, or export a SavedModel/.h5 from it"
        )
    return cfg


def _read_h5_config(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as e:
        raise ModelLoadError(f"{path}: not a readable HDF5 model file ({e})") from e
    if raw is None:
        raise ModelLoadError(
            f"{path}: holds weights only, no model config; save the whole model with model.save()"
        )
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw)


def _read_savedmodel_config(path: Path) -> Any:
    meta = path / "keras_metadata.pb"
    if not meta.exists():
        return None  # plain SavedModel: no Keras config, only TF graphs (no Python code)
    from .keras_compat import tf

    tf()
    from tensorflow.python.keras.protobuf import saved_metadata_pb2  # type: ignore

    proto = saved_metadata_pb2.SavedMetadata()
    proto.ParseFromString(meta.read_bytes())
    out = []
    for node in proto.nodes:
        try:
            out.append(json.loads(node.metadata))
        except json.JSONDecodeError:
            continue
    return out


def read_config(path: Path) -> Any:
    """Return the model's JSON config without deserialising any layer."""
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ModelLoadError(f"{path}: a folder without saved_model.pb is not a SavedModel")
        return _read_savedmodel_config(path)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return _read_keras_zip(path)
    if suffix in (".h5", ".hdf5"):
        return _read_h5_config(path)
    raise ModelLoadError(
        f"{path}: unknown model format '{suffix}'; give a tf_keras .keras or .h5 file or a SavedModel folder"
    )


def load_model(path: str | Path, unsafe: bool = False):
    """Load a tf_keras model, refusing unsafe content unless ``unsafe``."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file or folder")
    cfg = read_config(path)
    if cfg is not None:
        check_config(cfg, str(path), unsafe)
    from .keras_compat import keras

    k = keras()
    try:
        model = k.models.load_model(str(path), compile=False, safe_mode=not unsafe)
    except TypeError:
        model = k.models.load_model(str(path), compile=False)
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ModelLoadError(f"{path}: cannot load the model ({str(e).splitlines()[0]})") from e
    if not isinstance(model, k.Model):
        raise ModelLoadError(f"{path}: loaded object is not a Keras model")
    if not getattr(model, "_is_graph_network", False) and not isinstance(model, k.Sequential):
        raise ModelLoadError(
            f"{path}: subclassed models are not supported; rebuild it as a Sequential or Functional model"
        )
    return model


def load_any(path: str | Path, unsafe: bool = False):
    """Return ("tflite", bytes) for a .tflite file, else ("keras", model)."""
    path = Path(path)
    if path.suffix.lower() == ".tflite":
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such .tflite file")
        return "tflite", path.read_bytes()
    return "keras", load_model(path, unsafe=unsafe)
