"""Quantization-aware training: real tfmot QAT on digits, int8 conversion, LiteRT inference."""

import numpy as np
import pytest

from compress_helpers import context, copy_model, magnitude_prune, mlp, tflite_accuracy
from edgepack.convert.flatbuffer import read_tflite
from edgepack.convert.tflite import convert
from edgepack.errors import RecipeError
from edgepack.passes.cluster import Cluster
from edgepack.passes.qat import QAT
from edgepack.passes.training import evaluate_accuracy
from edgepack.recipe import QuantizeConfig, Recipe

FT = {"epochs": 1, "learning_rate": 1e-4, "validation_split": 0}


def _int8_weights(data: bytes, min_size: int = 200) -> list[np.ndarray]:
    """The int8 constant tensors (kernels) of a .tflite, read from the flatbuffer."""
    from edgepack.convert.flatbuffer import _schema

    s = _schema()
    m = s.Model.GetRootAsModel(data, 0)
    sub = m.Subgraphs(0)
    out = []
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        buf = m.Buffers(t.Buffer())
        if t.Type() == 9 and buf.DataLength() >= min_size:
            out.append(buf.DataAsNumpy().view(np.int8).reshape(t.ShapeAsNumpy()))
    return out


def test_qat_model_converts_to_int8_and_runs():
    ctx = context()
    model = mlp()
    step = QAT(QAT.Config(fine_tune=FT))
    qat = step.apply(copy_model(model), ctx)
    assert any(type(lyr).__name__.startswith("QuantizeWrapper") for lyr in qat.layers)
    assert ctx.records[-1]["preserve"] == "none" and ctx.records[-1]["quantized_layers"] >= 2
    data = convert(qat, QuantizeConfig(mode="int8", io="int8"), calibration=ctx.calibration)
    info = read_tflite(data)
    assert info.tensors[info.inputs[0]].dtype == "int8"
    assert "FULLY_CONNECTED" in info.op_names() and "DEQUANTIZE" not in info.op_names()
    assert tflite_accuracy(data, ctx.eval) > evaluate_accuracy(model, ctx.eval) - 5.0


def test_partial_qat_leaves_unsupported_layers_float_with_reason():
    from edgepack.keras_compat import keras, set_seed

    k = keras()
    set_seed(0)
    inp = k.Input((8, 8, 1))
    x = k.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inp)
    x = k.layers.Conv2D(8, 3, name="conv")(x)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.ReLU()(x)
    gate = k.layers.Conv2D(8, 1, activation="sigmoid", name="gate")(x)
    x = k.layers.Multiply(name="mul")([x, gate])
    x = x[:, :, :, :4]  # a slicing op (SlicingOpLambda), tfmot issue #1139
    x = k.layers.UpSampling2D(name="up")(x)
    x = k.layers.Flatten()(x)
    out = k.layers.Dense(10, name="out")(x)
    model = k.Model(inp, out)
    ctx = context()
    qat = QAT(QAT.Config(fine_tune={**FT, "epochs": 3, "learning_rate": 3e-3})).apply(model, ctx)
    reasons = {r["layer"]: r["reason"] for r in ctx.records[-1]["float_layers"]}
    assert "rescale" in reasons and "Rescaling" in reasons["rescale"]
    assert "mul" in reasons and "Multiply" in reasons["mul"]
    assert any("SlicingOpLambda" in r for r in reasons.values())
    assert "bn" not in reasons and "conv" not in reasons  # BN folded into the conv by tfmot
    data = convert(qat, QuantizeConfig(mode="int8"), calibration=ctx.calibration)
    assert tflite_accuracy(data, ctx.eval) > 50.0  # trained from scratch for 3 epochs, runs in LiteRT


def test_pcqat_chain_keeps_sparsity_and_clusters_in_int8():
    ctx = context()
    model = magnitude_prune(mlp(), 0.75, epochs=2)
    cl = Cluster(Cluster.Config(clusters=6), previous=("prune_magnitude",))
    clustered = cl.apply(model, ctx)
    q = QAT(QAT.Config(fine_tune=FT), previous=("prune_magnitude", "cluster"))
    assert q.preserve == "sparsity_clusters"
    qat = q.apply(clustered, ctx)
    data = convert(qat, QuantizeConfig(mode="int8"), calibration=ctx.calibration)
    kernels = _int8_weights(data)
    assert kernels
    for w in kernels:
        assert np.mean(w == 0) >= 0.7
        rows = w.reshape(w.shape[0], -1)
        assert max(np.unique(r).size for r in rows) <= 7  # 6 clusters + the preserved zero
    assert tflite_accuracy(data, ctx.eval) > 70.0


def test_pqat_keeps_pruning_in_int8():
    ctx = context()
    pruned = magnitude_prune(mlp(), 0.8, epochs=1)
    q = QAT(QAT.Config(fine_tune=FT), previous=("prune_magnitude",))
    assert q.preserve == "sparsity"
    data = convert(q.apply(pruned, ctx), QuantizeConfig(mode="int8"), calibration=ctx.calibration)
    for w in _int8_weights(data):
        assert np.mean(w == 0) >= 0.79


def test_qat_order_and_data_errors():
    with pytest.raises(RecipeError, match="cannot follow 'qat'"):
        Recipe.from_dict({"steps": [{"type": "qat"}, {"type": "qat"}]})
    with pytest.raises(RecipeError, match="needs train data"):
        QAT(QAT.Config()).apply(mlp(epochs=0), context(train=False))
    with pytest.raises(RecipeError, match="no layer named"):
        QAT(QAT.Config(float_layers={"names": ["missing"]})).preflight(mlp(epochs=0))


def test_step_records_count_the_real_macs_after_qat():
    """keras_stats sees through tfmot's QuantizeWrapperV2: a QAT model costs what the float one does."""
    from compress_helpers import residual_cnn
    from edgepack.keras_stats import model_summary

    m = residual_cnn(epochs=0)
    qat, _ = QAT(QAT.Config())._quantize(m, fold_bn=True)
    assert any(type(lyr).__name__ == "QuantizeWrapperV2" for lyr in qat.layers)
    before, after = model_summary(m), model_summary(qat)
    assert after["macs"] == before["macs"] > 900_000
    assert after["params"] == before["params"]
    tfl = convert(qat, QuantizeConfig(mode="int8", io="int8"), context().calibration)
    assert read_tflite(tfl).macs() == after["macs"]
