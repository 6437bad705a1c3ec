"""The safety scan: what a model config would make Keras import or construct, checked before it does.

Keras deserialisers resolve every ``{"class_name", "module", "registered_name", "config"}`` dict in a
config, at any depth: ``module`` is imported, ``registered_name`` can pick a class other than
``class_name`` (a "Functional" that is really a Lambda), and Lambda layers rebuild Python bytecode.
:func:`scan_config` walks the whole config and allows only Keras' own built-in classes, named by
``class_name``, from Keras' own modules; Keras 3 operation nodes (``keras.src.ops.*``) and tf_keras
TFOpLambda layers only from the table in :mod:`.keras3_ops`. The top-level compile config (losses, metrics, optimizers)
is never deserialised by edgepack (models load with ``compile=False``), so it is not scanned.

Example::

    scan_config(json.loads(text), "model.keras", unsafe=False)   # raises ModelLoadError if unsafe
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Optional

from ..errors import ModelLoadError
from .keras3_ops import CLASS_NAMES, OPS_MODULE_PREFIX, TF_FUNCTIONS, known_op

UNSAFE_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"})
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})
# Keras-internal markers that carry values, never an import: tensors, arrays, bytes, slices, shapes
# (SavedModel metadata: TensorShape; TypeSpec and CompositeTensor resolve through TF's spec registry).
VALUE_MARKERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__",
                           "__slice__", "__complex__", "__tuple__", "TensorShape", "TypeSpec", "CompositeTensor"})
TYPESPECS = frozenset({"TensorSpec", "RaggedTensorSpec", "SparseTensorSpec"})
# Top-level keys Keras only reads with compile=True (edgepack always loads with compile=False).
IGNORED_TOP_KEYS = frozenset({"compile_config", "training_config"})

_PUBLIC = ("", ".layers", ".initializers", ".regularizers", ".constraints", ".activations", ".losses",
           ".metrics", ".optimizers", ".optimizers.schedules", ".mixed_precision", ".dtype_policies",
           ".models")
PUBLIC_MODULES = frozenset(f"{root}{sub}" for root in ("keras", "tf_keras") for sub in _PUBLIC)
# Where Keras writes its model classes (Functional/Sequential) from.
MODEL_MODULES = frozenset({"keras.src.models.functional", "keras.src.models.sequential", "keras.src.models.model",
                           "tf_keras.src.engine.functional", "tf_keras.src.engine.sequential",
                           "tf_keras.src.engine.training", "keras.src.engine.functional",
                           "keras.src.engine.sequential", "keras.src.engine.training"})
FUNCTION_MODULES = frozenset({"builtins", "keras.activations", "keras.losses", "keras.metrics",
                              "tf_keras.activations", "tf_keras.losses", "tf_keras.metrics"})
_TYPESPEC_MODULE = re.compile(r"^tensorflow(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@lru_cache(maxsize=1)
def tf_keras_builtins() -> frozenset[str]:
    """Class names of tf_keras' built-in layers, initializers, regularizers, constraints, losses,
    metrics, optimizers and learning-rate schedules (Lambda layers excluded)."""
    import inspect

    from ..keras_compat import keras

    k = keras()
    names: set[str] = set(MODEL_CLASSES) | {"InputLayer", "Policy", "DTypePolicy", "FloatDTypePolicy"}
    for mod in (k.layers, k.initializers, k.regularizers, k.constraints, k.losses, k.metrics, k.optimizers,
                k.optimizers.schedules):
        names |= {n for n in dir(mod) if not n.startswith("_") and inspect.isclass(getattr(mod, n, None))}
    return frozenset(names - UNSAFE_CLASSES)


def _refuse(source: str, layer: str, what: str) -> ModelLoadError:
    return ModelLoadError(f"{source}: layer '{layer}' {what}, which edgepack does not load without running "
                          "code from the file; pass --unsafe only if you trust this file")


def _op_layer(d: dict, cls: Any, module: Any, reg: Any, source: str, layer: str) -> bool:
    """True for an accepted operation: a Keras 3 ``keras.src.ops`` class of the table, or a tf_keras
    TFOpLambda/SlicingOpLambda calling one of the table's TF functions (tf_keras resolves it by name
    in TensorFlow's API registry, no import)."""
    if isinstance(module, str) and module.startswith(OPS_MODULE_PREFIX):
        if not (known_op(module, cls) and reg in (None, cls)):
            raise ModelLoadError(f"{source}: layer '{layer}' is the Keras 3 operation {cls!r} ({module}), which "
                                 "is not in edgepack's table of Keras operations with a tf_keras twin; express it "
                                 "with Keras layers or supported keras.ops calls, or pass --unsafe (conversion-only "
                                 "through Keras 3's export) if you trust this file")
        return True
    if module is None and cls in CLASS_NAMES - tf_keras_builtins() and isinstance(d.get("inbound_nodes"), list) \
            and any(isinstance(n, dict) for n in d["inbound_nodes"]):
        raise ModelLoadError(f"{source}: layer '{layer}' is the Keras 3 operation {cls!r} saved in the legacy .h5 "
                             "format, which does not record the operation's module (Keras 3 itself cannot reload "
                             "it reliably); save the model as .keras")
    if cls in ("TFOpLambda", "SlicingOpLambda") and module is None and reg in (None, cls):
        fn = (d.get("config") or {}).get("function") if isinstance(d.get("config"), dict) else None
        if fn not in TF_FUNCTIONS:
            raise ModelLoadError(f"{source}: layer '{layer}' is a {cls} calling tf.{fn}, which is not in edgepack's "
                                 "table of TensorFlow operations (a TF op layer can call any TensorFlow function); "
                                 "pass --unsafe if you trust this file")
        return True
    return False


def _check_object(d: dict, source: str, layer: str, known: Callable[[str], bool]) -> None:
    cls = d.get("class_name")
    module = d.get("module")
    reg = d.get("registered_name")
    if "class_name" in d and not isinstance(cls, str):
        raise _refuse(source, layer, f"has a non-text class_name {cls!r}")
    if _op_layer(d, cls, module, reg, source, layer):
        return
    if cls in UNSAFE_CLASSES:
        raise ModelLoadError(f"{source}: layer '{layer}' is a {cls.strip('_')}, which runs arbitrary Python "
                             "code when loaded; pass --unsafe if you trust this file")
    if cls in VALUE_MARKERS:
        if module is not None or reg is not None:
            raise _refuse(source, layer, f"has a {cls} value naming module {module!r}")
        return
    if cls == "__typespec__":
        spec = d.get("spec_name")
        if spec not in TYPESPECS or not (isinstance(module, str) and _TYPESPEC_MODULE.match(module)) or reg \
                not in (None, spec):
            raise _refuse(source, layer, f"has a type spec {spec!r} from module {module!r}")
        return
    if cls == "function":
        fn = d.get("config")
        if module not in FUNCTION_MODULES or not (isinstance(fn, str) and _IDENT.match(fn)) or reg not in (None, fn):
            raise _refuse(source, layer, f"refers to function {fn!r} in module {module!r}")
        return
    if module is not None:
        if not isinstance(module, str) or not (module in PUBLIC_MODULES or
                                               (cls in MODEL_CLASSES and module in MODEL_MODULES)):
            raise _refuse(source, layer, f"names module {module!r} for class {cls!r} (Keras would import it)")
    if reg is not None and reg != cls:
        raise _refuse(source, layer, f"has class_name {cls!r} but registered_name {reg!r}")
    if cls is None:
        return
    if cls.startswith("__") or not known(cls):
        raise ModelLoadError(f"{source}: layer '{layer}' has custom class '{cls}', which edgepack cannot load "
                             "without running its code; pass --unsafe and make the class importable")
    if cls in MODEL_CLASSES:
        inner = d.get("config")
        if not (isinstance(inner, dict) and isinstance(inner.get("layers"), list)):
            raise ModelLoadError(f"{source}: layer '{layer}' claims class {cls} but its config is not a model's "
                                 "(no layer list); the file is corrupt or crafted")


def _refs(node: Any) -> Iterator[tuple[str, int]]:
    """(layer, node index) references of one tf_keras inbound node ([[name, node, tensor, kwargs], ...])."""
    if isinstance(node, list) and len(node) >= 3 and node[0] == "_CONSTANT_VALUE" and node[1] == -1:
        # tf_keras' mark of a constant first argument (``3.0 - x``): the tensors are in the keyword arguments
        yield from _refs([v for v in node[3].values() if isinstance(v, list)] if len(node) > 3 and isinstance(
            node[3], dict) else [])
    elif isinstance(node, list) and len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int):
        yield node[0], node[1]
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _first_node(entry: dict) -> tuple[int, ...]:
    """Config index of a layer's first call: nested models built on an Input count that node as 0."""
    cls = entry.get("class_name")
    if cls in ("Functional", "Model"):
        return (1,)
    if cls == "Sequential":
        return (0, 1)
    return (0,)


def check_graph(cfg: dict, source: str) -> None:
    """Refuse a tf_keras functional config whose inbound nodes name missing nodes or form a cycle
    (tf_keras' reconstruction loop would spin forever on either)."""
    entries = [e for e in cfg.get("layers", []) if isinstance(e, dict)]
    inputs = {e.get("name") for e in entries if e.get("class_name") == "InputLayer"}
    deps: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for e in entries:
        for start in _first_node(e):
            for i, node in enumerate(e.get("inbound_nodes") or []):
                deps.setdefault((e.get("name"), i + start), list(_refs(node)))
    for key, refs in deps.items():
        for ref in refs:
            if ref[0] not in inputs and ref not in deps:
                raise ModelLoadError(f"{source}: layer '{key[0]}' takes its input from node {ref[1]} of '{ref[0]}', "
                                     "which the config does not define; the file is corrupt or crafted")
    state: dict[tuple[str, int], int] = {}
    for root in deps:
        stack = [(root, iter(deps[root]))]
        state[root] = 1
        while stack:
            key, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[key] = 2
                stack.pop()
            elif nxt in deps and state.get(nxt) == 1:
                raise ModelLoadError(f"{source}: layer '{nxt[0]}' depends on its own output (a cycle in the "
                                     "graph); the file is corrupt or crafted")
            elif nxt in deps and nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(deps[nxt])))


def _walk(node: Any, source: str, layer: str, known: Callable[[str], bool], top: bool) -> None:
    if isinstance(node, dict):
        inner = node.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            layer = inner["name"]
        elif isinstance(node.get("name"), str) and "class_name" in node:
            layer = node["name"]
        _check_object(node, source, layer, known)
        if node.get("class_name") in ("Functional", "Model") and isinstance(inner, dict):
            check_graph(inner, source)
        for key, value in node.items():
            if top and key in IGNORED_TOP_KEYS:
                continue
            _walk(value, source, layer, known, False)
    elif isinstance(node, list):
        for value in node:
            _walk(value, source, layer, known, False)


def scan_config(cfg: Any, source: str, unsafe: bool = False,
                extra_known: Optional[Callable[[str], bool]] = None) -> None:
    """Refuse Lambda layers, custom classes, foreign modules and mismatched registered names anywhere
    in ``cfg`` (the top-level compile config aside) unless ``unsafe``.

    ``extra_known`` accepts class names beyond tf_keras' built-ins (Keras 3's own classes).

    Example::

        scan_config({"class_name": "Dense", "config": {"name": "d", "units": 2}}, "m.h5")
    """
    if unsafe:
        return
    base = tf_keras_builtins()

    def known(name: str) -> bool:
        return name in base or (extra_known is not None and extra_known(name))

    _walk(cfg, source, "?", known, True)


def scan_all(configs: Iterable[Any], source: str, unsafe: bool = False,
             extra_known: Optional[Callable[[str], bool]] = None) -> None:
    """:func:`scan_config` over several configs (e.g. the nodes of a SavedModel's Keras metadata)."""
    for cfg in configs:
        scan_config(cfg, source, unsafe, extra_known)
