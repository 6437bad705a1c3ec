"""Reading a model file's config and Keras version without deserialising anything.

Sizes are capped before reading (a ``config.json`` that inflates to gigabytes is refused), and every
malformed file is one :class:`ModelLoadError` line.

Example::

    raw = read_raw(Path("model.keras"))
    raw.format, raw.keras_version, raw.config["class_name"]
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelLoadError

MAX_CONFIG_BYTES = 64 << 20  # config.json / model_config: far above any real model's
MAX_METADATA_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 4 << 30


@dataclass
class RawModel:
    """A model file's undeserialised content: ``format`` is "keras_zip", "h5" or "savedmodel"."""

    path: Path
    format: str
    keras_version: str
    config: Any

    @property
    def is_keras3(self) -> bool:
        return self.keras_version.startswith("3.")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _json(data: bytes | str, where: str, what: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{where}: {what} is not valid JSON ({e}); re-save the model with model.save()") from e


def _member(z: zipfile.ZipFile, name: str, cap: int, path: Path) -> bytes:
    try:
        info = z.getinfo(name)
    except KeyError:
        raise ModelLoadError(f"{path}: not a valid .keras file (no {name} inside); re-save it with model.save()") \
            from None
    if info.file_size > cap:
        raise ModelLoadError(f"{path}: {name} declares {info.file_size:,} bytes (limit {cap:,}); "
                             "not a model edgepack reads")
    with z.open(info) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise ModelLoadError(f"{path}: {name} inflates past {cap:,} bytes; not a model edgepack reads")
    return data


def _model_dict(cfg: Any, where: str) -> dict:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("class_name"), str) or not isinstance(cfg.get("config"),
                                                                                                   dict):
        kind = type(cfg).__name__ if not isinstance(cfg, list) else "a JSON list"
        raise ModelLoadError(f"{where}: the model config is {kind}, not a Keras model config "
                             "({'class_name': ..., 'config': {...}}); re-save the model with model.save()")
    return cfg


def read_keras_zip(path: Path) -> RawModel:
    """``metadata.json`` + ``config.json`` of a ``.keras`` zip (tf_keras or Keras 3)."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = _json(_member(z, "metadata.json", MAX_METADATA_BYTES, path), str(path), "metadata.json")
            cfg = _json(_member(z, "config.json", MAX_CONFIG_BYTES, path), str(path), "config.json")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, NotImplementedError,
            RuntimeError) as e:
        raise ModelLoadError(f"{path}: not a valid .keras file ({_first_line(e)}); re-save it with model.save()") from e
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: metadata.json is not a JSON object; re-save the model with model.save()")
    return RawModel(path, "keras_zip", str(meta.get("keras_version", "?")), _model_dict(cfg, f"{path} config.json"))


def read_keras_zip_weights(path: Path) -> bytes:
    """The ``model.weights.h5`` member of a ``.keras`` zip, as bytes (capped)."""
    try:
        with zipfile.ZipFile(path) as z:
            return _member(z, "model.weights.h5", MAX_WEIGHTS_BYTES, path)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        raise ModelLoadError(f"{path}: cannot read model.weights.h5 ({_first_line(e)}); "
                             "the file is truncated or corrupt") from e


def _attr_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def read_h5(path: Path) -> RawModel:
    """``model_config`` and ``keras_version`` attributes of an HDF5 model file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = _attr_text(f.attrs.get("keras_version"))
            if version is None and "model_weights" in f:
                version = _attr_text(f["model_weights"].attrs.get("keras_version"))
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise ModelLoadError(f"{path}: not a readable HDF5 model file ({_first_line(e)})") from e
    if raw is None:
        raise ModelLoadError(f"{path}: holds weights only, no model config; save the whole model with model.save()")
    if not isinstance(raw, (bytes, str)):
        raise ModelLoadError(f"{path}: model_config is a {type(raw).__name__}, not JSON text; re-save the model")
    text = _attr_text(raw)
    if len(text) > MAX_CONFIG_BYTES:
        raise ModelLoadError(f"{path}: model_config of {len(text):,} bytes is too large")
    cfg = _json(text, str(path), "model_config")
    return RawModel(path, "h5", version or "?", _model_dict(cfg, f"{path} model_config"))


def model_format(path: Path) -> str:
    """"keras_zip", "h5", "savedmodel" or "tflite" from the path (refusing anything else)."""
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"{path}: a folder without saved_model.pb is not a SavedModel")
        return "savedmodel"
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return "keras_zip"
    if suffix in (".h5", ".hdf5"):
        return "h5"
    if suffix == ".tflite":
        return "tflite"
    raise ModelLoadError(f"{path}: unknown model format '{suffix}'; give a .keras or .h5 file (tf_keras or Keras 3), "
                         "a SavedModel folder or a .tflite file")
