"""Structured pruning's table of layer rules: the table covers what the pruning tests prune, names real
tf_keras layers, each rule slices as its layer stores weights, and a new layer type is one entry in a copy
of the table (the global table untouched)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.keras_compat import keras, tf
from edgepack.passes.pruning import rules as R
from edgepack.passes.pruning.graph import build_graph
from edgepack.passes.pruning.importance import group_scores
from edgepack.passes.pruning.surgery import layer_channels, prune_model

# Every layer type the structured-pruning tests prune through (test_prune_structured, _bn, _select,
# _search, _training, test_keras3_ops' hard-swish/squeeze-excite, test_compact), with its role.
PRUNED_IN_TESTS = {
    "InputLayer": "input", "Conv2D": "producer", "Dense": "producer", "SeparableConv2D": "producer",
    "DepthwiseConv2D": "channel-wise", "BatchNormalization": "channel-wise", "ReLU": "pass-through",
    "Activation": "pass-through", "Dropout": "pass-through", "MaxPooling2D": "pass-through",
    "GlobalAveragePooling2D": "pass-through", "Flatten": "flatten", "Add": "merge", "Multiply": "merge",
    "Concatenate": "concatenate", "TFOpLambda": "operation",
}


def test_the_table_covers_the_layer_types_the_pruning_tests_prune():
    missing = {c for c in PRUNED_IN_TESTS if c not in R.RULES}
    assert not missing, f"layer types pruned in tests without a rule: {missing}"
    assert {c: R.rule_for(c).role for c in PRUNED_IN_TESTS} == PRUNED_IN_TESTS
    assert R.rule_for("LSTM") is R.UNSUPPORTED and R.rule_for("Reshape") is R.UNSUPPORTED


def test_every_rule_names_a_tf_keras_layer_class():
    """A misspelt entry would silently refuse its layer type: every key is a real tf_keras class name."""
    from tf_keras.src.layers.core import TFOpLambda

    layers = keras().layers
    unknown = [c for c in R.RULES if not hasattr(layers, c) and c != TFOpLambda.__name__]
    assert not unknown, f"rules for no tf_keras layer class: {unknown}"


def _every_rule_model():
    """Conv/BN/ReLU stem, depthwise+pointwise branch added back, a sigmoid gate, hard-swish through
    TFOpLambda, separable conv, concatenation, pooling, Flatten, Dense, Dropout."""
    k, t = keras(), tf()
    L = k.layers
    k.utils.set_random_seed(0)
    i = k.Input((8, 8, 3))
    x = L.ReLU(name="relu")(L.BatchNormalization(name="bn")(L.Conv2D(8, 3, padding="same", name="stem")(i)))
    y = L.Conv2D(8, 1, name="pw")(L.DepthwiseConv2D(3, padding="same", name="dw")(x))
    z = L.Add(name="add")([x, y])
    z = L.Multiply(name="gate")([z, L.Conv2D(8, 1, activation="sigmoid", name="gate_conv")(z)])
    h = z * t.nn.relu6(z + 3.0) * (1.0 / 6.0)  # hard-swish: TFOpLambda nodes
    s = L.Activation("relu", name="act")(L.SeparableConv2D(6, 3, padding="same", name="sep")(h))
    c = L.MaxPooling2D(name="mp")(L.Concatenate(name="cat")([h, s]))
    d = L.Dropout(0.1, name="drop")(L.Dense(16, activation="relu", name="fc")(L.Flatten(name="flat")(c)))
    return k.Model(i, L.Dense(4, name="out")(d))


def _zero_channels(model, idx) -> None:
    """Channels ``idx`` of the stem+pw+gate_conv group give exact zeros after the BN, the add and the gate."""
    for name in ("stem", "pw", "dw"):
        w = model.get_layer(name).get_weights()
        if name != "dw":
            w[0][..., idx] = 0.0
        w[-1][idx] = 0.0
        model.get_layer(name).set_weights(w)
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    gamma[idx], beta[idx], mean[idx] = 0.0, 0.0, 0.0
    model.get_layer("bn").set_weights([gamma, beta, mean, var])


def test_every_rule_together_removes_zero_channels_exactly():
    model = _every_rule_model()
    g = build_graph(model)
    assert {n.cls for n in g.nodes} <= set(R.RULES)  # no layer fell back to the refusal
    assert all(rule is not R.UNSUPPORTED for rule in g.layer_rules.values())
    reasons = {grp.blocked.split(" '")[0] for grp in g.all_groups() if grp.blocked}
    assert reasons == {"channels of the model input", "reaches the model output"}
    grp = g.group_of("stem")
    assert {"stem", "pw", "gate_conv"} <= set(grp.producers) and {"bn", "dw"} <= set(grp.channelwise)
    _zero_channels(model, [2, 5])
    keep = {grp.id: np.array([0, 1, 3, 4, 6, 7]), g.group_of("sep").id: np.arange(6)}
    pruned = prune_model(model, g, keep)
    assert pruned.get_layer("stem").filters == 6 and pruned.get_layer("sep").filters == 6
    assert pruned.get_layer("fc").get_weights()[0].shape[0] == 4 * 4 * (6 + 6)  # Flatten rows per position
    xs = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(xs).numpy(), model(xs).numpy(), atol=1e-5)
    assert layer_channels(model, g, keep)["fc"] == (16 * 14, 16 * 12, 16, 16)


class Scale(keras().layers.Layer):
    """A user layer the table does not know: element-wise, keeps channels."""

    def call(self, x):
        return x * 2.0


def _scale_model():
    k = keras()
    L = k.layers
    k.utils.set_random_seed(1)
    i = k.Input((6, 6, 3))
    x = Scale(name="scale")(L.Conv2D(8, 3, name="c1")(i))
    x = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(6, 1, name="c2")(x))
    return k.Model(i, L.Dense(3, name="out")(x))


def test_a_new_pass_through_layer_type_is_one_entry_in_a_copy_of_the_table():
    model = _scale_model()
    before = dict(R.RULES)
    blocked = build_graph(model)  # the global table: Scale refused, c1 blocked with today's message
    assert [grp.name for grp in blocked.prunable()] == ["c2"]
    c1 = blocked.group(blocked.produces["c1"])
    assert c1.blocked == "feeds layer 'scale' (Scale): channel pruning does not support this layer type"

    rules = {**R.RULES, "Scale": R.PassThrough(after_flatten=True)}  # the one entry
    g = build_graph(model, rules)
    assert [grp.name for grp in g.prunable()] == ["c1", "c2"]
    assert R.RULES == before and "Scale" not in R.RULES  # the global table is untouched

    w, b = model.get_layer("c1").get_weights()
    w[..., [1, 5]], b[[1, 5]] = 0.0, 0.0
    model.get_layer("c1").set_weights([w, b])
    scores = group_scores(model, g, "l1")[g.group(g.produces["c1"]).id]
    assert scores[1] == 0.0 and scores[5] == 0.0 and (np.delete(scores, [1, 5]) > 0).all()
    with keras().utils.custom_object_scope({"Scale": Scale}):
        pruned = prune_model(model, g, {g.produces["c1"]: np.array([0, 2, 3, 4, 6, 7])})
    assert pruned.get_layer("c1").filters == 6 and pruned.get_layer("c2").get_weights()[0].shape[2] == 6
    xs = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(pruned(xs).numpy(), model(xs).numpy(), atol=1e-5)


def test_a_new_operation_is_one_entry_of_the_operation_rule():
    k, t = keras(), tf()
    L = k.layers
    i = k.Input((6, 6, 3))
    x = t.math.square(L.Conv2D(4, 1, name="c1")(i))
    model = k.Model(i, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(L.Conv2D(4, 1, name="c2")(x))))
    g0 = build_graph(model)
    assert g0.group(g0.produces["c1"]).blocked.endswith("does not support the operation 'math.square' here")
    op = R.RULES["TFOpLambda"]
    g = build_graph(model, {**R.RULES, "TFOpLambda": R.OpLambda(unary=op.unary | {"math.square"})})
    assert [grp.name for grp in g.prunable()] == ["c1", "c2"]
    assert "math.square" not in R.OP_UNARY


def test_unknown_layer_types_keep_their_refusals():
    k = keras()
    L = k.layers
    i = k.Input((6, 4))
    a = L.LSTM(5, return_sequences=True, name="lstm")(L.Conv1D(4, 1, name="c0")(i))
    b = L.Dense(5, name="d")(i)
    m = L.Dot(axes=-1, name="dot")([a, b])
    model = k.Model(i, L.Dense(2, name="out")(L.Flatten()(m)))
    g = build_graph(model)
    assert g.group(g.produces["c0"]).blocked == ("feeds layer 'lstm' (LSTM): channel pruning does not support "
                                                  "this layer type")
    assert g.group(g.produces["d"]).blocked == "feeds layer 'dot' (Dot): layer has several inputs"


def test_separable_and_depthwise_rules_slice_their_own_weights():
    rng = np.random.default_rng(0)
    dw, pw, bias = rng.normal(size=(3, 3, 4, 2)), rng.normal(size=(1, 1, 8, 5)), rng.normal(size=5)
    w = R.RULES["SeparableConv2D"].slice([dw, pw, bias], np.array([1, 3]), np.array([0, 4]), dm=2)
    np.testing.assert_array_equal(w[0], dw[:, :, [1, 3], :])
    np.testing.assert_array_equal(w[1], pw[:, :, [2, 3, 6, 7], :][..., [0, 4]])  # rows in * dm + j
    np.testing.assert_array_equal(w[2], bias[[0, 4]])
    np.testing.assert_array_equal(R.RULES["SeparableConv2D"].scored_kernel(w), w[1])
    k, b = rng.normal(size=(3, 3, 4, 1)), rng.normal(size=4)
    w = R.RULES["DepthwiseConv2D"].slice([k, b], np.array([0, 2]), None)
    np.testing.assert_array_equal(w[0], k[:, :, [0, 2], :])
    np.testing.assert_array_equal(w[1], b[[0, 2]])
    bn = [rng.normal(size=4) for _ in range(4)]
    assert [x.tolist() for x in R.RULES["BatchNormalization"].slice(bn, np.array([3]), None)] == [
        [x[3]] for x in bn]
    dense = [rng.normal(size=(6, 4)), rng.normal(size=4)]
    w = R.RULES["Dense"].slice(dense, np.array([0, 5]), np.array([1]))
    np.testing.assert_array_equal(w[0], dense[0][[0, 5]][:, [1]])
    assert R.RULES["ReLU"].slice(dense, np.array([0]), None)[0] is dense[0]  # no weights tied to channels
    with pytest.raises(TypeError, match="no output filters"):
        R.RULES["ReLU"].scored_kernel(dense)
