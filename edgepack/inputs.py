"""What a package job starts from: the model (a file, a folder or a live model) and the data
(paths or numpy arrays), with the figures the pipeline needs of each whatever its kind.

A Keras model (tf_keras, or Keras 3 translated) takes every step; a SavedModel without a
Keras config (Keras 3 ``export()``, ``tf.saved_model.save``) converts with every post-training
mode; a ``.tflite`` is packaged as given (conversion skipped). The float reference every build
is verified against is the Keras model, or the SavedModel's own float conversion.

Example::

    src = load_source(Path("exported_model"))          # kind "saved_model"
    shape = input_shape(src)                           # [32, 32, 3]
    ref = float_reference(src, x)                      # float outputs to verify against
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import DataError, RecipeError
from .fsutil import sha256_bytes, sha256_path


def is_path(obj: Any) -> bool:
    return isinstance(obj, (str, Path))


def source_name(model: Any, src) -> tuple[str, str]:
    """(file name, stem) for the report and generated identifiers."""
    if is_path(model):
        p = Path(model)
        return p.name, p.stem
    name = str(getattr(src.model, "name", None) or getattr(model, "name", None) or "model")
    return name, name


def _signature_shape(tflite: bytes) -> list[int]:
    from .convert.flatbuffer import read_tflite

    info = read_tflite(tflite)
    if len(info.inputs) != 1:
        raise RecipeError(f"the model has {len(info.inputs)} inputs; edgepack packages single-input models")
    return [int(d) for d in info.tensors[info.inputs[0]].shape[1:]]


def float_tflite(src) -> Optional[bytes]:
    """The float conversion of a SavedModel source (cached on the source), else None."""
    if src.kind != "saved_model":
        return None
    if src.float_tflite is None:
        from .convert.tflite import convert
        from .quantize.config import QuantizeConfig

        src.float_tflite = convert(src.saved_model, QuantizeConfig(mode="none"))
    return src.float_tflite


def input_shape(src) -> list[int]:
    """The model's input shape without the batch axis."""
    if src.kind == "keras":
        shape = src.model.input_shape
        if isinstance(shape, list):
            raise RecipeError(f"the model has {len(shape)} inputs; edgepack packages single-input models")
        return [int(d) for d in shape[1:]]
    return _signature_shape(src.tflite if src.kind == "tflite" else float_tflite(src))


def output_size(src) -> int:
    """Values per sample of the (first) output: the number of classes of a classifier."""
    if src.kind == "keras":
        return int(np.prod(src.model.output_shape[1:]))
    from .convert.flatbuffer import read_tflite

    info = read_tflite(src.tflite if src.kind == "tflite" else float_tflite(src))
    return int(np.prod(info.tensors[info.outputs[0]].shape[1:]))


def float_reference(src, x: np.ndarray) -> Optional[np.ndarray]:
    """Float outputs the build is verified against; None for a .tflite (nothing to compare with)."""
    if src.kind == "keras":
        from .verify.accuracy import keras_predict

        return keras_predict(src.model, x)
    if src.kind == "saved_model":
        from .runtime import LiteRT

        return LiteRT(float_tflite(src)).predict(x)
    return None


def check_steps(src, steps, quantize_given: bool) -> None:
    """Compression steps need a Keras model; a .tflite also takes no quantize mode."""
    if steps and not src.compressible:
        names = ", ".join(p.name for p in steps)
        raise RecipeError(f"recipe steps ({names}) change a Keras model, but {src.reason}; give the Keras "
                          "model file (.keras/.h5/SavedModel with Keras metadata), or drop the steps")
    if src.kind == "tflite" and quantize_given:
        raise RecipeError("a .tflite input is packaged as given: --quantize/--io (and recipe quantize rules) "
                          "need the Keras model or SavedModel it was converted from")


def dataset(data: Any, limit: Optional[int], image_size, what: str):
    """A :class:`edgepack.data.Dataset` from a path, an array of samples, or an (x, y) pair."""
    from .data import from_arrays, load_dataset

    if data is None:
        return None
    if is_path(data):
        return load_dataset(data, limit=limit, image_size=image_size)
    if isinstance(data, tuple) and len(data) == 2:
        return from_arrays(data[0], data[1], f"{what} arrays", limit)
    if isinstance(data, np.ndarray):
        return from_arrays(data, None, f"{what} array", limit)
    raise DataError(f"{what} data: give a path, a numpy array of samples or an (x, y) pair, "
                    f"not {type(data).__name__}")


def fingerprint(obj: Any, src=None) -> dict:
    """Provenance of one input: path and SHA-256, or the SHA-256 of an array's / live model's content."""
    if is_path(obj):
        return {"path": str(obj), "sha256": sha256_path(Path(obj))}
    if isinstance(obj, tuple):
        return {"path": "(x, y) arrays", "sha256": sha256_bytes(b"".join(np.ascontiguousarray(a).tobytes()
                                                                        for a in obj))}
    if isinstance(obj, np.ndarray):
        return {"path": "array", "sha256": sha256_bytes(np.ascontiguousarray(obj).tobytes())}
    model = getattr(src, "model", None) or obj
    weights = b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())
    return {"path": f"live model '{getattr(model, 'name', '?')}'", "sha256": sha256_bytes(weights)}
