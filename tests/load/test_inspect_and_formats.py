"""inspect on Keras and .tflite files; input formats; recipes; the CLI's import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgepack.data import Preprocess, load_dataset
from edgepack.errors import RecipeError
from edgepack.recipe import Recipe


def test_inspect_tflite_matches_interpreter(run_cli, mnist, tmp_path):
    from edgepack.runtime import LiteRT

    out = tmp_path / "o"
    assert run_cli("package", mnist.model, "--recipe", mnist.recipe, "--calibration", mnist.calib,
                   "--out", out, "-q").exit_code == 0
    r = run_cli("inspect", out / "model.tflite", "--json")
    assert r.exit_code == 0, r.err
    data = json.loads(r.out)
    rt = LiteRT((out / "model.tflite").read_bytes())
    assert data["inputs"][0]["shape"] == list(rt.inputs[0]["shape"])
    assert data["inputs"][0]["quantization"]["scale"] == pytest.approx(rt.inputs[0]["quantization"][0])
    assert data["op_counts"]["CONV_2D"] == 2
    # conv MACs from the flatbuffer equal the Keras layer arithmetic: 28*28*16*3*3*1 and 14*14*32*3*3*16
    assert [o["macs"] for o in data["ops"] if o["op"] == "CONV_2D"] == [28 * 28 * 16 * 9, 14 * 14 * 32 * 9 * 16]
    text = run_cli("inspect", out / "model.tflite", "--tensors")
    assert "per-channel axis 0" in text.out and "FULLY_CONNECTED" in text.out


def test_inspect_keras_counts_params_like_keras(run_cli, mnist):
    from edgepack.load import load_model

    r = run_cli("inspect", mnist.model, "--json")
    data = json.loads(r.out)
    assert data["params"] == load_model(mnist.model).count_params()
    fc1 = next(l for l in data["layers"] if l["name"] == "fc1")
    assert fc1["macs"] == 7 * 7 * 32 * 64


def test_savedmodel_and_keras_formats_load(mlperf_dir, tmp_path):
    from edgepack.load import load_model

    kws = load_model(mlperf_dir / "kws_ref_model")
    assert kws.input_shape == (None, 49, 10, 1)
    ad = load_model(mlperf_dir / "ad01.h5")
    ad.save(tmp_path / "ad.keras")
    again = load_model(tmp_path / "ad.keras")
    x = np.random.default_rng(0).normal(size=(2, 640)).astype(np.float32)
    np.testing.assert_allclose(again(x).numpy(), ad(x).numpy(), atol=1e-5)


def test_image_folder_dataset(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((10, 12), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset(tmp_path, image_size=(8, 8, 1))
    assert ds.x.shape == (6, 8, 8) and list(ds.y) == [0, 0, 0, 1, 1, 1]
    x = ds.model_input(Preprocess(scale=0.5, mean=40), (8, 8, 1))
    assert x.shape == (6, 8, 8, 1) and x.dtype == np.float32
    assert x[1, 0, 0, 0] == pytest.approx((40 - 40) * 0.5) and x[2, 0, 0, 0] == pytest.approx(20.0)


def test_recipe_round_trip_and_validation(tmp_path):
    r = Recipe.from_dict({"quantize": {"mode": "int16x8", "io": "int16"}, "verify": {"max_accuracy_drop": 0.5}})
    f = tmp_path / "r.yaml"
    f.write_text(r.to_yaml())
    assert Recipe.from_yaml(f) == r
    with pytest.raises(RecipeError, match="int16x8 models take float or int16"):
        Recipe.from_dict({"quantize": {"mode": "int16x8", "io": "int8"}})
    with pytest.raises(RecipeError, match="needs a full-integer mode"):
        Recipe.from_dict({"quantize": {"mode": "dynamic", "io": "int8"}})
    with pytest.raises(RecipeError, match="not valid YAML"):
        f.write_text("steps: [unclosed\n")
        Recipe.from_yaml(f)


def test_help_does_not_import_tensorflow():
    code = ("import sys; from edgepack.cli import cli; from click.testing import CliRunner;"
            "r = CliRunner().invoke(cli, ['package', '--help']); assert r.exit_code == 0, r.output;"
            "assert 'Example' in r.output; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
