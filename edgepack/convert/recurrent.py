"""Recurrent Keras models (LSTM, GRU, SimpleRNN, Bidirectional) for the TFLite converter.

The converter cannot lower a recurrent layer with a dynamic batch ("'tf.TensorListReserve' op
requires element_shape to be static"). A recurrent model is therefore converted from a concrete
function over a fixed input of shape ``[1, T, F]``: a tf_keras LSTM then becomes the fused
``UNIDIRECTIONAL_SEQUENCE_LSTM`` (LiteRT and TFLM run it; int8 with a 16-bit cell state), a
Bidirectional(LSTM) two of them and a ``REVERSE_V2``. GRU and SimpleRNN have no fused op: they
are unrolled (``unroll=True`` on a clone with the same weights) when T <= :data:`MAX_UNROLL`,
otherwise they stay a ``WHILE`` loop, which runs in float but which the converter cannot quantize
(it crashes the process), so a quantized conversion of a ``WHILE`` loop is refused first. The
converter has no 16x8 fused LSTM, so ``int16x8`` unrolls LSTMs too.

The fused ops keep their state in variable tensors: a runtime must reset them before every
independent inference (:func:`variable_tensors` says whether a model has any).

Models without recurrent layers are not touched (:func:`recurrent_layers` is empty).

Example::

    if recurrent_layers(model):
        prepared = prepare(model, "int8")        # GRU/SimpleRNN unrolled, stateful refused
        fn = concrete_function(prepared)         # over a [1, T, F] input
"""

from __future__ import annotations

from ..errors import ConversionError

MAX_UNROLL = 64  # longest sequence unrolled (ops grow ~20-30 per step per layer)


def _walk(model) -> list:
    out = []
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and not _is_recurrent(layer):
            out += _walk(layer)
        else:
            out.append(layer)
    return out


def _is_recurrent(layer) -> bool:
    from ..keras_compat import keras

    k = keras()
    return isinstance(layer, (k.layers.RNN, k.layers.Bidirectional))


def recurrent_layers(model) -> list:
    """The recurrent layers of a tf_keras model (nested models included): RNN subclasses and Bidirectional.

    Example: ``[l.name for l in recurrent_layers(model)]`` -> ``['lstm']``.
    """
    return [layer for layer in _walk(model) if _is_recurrent(layer)]


def _cells(layer) -> list:
    """The RNN layers a recurrent layer runs (a Bidirectional's two directions)."""
    from ..keras_compat import keras

    if isinstance(layer, keras().layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def _fusable(rnn) -> bool:
    """Whether the converter fuses this RNN layer: a tf_keras LSTM on its standard kernel path."""
    from ..keras_compat import keras

    return isinstance(rnn, keras().layers.LSTM) and bool(getattr(rnn, "_could_use_gpu_kernel", False))


def sequence_length(model) -> int:
    """T of a recurrent model's [batch, T, F] input; a clear error when it is not fixed."""
    shape = model.input_shape
    shapes = shape if isinstance(shape, list) else [shape]
    for s in shapes:
        if any(d is None for d in s[1:]):
            raise ConversionError(
                f"the model's input shape {tuple(s)} has an unknown sequence length; recurrent layers convert "
                "with a fixed one: rebuild the model with a fixed-length Input (e.g. keras.Input((T, features))) "
                "and the same weights")
    return int(shapes[0][1]) if len(shapes[0]) > 1 else 1


def check_supported(model) -> None:
    """Refuse what edgepack cannot package per inference: ``stateful=True`` recurrent layers."""
    for layer in recurrent_layers(model):
        if any(getattr(rnn, "stateful", False) for rnn in _cells(layer)):
            raise ConversionError(
                f"layer '{layer.name}' ({type(layer).__name__}) is stateful=True: it carries its state from one "
                "batch to the next, but edgepack packages per-inference models whose state is reset before every "
                "inference; rebuild the model with stateful=False (same weights) to package it")


def _unroll_names(model, mode: str) -> set[str]:
    """Names of the recurrent layers to unroll for this quantize mode (a Bidirectional as a whole)."""
    if sequence_length(model) > MAX_UNROLL:
        return set()
    return {layer.name for layer in recurrent_layers(model)
            if any(mode == "int16x8" or not _fusable(rnn) for rnn in _cells(layer))}


def _unrolled_config(cfg: dict) -> dict:
    cfg = dict(cfg)
    if "unroll" in cfg:
        cfg["unroll"] = True
    for key in ("layer", "backward_layer"):  # Bidirectional's nested RNN configs
        inner = cfg.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            cfg[key] = {**inner, "config": _unrolled_config(inner["config"])}
    return cfg


def _clone_unrolled(model, names: set[str]):
    from ..keras_compat import keras

    k = keras()

    def clone(layer):
        if isinstance(layer, k.Model):
            return k.models.clone_model(layer, clone_function=clone)
        cfg = layer.get_config()
        if _is_recurrent(layer) and layer.name in names:
            cfg = _unrolled_config(cfg)
        return type(layer).from_config(cfg)

    out = k.models.clone_model(model, clone_function=clone)
    out.set_weights(model.get_weights())
    return out


def prepare(model, mode: str):
    """The model to convert for ``mode``: ``model`` itself, or a clone whose GRU/SimpleRNN (and, for
    int16x8, LSTM) layers are unrolled, with the same weights."""
    check_supported(model)
    names = _unroll_names(model, mode)
    lstm = next((layer for layer in recurrent_layers(model) if any(_fusable(r) for r in _cells(layer))), None)
    if mode == "int16x8" and not names and lstm is not None:
        layer = lstm
        raise ConversionError(
            f"layer '{layer.name}' ({type(layer).__name__}) cannot be quantized int16x8: the TFLite converter has no "
            f"16x8 fused LSTM and {sequence_length(model)} steps are too many to unroll (limit {MAX_UNROLL}); use "
            "--quantize int8 (the fused LSTM keeps a 16-bit cell state) or a sequence of at most "
            f"{MAX_UNROLL} steps")
    return _clone_unrolled(model, names) if names else model


def concrete_function(model):
    """A concrete function of ``model`` over fixed batch-1 inputs, returning ``{output name: tensor}``
    like the converter's Keras path (so the signature names match)."""
    from ..keras_compat import tf

    t = tf()
    inputs = model.inputs
    specs = [t.TensorSpec([1, *[int(d) for d in x.shape[1:]]], x.dtype, name=name)
             for x, name in zip(inputs, model.input_names)]
    names = list(model.output_names)

    def call(*xs):
        ys = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return dict(zip(names, ys))

    return t.function(call).get_concrete_function(*specs)


def while_loops(tflite: bytes) -> int:
    """How many WHILE ops a converted model has."""
    from .flatbuffer import read_tflite

    return sum(1 for op in read_tflite(tflite).ops if op.op == "WHILE")


def may_loop(model) -> bool:
    """Whether the conversion may leave a WHILE loop: a layer that neither fuses nor unrolls (too long)."""
    return sequence_length(model) > MAX_UNROLL and any(
        not _fusable(rnn) for layer in recurrent_layers(model) for rnn in _cells(layer))


def refuse_quantized_loop(model, mode: str) -> None:
    """ConversionError naming the layer when ``mode`` would quantize a WHILE loop (the converter crashes)."""
    layer = next((layer for layer in recurrent_layers(model)
                  if any(not _fusable(rnn) for rnn in _cells(layer))), None)
    name = f"layer '{layer.name}' ({type(layer).__name__})" if layer is not None else "a recurrent layer"
    steps = sequence_length(model)
    why = (f"has {steps} steps, more than the {MAX_UNROLL} edgepack unrolls" if steps > MAX_UNROLL
           else "does not unroll")
    raise ConversionError(
        f"{name} {why}, so it converts to a WHILE loop, which the TFLite converter cannot quantize ({mode}); "
        f"shorten the sequence to <= {MAX_UNROLL} steps (or use an LSTM, which has a fused op), or convert "
        "with --quantize none (float; LiteRT runs the loop)")


def variable_tensors(tflite: bytes) -> list[str]:
    """Names of the model's variable tensors (state kept between invocations, e.g. LSTM state).

    Example: ``variable_tensors(data)`` -> ``['lstm/output_state', 'lstm/cell_state']`` (names vary).
    """
    from .flatbuffer import tflite_schema

    m = tflite_schema().Model.GetRootAsModel(bytes(tflite), 0)
    out: list[str] = []
    for s in range(m.SubgraphsLength()):
        sub = m.Subgraphs(s)
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            if t.IsVariable():
                out.append((t.Name() or b"").decode("utf-8", "replace") or f"tensor{i}")
    return out

