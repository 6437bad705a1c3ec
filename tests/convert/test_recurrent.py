"""Recurrent models (LSTM, GRU, SimpleRNN, Bidirectional; tf_keras and Keras 3): conversion with a batch of 1,
fused LSTM / unrolled GRU, refusals (stateful, unknown length, quantized WHILE loops), no state leaking between
inferences in LiteRT, the TFLM host interpreter and the firmware harness (QEMU), packaging for Android and
TFLM in int8 and int16x8 with the accuracy gate and TFLM parity, and pruning/clustering of recurrent kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnn_corpus as rc
from locations import TESTS

HERE = TESTS


def _ops(data: bytes) -> set[str]:
    from edgepack.convert.flatbuffer import read_tflite

    return {op.op for op in read_tflite(data).ops}


def _convert(model, mode: str, x=None) -> bytes:
    from edgepack.convert.tflite import convert
    from edgepack.recipe import QuantizeConfig

    return convert(model, QuantizeConfig(mode=mode), calibration=x)


@pytest.fixture(scope="module")
def lstm_int8():
    """A trained tf_keras LSTM and its int8 conversion."""
    from edgepack.keras_compat import keras

    model = rc.train(keras(), "lstm", epochs=1, n=200)  # trained a little: state makes a difference
    x, _ = rc.sequences(32, 1)
    return model, _convert(model, "int8", x)


def test_stateful_layer_is_refused():
    from edgepack.errors import ConversionError
    from edgepack.keras_compat import keras

    k = keras()
    model = k.Sequential([k.Input((rc.T, rc.F), batch_size=1), k.layers.LSTM(4, stateful=True), k.layers.Dense(2)])
    with pytest.raises(ConversionError, match=r"layer 'lstm.*' \(LSTM\) is stateful=True: .*rebuild the model with "
                                              r"stateful=False"):
        _convert(model, "none")


def test_unknown_sequence_length_is_refused():
    from edgepack.errors import ConversionError
    from edgepack.keras_compat import keras

    k = keras()
    model = k.Sequential([k.Input((None, rc.F)), k.layers.GRU(4), k.layers.Dense(2)])
    with pytest.raises(ConversionError, match="unknown sequence length; .*fixed-length Input"):
        _convert(model, "none")


def test_models_without_recurrent_layers_convert_as_before():
    """The batch-1 path is for recurrent models only: anything else is the converter's Keras path, byte for byte."""
    from edgepack.convert.recurrent import recurrent_layers
    from edgepack.keras_compat import keras, tf

    k = keras()
    k.utils.set_random_seed(3)
    model = k.Sequential([k.Input((6, 3)), k.layers.Conv1D(4, 3), k.layers.Flatten(), k.layers.Dense(2)])
    assert recurrent_layers(model) == []
    plain = bytes(tf().lite.TFLiteConverter.from_keras_model(model).convert())
    assert _convert(model, "none") == plain


def test_lstm_is_fused_and_its_state_does_not_leak(lstm_int8):
    """Two different inputs in a row give what each gives alone, in LiteRT and in the TFLM host interpreter;
    without the reset the fused LSTM's variable tensors would carry the first input's state into the second."""
    from edgepack.convert.recurrent import variable_tensors
    from edgepack.runtime import LiteRT, quantize_input
    from edgepack.tflm.interpreter import Tflm

    model, data = lstm_int8
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in _ops(data) and "WHILE" not in _ops(data)
    assert len(variable_tensors(data)) == 2  # output state and cell state
    a, b = rc.sequences(2, 7)[0][:1], rc.sequences(2, 8)[0][:1]
    for runtime in (LiteRT(data), Tflm(data)):
        alone_a, alone_b = runtime.predict(a), runtime.predict(b)
        both = runtime.predict(np.concatenate([a, b, a]))
        np.testing.assert_array_equal(both, np.concatenate([alone_a, alone_b, alone_a]))
    # the same interpreter invoked twice without a reset: the state is there to leak
    r = LiteRT(data)
    d = r.inputs[0]
    outs = []
    for _ in range(2):
        r.interp.set_tensor(d["index"], quantize_input(a, d))
        r.interp.invoke()
        outs.append(r.interp.get_tensor(r.outputs[0]["index"]).copy())
    assert not np.array_equal(outs[0], outs[1])


def test_lstm_parity_runs_from_a_reset_state(lstm_int8):
    from edgepack.tflm.parity import parity

    _, data = lstm_int8
    p = parity(data, rc.sequences(16, 9)[0])
    assert p.max_raw_diff <= 2 * 2 ** -8 and p.mismatch_pct < 20  # float I/O: output steps of 1/256


@pytest.mark.slow
def test_long_gru_converts_to_a_loop_in_float_and_is_refused_quantized():
    """Over 64 steps a GRU is not unrolled: float keeps the WHILE loop (LiteRT runs it); a quantized conversion,
    which crashes the converter on a WHILE loop, is refused in one line first."""
    from edgepack.errors import ConversionError
    from edgepack.keras_compat import keras
    from edgepack.runtime import LiteRT
    from edgepack.verify.accuracy import keras_predict

    k = keras()
    k.utils.set_random_seed(0)
    model = rc.gru(k, steps=80)
    x, _ = rc.sequences(4, 3, steps=80)
    data = _convert(model, "none")
    assert "WHILE" in _ops(data)
    np.testing.assert_allclose(LiteRT(data).predict(x), keras_predict(model, x), atol=1e-5)
    with pytest.raises(ConversionError, match=r"layer 'gru.*' \(GRU\) has 80 steps, more than the 64 .* WHILE loop, "
                                              r"which the TFLite converter cannot quantize \(int8\)"):
        _convert(model, "int8", x)
    lstm = rc.lstm(k, steps=80)
    with pytest.raises(ConversionError, match=r"cannot be quantized int16x8: .*use --quantize int8"):
        _convert(lstm, "int16x8", x)


# -- packaging through the CLI ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rnn_data")
    rc.write_data(out)
    x, y = rc.sequences(600, 100)
    np.savez(out / "train.npz", x=x, y=y)
    return out


@pytest.fixture(scope="module")
def tf_keras_h5(data_dir) -> dict[str, Path]:
    from edgepack.keras_compat import keras

    paths = {}
    for name in ("lstm", "gru"):
        paths[name] = data_dir / f"{name}_tf_keras.h5"
        rc.train(keras(), name).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rnn_k3")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    r = subprocess.run([sys.executable, str(HERE / "rnn_corpus.py"), str(out), "lstm", "gru", "bilstm"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _package(run_cli, model: Path, data: Path, out: Path, target: str, mode: str, *extra: str) -> dict:
    args = ["package", model, "--target", target, "--quantize", mode, "--calibration", data / "calib.npz",
            "--eval", data / "eval.npz", "--out", out, "-q", *extra]
    if target == "tflm":
        args += ["--device", "nucleo-l4r5zi"]
    r = run_cli(*args)
    assert r.exit_code == 0, r.err
    return json.loads((out / "report.json").read_text())


def _check(report: dict, out: Path, fused: bool) -> None:
    ver = report["verification"]
    assert ver["metric"] == "accuracy" and ver["float_accuracy_pct"] > 90 and ver["drop_pt"] <= 1.0
    ops = _ops((out / "model.tflite").read_bytes())
    assert ("UNIDIRECTIONAL_SEQUENCE_LSTM" in ops) == fused and "WHILE" not in ops
    if report["target"] == "tflm":
        # TFLM's integer LSTM kernel approximates the gates differently from LiteRT's: a few int8 steps of the
        # softmax output (seen: up to 5 of 1/256); 16-bit and unrolled models are closer
        par = report["firmware"]["parity"]
        assert par["max_abs_diff"] <= 8 * 2 ** -8 + 1e-9, par


@pytest.mark.slow
@pytest.mark.parametrize("target,mode,fused", [("android", "int8", True), ("android", "int16x8", False),
                                               ("tflm", "int8", True), ("tflm", "int16x8", False)])
def test_tf_keras_lstm_h5_packages(run_cli, tf_keras_h5, data_dir, tmp_path, target, mode, fused):
    out = tmp_path / "out"
    report = _package(run_cli, tf_keras_h5["lstm"], data_dir, out, target, mode)
    _check(report, out, fused)
    if target == "android":
        manifest = json.loads((out / "manifest.json").read_text())
        readme = (out / "README.md").read_text()
        if fused:
            assert len(manifest["stateful"]["variable_tensors"]) == 2
            assert "interpreter.resetVariableTensors()" in readme and "## State: reset before every inference" in readme
        else:  # unrolled: no variable tensors, nothing to reset
            assert "stateful" not in manifest and "resetVariableTensors" not in readme


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_tf_keras_gru_h5_unrolls_for_tflm(run_cli, tf_keras_h5, data_dir, tmp_path, mode):
    out = tmp_path / "out"
    _check(_package(run_cli, tf_keras_h5["gru"], data_dir, out, "tflm", mode), out, fused=False)


@pytest.mark.slow
@pytest.mark.parametrize("name,fused", [("lstm", True), ("gru", False), ("bilstm", True)])
def test_keras3_recurrent_models_package(run_cli, keras3_files, tmp_path, name, fused):
    for target in ("android", "tflm"):
        out = tmp_path / target
        report = _package(run_cli, keras3_files / f"{name}.keras", keras3_files, out, target, "int8")
        assert report["source"]["framework"] == "keras3" and report["source"]["translation"]["ok"]
        _check(report, out, fused)
    if name == "bilstm":
        ops = _ops((tmp_path / "tflm" / "model.tflite").read_bytes())
        assert "REVERSE_V2" in ops


@pytest.mark.slow
def test_recurrent_kernels_prune_and_cluster(run_cli, tf_keras_h5, data_dir, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("version: 1\nsteps:\n"
                      "  - {type: prune_magnitude, sparsity: 0.5, layers: {types: [LSTM]}, fine_tune: {epochs: 2}}\n"
                      "  - {type: cluster, clusters: 16, layers: {types: [LSTM]}}\n"
                      "quantize: {mode: int8}\n")
    out = tmp_path / "out"
    report = _package(run_cli, tf_keras_h5["lstm"], data_dir, out, "android", "int8", "--recipe", recipe,
                      "--train", data_dir / "train.npz")
    prune, cluster = report["steps"][1], report["steps"][2]
    assert prune["step"] == "prune_magnitude" and prune["sparsity"] == pytest.approx(0.5, abs=0.01)
    lstm = next(row for row in cluster["layers"] if row["layer"].startswith("lstm"))
    assert lstm["unique_values"] <= 16 and lstm["sparsity"] >= 0.49
    _check(report, out, fused=True)


def test_structured_pruning_refuses_recurrent_models(run_cli, tmp_path):
    from edgepack.keras_compat import keras

    k = keras()
    model = tmp_path / "m.h5"
    k.Sequential([k.Input((rc.T, rc.F)), k.layers.Dense(8), k.layers.LSTM(4), k.layers.Dense(3)]).save(model)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("version: 1\nsteps:\n  - {type: prune_structured, ratio: 0.5}\nquantize: {mode: int8}\n")
    x, _ = rc.sequences(8, 1)
    np.savez(tmp_path / "calib.npz", x=x)
    r = run_cli("package", model, "--target", "android", "--recipe", recipe, "--calibration", tmp_path / "calib.npz",
                "--out", tmp_path / "out")
    assert r.exit_code == 1
    assert "step 'prune_structured': layer 'lstm" in r.err and "is recurrent" in r.err and "prune_magnitude" in r.err
    assert "Traceback" not in r.err and not (tmp_path / "out").exists()


TFLM_ROOT = os.environ.get("EDGEPACK_TFLM_ROOT")


@pytest.mark.slow
@pytest.mark.skipif(not TFLM_ROOT, reason="set EDGEPACK_TFLM_ROOT to a TFLM tree (with arm-none-eabi-gcc and "
                                          "qemu-system-arm) to run the LSTM on the emulated Cortex-M4")
def test_lstm_runs_in_qemu_from_a_reset_state(lstm_int8, tmp_path):
    """Several timed runs on the same interpreter: the harness resets the LSTM state before each, so the last
    output is still the host interpreter's single-invoke output (the CRC check fails without the reset)."""
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    path = tmp_path / "lstm.tflite"
    path.write_bytes(lstm_int8[1])
    with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile="nucleo-l4r5zi") as dev:
        res = dev.profile(path, Settings(runs=3, warmup=1))
    assert any("matches the TFLM host interpreter" in n for n in res.notes)
    assert res.latency.instructions > 1000
