"""Keras 3 config -> an equivalent tf_keras config, through an explicit table of layer classes.

tfmot (every compression step) needs Keras 2, so a Keras 3 model is rebuilt as a tf_keras model:
each layer class in :data:`TWINS` names its tf_keras twin and how its config keys translate; a
Keras 3 option the twin cannot express (e.g. ``LayerNormalization(rms_scaling=True)``) or a class
outside the table raises :class:`NoTwinError` naming the layer, class and option. Keras 3 operation
nodes (``keras.ops`` calls) become TFOpLambda layers through :mod:`.keras3_ops`. Nothing from the
file is deserialised by Keras 3 here: the config is plain JSON in, plain JSON out.

Example::

    tf_cfg = translate_model(json.loads(zip.read("config.json")), "model.keras")
    model = tf_keras.models.model_from_config(tf_cfg)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Optional

from ..errors import ModelLoadError
from .keras3_ops import OpError, composite_activation, is_op, translate_op
from .scan import MODEL_CLASSES


class NoTwinError(ModelLoadError):
    """A Keras 3 layer (or option) with no tf_keras equivalent."""

    def __init__(self, source: str, layer: str, cls: str, detail: str = ""):
        self.layer, self.cls, self.detail = layer, cls, detail
        what = f"Keras 3 {cls}{(' with ' + detail) if detail else ''}"
        super().__init__(f"{source}: layer '{layer}' is a {what}, which has no tf_keras twin, so compression steps "
                         "cannot run on it; the file can still be packaged conversion-only (no steps; edgepack "
                         "converts Keras 3's own SavedModel export)")


@dataclass(frozen=True)
class Twin:
    """How one Keras 3 layer class becomes its tf_keras twin.

    ``fixed``: Keras 3 keys dropped when they hold the given value (any other value: no twin);
    ``rename``: Keras 3 key -> tf_keras key; ``extra``: tf_keras keys taken through ``**kwargs``;
    ``fn``: a last rewrite of the translated config; ``call_args``: names of the call's positional
    arguments after the first, passed by keyword in tf_keras (e.g. MultiHeadAttention's ``value``).
    """

    tf_class: str
    fixed: dict = field(default_factory=dict)
    rename: dict = field(default_factory=dict)
    extra: frozenset = frozenset()
    fn: Optional[Callable[[dict], dict]] = None
    call_args: tuple = ()


_NO_QUANT = {"quantization_config": None, "lora_rank": None, "lora_alpha": None}
_RNN = dict(fixed={"zero_output_for_mask": False, "seed": None, "use_cudnn": "auto"},
            extra=frozenset({"return_sequences", "return_state", "go_backwards", "stateful", "unroll",
                             "time_major", "zero_output_for_mask"}))
_POOL = frozenset({"keepdims"})
_MHA_SHAPES = {"query_shape": None, "key_shape": None, "value_shape": None}  # tf_keras builds it on the call
_BN_EXTRA = frozenset({"renorm", "renorm_clipping", "renorm_momentum", "fused", "virtual_batch_size",
                       "adjustment"})


def _same(name: str, **kw) -> Twin:
    return Twin(name, **kw)


TWINS: dict[str, Twin] = {
    "InputLayer": Twin("InputLayer", rename={"batch_shape": "batch_input_shape"}, fixed={"optional": False}),
    "Dense": _same("Dense", fixed=dict(_NO_QUANT)),
    "EinsumDense": _same("EinsumDense", fixed=dict(_NO_QUANT)),
    "Embedding": _same("Embedding", fixed=dict(_NO_QUANT)),
    "Conv1D": _same("Conv1D", fixed=dict(_NO_QUANT)),
    "Conv2D": _same("Conv2D", fixed=dict(_NO_QUANT)),
    "Conv3D": _same("Conv3D", fixed=dict(_NO_QUANT)),
    "Conv1DTranspose": _same("Conv1DTranspose", fixed=dict(_NO_QUANT)),
    "Conv2DTranspose": _same("Conv2DTranspose", fixed=dict(_NO_QUANT)),
    "DepthwiseConv1D": _same("DepthwiseConv1D"),
    "DepthwiseConv2D": _same("DepthwiseConv2D"),
    "SeparableConv1D": _same("SeparableConv1D"),
    "SeparableConv2D": _same("SeparableConv2D"),
    "BatchNormalization": _same("BatchNormalization", fixed={"renorm": False, "renorm_clipping": None,
                                                            "renorm_momentum": 0.99}, extra=_BN_EXTRA),
    "LayerNormalization": _same("LayerNormalization", fixed={"rms_scaling": False}),
    "Normalization": _same("Normalization"),
    "Rescaling": _same("Rescaling"),
    "Add": _same("Add"), "Subtract": _same("Subtract"), "Multiply": _same("Multiply"),
    "Average": _same("Average"), "Maximum": _same("Maximum"), "Minimum": _same("Minimum"),
    "Concatenate": _same("Concatenate"), "Dot": _same("Dot"),
    "MaxPooling1D": _same("MaxPooling1D"), "MaxPooling2D": _same("MaxPooling2D"),
    "AveragePooling1D": _same("AveragePooling1D"), "AveragePooling2D": _same("AveragePooling2D"),
    "GlobalAveragePooling1D": _same("GlobalAveragePooling1D", extra=_POOL),
    "GlobalAveragePooling2D": _same("GlobalAveragePooling2D", extra=_POOL),
    "GlobalMaxPooling1D": _same("GlobalMaxPooling1D", extra=_POOL),
    "GlobalMaxPooling2D": _same("GlobalMaxPooling2D", extra=_POOL),
    "Dropout": _same("Dropout"), "SpatialDropout1D": _same("SpatialDropout1D", fixed={"seed": None}),
    "SpatialDropout2D": _same("SpatialDropout2D", fixed={"seed": None}),
    "GaussianNoise": _same("GaussianNoise"), "GaussianDropout": _same("GaussianDropout"),
    "ActivityRegularization": _same("ActivityRegularization"),
    "Activation": _same("Activation"), "ReLU": _same("ReLU"), "Softmax": _same("Softmax"),
    "LeakyReLU": _same("LeakyReLU", rename={"negative_slope": "alpha"}), "ELU": _same("ELU"),
    "PReLU": _same("PReLU"),
    "Reshape": _same("Reshape"), "Flatten": _same("Flatten"), "Permute": _same("Permute"),
    "RepeatVector": _same("RepeatVector"), "Identity": _same("Identity"),
    "ZeroPadding1D": _same("ZeroPadding1D", fixed={"data_format": "channels_last"}),
    "ZeroPadding2D": _same("ZeroPadding2D"),
    "Cropping1D": _same("Cropping1D"), "Cropping2D": _same("Cropping2D"),
    "UpSampling1D": _same("UpSampling1D"), "UpSampling2D": _same("UpSampling2D"),
    "MultiHeadAttention": _same("MultiHeadAttention", fixed={"use_gate": False, "sliding_window": None, "seed": None},
                                call_args=("value", "key"), fn=lambda c: {**c, **_MHA_SHAPES}),
    "GRU": _same("GRU", **_RNN), "LSTM": _same("LSTM", **_RNN), "SimpleRNN": _same("SimpleRNN", **_RNN),
    "Bidirectional": _same("Bidirectional"),  # its layer/backward_layer translated like any layer entry
}
WRAPPED = frozenset({"layer", "backward_layer"})  # config keys holding a wrapped layer's entry

# Keras 3 activation name -> tf_keras name with the same arithmetic (hard_sigmoid differs: not listed).
ACTIVATIONS = {n: n for n in ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus",
                              "softsign", "swish", "gelu", "relu6", "exponential", "log_softmax", "mish")}
ACTIVATIONS["silu"] = "swish"
# Layer configs in tf_keras' base Layer (taken by every class through **kwargs).
BASE_KEYS = frozenset({"name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
                       "activity_regularizer", "autocast", "input_dim", "dynamic"})
SUB_OBJECT_MODULES = {"keras.initializers": "initializers", "keras.regularizers": "regularizers",
                      "keras.constraints": "constraints"}
FLOAT_POLICIES = frozenset({"float32", "float16", "bfloat16", "float64", "mixed_float16", "mixed_bfloat16"})


@lru_cache(maxsize=None)
def _accepted(tf_class: str) -> frozenset:
    from ..keras_compat import keras

    cls = getattr(keras().layers, tf_class)
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs", "args"}
    return frozenset(params | BASE_KEYS)


class _Ctx:
    def __init__(self, source: str):
        self.source = source
        self.layers = 0


def _dtype(value: Any, ctx: _Ctx, layer: str, cls: str) -> Any:
    if isinstance(value, dict):
        kind = value.get("class_name")
        name = (value.get("config") or {}).get("name")
        if kind not in ("DTypePolicy", "FloatDTypePolicy") or not isinstance(name, str):
            raise NoTwinError(ctx.source, layer, cls, f"dtype policy {kind} {name or ''}".strip())
        value = name
    if value is not None and value not in FLOAT_POLICIES and not str(value).startswith(("int", "uint", "bool")):
        raise NoTwinError(ctx.source, layer, cls, f"dtype {value}")
    return value


def _activation(value: Any, ctx: _Ctx, layer: str, cls: str) -> Any:
    if isinstance(value, dict) and value.get("class_name") == "function":
        value = value.get("config")
    if value is None:
        return value
    if value not in ACTIVATIONS:
        raise NoTwinError(ctx.source, layer, cls, f"activation {value!r}")
    return ACTIVATIONS[value]


def _sub_object(value: dict, ctx: _Ctx, layer: str, cls: str) -> dict:
    """An initializer/regularizer/constraint dict -> the tf_keras config of the same class."""
    from ..keras_compat import keras

    kind = value.get("class_name")
    module = SUB_OBJECT_MODULES.get(value.get("module"), None)
    target = getattr(getattr(keras(), module), kind, None) if module and isinstance(kind, str) else None
    if target is None or not inspect.isclass(target):
        raise NoTwinError(ctx.source, layer, cls, f"{kind} from {value.get('module')}")
    accepted = set(inspect.signature(target.__init__).parameters) - {"self", "kwargs"}
    inner = {k: _plain(v) for k, v in (value.get("config") or {}).items() if k in accepted}
    return {"class_name": kind, "config": inner}


def _plain(value: Any) -> Any:
    """Keras 3 value markers (``__numpy__``, ``__tensor__``, tuples) -> plain JSON lists/numbers."""
    if isinstance(value, dict):
        if value.get("class_name") in ("__numpy__", "__tensor__"):
            return (value.get("config") or {}).get("value")
        if value.get("class_name") == "__tuple__":
            return list((value.get("config") or {}).get("value", []))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _layer_config(cls: str, cfg: dict, ctx: _Ctx) -> tuple[str, dict]:
    name = str(cfg.get("name", "?"))
    twin = TWINS.get(cls)
    if twin is None:
        raise NoTwinError(ctx.source, name, cls)
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in twin.fixed:
            if _plain(value) != twin.fixed[key] and not (value is None and twin.fixed[key] is None):
                raise NoTwinError(ctx.source, name, cls, f"{key}={value!r}")
            continue
        key = twin.rename.get(key, key)
        if key == "dtype":
            value = _dtype(value, ctx, name, cls)
        elif key in ("activation", "recurrent_activation"):
            value = _activation(value, ctx, name, cls)
        elif key in WRAPPED and isinstance(value, dict):
            value = dict(zip(("class_name", "config"), _entry(value, ctx)))
        elif isinstance(value, dict) and value.get("module") in SUB_OBJECT_MODULES:
            value = _sub_object(value, ctx, name, cls)
        else:
            value = _plain(value)
        out[key] = value
    unknown = sorted(set(out) - _accepted(twin.tf_class) - twin.extra)
    if unknown:
        raise NoTwinError(ctx.source, name, cls, f"option {unknown[0]}={out[unknown[0]]!r}")
    if twin.fn is not None:
        out = twin.fn(out)
    ctx.layers += 1
    return twin.tf_class, out


def _tensor_ref(value: dict, ctx: _Ctx, layer: str) -> list:
    hist = (value.get("config") or {}).get("keras_history")
    if not (isinstance(hist, list) and len(hist) == 3 and isinstance(hist[0], str)):
        raise ModelLoadError(f"{ctx.source}: layer '{layer}' has a malformed input reference {hist!r}; "
                             "the file is corrupt")
    return [hist[0], int(hist[1]), int(hist[2])]


def _collect(args: Any, ctx: _Ctx, layer: str, cls: str) -> list:
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        return [_tensor_ref(args, ctx, layer)]
    if isinstance(args, (list, tuple)):
        return [r for a in args for r in _collect(a, ctx, layer, cls)]
    raise NoTwinError(ctx.source, layer, cls, f"a non-tensor call argument {args!r}")


_NONE_KWARGS = frozenset({"training", "mask", "attention_mask", "query_mask", "value_mask", "key_mask"})


def _node(node: Any, ctx: _Ctx, layer: str, cls: str) -> list:
    if isinstance(node, list):  # already the tf_keras layout ([[name, node, tensor, kwargs], ...])
        return node
    if not isinstance(node, dict):
        raise ModelLoadError(f"{ctx.source}: layer '{layer}' has a malformed inbound node; the file is corrupt")
    named = TWINS[cls].call_args if cls in TWINS else ()
    args = node.get("args", [])
    kwargs = {}
    if named and isinstance(args, list) and len(args) > 1:
        if len(args) > len(named) + 1:
            raise NoTwinError(ctx.source, layer, cls, f"{len(args)} positional call arguments")
        for key, value in zip(named, args[1:]):
            if value is not None:
                kwargs[key] = _collect(value, ctx, layer, cls)[0]
        args = args[:1]
    refs = _collect(args, ctx, layer, cls)
    for key, value in (node.get("kwargs") or {}).items():
        if key in _NONE_KWARGS and value in (None, False):
            continue
        if named and key in named and isinstance(value, dict):
            kwargs[key] = _collect(value, ctx, layer, cls)[0]
            continue
        if isinstance(value, (dict, list)):
            raise NoTwinError(ctx.source, layer, cls, f"call argument {key}")
        kwargs[key] = value
    if not refs:
        raise ModelLoadError(f"{ctx.source}: layer '{layer}' is called without inputs; the file is corrupt")
    return [[*r, kwargs if i == 0 else {}] for i, r in enumerate(refs)]


def _io_list(value: Any) -> list:
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [value]
    if isinstance(value, dict):
        return [v for _, v in sorted(value.items())]
    return value


def _shift_nested(refs: Any, nested: set) -> Any:
    """tf_keras counts a nested model's own Input->output node as node 0 (Keras 3 does not); also the
    references inside call keyword arguments (an operation's ``y``, an attention's ``value``)."""
    if isinstance(refs, list) and len(refs) >= 3 and isinstance(refs[0], str) and isinstance(refs[1], int):
        head = [refs[0], refs[1] + 1 if refs[0] in nested else refs[1], refs[2]]
        return head + [_shift_nested(r, nested) for r in refs[3:]]
    if isinstance(refs, list):
        return [_shift_nested(r, nested) for r in refs]
    if isinstance(refs, dict):
        return {k: _shift_nested(v, nested) for k, v in refs.items()}
    return refs


def _op_layers(entry: dict, ctx: _Ctx, taken: set) -> Optional[list]:
    """The TFOpLambda layers of a Keras 3 operation node or composite Activation (None: neither)."""
    chain = composite_activation(entry) if isinstance(entry, dict) else None
    if not (chain or is_op(entry)):
        return None
    name = str((entry.get("config") or {}).get("name") or entry.get("name"))
    what = entry.get("class_name") if chain is None else f"Activation {entry['config'].get('activation')!r}"
    try:
        layers = translate_op(entry, taken, chain)
    except OpError as e:
        raise NoTwinError(ctx.source, name, f"{what} operation ({entry.get('module')})", str(e)) from None
    ctx.layers += 1
    return layers


def _functional(cfg: dict, ctx: _Ctx) -> dict:
    layers, nested = [], set()
    taken = {str(e.get("name") or (e.get("config") or {}).get("name")) for e in cfg.get("layers", [])
             if isinstance(e, dict)}
    for entry in cfg.get("layers", []):
        ops = _op_layers(entry, ctx, taken)
        if ops is not None:
            layers.extend(ops)
            continue
        cls, inner = _entry(entry, ctx)
        name = entry.get("name") or inner.get("name")
        nodes = [_node(n, ctx, name, cls) for n in entry.get("inbound_nodes", [])]
        layers.append({"class_name": cls, "config": inner, "name": name, "inbound_nodes": nodes})
        if cls in ("Functional", "Sequential"):
            nested.add(name)
    for layer in layers:
        layer["inbound_nodes"] = [_shift_nested(n, nested) for n in layer["inbound_nodes"]]
    return {"name": cfg.get("name"), "trainable": cfg.get("trainable", True), "layers": layers,
            "input_layers": _shift_nested(_io_list(cfg.get("input_layers")), nested),
            "output_layers": _shift_nested(_io_list(cfg.get("output_layers")), nested)}


def _sequential(cfg: dict, entry: dict, ctx: _Ctx) -> dict:
    layers = [dict(zip(("class_name", "config"), _entry(e, ctx))) for e in cfg.get("layers", [])]
    shape = cfg.get("build_input_shape") or (entry.get("build_config") or {}).get("input_shape")
    if (not layers or layers[0]["class_name"] != "InputLayer") and isinstance(shape, list):
        layers.insert(0, {"class_name": "InputLayer",
                          "config": {"batch_input_shape": shape, "dtype": "float32",
                                     "name": f"{cfg.get('name', 'sequential')}_input"}})
    return {"name": cfg.get("name"), "trainable": cfg.get("trainable", True), "layers": layers}


def _entry(entry: Any, ctx: _Ctx) -> tuple[str, dict]:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or \
            not isinstance(entry.get("config"), dict):
        raise ModelLoadError(f"{ctx.source}: a layer entry that is not {{'class_name', 'config'}}; the file is corrupt")
    cls, cfg = entry["class_name"], entry["config"]
    if cls in ("Functional", "Model"):
        return "Functional", _functional(cfg, ctx)
    if cls == "Sequential":
        return "Sequential", _sequential(cfg, entry, ctx)
    return _layer_config(cls, cfg, ctx)


def translate_model(cfg: dict, source: str) -> tuple[dict, int]:
    """Keras 3 model config (``config.json`` / ``model_config``) -> (tf_keras model config, layers translated).

    Example::

        tf_cfg, n = translate_model({"class_name": "Sequential", "config": {...}}, "m.keras")
    """
    if cfg.get("class_name") not in MODEL_CLASSES:
        raise ModelLoadError(f"{source}: the top-level object is a {cfg.get('class_name')}, not a Keras model; "
                             "save a Sequential or Functional model")
    ctx = _Ctx(source)
    cls, inner = _entry(cfg, ctx)
    return {"class_name": cls, "config": inner}, ctx.layers
