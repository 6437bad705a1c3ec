"""Automatic mixed precision: a model plain int8 breaks, repaired per op, run in LiteRT."""

import numpy as np
import pytest

from compress_helpers import context, mlp, outlier_model, tflite_accuracy
from edgepack.convert.flatbuffer import read_tflite
from edgepack.convert.tflite import convert
from edgepack.quantize.apply import quantize_model
from edgepack.errors import RecipeError
from edgepack.quantize.mixed_precision import MixedPrecision
from edgepack.recipe import QuantizeConfig, Recipe

INT8 = QuantizeConfig(mode="int8", io="float")


@pytest.fixture(scope="module")
def model():
    return outlier_model()


def test_mixed_precision_recovers_what_int8_loses(model):
    ctx = context()
    float_tfl = convert(model, QuantizeConfig(mode="none"))
    int8_tfl = convert(model, INT8, ctx.calibration)
    acc_float, acc_int8 = tflite_accuracy(float_tfl, ctx.eval), tflite_accuracy(int8_tfl, ctx.eval)
    assert acc_int8 < acc_float - 20  # plain int8 really breaks this model
    step = MixedPrecision(MixedPrecision.Config(max_accuracy_drop=1.0))
    plan = step.plan(model, ctx, INT8)
    rec = ctx.records[-1]
    assert rec["met"] and rec["drop_pt"] <= 1.0 and rec["metric"] == "accuracy"
    by_layer = {u["layer"]: u for u in rec["ops"]}
    assert by_layer["fc1"]["drop_pt"] > 20  # sensitivity measured with only fc1 quantized
    assert by_layer["flatten"]["choice"] == "int8"
    assert by_layer["fc1"]["choice"] != "int8"
    mixed = quantize_model(model, INT8, ctx.calibration, plan=plan)
    assert tflite_accuracy(mixed, ctx.eval) > acc_float - 2.0
    assert len(mixed) < 0.6 * len(float_tfl)  # int8 weights everywhere (int16x8 keeps int8 weights)
    dtypes = {read_tflite(mixed).tensors[o.outputs[0]].dtype for o in read_tflite(mixed).ops}
    assert "int16" in dtypes or "float32" in dtypes


def test_well_behaved_model_stays_all_int8_and_float_only_fallback():
    ctx = context(train=False)
    ctx.eval = None  # no labels: scored by top-1 agreement with the float model (class probabilities, 100 samples)
    m = mlp(softmax=True)
    MixedPrecision(MixedPrecision.Config(max_accuracy_drop=3.0)).plan(m, ctx, INT8)
    rec = ctx.records[-1]
    assert rec["metric"] == "agreement" and rec["counts"]["int16x8"] == rec["counts"]["float"] == 0
    assert len(rec["search"]) == 1
    assert all(u["drop_pt"] is None for u in rec["ops"])  # all int8 met the budget: no per-op sensitivity runs
    ctx = context()
    MixedPrecision(MixedPrecision.Config(max_accuracy_drop=1.0, allow=["float"])).plan(outlier_model(), ctx, INT8)
    rec = ctx.records[-1]
    assert rec["met"] and rec["counts"]["int16x8"] == 0 and rec["counts"]["float"] >= 1


def test_order_and_conversion_errors(model):
    with pytest.raises(RecipeError, match="cannot follow 'qat'"):
        Recipe.from_dict({"steps": [{"type": "qat"}, {"type": "mixed_precision"}]})
    with pytest.raises(RecipeError, match="cannot follow 'mixed_precision'"):
        Recipe.from_dict({"steps": [{"type": "mixed_precision"}, {"type": "qat"}]})
    with pytest.raises(RecipeError, match="cannot follow 'mixed_precision'"):
        Recipe.from_dict({"steps": [{"type": "mixed_precision"}, {"type": "cluster"}]})
    with pytest.raises(RecipeError, match="needs calibration"):
        MixedPrecision(MixedPrecision.Config()).plan(model, context().__class__(), INT8)
    with pytest.raises(RecipeError, match="io float or the mode's integer type"):
        quantize_model(model, QuantizeConfig(mode="int8", io="uint8"), context().calibration,
                       plan={"sequential/fc1/MatMul": "int16x8"})


@pytest.mark.parametrize("io", ["float", "int8"])
def test_per_op_precision_honours_the_io_asked_for(io):
    m, ctx = mlp(softmax=True), context()
    data = quantize_model(m, QuantizeConfig(mode="int8", io=io), ctx.calibration, plan={})
    info = read_tflite(data)
    want = "float32" if io == "float" else "int8"
    assert [info.tensors[i].dtype for i in info.inputs + info.outputs] == [want, want]
    assert tflite_accuracy(data, ctx.eval) > 85


def test_user_rules_pin_ops_and_a_rule_matching_nothing_is_an_error():
    m, ctx = mlp(softmax=True), context()
    q = QuantizeConfig(mode="int8", rules=[{"op": "FULLY_CONNECTED", "match": "fc1", "precision": "float"}])
    info = read_tflite(quantize_model(m, q, ctx.calibration))
    fc = [op for op in info.ops if op.op == "FULLY_CONNECTED"]
    kinds = sorted(info.tensors[op.outputs[0]].dtype for op in fc)
    assert kinds == ["float32", "int8"]  # fc1 float (pinned), out int8
    bad = QuantizeConfig(mode="int8", rules=[{"match": "no_such_layer", "precision": "float"}])
    with pytest.raises(RecipeError, match=r"rules\[0\].*matches no op"):
        quantize_model(m, bad, ctx.calibration)
    with pytest.raises(RecipeError, match="not a valid regular expression"):
        Recipe.from_dict({"quantize": {"rules": [{"match": "(", "precision": "float"}]}})
    with pytest.raises(RecipeError, match="io float or the mode's integer type"):  # with the recipe, before training
        Recipe.from_dict({"quantize": {"io": "uint8", "rules": [{"op": "SOFTMAX", "precision": "float"}]}})
