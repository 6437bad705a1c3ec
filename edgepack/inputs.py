"""What a package job starts from: the model (a file, a folder or a live model) and the data
(paths or numpy arrays), with the figures the pipeline needs of each whatever its kind.

A Keras model (tf_keras, or Keras 3 translated) takes every step; a SavedModel without a
Keras config (Keras 3 ``export()``, ``tf.saved_model.save``) converts with every post-training
mode; a ``.tflite`` is packaged as given (conversion skipped). The float reference every build
is verified against is the Keras model, or the SavedModel's own float conversion.

Example::

    src = load_source(Path("exported_model"))          # kind "saved_model"
    shape = input_shape(src)                           # [32, 32, 3]
    model_inputs(src)                                  # [("image", [32, 32, 3]), ("meta", [3])]
    out = output_choice(src, None)                     # the classification output (the first)
    ref = float_reference(src, x, out)                 # its float outputs to verify against
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import DataError, RecipeError
from .fsutil import sha256_bytes, sha256_path
from .outputs import OutputChoice, choose, output_names


def is_path(obj: Any) -> bool:
    return isinstance(obj, (str, Path))


def source_name(model: Any, src) -> tuple[str, str]:
    """(file name, stem) for the report and generated identifiers."""
    if is_path(model):
        p = Path(model)
        return p.name, p.stem
    name = str(getattr(src.model, "name", None) or getattr(model, "name", None) or "model")
    return name, name


def _signature_inputs(tflite: bytes) -> list[tuple[str, list[int]]]:
    from .convert.flatbuffer import read_tflite
    from .samples import tensor_input_name

    info = read_tflite(tflite)
    return [(tensor_input_name(info.tensors[i].name), [int(d) for d in info.tensors[i].shape[1:]])
            for i in info.inputs]


def float_tflite(src) -> Optional[bytes]:
    """The float conversion of a SavedModel source (cached on the source), else None."""
    if not hasattr(src, "float_tflite"):
        return None
    if src.float_tflite is None:
        from .convert.tflite import convert
        from .quantize.config import QuantizeConfig

        src.float_tflite = convert(src.convertible(), QuantizeConfig(mode="none"))
    return src.float_tflite


class _KerasKind:
    """What the job reads of a Keras model: its own input/output shapes, its own predictions."""

    @staticmethod
    def inputs(src) -> list[tuple[str, list[int]]]:
        m = src.model
        shapes = m.input_shape if isinstance(m.input_shape, list) else [m.input_shape]
        names = list(getattr(m, "input_names", None) or [t.name.split(":")[0] for t in m.inputs])
        return [(str(n), [int(d) for d in s[1:]]) for n, s in zip(names, shapes)]

    @staticmethod
    def outputs(src) -> list[str]:
        m = src.model
        return [str(n) for n in (getattr(m, "output_names", None) or [t.name.split(":")[0].split("/")[0]
                                                                      for t in m.outputs])]

    @staticmethod
    def output_size(src, choice: OutputChoice) -> int:
        shape = src.model.output_shape
        return int(np.prod((shape[choice.index] if isinstance(shape, list) else shape)[1:]))

    @staticmethod
    def float_reference(src, x, choice: OutputChoice) -> Optional[np.ndarray]:
        from .verify.accuracy import keras_predict

        pred = keras_predict(src.model, x)
        return pred[choice.index] if isinstance(pred, list) else pred


class _FlatbufferKind:
    """What the job reads of a .tflite (as given) or a SavedModel (its float conversion): the signature."""

    @staticmethod
    def tflite(src) -> bytes:
        return src.given_tflite if src.given_tflite is not None else float_tflite(src)

    @classmethod
    def inputs(cls, src) -> list[tuple[str, list[int]]]:
        return _signature_inputs(cls.tflite(src))

    @classmethod
    def outputs(cls, src) -> list[str]:
        return output_names(cls.tflite(src))

    @classmethod
    def output_size(cls, src, choice: OutputChoice) -> int:
        from .convert.flatbuffer import read_tflite

        info = read_tflite(cls.tflite(src))
        return int(np.prod(info.tensors[info.outputs[choice.index]].shape[1:]))

    @staticmethod
    def float_reference(src, x, choice: OutputChoice) -> Optional[np.ndarray]:
        if src.given_tflite is not None:
            return None  # a .tflite: nothing to compare with
        from .runtime import LiteRT

        return LiteRT(float_tflite(src)).predict(x, output=choice.index)


# SourceModel kind -> how the job reads it (edgepack.load's KerasSource, SavedModelSource, TfliteSource)
KINDS = {"keras": _KerasKind, "saved_model": _FlatbufferKind, "tflite": _FlatbufferKind}


def model_inputs(src) -> list[tuple[str, list[int]]]:
    """(name, shape without the batch axis) of each model input, in the model's input order.

    Names are the Keras input layer names (a SavedModel's or .tflite's signature names); data
    files of a several-input model hold one array per name (or ``x0``, ``x1``, ... in this order).
    """
    return KINDS[src.kind].inputs(src)


def input_shape(src) -> list[int]:
    """The (first) model input's shape without the batch axis."""
    return model_inputs(src)[0][1]


def output_choice(src, wanted: Optional[str]) -> OutputChoice:
    """The model's outputs and the classification output (the one labels and the accuracy gate apply to):
    ``wanted`` by name (``--output``, recipe ``data.output``), else the first. A Keras model's outputs are
    named and ordered as in Keras (``model.output_names``); a .tflite's or SavedModel's by its (converted)
    signature, in tensor order, so its output 0 stays the default. See :mod:`edgepack.outputs`."""
    return choose(KINDS[src.kind].outputs(src), wanted)


def output_size(src, choice: Optional[OutputChoice] = None) -> int:
    """Values per sample of the classification output (default: the first): the number of classes of a
    classifier."""
    return KINDS[src.kind].output_size(src, choice or output_choice(src, None))


def float_reference(src, x, choice: Optional[OutputChoice] = None) -> Optional[np.ndarray]:
    """Float values of the classification output (default: the first) the build is verified against;
    None for a .tflite (nothing to compare with)."""
    return KINDS[src.kind].float_reference(src, x, choice or output_choice(src, None))


def check_steps(src, steps, quantize_given: bool) -> None:
    """Compression steps need a Keras model; a .tflite also takes no quantize mode.

    A model with several inputs takes every step (its data is one array per input); what a step cannot
    do on a given model it refuses in its own ``preflight``."""
    if steps and not src.compressible:
        names = ", ".join(p.name for p in steps)
        raise RecipeError(f"recipe steps ({names}) change a Keras model, but {src.reason}; give the Keras "
                          "model file (.keras/.h5/SavedModel with Keras metadata), or drop the steps")
    if src.given_tflite is not None and quantize_given:
        raise RecipeError("a .tflite input is packaged as given: --quantize/--io (and recipe quantize rules) "
                          "need the Keras model or SavedModel it was converted from")


def dataset(data: Any, limit: Optional[int], image_size, what: str, inputs: Optional[list[str]] = None):
    """A :class:`edgepack.data.Dataset` from a path, an array of samples, or an (x, y) pair.

    ``inputs``: the model's input names; with several, the samples are a list of arrays (input
    order) or a dict by input name, alone or as the x of an (x, y) pair."""
    from .data import from_arrays, load_dataset

    if data is None:
        return None
    if is_path(data):
        return load_dataset(data, limit=limit, image_size=image_size, inputs=inputs)
    if isinstance(data, tuple) and len(data) == 2:
        return from_arrays(data[0], data[1], f"{what} arrays", limit, inputs)
    if isinstance(data, np.ndarray) or (inputs and len(inputs) > 1 and isinstance(data, (list, dict))):
        return from_arrays(data, None, f"{what} array", limit, inputs)
    raise DataError(f"{what} data: give a path, a numpy array of samples or an (x, y) pair, "
                    f"not {type(data).__name__}")


def fingerprint(obj: Any, src=None) -> dict:
    """Provenance of one input: path and SHA-256, or the SHA-256 of an array's / live model's content."""
    if is_path(obj):
        return {"path": str(obj), "sha256": sha256_path(Path(obj))}
    if isinstance(obj, tuple):
        return {"path": "(x, y) arrays", "sha256": sha256_bytes(b"".join(_array_bytes(a) for a in obj))}
    if isinstance(obj, (list, dict)):
        return {"path": "arrays", "sha256": sha256_bytes(_array_bytes(obj))}
    if isinstance(obj, np.ndarray):
        return {"path": "array", "sha256": sha256_bytes(np.ascontiguousarray(obj).tobytes())}
    model = getattr(src, "model", None) or obj
    weights = b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())
    return {"path": f"live model '{getattr(model, 'name', '?')}'", "sha256": sha256_bytes(weights)}


def _array_bytes(obj: Any) -> bytes:
    """The bytes of an array, or of a list / dict (by sorted key) of arrays."""
    if isinstance(obj, dict):
        return b"".join(_array_bytes(obj[k]) for k in sorted(obj))
    if isinstance(obj, list):
        return b"".join(_array_bytes(a) for a in obj)
    return np.ascontiguousarray(obj).tobytes()
