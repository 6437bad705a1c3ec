"""tf.where (keras.ops.where) for --target tflm: the converter emits SELECT for operands of one static shape (the
batch-1 graph), which the pinned TFLM lacks; edgepack.tflm.prepare.select_v2 runs it as SELECT_V2 (same
results), leaves a SELECT on other shapes alone, and the model packages for tflm with parity."""

from __future__ import annotations

import numpy as np
import pytest


def _ops(data: bytes) -> list[str]:
    from edgepack.convert.flatbuffer import read_tflite

    return [op.op for op in read_tflite(data).ops]


@pytest.fixture(scope="module")
def where_model():
    """A Dense on a [batch, 6, 4] sequence (TFLM lacks the open batch's REDUCE_PROD: --target tflm converts a
    batch-1 clone) and a leaky ReLU written with tf.where, as a translated keras.ops.where gives it."""
    from edgepack.keras_compat import keras, set_seed, tf

    set_seed(0)
    k, t = keras(), tf()
    i = k.Input((6, 4))
    f = k.layers.Dense(5)(i)
    f = t.where(f > 0.0, f, f * 0.1)
    return k.Model(i, k.layers.Dense(3, activation="softmax")(k.layers.Flatten()(f)))


def _x(n: int = 32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 6, 4)).astype(np.float32)


def test_select_runs_as_select_v2_with_the_same_results(where_model):
    from edgepack.convert.tflite import convert
    from edgepack.recipe import QuantizeConfig
    from edgepack.runtime import LiteRT
    from edgepack.tflm import Tflm
    from edgepack.tflm.prepare import for_tflm, select_v2

    x = _x()
    ready = for_tflm(where_model)
    for quant in (QuantizeConfig(mode="none"), QuantizeConfig(mode="int8", io="int8")):
        data = convert(ready, quant, calibration=x, dense_per_channel=False)
        assert "SELECT" in _ops(data) and "SELECT_V2" not in _ops(data)  # one static shape: the converter's SELECT
        fixed = select_v2(data)
        assert "SELECT" not in _ops(fixed) and "SELECT_V2" in _ops(fixed)
        assert select_v2(fixed) == fixed and select_v2(data) == fixed  # idempotent, deterministic
        np.testing.assert_array_equal(LiteRT(fixed).predict(x), LiteRT(data).predict(x))
        micro = Tflm(fixed)  # TFLM's resolver has SELECT_V2 (the unrewritten model fails to allocate)
        assert micro is not None


def test_select_on_a_row_condition_is_left_alone():
    """tf.compat.v1.where with a rank-1 condition picks rows: SELECT_V2 would broadcast it on the last axis."""
    from edgepack.keras_compat import tf
    from edgepack.tflm.prepare import select_v2

    t = tf()

    @t.function(input_signature=[t.TensorSpec([3, 4], t.float32)])
    def rows(x):
        return t.compat.v1.where(t.reduce_sum(x, axis=1) > 0.0, x, -x)

    conv = t.lite.TFLiteConverter.from_concrete_functions([rows.get_concrete_function()])
    data = bytes(conv.convert())
    assert "SELECT" in _ops(data)
    assert select_v2(data) == data


def test_where_model_packages_for_tflm_with_parity(where_model, tmp_path):
    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe
    from edgepack.verify.parity import INT_PARITY_STEPS

    recipe = Recipe.from_dict({"quantize": {"mode": "int8", "io": "int8"},
                               "verify": {"max_accuracy_drop": "none", "step_metrics": False, "layer_errors": False}})
    report = package(PackageRequest(model=where_model, out=tmp_path / "fw", target="tflm", recipe=recipe,
                                    calibration=_x(), target_options={"device": "nucleo-l4r5zi"}))
    ops = _ops((tmp_path / "fw" / "model.tflite").read_bytes())
    assert "SELECT_V2" in ops and "SELECT" not in ops and "REDUCE_PROD" not in ops
    parity = report["firmware"]["parity"]
    assert parity["max_step_diff"] <= INT_PARITY_STEPS, parity
