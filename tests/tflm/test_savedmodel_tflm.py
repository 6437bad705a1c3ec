"""A SavedModel (no Keras config) for --target tflm: its open batch makes a Tensordot compute the batch size at
run time (SHAPE, GATHER, REDUCE_PROD, PACK: TFLM has no REDUCE_PROD); the serving signature is converted with a
batch of 1 (edgepack.tflm.prepare.saved_model_for_tflm) and the model packages for tflm with parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _ops(data: bytes) -> set[str]:
    from edgepack.convert.flatbuffer import read_tflite

    return {op.op for op in read_tflite(data).ops}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    from edgepack.keras_compat import tf

    t = tf()
    rng = np.random.default_rng(0)

    class Sequence(t.Module):
        def __init__(self):
            self.w = t.Variable(rng.normal(size=(4, 5)).astype(np.float32))
            self.head = t.Variable(rng.normal(size=(30, 3)).astype(np.float32) * 0.3)

        @t.function(input_signature=[t.TensorSpec([None, 6, 4], t.float32, name="series")])
        def __call__(self, x):
            h = t.nn.relu(t.tensordot(x, self.w, 1))  # [batch, 6, 5] on the open batch
            return {"probs": t.nn.softmax(t.reshape(h, [-1, 30]) @ self.head)}

    out = tmp_path_factory.mktemp("sm") / "sequence"
    m = Sequence()
    t.saved_model.save(m, str(out), signatures=m.__call__.get_concrete_function())
    return out


def _x(n: int = 32) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 6, 4)).astype(np.float32)


def test_batch_one_export_drops_the_open_batch_arithmetic(saved, tmp_path):
    from edgepack.convert.tflite import convert
    from edgepack.load.savedmodel import export_batch_one, signatures
    from edgepack.recipe import QuantizeConfig
    from edgepack.runtime import LiteRT

    dynamic = convert(saved, QuantizeConfig(mode="none"))
    assert {"SHAPE", "REDUCE_PROD"} <= _ops(dynamic)
    assert export_batch_one(saved, tmp_path / "b1")
    assert "serving_default" in signatures(tmp_path / "b1")
    fixed = convert(tmp_path / "b1", QuantizeConfig(mode="none"))
    assert not _ops(fixed) & {"SHAPE", "GATHER", "REDUCE_PROD", "PACK"}
    x = _x(4)
    np.testing.assert_allclose(LiteRT(fixed).predict(x), LiteRT(dynamic).predict(x), atol=1e-6)
    assert not export_batch_one(tmp_path / "b1", tmp_path / "again")  # already batch 1: nothing to do
    assert not (tmp_path / "again").exists()


def test_savedmodel_packages_for_tflm_with_parity(saved, tmp_path):
    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe
    from edgepack.verify.parity import INT_PARITY_STEPS

    recipe = Recipe.from_dict({"quantize": {"mode": "int8", "io": "int8"},
                               "verify": {"max_accuracy_drop": 2.0, "step_metrics": False, "layer_errors": False}})
    report = package(PackageRequest(model=saved, out=tmp_path / "fw", target="tflm", recipe=recipe,
                                    calibration=_x(), target_options={"device": "nucleo-l4r5zi"}))
    ops = _ops((tmp_path / "fw" / "model.tflite").read_bytes())
    assert not ops & {"SHAPE", "GATHER", "REDUCE_PROD", "PACK"} and "FULLY_CONNECTED" in ops
    assert report["source"]["kind"] == "saved_model"
    assert any("batch of 1" in w and "REDUCE_PROD" in w for w in report["warnings"])
    assert report["firmware"]["parity"]["max_step_diff"] <= INT_PARITY_STEPS, report["firmware"]["parity"]
