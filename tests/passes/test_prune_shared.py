"""Structured pruning on shared layers and on operations whose tensor is not the first argument.

A layer called more than once (the same Dense on two tensors, the same Conv2D on two branches) keeps
its channels: every group feeding any of its calls is blocked, with the reason, and the rest of the
model is pruned. A TFOpLambda with the constant first (tf_keras ``tf.math.add(3.0, x)``, Keras 3
``3.0 - x`` translated) passes channels through. Both end either
packaged or refused in one line through the real ``edgepack package``, never in a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgepack.keras_compat import keras
from edgepack.passes.base import Context
from edgepack.passes.prune_structured import StructuredPrune
from edgepack.passes.pruning.graph import build_graph
from edgepack.passes.pruning.surgery import layer_channels, plan_cost
from refusal import assert_refused

DATA = Path(__file__).resolve().parents[2] / "calibration_data" / "mnist"


def _prune(model, **cfg):
    ctx = Context()
    cfg.setdefault("round_to", 1)
    cfg.setdefault("ratio", 0.5)
    out = StructuredPrune(StructuredPrune.Config(**cfg)).apply(model, ctx)
    return out, ctx.records[-1]


def _close(a, b, x):
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def shared_dense(shape=(6,)):
    """The same Dense applied to two tensors, then added."""
    k = keras()
    L = k.layers
    i = k.Input(shape)
    x = L.Flatten(name="flat")(i) if len(shape) > 1 else i
    a = L.Dense(5, activation="relu", name="a")(x)
    b = L.Dense(5, activation="relu", name="b")(x)
    shared = L.Dense(4, name="shared")
    h = L.Dense(6, activation="relu", name="head")(L.Add(name="add")([shared(a), shared(b)]))
    return k.Model(i, L.Dense(3 if len(shape) == 1 else 10, name="out")(h), name="shared_dense")


def shared_conv(shape=(12, 12, 3), same_size: bool = True):
    """The same Conv2D on two branches (of the same or of different spatial sizes)."""
    k = keras()
    L = k.layers
    i = k.Input(shape)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(i)
    p = L.Conv2D(6, 1, name="left")(x)
    q = L.Conv2D(6, 1, name="right")(x if same_size else L.MaxPooling2D(name="pool")(x))
    conv = L.Conv2D(4, 3, padding="same", name="shared_conv")
    g1 = L.GlobalAveragePooling2D(name="gap1")(conv(p))
    g2 = L.GlobalAveragePooling2D(name="gap2")(conv(q))
    h = L.Dense(8, activation="relu", name="fc")(L.Concatenate(name="cat")([g1, g2]))
    return k.Model(i, L.Dense(10, name="out")(h), name="shared_conv")


def const_first(shape=(12, 12, 3)):
    """``tf.math.add(3.0, x)``: a TFOpLambda whose tensor is not its first argument."""
    k = keras()  # selects Keras 2 before TensorFlow is imported
    import tensorflow as tf

    L = k.layers
    i = k.Input(shape)
    x = L.Conv2D(8, 3, padding="same", name="c1")(i)
    x = tf.math.add(3.0, x)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return k.Model(i, L.Dense(10, name="out")(x), name="const_first")


# -- the graph ---------------------------------------------------------------------------------------------

def test_shared_dense_blocks_every_call_input_and_prunes_the_rest():
    m = shared_dense()
    g = build_graph(m)
    for name in ("a", "b"):
        assert "feeds layer 'shared' (Dense): layer is shared" in g.group_of(name).blocked, name
    assert g.group(g.out_layout["shared"].segments[0][0]).blocked  # its own output: kept whole too
    assert [grp.name for grp in g.prunable()] == ["head"]
    pruned, rec = _prune(m)
    assert pruned.get_layer("shared").get_weights()[0].shape == (5, 4)
    assert pruned.get_layer("head").units == 3 and pruned.get_layer("out").get_weights()[0].shape == (3, 3)
    assert "'shared'" in json.dumps(rec["skipped_groups"])  # the report says why a and b kept their channels


def test_shared_dense_pruned_exactly_when_head_channels_are_zero():
    m = shared_dense()
    w = m.get_layer("head").get_weights()
    w[0][:, [0, 2, 4]] = 0.0
    w[1][[0, 2, 4]] = 0.0
    m.get_layer("head").set_weights(w)
    pruned, _ = _prune(m)
    assert pruned.get_layer("head").units == 3
    _close(m, pruned, np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32))


@pytest.mark.parametrize("same_size", [True, False], ids=["same_size", "different_size"])
def test_shared_conv_on_two_branches(same_size):
    m = shared_conv(same_size=same_size)
    g = build_graph(m)
    assert g.group_of("left").blocked and g.group_of("right").blocked
    names = [grp.name for grp in g.prunable()]
    assert "stem" in names and "fc" in names and "shared_conv" not in names
    keep = {grp.id: np.arange(grp.size // 2) for grp in g.prunable()}
    layer_channels(m, g, keep)  # costs a plan without raising
    p0, _ = plan_cost(m, g, {})
    p1, _ = plan_cost(m, g, keep)
    assert p1 < p0
    pruned, rec = _prune(m)
    assert pruned.get_layer("stem").filters == 4 and pruned.get_layer("shared_conv").filters == 4
    assert pruned.get_layer("left").get_weights()[0].shape == (1, 1, 4, 6)
    assert rec["params_after"] < rec["params_before"]
    pruned.predict(np.zeros((2, 12, 12, 3), np.float32), verbose=0)


def test_constant_first_operation_passes_channels_through():
    m = const_first()
    g = build_graph(m)
    assert [grp.name for grp in g.prunable()] == ["c1", "c2"]
    keep = {grp.id: np.arange(grp.size // 2) for grp in g.prunable()}
    rows = layer_channels(m, g, keep)
    assert rows["c2"][1] == 4 and rows["c2"][3] == 3  # c2 reads c1's 4 kept channels through the op
    w = m.get_layer("c1").get_weights()
    w[0][..., [1, 3, 5, 7]] = 0.0
    w[1][[1, 3, 5, 7]] = -3.0  # c1's output + 3.0 is exactly 0 on these channels
    m.get_layer("c1").set_weights(w)
    w = m.get_layer("c2").get_weights()
    w[0][..., [0, 2, 4]] = 0.0
    w[1][[0, 2, 4]] = 0.0  # c2 loses 3 of 6 channels too: zero ones
    m.get_layer("c2").set_weights(w)
    pruned, rec = _prune(m)
    assert pruned.get_layer("c1").filters == 4
    assert rec["macs_after"] < rec["macs_before"]
    assert pruned.get_layer("c2").get_weights()[0].shape[-2] == 4
    _close(m, pruned, np.random.default_rng(1).normal(size=(4, 12, 12, 3)).astype(np.float32))


# -- through the CLI ------------------------------------------------------------------------------------------

KERAS3_CONST_FIRST = """
import sys, keras
assert keras.__version__.startswith("3."), keras.__version__
L = keras.layers
i = keras.Input((28, 28, 1))
x = L.Conv2D(8, 3, padding="same", name="c1")(i)
x = 3.0 - x  # Subtract does not commute: translated with the constant first
x = L.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
x = L.GlobalAveragePooling2D(name="gap")(x)
keras.Model(i, L.Dense(10, name="out")(x), name="const_first_k3").save(sys.argv[1])
"""


def keras3_const_first(path: Path) -> Path:
    """``3.0 - x`` saved by Keras 3 (a child process: Keras 3 cannot be the tf.keras here)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    r = subprocess.run([sys.executable, "-c", KERAS3_CONST_FIRST, str(path)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and path.exists(), r.stderr[-3000:]
    return path


def _package(run_cli, tmp_path, model):
    if isinstance(model, Path):
        path = model
    else:
        path = tmp_path / f"{model.name}.h5"
        model.save(path)
    recipe = {"version": 1, "data": {"preprocess": {"scale": 1 / 255.0, "mean": 0.0}},
              "steps": [{"type": "prune_structured", "ratio": 0.5, "round_to": 2}]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = tmp_path / "out"
    res = run_cli("package", path, "--target", "android", "--recipe", tmp_path / "recipe.yaml",
                  "--calibration", DATA / "calib.npz", "--quantize", "none", "--out", out, "--quiet",
                  "--max-accuracy-drop", "none")  # untrained models: labels at chance, the gate is not tested here
    return res, out


@pytest.mark.parametrize("build,skipped", [(shared_dense, "'shared'"), (shared_conv, "'shared_conv'"),
                                           (const_first, None), pytest.param(None, None, marks=pytest.mark.slow)],
                         ids=["dense", "conv", "h5_const_first", "keras3_const_first"])  # slow: Keras 3 starts in a child process
def test_cli_packages_the_rest_of_the_model(build, skipped, run_cli, tmp_path):
    keras().utils.set_random_seed(0)
    model = keras3_const_first(tmp_path / "k3.keras") if build is None else build((28, 28, 1))
    res, out = _package(run_cli, tmp_path, model)
    if res.exit_code != 0:  # a refusal must be edgepack's one line (a raw exception fails run_cli itself)
        assert_refused(res, out=out)
    assert res.exit_code == 0, res.err
    report = json.loads((out / "report.json").read_text())
    step = next(s for s in report["steps"] if s["step"] == "prune_structured")
    assert step["macs_after"] < step["macs_before"]
    if skipped:
        assert skipped in json.dumps(step["skipped_groups"])
