"""Attention models for --target tflm: a batch-1 signature (no REDUCE_PROD from the open batch), GELU in its
tanh form (TFLM has no GELU kernel), int32 token inputs (calibration keeps their dtype; harness and random
parity inputs are valid indices), and (slow) the trained Keras 3 transformers packaged int8 for TFLM within
1 pt of Keras' accuracy with parity, and run in QEMU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from locations import TESTS

HERE = TESTS


def _ops(data: bytes) -> set[str]:
    from edgepack.convert.flatbuffer import read_tflite

    return {op.op for op in read_tflite(data).ops}


def _sequence_gelu_model():
    """Dense on a [batch, 6, 4] sequence (Tensordot on the open batch) with exact GELU, as a Keras 3
    translation gives it: a Dense activation and a tf.nn.gelu op layer."""
    from edgepack.keras_compat import keras, set_seed, tf

    set_seed(0)
    k, t = keras(), tf()
    i = k.Input((6, 4))
    x = k.layers.Dense(8, activation="gelu", name="d1")(i)
    x = t.nn.gelu(k.layers.Dense(8, name="d2")(x))
    return k.Model(i, k.layers.Dense(3)(k.layers.Flatten()(x)))


def test_gelu_tanh_form_error_against_exact_gelu():
    from edgepack.keras_compat import tf
    from edgepack.tflm.prepare import GELU_TANH_MAX_ERROR, gelu_tanh

    t = tf()
    x = np.linspace(-8, 8, 16001, dtype=np.float32)
    exact = t.nn.gelu(x, approximate=False).numpy()
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    ours = gelu_tanh(t.constant(x)).numpy()
    np.testing.assert_allclose(ours, tanh_form, atol=2e-6)
    err = np.abs(ours - exact).max()
    assert 4e-4 < err <= GELU_TANH_MAX_ERROR + 2e-6


def test_for_tflm_fixes_batch_and_gelu_and_leaves_tflm_ready_models_alone():
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras
    from edgepack.recipe import QuantizeConfig
    from edgepack.tflm.prepare import for_tflm

    model = _sequence_gelu_model()
    before = _ops(convert(model, QuantizeConfig(mode="none")))
    assert {"REDUCE_PROD", "GELU"} <= before  # what TFLM lacks, from the open batch and exact GELU
    warned: list[str] = []
    ready = for_tflm(model, warned.append)
    after = _ops(convert(ready, QuantizeConfig(mode="none")))
    assert not after & {"REDUCE_PROD", "SHAPE", "GELU", "POW"} and "LOGISTIC" in after
    assert len(warned) == 1 and "'d1'" in warned[0] and "tanh approximation" in warned[0] and "4.7e-04" in warned[0]
    x = np.random.default_rng(0).normal(size=(5, 6, 4)).astype(np.float32)
    ref = model.predict(x, verbose=0)
    got = np.concatenate([ready(x[i:i + 1]).numpy() for i in range(5)])
    assert np.abs(got - ref).max() <= 1e-3 * max(1.0, np.abs(ref).max())
    assert model.get_layer("d1").activation.__name__ == "gelu"  # the caller's model is untouched
    k = keras()
    plain = k.Sequential([k.Input((4,)), k.layers.Dense(3)])
    assert for_tflm(plain, warned.append) is plain and len(warned) == 1


@pytest.fixture(scope="module")
def tokens_model():
    from edgepack.keras_compat import keras, set_seed

    set_seed(0)
    k = keras()
    i = k.Input((5,), dtype="int32")
    x = k.layers.Embedding(12, 4)(i)
    return k.Model(i, k.layers.Dense(3, activation="softmax")(k.layers.GlobalAveragePooling1D()(x)))


def test_int8_calibration_keeps_integer_token_inputs(tokens_model):
    from edgepack.convert.tflite import convert
    from edgepack.recipe import QuantizeConfig
    from edgepack.runtime import LiteRT

    x = np.random.default_rng(0).integers(0, 12, size=(16, 5)).astype(np.float32)  # as the data loader gives
    data = convert(tokens_model, QuantizeConfig(mode="int8"), calibration=x)
    assert "GATHER" in _ops(data)
    ref = tokens_model.predict(x.astype(np.int32), verbose=0)
    assert np.abs(LiteRT(data).predict(x) - ref).max() < 0.05


def test_parity_and_harness_inputs_are_valid_indices(tokens_model):
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.convert.tflite import convert
    from edgepack.recipe import QuantizeConfig
    from edgepack.tflm import Tflm
    from edgepack.tflm.parity import harness_expectation
    from edgepack.verify.parity import check_parity, parity_inputs

    x = np.random.default_rng(0).integers(0, 12, size=(16, 5)).astype(np.float32)
    data = convert(tokens_model, QuantizeConfig(mode="int8"), calibration=x)
    info = read_tflite(data)
    xs, source = parity_inputs(None, Tflm(data), info)
    assert source == "random" and xs.min() >= 0 and xs.max() <= 11 and len(np.unique(xs)) > 3
    section = check_parity(data, info, None, 16384, "tokens")  # random inputs: GATHER failed before
    assert section["max_step_diff"] <= 1
    assert harness_expectation(data, 16384)["in_bytes"] == 5 * 4


# -- the trained Keras 3 transformers through the CLI (slow) -------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("attn")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    r = subprocess.run([sys.executable, str(HERE / "attn_corpus.py"), str(out)], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _package(run_cli, trained: Path, name: str, target: str, out: Path) -> dict:
    args = ["package", trained / f"{name}.keras", "--target", target, "--quantize", "int8",
            "--calibration", trained / f"{name}_calib.npz", "--eval", trained / f"{name}_eval.npz", "--out", out]
    if target == "tflm":
        args += ["--device", "nucleo-l4r5zi"]
    r = run_cli(*args)
    assert r.exit_code == 0, r.err
    report = json.loads((out / "report.json").read_text())
    assert ("GELU" in r.err and "tanh approximation" in r.err) == (target == "tflm")
    return report


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transformer_features", "transformer_tokens"])
def test_trained_transformers_package_int8_for_tflm_and_android(run_cli, trained, tmp_path, name):
    from edgepack.verify.parity import INT_PARITY_STEPS

    for target in ("tflm", "android"):
        report = _package(run_cli, trained, name, target, tmp_path / target)
        ver = report["verification"]
        assert ver["float_accuracy_pct"] >= 90 and ver["drop_pt"] <= 1.0, ver
        ops = _ops((tmp_path / target / "model.tflite").read_bytes())
        if target == "tflm":
            assert "REDUCE_PROD" not in ops and "GELU" not in ops and {"BATCH_MATMUL", "SOFTMAX"} <= ops
            par = report["firmware"]["parity"]
            assert par["max_step_diff"] <= INT_PARITY_STEPS, par
        else:
            assert "GELU" in ops  # Android keeps exact GELU: the rewrite is tflm-only


TFLM_ROOT = os.environ.get("EDGEPACK_TFLM_ROOT")


@pytest.mark.slow
@pytest.mark.skipif(not TFLM_ROOT, reason="set EDGEPACK_TFLM_ROOT to a TFLM tree (with arm-none-eabi-gcc and "
                                          "qemu-system-arm) to run the transformers on the emulated Cortex-M4")
@pytest.mark.parametrize("name", ["transformer_features", "transformer_tokens"])
def test_trained_transformers_run_in_qemu(run_cli, trained, tmp_path, name):
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    _package(run_cli, trained, name, "tflm", tmp_path / "fw")
    with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile="nucleo-l4r5zi") as dev:
        res = dev.profile(tmp_path / "fw", Settings(runs=2, warmup=1))
    assert any("matches the TFLM host interpreter" in n for n in res.notes)
    assert res.latency.instructions > 10000
