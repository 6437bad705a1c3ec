"""A Keras model made convertible for TFLite-Micro: a fixed batch of 1, and GELU in ops TFLM has.

Two things stop a Keras model that LiteRT runs from converting to ops TFLM has:

- **the open batch dimension.** A Dense on a sequence (``[batch, T, F]``) or a MultiHeadAttention converts
  with a dynamic batch to a ``Tensordot`` that computes the batch size at run time (``SHAPE``, ``GATHER``,
  ``REDUCE_PROD``, ``PACK``; TFLM has no ``REDUCE_PROD``). TFLM runs one sample at a time anyway, so the
  model is converted with a batch of 1 in its signature, as recurrent models already are
  (:func:`edgepack.convert.recurrent.concrete_function` traces ``[1, T, F]``): here the clone's
  ``Input`` declares the batch of 1, so every converter path (plain, per-op plans, the quantization
  debugger, ``--quantize auto``) sees the same static graph, and the shape arithmetic folds away.
- **GELU.** The converter emits a ``GELU`` op for exact (erf) GELU and ``POW`` for its tanh form; the
  pinned TFLM tree has neither kernel. GELU is computed instead with the tanh approximation written as
  ``x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))`` (equal to ``0.5 x (1 + tanh(...))``): ``MUL``, ``ADD``,
  ``LOGISTIC``. Against exact GELU it differs by at most :data:`GELU_TANH_MAX_ERROR` (at x = +-2.70);
  a GELU that was already the tanh form is unchanged. This is tflm-only and said in a warning line.
- **SELECT.** ``tf.where`` (``keras.ops.where``) converts to ``SELECT_V2``, but to ``SELECT`` when its three
  operands have one static shape (so with the batch of 1); the pinned TFLM tree has only ``SELECT_V2``
  (``kernels/select.cc``). On operands of one shape the two ops compute the same thing (``SELECT_V2`` only
  adds broadcasting, which its kernel skips for equal shapes), so :func:`select_v2` rewrites such a
  ``SELECT`` in the converted flatbuffer; a ``SELECT`` on other shapes (a rank-1 condition picking rows,
  which ``SELECT_V2`` would broadcast differently) is left for the ops check to refuse.

A model whose float conversion already has only ops TFLM has is returned as is (its bytes stay what
they were). Nothing here changes the caller's model: the rewrite is a clone with the same weights.

Example::

    model = for_tflm(model, warn=ctx.warn)   # then convert as usual
    data = select_v2(data)                    # the converted bytes: SELECT as SELECT_V2
"""

from __future__ import annotations

import math
from typing import Callable, Optional

GELU_TANH_MAX_ERROR = 4.73e-4  # max |0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))) - 0.5x(1+erf(x/sqrt 2))|
_A = 2.0 * math.sqrt(2.0 / math.pi)
_B = _A * 0.044715


def gelu_tanh(x, approximate: bool = True, name: Optional[str] = None):
    """GELU's tanh approximation in ops TFLM has: ``x * sigmoid(x * (A + B x^2))`` (``approximate`` ignored:
    the same function whatever the original asked for)."""
    from ..keras_compat import tf

    t = tf()
    return x * t.math.sigmoid(x * (_A + _B * (x * x)))


def _is_gelu(fn) -> bool:
    return getattr(fn, "__name__", "") == "gelu"


def _walk(model) -> list:
    out = []
    for layer in getattr(model, "layers", []):
        out += _walk(layer) if hasattr(layer, "layers") else [layer]
    return out


def _swap_gelu(model) -> list[str]:
    """Replace every GELU (layer activations, ``tf.nn.gelu`` op layers) in ``model`` by :func:`gelu_tanh`;
    the names of the layers changed."""
    changed = []
    for layer in _walk(model):
        if _is_gelu(getattr(layer, "activation", None)):
            layer.activation = gelu_tanh
            changed.append(layer.name)
        elif type(layer).__name__ == "TFOpLambda" and getattr(layer, "symbol", "") == "nn.gelu":
            layer.function = gelu_tanh
            changed.append(layer.name)
    return changed


def lacking_ops(model) -> tuple[set[str], set[str]]:
    """(ops TFLM lacks, all ops) of ``model``'s float conversion as it is (dynamic batch); empty sets for a
    recurrent model (the converter already gives it a batch of 1: :mod:`edgepack.convert.recurrent`) and for
    one that does not convert (the real conversion says why)."""
    from ..convert.flatbuffer import read_tflite
    from ..convert.recurrent import recurrent_layers
    from ..fdcapture import capture_fd2
    from ..keras_compat import tf
    from .ops import add_method

    if recurrent_layers(model):
        return set(), set()
    try:
        with capture_fd2():
            data = tf().lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception:  # noqa: BLE001 - the converter raises many unrelated types; the real conversion reports
        return set(), set()
    info = read_tflite(bytes(data))
    return {op.custom_code or op.op for op in info.ops if add_method(op) is None}, {op.op for op in info.ops}


def batch_one_clone(model):
    """A clone of ``model`` whose inputs have a fixed batch of 1, with the same weights."""
    from ..keras_compat import keras

    k = keras()
    inputs = [k.Input(batch_shape=(1, *x.shape[1:]), dtype=x.dtype, name=name)
              for x, name in zip(model.inputs, model.input_names)]
    out = k.models.clone_model(model, input_tensors=inputs if len(inputs) > 1 else inputs[0])
    out.set_weights(model.get_weights())
    return out


def for_tflm(model, warn: Optional[Callable[[str], None]] = None):
    """``model`` itself when its conversion has only ops TFLM has; else a batch-1 clone with GELU in its tanh
    form (``warn`` gets one line saying so). What TFLM still lacks after that is refused by the ops check."""
    lacking, ops = lacking_ops(model)
    if not lacking:
        return model
    clone = batch_one_clone(model)
    if "GELU" in ops or "POW" in lacking:
        changed = _swap_gelu(clone)
        if changed and warn is not None:
            warn(f"--target tflm: GELU in {', '.join(repr(n) for n in changed)} is computed with its tanh "
                 f"approximation (TFLM has no GELU kernel); it differs from exact GELU by at most "
                 f"{GELU_TANH_MAX_ERROR:.1e}")
    return clone


def select_v2(data: bytes) -> bytes:
    """``data`` with every ``SELECT`` whose condition, x, y and output have one shape run as ``SELECT_V2`` (the
    same results: see the module doc); ``data`` itself when it has no such op (same bytes in, same bytes out)."""
    from ..convert.flatbuffer import inline_buffers, tflite_schema
    from .memplan import pack_model

    s = tflite_schema()
    raw = s.Model.GetRootAs(data, 0)
    codes = [max(raw.OperatorCodes(i).BuiltinCode(), raw.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(raw.OperatorCodesLength())]
    if s.BuiltinOperator.SELECT not in codes:
        return data
    from tensorflow.lite.tools import flatbuffer_utils as fu  # tflite_schema() imported TensorFlow already

    model = fu.convert_bytearray_to_object(bytearray(inline_buffers(data)))
    new_code = None
    for sub in model.subgraphs:
        for op in sub.operators:
            if codes[op.opcodeIndex] != s.BuiltinOperator.SELECT or not _one_shape(sub, [*op.inputs, *op.outputs]):
                continue
            if new_code is None:
                oc = s.OperatorCodeT()
                oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.SELECT_V2
                x_type = sub.tensors[op.inputs[1]].type
                oc.version = 2 if x_type in (s.TensorType.INT8, s.TensorType.INT16) else 1
                model.operatorCodes.append(oc)
                new_code = len(model.operatorCodes) - 1
            op.opcodeIndex = new_code
            op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.SelectV2Options, s.SelectV2OptionsT()
    return data if new_code is None else pack_model(model)


def _one_shape(sub, tensors: list[int]) -> bool:
    """True when the tensors (a SELECT's 3 inputs and output) have one static shape."""
    shapes = [tuple(sub.tensors[t].shape if sub.tensors[t].shape is not None else ()) for t in tensors]
    sigs = [sub.tensors[t].shapeSignature for t in tensors]
    static = all(sig is None or all(d >= 0 for d in sig) for sig in sigs)
    return len(tensors) == 4 and static and len(set(shapes)) == 1


def prepare_source(src, model, warn: Optional[Callable[[str], None]] = None):
    """(source, compressed model) as ``--target tflm`` converts them: a Keras model through :func:`for_tflm`,
    a SavedModel through :func:`saved_model_for_tflm`, a .tflite as given."""
    from ..load import SavedModelSource

    if src.compressible:
        return src, for_tflm(model, warn)
    if isinstance(src, SavedModelSource):
        return saved_model_for_tflm(src, warn), model
    return src, model


def saved_model_for_tflm(src, warn: Optional[Callable[[str], None]] = None):
    """``src`` (a SavedModel source) itself when its float conversion has only ops TFLM has; else a copy reading
    a batch-1 re-export of its serving signature (:func:`edgepack.load.savedmodel.export_batch_one`, kept in a
    temporary folder alive with the copy), as :func:`for_tflm` does for Keras models."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from ..convert.flatbuffer import read_tflite
    from ..fdcapture import capture_fd2
    from ..keras_compat import tf
    from ..load.savedmodel import export_batch_one
    from .ops import add_method

    data = src.float_tflite  # the float conversion the job already made for its reference, if any
    if data is None:
        with capture_fd2():
            data = bytes(tf().lite.TFLiteConverter.from_saved_model(str(src.saved_model)).convert())
    lacking = {op.custom_code or op.op for op in read_tflite(data).ops if add_method(op) is None}
    if not lacking:
        return src
    keep = tempfile.TemporaryDirectory(prefix="edgepack-batch1-")
    dest = Path(keep.name) / "saved_model"
    try:
        exported = export_batch_one(src.saved_model, dest)
    except Exception:  # noqa: BLE001 - TF raises many types; then the ops check names what TFLM lacks
        exported = False
    if not exported:
        keep.cleanup()
        return src
    if warn is not None:
        warn(f"--target tflm: the SavedModel's serving signature is converted with a batch of 1 (with its open "
             f"batch it needs {', '.join(sorted(lacking))}, which TFLM lacks)")
    return dataclasses.replace(src, saved_model=dest, _keep=(src._keep, keep))  # noqa: SLF001 - its own field
