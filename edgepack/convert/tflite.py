"""Keras model -> TFLite flatbuffer bytes with the TFLite converter's quantization modes.

Per-op precision (plans, recipe rules) is the quantize stage's:
:func:`edgepack.quantize.apply.quantize_model` routes there or here.

Example::

    data = convert(model, QuantizeConfig(mode="int8", io="int8"), calibration=x)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ConversionError, DataError
from ..fdcapture import capture_fd2
from ..samples import Inputs

_IO_TYPES = {"int8": "int8", "uint8": "uint8", "int16": "int16"}


def representative_dataset(x: "np.ndarray | Inputs", dtypes: Optional[list] = None):
    """A converter representative dataset over the samples in ``x`` (one per step).

    ``dtypes``: each input's numpy dtype in the model's input order (default float32), so token ids of an
    int32 input stay integers. A several-input model's samples (:class:`~edgepack.samples.Inputs`) go as
    a dict by input name: the converter matches them to its signature's inputs by name (it sorts the
    signature's inputs by name, so a list in the model's input order could feed the wrong tensor)."""

    def cast(a: np.ndarray, k: int) -> np.ndarray:
        return a.astype(dtypes[k] if dtypes else np.float32)

    def gen():
        for i in range(len(x)):
            if isinstance(x, Inputs):
                yield {name: cast(a[i : i + 1], k) for k, (name, a) in enumerate(zip(x.names, x.arrays))}
            else:
                yield [cast(x[i : i + 1], 0)]

    return gen


def convert(
    model,
    quant,
    calibration: Optional[np.ndarray] = None,
    dense_per_channel: bool = True,
) -> bytes:
    """Convert a tf_keras model with the quantization in ``quant`` (a QuantizeConfig).

    ``dense_per_channel`` is the target's default for FULLY_CONNECTED weights
    (``quant.dense_per_channel`` wins when set).
    """
    if getattr(quant, "rules", None):
        raise ConversionError("per-op quantize rules are applied by edgepack.quantize.apply.quantize_model, "
                              "not by the plain converter")
    if quant.mode != "none" and _is_recurrent(model):
        from .recurrent import may_loop, refuse_quantized_loop, while_loops

        # The converter crashes the process quantizing a WHILE loop: look at the float graph first.
        if may_loop(model) and while_loops(_run(make_converter(model, _float_like(quant)), "none")):
            refuse_quantized_loop(model, quant.mode)
    if quant.mode != "none" and isinstance(model, (str, Path)):
        from .recurrent import while_loops

        if while_loops(_run(make_converter(model, _float_like(quant)), "none")):  # same crash, a SavedModel's loop
            raise ConversionError(
                f"the SavedModel's graph has a WHILE loop (a recurrent layer), which the TFLite converter cannot "
                f"quantize ({quant.mode}); give the Keras model file (.keras/.h5: its LSTM converts to a fused op, "
                "short GRU/SimpleRNN unroll) or convert with --quantize none")
    return _run(make_converter(model, quant, calibration, dense_per_channel), quant.mode)


def _run(conv, mode: str) -> bytes:
    try:
        with capture_fd2():
            data = conv.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many unrelated types
        msg = str(e).strip().splitlines()
        if "TensorListReserve" in str(e):  # a recurrent layer traced with a dynamic batch (SavedModel signature)
            raise ConversionError(
                f"TFLite conversion ({mode}) failed: a recurrent layer in a signature with a dynamic batch "
                "('tf.TensorListReserve' needs a static shape); give the Keras model file (.keras/.h5), which "
                "edgepack converts with a batch of 1, or export the SavedModel with a fixed input shape [1, T, F]") from e
        raise ConversionError(f"TFLite conversion ({mode}) failed: {msg[0] if msg else type(e).__name__}") from e
    return bytes(data)


def _float_like(quant):
    """``quant`` with mode none (the float graph the quantized one is made from)."""
    return quant.model_copy(update={"mode": "none", "rules": []})


def _is_recurrent(model) -> bool:
    if isinstance(model, (str, Path)):
        return False
    from .recurrent import recurrent_layers

    return bool(recurrent_layers(model))


def make_converter(model, quant, calibration: Optional[np.ndarray] = None, dense_per_channel: bool = True):
    """The TFLiteConverter set up for ``quant`` (also what the quantization debugger replays).

    ``model`` is a tf_keras model, or the path of a SavedModel folder (e.g. Keras 3's
    ``model.export()``), converted from its serving signature. A model with recurrent layers
    converts from a batch-1 concrete function (:mod:`.recurrent`); any other, as before.
    """
    from ..keras_compat import tf

    t = tf()
    if isinstance(model, (str, Path)):
        conv = t.lite.TFLiteConverter.from_saved_model(str(model))
    elif _is_recurrent(model):
        from .recurrent import concrete_function, prepare

        # Recurrent layers convert only over a fixed batch of 1 and a fixed sequence length (see .recurrent).
        prepared = prepare(model, quant.mode)
        conv = t.lite.TFLiteConverter.from_concrete_functions([concrete_function(prepared)], prepared)
    else:
        conv = t.lite.TFLiteConverter.from_keras_model(model)
    ops = t.lite.OpsSet
    if quant.mode != "none":
        conv.optimizations = [t.lite.Optimize.DEFAULT]
    if quant.mode == "float16":
        conv.target_spec.supported_types = [t.float16]
    if quant.needs_calibration:
        if calibration is None or len(calibration) == 0:
            raise DataError(f"quantization mode '{quant.mode}' needs calibration data; pass --calibration DATA")
        dtypes = [t.dtype.as_numpy_dtype for t in model.inputs] if hasattr(model, "inputs") else None
        conv.representative_dataset = representative_dataset(calibration, dtypes)
        if quant.mode == "int8":
            conv.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8]
        else:
            conv.target_spec.supported_ops = [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if quant.io != "float":
            conv.inference_input_type = getattr(t, _IO_TYPES[quant.io])
            conv.inference_output_type = getattr(t, _IO_TYPES[quant.io])
        if not quant.per_channel:
            conv._experimental_disable_per_channel = True  # noqa: SLF001 - documented converter flag
    dense_pc = dense_per_channel if quant.dense_per_channel is None else quant.dense_per_channel
    if quant.per_channel and not dense_pc:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True  # noqa: SLF001
    return conv
