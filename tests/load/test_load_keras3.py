"""The model corpus: Keras 3 files (built in a Keras 3 child process) and tf_keras files, every format they
support, loaded, checked against their own framework's outputs, and (a few by default, all when slow)
packaged int8 through the CLI and checked again."""

from __future__ import annotations

import json
import zipfile
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import model_corpus as corpus
from locations import TESTS

HERE = TESTS


def _build_keras3(out: Path, everything: bool, only: tuple = ()) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    cmd = [sys.executable, str(HERE / "model_corpus.py"), str(out), *only] + (["--all"] if everything else [])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="session")
def k3(tmp_path_factory):
    import threading

    from edgepack.load.reference import Keras3Worker

    out = tmp_path_factory.mktemp("k3corpus")
    warm = threading.Thread(target=Keras3Worker.shared().request, args=({"op": "ping"}, "warm-up"))
    warm.start()  # the loader's Keras 3 worker starts while the corpus builds
    manifest = _build_keras3(out, everything=False)
    warm.join()
    return out, manifest


def _data(out: Path, name: str, n_inputs: int):
    with np.load(out / f"{name}.npz") as z:
        return [z[f"x{i}"] for i in range(n_inputs)], [z[f] for f in sorted(z.files) if f.startswith("y")]


def _check_against_reference(model, xs, ys):
    pred = corpus.predict(model, xs)
    assert len(pred) == len(ys)
    for p, y in zip(pred, ys):
        assert p.shape == y.shape
        np.testing.assert_allclose(p, y, atol=1e-4 * max(1.0, float(np.abs(y).max())), rtol=0)


def _package_int8(run_cli, tmp_path, model_path, xs, ys):
    from edgepack.runtime import LiteRT

    from edgepack.samples import Inputs

    calib = tmp_path / "calib.npz"
    np.savez(calib, **({"x": xs[0]} if len(xs) == 1 else {f"x{i}": x for i, x in enumerate(xs)}))  # x0, x1: input order
    out = tmp_path / f"pkg_{model_path.stem}_{model_path.suffix[1:]}"
    r = run_cli("package", model_path, "--target", "android", "--quantize", "int8", "--calibration", calib,
                "--out", out, "-q", "--json")
    assert r.exit_code == 0, r.err
    report = json.loads((out / "report.json").read_text())
    x = xs[0] if len(xs) == 1 else Inputs(tuple(xs), tuple(f"x{i}" for i in range(len(xs))))  # matched by shape
    pred = LiteRT((out / "model.tflite").read_bytes()).predict(x)
    y = ys[0]
    err = float(np.abs(pred - y).max())
    spread = float(y.max() - y.min())
    assert err <= 0.1 * spread + 1e-3, (err, spread)  # int8 vs the original framework's float outputs
    return report


H5_DEFAULT = {"resnet_dw", "nested", "lstm", "rms_norm"}  # the slow sweep loads every .h5
OPS_IN_GRAPH = {"keras_ops", "mobilenet_v3_small", "mobilenet_v3_large", "transformer_tokens", "transformer_features"}


def test_keras3_corpus_loads_equivalent(k3):
    from edgepack.load import load_source

    out, manifest = k3
    assert len(manifest) >= 15
    seen = set()
    for name, entry in manifest.items():
        xs, ys = _data(out, name, entry["inputs"])
        for fmt in ("keras", "h5") if name in H5_DEFAULT else ("keras",):
            src = load_source(out / entry["files"][fmt])
            assert src.framework == "keras3" and src.format == {"keras": "keras_zip", "h5": "h5"}[fmt]
            if "no_twin" in entry["flags"]:
                assert src.kind == "saved_model" and "rms_scaling" in src.reason
                assert src.translation["max_abs_diff"] <= 1e-4 * src.translation["output_scale"]
                continue
            assert src.kind == "keras", (name, fmt, src.reason)
            tr = src.translation
            assert tr["ok"] and tr["max_abs_diff"] <= tr["tolerance"], (name, fmt, tr)
            _check_against_reference(src.model, xs, ys)  # independent of the loader's own check
            seen |= {type(l).__name__ for l in src.model.layers}
    assert {"Rescaling", "BatchNormalization", "DepthwiseConv2D", "GRU", "LSTM", "Embedding",
            "Sequential", "Functional", "TFOpLambda", "SlicingOpLambda", "MultiHeadAttention"} <= seen


@pytest.mark.parametrize("name", [n for n, (_, f) in corpus.SPECS.items() if "package" in f])
def test_keras3_corpus_packages_int8(k3, run_cli, tmp_path, name):
    out, manifest = k3
    xs, ys = _data(out, name, manifest[name]["inputs"])
    report = _package_int8(run_cli, tmp_path, out / manifest[name]["files"]["keras"], xs, ys)
    assert report["source"]["framework"] == "keras3"
    assert report["source"]["translation"]["max_abs_diff"] <= report["source"]["translation"]["tolerance"]


def test_keras3_export_is_a_saved_model_source(k3):
    from edgepack.load import load_model, load_source
    from edgepack.errors import ModelLoadError

    out, manifest = k3
    src = load_source(out / manifest["resnet_dw"]["files"]["export"])
    assert (src.kind, src.framework, src.compressible) == ("saved_model", "tensorflow", False)
    assert "Keras .keras/.h5" in src.reason
    with pytest.raises(ModelLoadError, match="without a Keras config"):
        load_model(out / manifest["resnet_dw"]["files"]["export"])


TF_KERAS_CORPUS = ["mlp", "resnet_dw", "nested", "gru", "multi_io"]


@pytest.mark.parametrize("name", TF_KERAS_CORPUS)
def test_tf_keras_corpus_compiled_files_load(tmp_path, name):
    from edgepack.keras_compat import keras
    from edgepack.load import load_source

    k = keras()
    model = corpus.build(k, name)
    model.compile(loss=k.losses.SparseCategoricalCrossentropy(), optimizer=k.optimizers.Adam(1e-3),
                  metrics=[k.metrics.SparseCategoricalAccuracy()])
    xs = corpus.inputs(model)
    ys = corpus.predict(model, xs)
    paths = [tmp_path / f"{name}.keras", tmp_path / f"{name}.h5"]
    for p in paths:
        model.save(p)
    if name in ("mlp", "resnet_dw"):
        paths.append(tmp_path / f"{name}_tf")
        model.save(paths[-1], save_format="tf")
    for p in paths:
        src = load_source(p)
        assert (src.kind, src.framework) == ("keras", "tf_keras"), p
        _check_against_reference(src.model, xs, ys)


def test_tf_keras_compiled_keras_file_packages(run_cli, tmp_path):
    from edgepack.keras_compat import keras

    k = keras()
    model = corpus.build(k, "cnn")
    model.compile(loss=k.losses.MeanSquaredError(), optimizer="adam", metrics=[k.metrics.MeanAbsoluteError()])
    model.save(tmp_path / "cnn.keras")
    xs = corpus.inputs(model)
    report = _package_int8(run_cli, tmp_path, tmp_path / "cnn.keras", xs, corpus.predict(model, xs))
    assert report["source"] == {"kind": "keras", "format": "keras_zip", "framework": "tf_keras"}


APPLICATIONS = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")


@pytest.mark.slow
def test_keras3_full_sweep_packages_every_model(run_cli, tmp_path):
    """Every corpus model, slow ones included: loaded from both formats, packaged int8 from .keras."""
    from edgepack.load import load_source

    out = tmp_path / "corpus"
    out.mkdir()
    manifest = _build_keras3(out, everything=True)
    for name, entry in manifest.items():
        xs, ys = _data(out, name, entry["inputs"])
        for fmt in ("keras", "h5"):
            if fmt == "h5" and name in OPS_IN_GRAPH:
                continue  # Keras 3's legacy .h5 does not record an operation's module (refused: save as .keras)
            src = load_source(out / entry["files"][fmt])  # the loader's own 1e-4 proof runs here
            if src.kind == "keras" and name not in APPLICATIONS:  # those: test_applications_translate's bounds
                _check_against_reference(src.model, xs, ys)
        # not packaged: multi-input (the pipeline takes one input), int token input, and GRU/LSTM: edgepack's
        # converter fails on any tf_keras RNN, native ones too ("tf.TensorListReserve requires element_shape
        # to be static"; a batch-1 concrete function would fix it, in convert/)
        # nor the untrained applications and the keras_ops stress graph, whose int8 loss on random weights is
        # their own (Keras 3's own export loses as much; tests/load/test_keras3_ops.py and the MobileNetV3 tests
        # package them with the gate off): the default gate rightly refuses them here
        if "no_twin" not in entry["flags"] and entry["inputs"] == 1 and xs[0].dtype == np.float32 and \
                name not in ("gru", "lstm", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
                             "keras_ops"):
            _package_int8(run_cli, tmp_path, out / entry["files"]["keras"], xs, ys)


def _k3_variant(k3, tmp_path, name, edit):
    from test_load_bad import rewrite_zip_config

    out, manifest = k3
    return rewrite_zip_config(out / manifest["mlp"]["files"]["keras"], tmp_path / name, edit)


def _last_dense(cfg):
    return [l for l in cfg["config"]["layers"] if l["class_name"] == "Dense"][-1]


def test_keras3_lambda_refused_without_running_it(k3, run_cli, tmp_path):

    out, _ = k3
    flag = out / "lambda_ran"
    _refused(run_cli("package", out / "lambda.keras", "--quantize", "dynamic", "--out", tmp_path / "o"),
             "payload", "Lambda", "--unsafe")
    _refused(run_cli("inspect", out / "lambda.keras"), "payload", "Lambda")
    assert not flag.exists() and not (tmp_path / "o").exists()
    # control: with --unsafe the same file reaches Keras 3 (no twin -> its export), which runs the payload
    r = run_cli("package", out / "lambda.keras", "--quantize", "dynamic", "--unsafe", "--out", tmp_path / "o")
    assert flag.exists(), r.err
    flag.unlink()


@pytest.mark.parametrize("case", ["custom_class", "module", "functional_lambda", "registered_name"])
def test_keras3_hostile_configs_refused(k3, run_cli, tmp_path, case, monkeypatch):

    flag = tmp_path / "imported"
    mod = f"k3_payload_{case}"
    (tmp_path / f"{mod}.py").write_text(f"open({str(flag)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def edit(cfg):
        d = _last_dense(cfg)
        if case == "custom_class":
            d.update(class_name="MyDense", module="mypkg.layers", registered_name="mypkg>MyDense")
        elif case == "module":
            d["config"]["kernel_initializer"]["module"] = mod
        elif case == "registered_name":
            d["registered_name"] = "Lambda"
        else:
            cfg["config"]["layers"].append({"module": "keras.layers", "class_name": "Functional",
                                            "registered_name": None, "config": {"name": "sneaky", "function": {
                                                "class_name": "__lambda__", "config": {"code": "AAAA"}}}})
        return cfg

    f = _k3_variant(k3, tmp_path, f"{case}.keras", edit)
    words = {"custom_class": ["MyDense"], "module": [mod], "functional_lambda": ["sneaky"],
             "registered_name": ["Lambda"]}[case]
    _refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"), f.name, *words)
    assert not flag.exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("case", ["truncated", "weights", "list"])
def test_keras3_broken_files_are_one_line(k3, run_cli, tmp_path, case):

    out, manifest = k3
    src = out / manifest["mlp"]["files"]["keras"]
    f = tmp_path / f"{case}.keras"
    if case == "truncated":
        f.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    elif case == "list":
        f = _k3_variant(k3, tmp_path, "list.keras", lambda cfg: [cfg])
    else:
        with zipfile.ZipFile(src) as z, zipfile.ZipFile(f, "w") as w:
            for n in z.namelist():
                data = z.read(n)
                w.writestr(n, data[:200] + bytes(len(data) - 200) if n == "model.weights.h5" else data)
    _refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"), f.name)
    assert not (tmp_path / "o").exists()


def test_live_models_tf_keras_and_keras3():
    import keras as keras3  # Keras 3: TF_USE_LEGACY_KERAS only redirects tf.keras

    from edgepack.keras_compat import keras
    from edgepack.load import load_source

    assert keras3.__version__.startswith("3.")
    k2 = keras()
    m2 = corpus.build(k2, "cnn")
    src = load_source(m2)
    assert (src.kind, src.format, src.framework) == ("keras", "live", "tf_keras") and src.model is m2
    m3 = corpus.build(keras3, "nested")
    src = load_source(m3)
    assert (src.kind, src.framework) == ("keras", "keras3") and isinstance(src.model, k2.Model)
    assert src.translation["reference"] == "the live Keras 3 model" and src.translation["ok"]
    xs = corpus.inputs(m3)
    _check_against_reference(src.model, xs, corpus.predict(m3, xs))


def test_tflite_source(tmp_path, mlperf_dir):
    from edgepack.errors import ModelLoadError
    from edgepack.load import load_source

    src = load_source(mlperf_dir / "ad01_int8.tflite")
    assert src.kind == "tflite" and src.tflite[4:8] == b"TFL3" and not src.compressible
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(ModelLoadError, match="TFL3"):
        load_source(bad)


@pytest.mark.slow  # ~20 s; bench/keras3_residual_check.py runs prune_structured + fine-tune on a trained one
def test_keras3_model_goes_through_a_compression_step(k3, run_cli, tmp_path):
    out, manifest = k3
    xs, _ = _data(out, "resnet_dw", 1)
    np.savez(tmp_path / "calib.npz", x=xs[0])
    rec = tmp_path / "r.yaml"
    rec.write_text("steps:\n  - {type: prune_structured, ratio: 0.5, round_to: 1}\nquantize: {mode: int8}\n")
    # An untrained model pruned one-shot: this checks that the step runs on a translated model, not the
    # accuracy it keeps (the gate would rightly flag 16 random samples' output change), so the gate is off.
    r = run_cli("package", out / manifest["resnet_dw"]["files"]["keras"], "--recipe", rec, "--calibration",
                tmp_path / "calib.npz", "--out", tmp_path / "o", "-q", "--max-accuracy-drop", "none")
    assert r.exit_code == 0, r.err
    steps = json.loads((tmp_path / "o" / "report.json").read_text())["steps"]
    assert steps[-1]["step"] == "prune_structured" and steps[-1]["macs"] < steps[0]["macs"]


def test_divergent_translation_is_refused_naming_the_layer(k3, monkeypatch):
    """A wrong twin (tanh translated as sigmoid, injected here) is caught by the Keras 3 reference run."""
    from edgepack.errors import ModelLoadError
    from edgepack.load import keras3, load_model

    out, manifest = k3
    path = out / manifest["normalization"]["files"]["keras"]
    with zipfile.ZipFile(path) as z:
        cfg = json.loads(z.read("config.json"))
    tanh = next(l["config"]["name"] for l in cfg["config"]["layers"] if l["config"].get("activation") == "tanh")
    monkeypatch.setitem(keras3.ACTIVATIONS, "tanh", "sigmoid")
    with pytest.raises(ModelLoadError, match=f"first diverging layer '{tanh}'"):
        load_model(path)


def test_keras3_h5_with_operations_is_refused_in_one_line(k3, run_cli, tmp_path):

    out, manifest = k3
    f = out / manifest["keras_ops"]["files"]["h5"]
    _refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"), f.name, "operation",
             "save the model as .keras")
    assert not (tmp_path / "o").exists()


def test_attention_model_packages_for_tflm_with_gelu_in_its_tanh_form(k3, run_cli, tmp_path):
    """The pinned TFLM has no GELU kernel and the dynamic-batch Dense on a sequence needs REDUCE_PROD: --target
    tflm converts a batch-1 copy with GELU in its tanh form (edgepack.tflm.prepare), saying so in one warning."""
    out, manifest = k3
    xs, _ = _data(out, "transformer_features", 1)
    np.savez(tmp_path / "calib.npz", x=xs[0])
    r = run_cli("package", out / manifest["transformer_features"]["files"]["keras"], "--target", "tflm", "--device",
                "nucleo-h743zi2", "--quantize", "none", "--calibration", tmp_path / "calib.npz",
                "--out", tmp_path / "o")
    assert r.exit_code == 0, r.err
    assert "GELU" in r.err and "tanh approximation" in r.err and "Traceback" not in r.err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["firmware"]["parity"]["max_abs_diff"] <= 1e-3


@pytest.fixture(scope="module")
def k3_apps(tmp_path_factory):
    out = tmp_path_factory.mktemp("k3apps")
    return out, _build_keras3(out, True, ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"))


@pytest.mark.slow  # ~2-4 min: three applications built, translated and proven against Keras 3
def test_keras3_applications_translate_within_tolerance(k3_apps):
    from edgepack.load import load_source

    out, manifest = k3_apps
    for name in ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"):
        src = load_source(out / manifest[name]["files"]["keras"])
        assert src.kind == "keras" and src.translation["ok"], (name, src.reason)
        xs, ys = _data(out, name, 1)
        if name == "efficientnet_b0":  # 240 layers of untrained weights amplify float32 op-order noise: on the
            # corpus' pixel inputs one sample of 16 differed by 4.9e-4 (the loader's 8 samples: 6.7e-6)
            pred = corpus.predict(src.model, xs)[0]
            assert np.abs(pred - ys[0]).max() <= 1e-3
        else:
            _check_against_reference(src.model, xs, ys)
        kinds = {type(l).__name__ for l in src.model.layers}
        if name.startswith("mobilenet"):
            assert "TFOpLambda" in kinds  # hard-swish / hard-sigmoid as Keras operations


@pytest.mark.slow  # ~2-6 min
def test_mobilenet_v3_small_packages_int8_with_hard_swish(k3_apps, run_cli, tmp_path):
    """Packaged int8 for Android with HARD_SWISH fused. The gate is off: plain int8 of an untrained MobileNetV3
    moves its outputs a lot, exactly as much as int8 of Keras 3's own export does (measured on one draw: max abs
    error 0.230, relative RMS 0.244, 12/16 top-1 agreement both ways), so the loss is int8's, not the translation's."""
    from edgepack.runtime import LiteRT

    out, manifest = k3_apps
    xs, ys = _data(out, "mobilenet_v3_small", 1)
    np.savez(tmp_path / "calib.npz", x=xs[0])
    r = run_cli("package", out / manifest["mobilenet_v3_small"]["files"]["keras"], "--target", "android",
                "--quantize", "int8", "--calibration", tmp_path / "calib.npz", "--out", tmp_path / "o", "-q",
                "--max-accuracy-drop", "none")
    assert r.exit_code == 0, r.err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert "HARD_SWISH" in report["tflite"]["ops"] and report["source"]["translation"]["ok"]
    pred = LiteRT((tmp_path / "o" / "model.tflite").read_bytes()).predict(xs[0])
    assert pred.shape == ys[0].shape and np.abs(pred - ys[0]).max() < 0.5 * float(ys[0].max())


@pytest.mark.slow  # ~1-2 min
def test_mobilenet_v3_small_structured_pruning_and_clustering(k3_apps, run_cli, tmp_path):
    out, manifest = k3_apps
    xs, _ = _data(out, "mobilenet_v3_small", 1)
    np.savez(tmp_path / "calib.npz", x=xs[0])
    rec = tmp_path / "r.yaml"
    rec.write_text("steps:\n  - {type: prune_structured, ratio: 0.5, round_to: 1}\n  - {type: cluster, clusters: 16}\n"
                   "quantize: {mode: int8}\n")
    # untrained and one-shot: this checks the steps run through squeeze-excite gates and hard-swish, not accuracy
    r = run_cli("package", out / manifest["mobilenet_v3_small"]["files"]["keras"], "--recipe", rec,
                "--calibration", tmp_path / "calib.npz", "--out", tmp_path / "o", "-q", "--max-accuracy-drop", "none")
    assert r.exit_code == 0, r.err
    steps = json.loads((tmp_path / "o" / "report.json").read_text())["steps"]
    prune = next(s for s in steps if s["step"] == "prune_structured")
    assert prune["macs"] < steps[0]["macs"] / 2
    assert any(s["step"] == "cluster" for s in steps)


def _refused(r, *words):
    """A one-line refusal naming ``words`` (tests/refusal.py's shared check)."""
    from refusal import assert_refused

    assert_refused(r, match=list(words))
