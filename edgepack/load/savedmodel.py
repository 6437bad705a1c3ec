"""SavedModel folders: the Keras metadata they may carry (to scan) and their serving signatures.

tf_keras writes its layer configs to ``keras_metadata.pb``, or (older writers, or a crafted folder)
inside ``saved_model.pb`` as each object-graph node's ``user_object.metadata``; tf_keras reads either
and rebuilds Lambda layers from it, so both are read here. A SavedModel with no Keras metadata
(Keras 3 ``model.export()``, ``tf.saved_model.save`` of a ``tf.Module``) holds only TF graphs.

Example::

    configs = keras_metadata(Path("export_dir"))   # [] for a plain SavedModel
    signatures(Path("export_dir"))                  # ["serve", "serving_default"]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

MAX_PB_BYTES = 1 << 31  # protobuf's own 2 GiB message limit


def _read_pb(path: Path, proto) -> Any:
    size = path.stat().st_size
    if size > MAX_PB_BYTES:
        raise ModelLoadError(f"{path}: {size:,} bytes is more than protobuf's 2 GiB limit")
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise ModelLoadError(f"{path}: not a valid protobuf ({type(e).__name__}); the SavedModel is corrupt") from e
    return proto


def _saved_model(path: Path):
    from ..keras_compat import tf

    tf()
    from tensorflow.core.protobuf import saved_model_pb2  # type: ignore

    return _read_pb(path / "saved_model.pb", saved_model_pb2.SavedModel())


def _parse(meta: str, where: str) -> Any:
    if not meta:
        return None
    try:
        return json.loads(meta)
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{where}: Keras metadata that is not valid JSON ({e.msg}); the SavedModel is corrupt") \
            from e


def keras_metadata(path: Path) -> list[dict]:
    """Every Keras metadata record of the SavedModel folder ``path`` (``[]`` when it has none).

    Each record is ``{"identifier": "_tf_keras_layer"|..., "metadata": <parsed JSON>}``.
    """
    path = Path(path)
    out: list[dict] = []
    meta_file = path / "keras_metadata.pb"
    if meta_file.exists():
        from ..keras_compat import tf

        tf()
        from tensorflow.python.keras.protobuf import saved_metadata_pb2  # type: ignore

        proto = _read_pb(meta_file, saved_metadata_pb2.SavedMetadata())
        for node in proto.nodes:
            parsed = _parse(node.metadata, str(meta_file))
            if parsed is not None:
                out.append({"identifier": node.identifier, "metadata": parsed})
    sm = _saved_model(path)
    for graph in sm.meta_graphs:
        for node in graph.object_graph_def.nodes:
            if node.WhichOneof("kind") != "user_object":
                continue
            parsed = _parse(node.user_object.metadata, str(path / "saved_model.pb"))
            if parsed is not None:
                out.append({"identifier": node.user_object.identifier, "metadata": parsed})
    return out


def is_keras_savedmodel(records: list[dict]) -> bool:
    """True when the metadata describes a Keras model tf_keras would rebuild."""
    return any(str(r["identifier"]).startswith("_tf_keras") for r in records)


def signatures(path: Path) -> list[str]:
    """The signature keys of the SavedModel's first MetaGraph."""
    sm = _saved_model(Path(path))
    if not sm.meta_graphs:
        return []
    return sorted(sm.meta_graphs[0].signature_def.keys())


def check_servable(path: Path) -> list[str]:
    """Signatures of a SavedModel without Keras config; refuse one the TFLite converter cannot convert."""
    sigs = signatures(path)
    if not sigs:
        raise ModelLoadError(f"{path}: a SavedModel with no serving signature; save it with "
                             "tf.saved_model.save(module, dir, signatures=module.__call__.get_concrete_function(...))")
    return sigs


def export_batch_one(path: Path, dest: Path) -> bool:
    """Write to ``dest`` a SavedModel whose serving signature is ``path``'s with a batch of 1 (same input and
    output names, same variables); False (nothing written) when ``path`` has no ``serving_default`` signature
    (the one the TFLite converter reads) or its batch is already fixed.

    The serving function is called from a new function traced on ``[1, ...]`` inputs: the converter inlines it
    and the shape arithmetic an open batch needs (``SHAPE``, ``GATHER``, ``REDUCE_PROD``, ``PACK``) folds away.
    """
    from ..keras_compat import tf

    t = tf()
    loaded = t.saved_model.load(str(path))
    sig = loaded.signatures.get("serving_default")
    if sig is None:
        return False
    args, kwargs = sig.structured_input_signature
    if args or not kwargs or any(not s.shape.rank for s in kwargs.values()) or \
            all(s.shape[0] == 1 for s in kwargs.values()):
        return False  # positional or scalar / unknown-rank inputs, or the batch is fixed already
    names = sorted(kwargs)
    specs = [t.TensorSpec([1, *kwargs[n].shape[1:]], kwargs[n].dtype, name=n) for n in names]

    def serve(*xs):
        return sig(**dict(zip(names, xs)))

    holder = t.Module()
    holder.loaded = loaded  # its variables are saved with the new signature
    holder.serve = t.function(serve, input_signature=specs)
    t.saved_model.save(holder, str(dest), signatures={"serving_default": holder.serve.get_concrete_function()})
    return True
