"""Bad input: one clear line, exit code 1, nothing written (the output folder untouched)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.keras_compat import keras
from refusal import assert_refused, snapshot


def _lambda_model(path):
    k = keras()
    inp = k.Input((4,))
    out = k.layers.Dense(2)(k.layers.Lambda(lambda t: t * 2.0, name="times_two")(inp))
    k.Model(inp, out).save(path)


def test_missing_model(run_cli, tmp_path):
    r = run_cli("package", tmp_path / "nope.h5", "--quantize", "dynamic", "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["nope.h5", "no such model"])


def test_corrupt_model(run_cli, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n garbage" * 10)
    r = run_cli("package", bad, "--quantize", "dynamic", "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["bad.h5"])
    assert not (tmp_path / "o").exists()


def test_empty_keras3_model_is_refused(run_cli, tmp_path):
    import zipfile

    f = tmp_path / "k3.keras"
    with zipfile.ZipFile(f, "w") as z:  # the layout Keras 3 writes
        z.writestr("metadata.json", '{"keras_version": "3.15.1", "date_saved": "2026-11-01@00:00:00"}')
        z.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}')
        z.writestr("model.weights.h5", b"")
    r = run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["k3.keras", "no inputs", "keras.Input"])


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_lambda_layer_needs_unsafe(run_cli, tmp_path, suffix):
    f = tmp_path / f"lam{suffix}"
    _lambda_model(f)
    r = run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["times_two", "Lambda", "--unsafe"])
    assert not (tmp_path / "o").exists()


def test_lambda_layer_loads_with_unsafe(run_cli, tmp_path):
    f = tmp_path / "lam.h5"
    _lambda_model(f)
    r = run_cli("package", f, "--quantize", "dynamic", "--unsafe", "--out", tmp_path / "o", "-q")
    assert r.exit_code == 0, r.err
    assert (tmp_path / "o" / "model.tflite").is_file()


def test_custom_class_refused(run_cli, tmp_path):
    import json
    import h5py

    f = tmp_path / "custom.h5"
    k = keras()
    k.Sequential([k.Input((3,)), k.layers.Dense(2, name="d")]).save(f)
    with h5py.File(f, "r+") as h:  # the config a model with a user-defined layer class carries
        cfg = json.loads(h.attrs["model_config"])
        cfg["config"]["layers"][-1]["class_name"] = "MyFancyDense"
        h.attrs["model_config"] = json.dumps(cfg)
    r = run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["MyFancyDense", "--unsafe"])


def test_subclassed_savedmodel_packages_conversion_only(run_cli, tmp_path):
    k = keras()

    class Sub(k.Model):
        def __init__(self):
            super().__init__()
            self.d = k.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    m = Sub()
    m(np.zeros((1, 3), np.float32))
    m.save(tmp_path / "sub", save_format="tf")
    r = run_cli("package", tmp_path / "sub", "--quantize", "dynamic", "--out", tmp_path / "o", "--unsafe", "-q")
    assert r.exit_code == 0, r.err  # its serving signature converts: every post-training mode works
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: [{type: prune_magnitude, sparsity: 0.5}]\n")
    r = run_cli("package", tmp_path / "sub", "--recipe", recipe, "--quantize", "dynamic", "--out", tmp_path / "p",
                "--unsafe")
    assert_refused(r, out=tmp_path / "p", match=["change a Keras model"])


@pytest.mark.parametrize("case,words", [
    ("shape", ["(8, 8)", "(28, 28, 1)"]),
    ("nan", ["NaN"]),
    ("empty", ["no samples"]),
    ("dtype", ["dtype", "numeric"]),
    ("nox", ["no array named 'x'"]),
])
def test_bad_calibration_data(run_cli, mnist, tmp_path, case, words):
    f = tmp_path / "cal.npz"
    arrays = {
        "shape": {"x": np.zeros((4, 8, 8), np.uint8)},
        "nan": {"x": np.full((4, 28, 28, 1), np.nan, np.float32)},
        "empty": {"x": np.zeros((0, 28, 28, 1), np.float32)},
        "dtype": {"x": np.array([["a"] * 3] * 2)},
        "nox": {"images": np.zeros((4, 28, 28, 1), np.float32)},
    }[case]
    np.savez(f, **arrays)
    r = run_cli("package", mnist.model, "--quantize", "int8", "--calibration", f, "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["cal.npz", *words])
    assert not (tmp_path / "o").exists()


def test_int8_without_calibration(run_cli, mnist, tmp_path):
    r = run_cli("package", mnist.model, "--quantize", "int8", "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["calibration", "--calibration"])


def test_unknown_recipe_key(run_cli, mnist, tmp_path):
    rec = tmp_path / "r.yaml"
    rec.write_text("version: 1\nquantize: {mode: int8, per_chanel: false}\n")
    r = run_cli("package", mnist.model, "--recipe", rec, "--calibration", mnist.calib, "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["r.yaml", "per_chanel"])


def test_unknown_step_type(run_cli, mnist, tmp_path):
    rec = tmp_path / "r.yaml"
    rec.write_text("steps:\n  - {type: prune_everything}\n")
    r = run_cli("package", mnist.model, "--recipe", rec, "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["prune_everything", "known types"])


def test_existing_output_untouched_without_force(run_cli, mnist, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = snapshot(out)
    r = run_cli("package", mnist.model, "--quantize", "dynamic", "--out", out)
    assert_refused(r, out=before, match=["exists", "--force"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_output(run_cli, mnist, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    r = run_cli("package", mnist.model, "--quantize", "dynamic", "--out", out, "--force", "-q")
    assert r.exit_code == 0, r.err
    assert not (out / "keep.txt").exists() and (out / "model.tflite").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["o"]


def test_labels_count_mismatch(run_cli, mnist, tmp_path):
    lab = tmp_path / "labels.txt"
    lab.write_text("cat\ndog\n")
    r = run_cli("package", mnist.model, "--quantize", "dynamic", "--labels", lab, "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["2 labels", "10 outputs"])


def test_usage_error_exit_code(run_cli, mnist, tmp_path):
    r = run_cli("package", mnist.model, "--target", "toaster", "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["toaster", "known targets"], code=2)
