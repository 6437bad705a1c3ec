"""Model sources: tf_keras files, Keras 3 files (translated, verified), SavedModels, .tflite, live models.

Nothing from a file runs before the safety scan (:mod:`edgepack.load.scan`) accepted its config:

* tf_keras ``.keras`` / ``.h5`` / Keras SavedModel -> the tf_keras model (compile config ignored);
* Keras 3 ``.keras`` / ``.h5`` -> translated into an equivalent tf_keras model
  (:mod:`edgepack.load.keras3`), weights copied with h5py, and proven equivalent on every load by
  running the original in Keras 3 itself (a child process, safe mode); a Keras 3 layer with no
  tf_keras twin -> Keras 3's own SavedModel export, conversion-only;
* a SavedModel with no Keras config (Keras 3 ``export()``, ``tf.saved_model.save``) -> conversion-only;
* ``.tflite`` -> the bytes.

Example::

    src = load_source("model.keras")
    src.kind, src.framework, src.translation["max_abs_diff"]
    model = load_model("model.h5")            # always a tf_keras model (or a clear error)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..errors import ModelLoadError
from .formats import RawModel, model_format, read_h5, read_keras_zip

MAX_TFLITE_BYTES = 2 << 30


@dataclass
class SourceModel:
    """What was loaded: one of the three kinds below, each a class. ``kind`` names it in report.json."""

    kind: ClassVar[str]
    compressible: ClassVar[bool] = False  # whether compression steps can change it (a tf_keras model)

    format: str  # keras_zip | h5 | savedmodel | tflite | live
    framework: str  # tf_keras | keras3 | tensorflow | tflite
    path: Optional[Path] = None
    translation: Optional[dict] = None
    reason: Optional[str] = None  # why a non-Keras kind cannot be compressed
    _keep: Any = field(default=None, repr=False)  # the temporary folder of an export, alive with this object

    model: ClassVar[Any] = None  # the tf_keras model (KerasSource only)
    given_tflite: ClassVar[Optional[bytes]] = None  # bytes packaged as given (TfliteSource only)

    def convertible(self, model: Any = None) -> Any:
        """What the TFLite converter converts: ``model`` (the compressed Keras model) or this source's own
        model or SavedModel folder; None for a .tflite (packaged as given)."""
        return None

    def report(self) -> dict:
        """The ``report["source"]`` section."""
        out: dict[str, Any] = {"kind": self.kind, "format": self.format, "framework": self.framework}
        if self.translation is not None:
            out["translation"] = self.translation
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class KerasSource(SourceModel):
    """A tf_keras model (from a tf_keras file, a translated Keras 3 file or a live model): every step works."""

    kind: ClassVar[str] = "keras"
    compressible: ClassVar[bool] = True
    model: Any = None

    def convertible(self, model: Any = None) -> Any:
        return self.model if model is None else model


@dataclass
class SavedModelSource(SourceModel):
    """A SavedModel folder the TFLite converter reads from its serving signature; not compressible."""

    kind: ClassVar[str] = "saved_model"
    saved_model: Optional[Path] = None
    # its float .tflite, converted once on first use (edgepack.inputs)
    float_tflite: Optional[bytes] = field(default=None, repr=False)

    def convertible(self, model: Any = None) -> Any:
        return self.saved_model


@dataclass
class TfliteSource(SourceModel):
    """A .tflite file: packaged as given (no steps, no quantize mode)."""

    kind: ClassVar[str] = "tflite"
    tflite: bytes = b""

    @property
    def given_tflite(self) -> bytes:  # type: ignore[override]
        return self.tflite


def _framework(raw: RawModel) -> str:
    if raw.keras_version.startswith("3."):
        return "keras3"
    if raw.keras_version.startswith("2."):
        return "tf_keras"
    text = json.dumps(raw.config)
    return "keras3" if '"DTypePolicy"' in text or '"batch_shape"' in text else "tf_keras"


def read_config(path: Path) -> Any:
    """The model's JSON config without deserialising anything (a SavedModel: its Keras metadata records)."""
    path = Path(path)
    fmt = model_format(path)
    if fmt == "savedmodel":
        from .savedmodel import keras_metadata

        return [r["metadata"] for r in keras_metadata(path)] or None
    if fmt == "tflite":
        raise ModelLoadError(f"{path}: a .tflite file has no Keras config")
    return (read_keras_zip(path) if fmt == "keras_zip" else read_h5(path)).config


def _read_tflite(path: Path) -> bytes:
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such .tflite file")
    size = path.stat().st_size
    if size > MAX_TFLITE_BYTES:
        raise ModelLoadError(f"{path}: {size:,} bytes is more than the 2 GiB a .tflite flatbuffer can hold")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier); give a .tflite from the converter")
    return data


def _savedmodel_source(path: Path, unsafe: bool) -> SourceModel:
    from . import savedmodel
    from .tf_keras import load_tf_keras, scan_savedmodel

    records = scan_savedmodel(path, unsafe)
    if savedmodel.is_keras_savedmodel(records):
        try:
            model = load_tf_keras(path, unsafe, None, scanned=True)
            return KerasSource("savedmodel", "tf_keras", path, model=model)
        except ModelLoadError as e:
            if "subclassed" not in str(e):
                raise
            reason = "a subclassed Keras model: its TF graph converts, its Python class is not rebuilt"
    else:
        reason = "a SavedModel without a Keras config (e.g. Keras 3 export() or tf.saved_model.save)"
    savedmodel.check_servable(path)
    return SavedModelSource("savedmodel", "tensorflow", path, saved_model=path,
                       reason=reason + "; compression steps need a Keras .keras/.h5 file")


def _keras3_file(raw: RawModel, unsafe: bool, allow_export: bool) -> SourceModel:
    from .keras3 import NoTwinError
    from .keras3_build import build_from_file, export_conversion_only

    try:
        model, translation = build_from_file(raw, unsafe)
    except NoTwinError as e:
        if not allow_export:
            raise
        saved, keep, translation = export_conversion_only(raw, unsafe)
        return SavedModelSource(raw.format, "keras3", raw.path, saved_model=saved,
                           translation=translation,
                           reason=f"layer '{e.layer}' is a Keras 3 {e.cls}{' with ' + e.detail if e.detail else ''} with no "
                                  "tf_keras twin: packaged from "
                                  "Keras 3's SavedModel export; compression steps need tf_keras layers", _keep=keep)
    return KerasSource(raw.format, "keras3", raw.path, model=model, translation=translation)


def _live(obj: Any, unsafe: bool) -> SourceModel:
    mod = type(obj).__module__
    if mod.startswith("tf_keras"):
        from .tf_keras import check_graph_network

        return KerasSource("live", "tf_keras", model=check_graph_network(obj, "the given model"))
    if mod.startswith("keras"):
        from .keras3_build import build_from_live

        model, translation = build_from_live(obj, unsafe)
        return KerasSource("live", "keras3", model=model, translation=translation)
    raise ModelLoadError(f"cannot load a {type(obj).__name__}: give a model path, a tf_keras or Keras 3 Model")


def _load(source: Any, unsafe: bool, allow_export: bool) -> SourceModel:
    if not isinstance(source, (str, Path)):
        return _live(source, unsafe)
    path = Path(source)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file or folder")
    fmt = model_format(path)
    if fmt == "tflite":
        return TfliteSource("tflite", "tflite", path, tflite=_read_tflite(path),
                           reason="already converted: steps and quantize modes that need a Keras model do not apply")
    if fmt == "savedmodel":
        return _savedmodel_source(path, unsafe)
    raw = read_keras_zip(path) if fmt == "keras_zip" else read_h5(path)
    if _framework(raw) == "keras3":
        return _keras3_file(raw, unsafe, allow_export)
    from .tf_keras import load_tf_keras

    return KerasSource(fmt, "tf_keras", path, model=load_tf_keras(path, unsafe, raw))


def load_source(source: Any, unsafe: bool = False) -> SourceModel:
    """Load a model file/folder or a live tf_keras / Keras 3 model and say what it is.

    Example::

        src = load_source(Path("model.keras"))
        if src.compressible:              # a KerasSource
            model = src.model             # tf_keras
        else:                             # a SavedModelSource or TfliteSource
            print(src.reason)             # src.convertible(): the SavedModel folder the converter reads
    """
    return _load(source, unsafe, allow_export=True)


def load_model(source: Any, unsafe: bool = False):
    """A tf_keras model from a tf_keras or Keras 3 file, a Keras SavedModel or a live model.

    Example::

        model = load_model("examples/mnist/model.h5")
    """
    src = _load(source, unsafe, allow_export=False)
    if not src.compressible:
        raise ModelLoadError(f"{src.path or 'the model'}: {src.reason}")
    return src.model


def load_any(path: str | Path, unsafe: bool = False):
    """Return ("tflite", bytes) for a .tflite file, else ("keras", tf_keras model)."""
    src = load_source(path, unsafe)
    if src.given_tflite is not None:
        return "tflite", src.given_tflite
    if not src.compressible:
        raise ModelLoadError(f"{src.path}: {src.reason}")
    return "keras", src.model


__all__ = ["SourceModel", "KerasSource", "SavedModelSource", "TfliteSource", "load_source", "load_model", "load_any", "read_config"]
