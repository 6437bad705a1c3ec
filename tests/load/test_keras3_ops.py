"""Keras 3 operation nodes: the table (against Keras 3 and TensorFlow themselves), the scan (exactly the table,
nested configs too, TFOpLambda only with the table's functions), node translation forms, and pruning's graph
through translated operations."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgepack.errors import ModelLoadError
from edgepack.load import keras3_ops
from edgepack.load.keras3_ops import OPS, OpError, translate_op
from edgepack.load.scan import scan_config


def _tensor(name: str, shape=(None, 4, 6)) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": list(shape), "dtype": "float32",
                                                         "keras_history": [name, 0, 0]}}


def _op(cls: str, *args, module: str = keras3_ops.NP, **config) -> dict:
    name = config.pop("name", cls.lower())
    return {"module": module, "class_name": cls, "registered_name": cls, "name": name,
            "config": {"name": name, **config}, "inbound_nodes": [{"args": list(args), "kwargs": {}}]}


def _model(*layers) -> dict:
    inp = {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None, "name": "x",
           "config": {"name": "x", "batch_shape": [None, 4, 6], "dtype": "float32"}, "inbound_nodes": []}
    return {"module": "keras", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": "m", "layers": [inp, *layers], "input_layers": [["x", 0, 0]],
                       "output_layers": [[layers[-1]["name"], 0, 0]]}}


def test_table_matches_keras3_and_tensorflow():
    """Every (module, class) is a Keras 3 Operation (asked of Keras 3 in a child process) and every TF function
    resolves the way tf_keras' TFOpLambda.from_config resolves it."""
    from edgepack.keras_compat import keras

    keras()  # TF_USE_LEGACY_KERAS set before TensorFlow is imported
    from tensorflow.python.util.tf_export import get_symbol_from_name

    script = ("import importlib, json, sys\nfrom keras.src.ops.operation import Operation\nbad = []\n"
              "for m, c in json.loads(sys.stdin.read()):\n"
              "    k = getattr(importlib.import_module(m), c, None)\n"
              "    if not (isinstance(k, type) and issubclass(k, Operation)): bad.append([m, c])\n"
              "print(json.dumps(bad))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    r = subprocess.run([sys.executable, "-c", script], input=json.dumps(sorted(OPS)), capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr[-1500:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
    missing = [f for f in keras3_ops.TF_FUNCTIONS if get_symbol_from_name(f) is None]
    assert not missing and len(OPS) >= 50


def test_scan_accepts_exactly_the_table_nested_too():
    ok = _model(_op("Add", _tensor("x"), 3.0))
    scan_config(ok, "m.keras")
    outside = _model(_op("Cumprod", _tensor("x"), axis=1))
    with pytest.raises(ModelLoadError, match="'cumprod' is the Keras 3 operation 'Cumprod'.*no longer|Cumprod"):
        scan_config(outside, "m.keras")
    nested = _model({**outside, "name": "inner", "config": {**outside["config"], "name": "inner"},
                     "inbound_nodes": [{"args": [_tensor("x")], "kwargs": {}}]})
    with pytest.raises(ModelLoadError, match="Cumprod"):
        scan_config(nested, "m.keras")
    for bad in (_op("Add", _tensor("x"), 3.0, module="keras.src.ops.evil"),
                {**_op("Add", _tensor("x"), 3.0), "registered_name": "Lambda"},
                _op("Add", _tensor("x"), 3.0, module="os")):
        with pytest.raises(ModelLoadError, match="add"):
            scan_config(_model(bad), "m.keras")


def test_scan_tfoplambda_only_with_table_functions():
    def cfg(fn):
        return {"class_name": "Functional", "config": {"name": "m", "layers": [
            {"class_name": "InputLayer", "name": "x", "config": {"name": "x", "batch_input_shape": [None, 4]},
             "inbound_nodes": []},
            {"class_name": "TFOpLambda", "name": "op", "config": {"name": "op", "function": fn},
             "inbound_nodes": [["x", 0, 0, {"y": 3.0}]]}],
            "input_layers": [["x", 0, 0]], "output_layers": [["op", 0, 0]]}}

    scan_config(cfg("math.add"), "m.h5")
    for fn in ("io.write_file", "py_function", "numpy_function", "compat.v1.py_func"):
        with pytest.raises(ModelLoadError, match=f"TFOpLambda calling tf.{fn}, which is not in"):
            scan_config(cfg(fn), "m.h5")


def test_translate_op_node_forms():
    taken = {"x"}
    # a constant first argument of a commutative op is swapped behind the tensor; not for subtract
    [add] = translate_op(_op("Add", 3.0, _tensor("x")), taken)
    assert add["class_name"] == "TFOpLambda" and add["config"]["function"] == "math.add"
    assert add["inbound_nodes"] == [["x", 0, 0, {"y": 3.0}]]
    [sub] = translate_op(_op("Subtract", 2.0, _tensor("x")), taken)
    assert sub["inbound_nodes"] == [["_CONSTANT_VALUE", -1, 2.0, {"y": ["x", 0, 0]}]]
    # x[..., None] on a rank-3 tensor: the Ellipsis is spelt out (JSON has none)
    idx = [{"class_name": "__ellipsis__", "config": {}}, None]
    [get] = translate_op(_op("GetItem", _tensor("x"), idx), taken)
    full = {"start": None, "stop": None, "step": None}
    assert get["class_name"] == "SlicingOpLambda"
    assert get["inbound_nodes"] == [["x", 0, 0, {"slice_spec": [full, full, full, None]}]]
    [cat] = translate_op(_op("Concatenate", [_tensor("x"), _tensor("x")], axis=-1), taken)
    assert cat["inbound_nodes"] == [[["x", 0, 0, {"axis": -1}], ["x", 0, 0, {"axis": -1}]]]
    chain = translate_op(_op("HardSilu", _tensor("x"), module=keras3_ops.NN, name="hs"), taken)
    assert [c["config"]["function"] for c in chain] == ["math.add", "nn.relu6", "math.multiply", "math.multiply"]
    assert chain[-1]["name"] == "hs" and chain[-1]["inbound_nodes"][0][3] == {"y": ["x", 0, 0]}
    assert len({c["name"] for c in chain}) == 4 and {c["name"] for c in chain[:-1]} <= taken
    for bad, what in ((_op("Max", _tensor("x"), axis=1, keepdims=False, initial=1.0), "initial"),
                      (_op("GetItem", _tensor("x"), [_tensor("x")]), "tensor"),
                      (_op("Reshape", _tensor("x"), newshape=[-1], order="F"), "order")):
        with pytest.raises(OpError, match=what):
            translate_op(bad, taken)


def test_tf_keras_file_with_table_tf_ops_loads(tmp_path):
    """tf_keras saves `x + 3`, `tf.nn.relu6`, slicing as TFOpLambda/SlicingOpLambda: they load now (refused before)."""
    from edgepack.keras_compat import keras, tf
    from edgepack.load import load_source

    k, t = keras(), tf()
    i = k.Input((4, 6))
    x = k.layers.Dense(6)(i)
    y = t.nn.relu6(x + 3.0) * (1.0 / 6.0) * x
    y = t.reduce_mean(y[:, 1:3], axis=1)
    model = k.Model(i, k.layers.Dense(2)(y))
    model.save(tmp_path / "ops.h5")
    src = load_source(tmp_path / "ops.h5")
    xs = np.random.default_rng(0).normal(size=(5, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(src.model(xs).numpy(), model(xs).numpy(), atol=1e-6)
    assert {type(l).__name__ for l in src.model.layers} >= {"TFOpLambda", "SlicingOpLambda"}


def _hard_swish_se_model():
    """Conv -> hard-swish (TFOpLambda chain, as translated) -> squeeze-excite gate -> Conv: every op kind."""
    from edgepack.keras_compat import keras, tf

    k, t = keras(), tf()
    L = k.layers
    i = k.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(i)
    x = x * (t.nn.relu6(x + 3.0) * (1.0 / 6.0))
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(8, 1, name="se_expand")(s)
    s = t.nn.relu6(s + 3.0) * (1.0 / 6.0)
    x = L.Multiply(name="gate")([x, s])
    x = L.Conv2D(6, 1, name="c2")(x)
    return k.Model(i, L.Dense(3, name="out")(L.GlobalAveragePooling2D()(x)))


def test_structured_pruning_through_hard_swish_and_squeeze_excite():
    from edgepack.passes.base import Context
    from edgepack.passes.prune_structured import StructuredPrune
    from edgepack.passes.pruning.graph import build_graph

    model = _hard_swish_se_model()
    groups = {g.name: g for g in build_graph(model).prunable()}
    assert "c1+se_expand" in groups and "se_reduce" in groups and "c2" in groups  # the gate couples c1 and se_expand
    w, b = model.get_layer("c1").get_weights()
    w[..., [1, 5]], b[[1, 5]] = 0.0, 0.0  # channels 1 and 5 of c1 give exact zeros through hard-swish and the gate
    model.get_layer("c1").set_weights([w, b])
    ew, eb = model.get_layer("se_expand").get_weights()
    ew[..., [1, 5]], eb[[1, 5]] = 0.0, 0.0  # least important in the coupled group too
    model.get_layer("se_expand").set_weights([ew, eb])
    ctx = Context()
    pruned = StructuredPrune(StructuredPrune.Config(ratios={"c1": 0.25}, round_to=1)).apply(model, ctx)
    assert pruned.get_layer("c1").filters == 6 and pruned.get_layer("se_expand").filters == 6
    xs = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(xs).numpy(), model(xs).numpy(), atol=1e-5)


def test_one_shot_clustering_recalibrates_batchnorm_of_a_functional_model():
    """strip_clustering reuses layer objects; the one-shot BN recalibration must still see one graph (it said
    'Graph disconnected' on any functional model with BatchNormalization, translated MobileNetV3 included)."""
    from edgepack.keras_compat import keras, tf
    from edgepack.passes.base import Context
    from edgepack.passes.cluster import Cluster

    k, t = keras(), tf()
    L = k.layers
    i = k.Input((8, 8, 3))
    x = L.BatchNormalization(name="bn")(L.Conv2D(8, 3, padding="same", name="c1")(L.Rescaling(1 / 255.0)(i)))
    x = x * (t.nn.relu6(x + 3.0) * (1.0 / 6.0))
    model = k.Model(i, L.Dense(3)(L.GlobalAveragePooling2D()(L.Conv2D(8, 3, name="c2")(x))))
    calib = np.random.default_rng(0).uniform(0, 255, (16, 8, 8, 3)).astype(np.float32)
    out = Cluster(Cluster.Config(clusters=8)).apply(model, Context(calibration=calib))
    assert len(np.unique(out.get_layer("c2").get_weights()[0])) <= 8
    act = k.Model(out.inputs, out.get_layer("bn").input)(calib).numpy()
    np.testing.assert_allclose(out.get_layer("bn").moving_mean.numpy(), act.mean((0, 1, 2)), rtol=1e-4, atol=1e-4)
