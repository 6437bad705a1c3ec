"""Keras 3 operation nodes (``keras.ops`` calls in a functional graph) -> tf_keras ``TFOpLambda`` layers.

A Keras 3 functional model that calls ``keras.ops.*`` (or writes ``x + 3``, ``x[:, 1:]``) saves each call as
an *operation node*: ``{"module": "keras.src.ops.numpy", "class_name": "Add", "config": {"name": "add"},
"inbound_nodes": [{"args": [<tensor>, 3.0], "kwargs": {}}]}``. :data:`OPS` is the explicit table of the
operation classes edgepack accepts, keyed by (module, class); each names the TensorFlow function whose
tf_keras ``TFOpLambda`` layer computes the same thing, the way tf_keras itself saves ``x + 3`` (layer
``TFOpLambda``, ``function: "math.add"``, inbound node ``[["x", 0, 0, {"y": 3.0}]]``). The safety scan
(:mod:`.scan`) accepts exactly these classes (and, in tf_keras configs, ``TFOpLambda``/``SlicingOpLambda``
layers whose ``function`` is one of :data:`TF_FUNCTIONS`); nothing named in a file is imported.

Composite operations (``hard_sigmoid``, ``hard_silu``; also ``Activation("hard_silu")``) become a short
chain of TFOpLambda layers, the last one keeping the node's name.

Example::

    layers = translate_op(entry, "m.keras", taken={"add", "dense"})   # [{"class_name": "TFOpLambda", ...}]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

OPS_MODULE_PREFIX = "keras.src.ops."
NP, NN, MATH, CORE = "keras.src.ops.numpy", "keras.src.ops.nn", "keras.src.ops.math", "keras.src.ops.core"
X = "$input"  # a chain step's reference to the operation's own (first) input


@dataclass(frozen=True)
class OpTwin:
    """How one Keras 3 operation class becomes a TFOpLambda call.

    ``tf``: the TF function (``tf.<tf>``); ``args``: TF parameter names filled by the node's positional
    arguments, in order (the first one is the layer input); ``config``: Keras 3 config key -> TF keyword;
    ``fixed``: Keras 3 config keys that must hold the given value (any other value: no twin);
    ``chain``: for composites, (TF function, keyword arguments) steps applied one after another
    (a value :data:`X` is the operation's input).
    """

    tf: str = ""
    args: tuple = ("x",)
    config: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    chain: tuple = ()
    commutes: bool = False


def _unary(tf: str, **kw) -> OpTwin:
    return OpTwin(tf, **kw)


def _binary(tf: str, commutes: bool = False) -> OpTwin:
    return OpTwin(tf, ("x", "y"), commutes=commutes)


_REDUCE = dict(config={"axis": "axis", "keepdims": "keepdims"})
_HARD_SIGMOID = (("math.add", {"y": 3.0}), ("nn.relu6", {}), ("math.multiply", {"y": 1.0 / 6.0}))

OPS: dict[tuple[str, str], OpTwin] = {
    # numpy-style arithmetic with tensors and constants
    (NP, "Add"): _binary("math.add", True), (NP, "Subtract"): _binary("math.subtract"),
    (NP, "Multiply"): _binary("math.multiply", True), (NP, "TrueDivide"): _binary("math.truediv"),
    (NP, "Divide"): _binary("math.truediv"), (NP, "Maximum"): _binary("math.maximum", True),
    (NP, "Minimum"): _binary("math.minimum", True), (NP, "Power"): _binary("math.pow"),
    (NP, "Greater"): _binary("math.greater"), (NP, "GreaterEqual"): _binary("math.greater_equal"),
    (NP, "Less"): _binary("math.less"), (NP, "LessEqual"): _binary("math.less_equal"),
    (NP, "Equal"): _binary("math.equal"), (NP, "NotEqual"): _binary("math.not_equal"),
    (NP, "Negative"): _unary("math.negative"), (NP, "Abs"): _unary("math.abs"),
    (NP, "Absolute"): _unary("math.abs"), (NP, "Sqrt"): _unary("math.sqrt"), (NP, "Square"): _unary("math.square"),
    (NP, "Exp"): _unary("math.exp"), (NP, "Log"): _unary("math.log"), (NP, "Tanh"): _unary("math.tanh"),
    (NP, "Reciprocal"): _unary("math.reciprocal"), (NP, "Floor"): _unary("math.floor"),
    (NP, "Clip"): OpTwin("clip_by_value", ("t",), {"x_min": "clip_value_min", "x_max": "clip_value_max"}),
    (NP, "Where"): OpTwin("where", ("condition", "x", "y")),
    # shapes, slicing, joins
    (NP, "GetItem"): OpTwin("__operators__.getitem", ("tensor", "slice_spec")),
    (NP, "Reshape"): OpTwin("reshape", ("tensor",), {"newshape": "shape"}),
    (NP, "Transpose"): OpTwin("transpose", ("a",), {"axes": "perm"}),
    (NP, "ExpandDims"): OpTwin("expand_dims", ("input",), {"axis": "axis"}),
    (NP, "Squeeze"): OpTwin("squeeze", ("input",), {"axis": "axis"}),
    (NP, "Concatenate"): OpTwin("concat", ("values",), {"axis": "axis"}),
    (NP, "Stack"): OpTwin("stack", ("values",), {"axis": "axis"}),
    (NP, "Take"): OpTwin("gather", ("params", "indices"), {"axis": "axis"}),
    (NP, "OnesLike"): OpTwin("ones_like", ("input",), {"dtype": "dtype"}),
    (NP, "ZerosLike"): OpTwin("zeros_like", ("input",), {"dtype": "dtype"}),
    (NP, "Cumsum"): OpTwin("math.cumsum", ("x",), {"axis": "axis"}, fixed={"dtype": None}),
    # reductions and products
    (NP, "Mean"): _unary("math.reduce_mean", **_REDUCE), (NP, "Sum"): _unary("math.reduce_sum", **_REDUCE),
    (NP, "Max"): _unary("math.reduce_max", fixed={"initial": None}, **_REDUCE),
    (NP, "Min"): _unary("math.reduce_min", fixed={"initial": None}, **_REDUCE),
    (NP, "Matmul"): OpTwin("linalg.matmul", ("a", "b")),
    (CORE, "Cast"): OpTwin("cast", ("x",), {"dtype": "dtype"}),
    # activations
    (NN, "Relu"): _unary("nn.relu"), (NN, "Relu6"): _unary("nn.relu6"), (NN, "Sigmoid"): _unary("math.sigmoid"),
    (NN, "Silu"): _unary("nn.silu"), (NN, "Gelu"): OpTwin("nn.gelu", ("features",), {"approximate": "approximate"}),
    (NN, "Softmax"): OpTwin("nn.softmax", ("logits",), {"axis": "axis"}),
    (NN, "LogSoftmax"): OpTwin("nn.log_softmax", ("logits",), {"axis": "axis"}),
    (NN, "LeakyRelu"): OpTwin("nn.leaky_relu", ("features",), {"negative_slope": "alpha"}),
    (NN, "Elu"): OpTwin("nn.elu", ("features",), fixed={"alpha": 1.0}),
    (NN, "Softplus"): _unary("math.softplus"),
    (NN, "HardSigmoid"): OpTwin(chain=_HARD_SIGMOID),
    (NN, "HardSilu"): OpTwin(chain=_HARD_SIGMOID + (("math.multiply", {"y": X}),)),
    (MATH, "Rsqrt"): _unary("math.rsqrt"), (MATH, "Erf"): _unary("math.erf"),
}
# ops.hard_swish is hard_silu; Activation layers with these names expand like the operation.
COMPOSITE_ACTIVATIONS = {"hard_silu": OPS[(NN, "HardSilu")], "hard_swish": OPS[(NN, "HardSilu")],
                         "hard_sigmoid": OPS[(NN, "HardSigmoid")]}
# The names tf_keras itself writes for some of the same functions (`x + 3`, `tf.transpose`).
TF_ALIASES = frozenset({"__operators__.add", "compat.v1.transpose", "compat.v1.squeeze", "compat.v1.gather",
                        "math.divide", "nn.swish"})
TF_FUNCTIONS = frozenset({t.tf for t in OPS.values() if t.tf} | {s for t in OPS.values() for s, _ in t.chain}
                         | TF_ALIASES)
SLICING_FUNCTIONS = frozenset({"__operators__.getitem"})
CLASS_NAMES = frozenset(cls for _, cls in OPS)


def is_op(entry: Any) -> bool:
    """True for a Keras 3 operation node (module ``keras.src.ops.*``), known or not."""
    return isinstance(entry, dict) and str(entry.get("module") or "").startswith(OPS_MODULE_PREFIX)


def known_op(module: Any, cls: Any) -> bool:
    """True for an operation class in :data:`OPS` (the scan's test)."""
    return (module, cls) in OPS


def composite_activation(entry: dict) -> Optional[OpTwin]:
    """The chain of a Keras 3 ``Activation`` layer tf_keras has no same-formula activation for."""
    if entry.get("class_name") != "Activation" or entry.get("module") != "keras.layers":
        return None
    act = (entry.get("config") or {}).get("activation")
    if isinstance(act, dict) and act.get("class_name") == "function":
        act = act.get("config")
    return COMPOSITE_ACTIVATIONS.get(act) if isinstance(act, str) else None


class OpError(ValueError):
    """An operation node edgepack cannot translate: ``detail`` says what (raised as NoTwinError by the caller)."""


def _value(v: Any, rank: Optional[list]) -> Any:
    """A node argument -> tf_keras node data: tensor refs as [layer, node, tensor], constants plain."""
    if isinstance(v, dict):
        kind = v.get("class_name")
        conf = v.get("config") or {}
        if kind == "__keras_tensor__":
            hist = conf.get("keras_history")
            if not (isinstance(hist, list) and len(hist) == 3 and isinstance(hist[0], str)):
                raise OpError(f"a malformed tensor reference {hist!r}")
            if rank is not None:
                rank.append(len(conf.get("shape") or []))
            return [hist[0], int(hist[1]), int(hist[2])]
        if kind in ("__tensor__", "__numpy__"):
            return conf.get("value")
        if kind == "__slice__":
            return {k: conf.get(k) for k in ("start", "stop", "step")}
        if kind == "__ellipsis__":
            return Ellipsis
        raise OpError(f"a call argument of type {kind!r}")
    if isinstance(v, (list, tuple)):
        return [_value(x, rank) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise OpError(f"a call argument {v!r}")


def _is_ref(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 3 and isinstance(v[0], str) and isinstance(v[1], int)


def _slice_spec(index: Any, rank: int) -> list:
    """A GetItem index -> tf_keras' slice_spec list (Ellipsis spelt out: JSON has no Ellipsis)."""
    items = index if isinstance(index, list) else [index]
    if any(_is_ref(i) for i in items):
        raise OpError("indexing with a tensor")
    if sum(i is Ellipsis for i in items) > 1:
        raise OpError("more than one Ellipsis in an index")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = rank - sum(1 for i in items if i is not None and i is not Ellipsis)
        full = {"start": None, "stop": None, "step": None}
        items = items[:at] + [dict(full) for _ in range(max(fill, 0))] + items[at + 1:]
    return items


def _entry_data(first: Any, kwargs: dict) -> list:
    """tf_keras node data for a call whose first argument is ``first`` (a ref, a constant or a list of refs).

    TFOpLambda keeps its input structure: one tensor is one entry ``[layer, node, tensor, kwargs]``, a list
    of tensors a list of entries (each carrying the keyword arguments, as tf_keras writes them)."""
    if _is_ref(first):
        return [*first, kwargs]
    if isinstance(first, list) and first and all(_is_ref(f) for f in first):
        return [[*f, kwargs] for f in first]
    if isinstance(first, list) and any(_is_ref(f) for f in first):
        raise OpError("a list mixing tensors and constants")
    return ["_CONSTANT_VALUE", -1, first, kwargs]


def _call(twin: OpTwin, cfg: dict, node: dict) -> tuple[Any, dict]:
    """(first argument, TF keyword arguments) of one node."""
    if not isinstance(node, dict):
        raise OpError("an inbound node that is not {args, kwargs}")
    rank: list = []
    args = [_value(a, rank) for a in (node.get("args") or [])]
    call_kw = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None}
    if call_kw:
        raise OpError(f"call argument {sorted(call_kw)[0]}")
    if not args or len(args) > len(twin.args):
        raise OpError(f"{len(args)} positional arguments")
    if twin.commutes and len(args) == 2 and not _is_ref(args[0]) and _is_ref(args[1]):
        args = [args[1], args[0]]
    kwargs = dict(zip(twin.args[1:], args[1:]))
    if twin.tf == "__operators__.getitem":
        kwargs["slice_spec"] = _slice_spec(kwargs.get("slice_spec"), rank[0] if rank else 0)
    for key, value in cfg.items():
        if key == "name":
            continue
        if key in twin.fixed:
            if value != twin.fixed[key]:
                raise OpError(f"{key}={value!r}")
        elif key in twin.config:
            if value is not None:
                kwargs[twin.config[key]] = value
        else:
            raise OpError(f"option {key}={value!r}")
    return args[0], kwargs


def _layer(name: str, function: str, data: list) -> dict:
    cls = "SlicingOpLambda" if function in SLICING_FUNCTIONS else "TFOpLambda"
    return {"class_name": cls, "name": name, "inbound_nodes": [data],
            "config": {"name": name, "trainable": True, "dtype": "float32", "function": function}}


def _fresh(name: str, taken: set) -> str:
    i = 0
    while f"{name}_{i}" in taken:
        i += 1
    taken.add(f"{name}_{i}")
    return f"{name}_{i}"


def _chain(twin: OpTwin, name: str, first: Any, taken: set) -> list[dict]:
    if not _is_ref(first):
        raise OpError("a constant input")
    out, cur = [], first
    for i, (fn, kw) in enumerate(twin.chain):
        step = name if i == len(twin.chain) - 1 else _fresh(f"{name}_step", taken)
        kw = {k: (first if v == X else v) for k, v in kw.items()}
        out.append(_layer(step, fn, [*cur, kw]))
        cur = [step, 0, 0]
    return out


def translate_op(entry: dict, taken: set, twin: Optional[OpTwin] = None) -> list[dict]:
    """tf_keras layer dicts (with inbound nodes) for one Keras 3 operation node or composite Activation.

    ``taken``: the layer names already used in this model (extended with the chain's step names).
    Raises :class:`OpError` for a class outside :data:`OPS` or a call the twin cannot express.
    """
    cfg = entry.get("config") or {}
    name = str(cfg.get("name") or entry.get("name"))
    if twin is None:
        twin = OPS.get((entry.get("module"), entry.get("class_name")))
    if twin is None:
        raise OpError("")
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) != 1:
        raise OpError(f"{len(nodes)} calls (one expected)")
    if twin.chain:
        rank: list = []
        args = [_value(a, rank) for a in (nodes[0].get("args") or [])] if isinstance(nodes[0], dict) else []
        if len(args) != 1:
            raise OpError(f"{len(args)} positional arguments")
        return _chain(twin, name, args[0], taken)
    first, kwargs = _call(twin, cfg, nodes[0])
    return [_layer(name, twin.tf, _entry_data(first, kwargs))]
