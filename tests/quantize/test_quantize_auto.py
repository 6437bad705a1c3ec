"""``--quantize auto``: plain int8 when it meets the limit, else the cheapest per-op plan that does."""

import json

import numpy as np
import pytest

from compress_helpers import digits, mlp
from compress_helpers import outlier_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("auto")
    tr, ev = digits()
    np.savez(d / "calib.npz", x=tr.x[:100])
    np.savez(d / "eval.npz", x=ev.x, y=ev.y)
    outlier_model().save(d / "outlier.h5")
    mlp().save(d / "plain.h5")
    return d


def _package(run_cli, files, model, out, *extra):
    return run_cli("package", str(files / model), "--quantize", "auto", "--calibration", str(files / "calib.npz"),
                   "--eval", str(files / "eval.npz"), "--out", str(out), *extra)


def test_auto_repairs_what_int8_loses_and_reports_the_ops_kept_wide(run_cli, files, tmp_path):
    plain = run_cli("package", str(files / "outlier.h5"), "--quantize", "int8", "--calibration",
                    str(files / "calib.npz"), "--eval", str(files / "eval.npz"), "--out", str(tmp_path / "int8"))
    assert plain.exit_code == 1 and "accuracy dropped" in plain.err  # plain int8 breaks this model
    res = _package(run_cli, files, "outlier.h5", tmp_path / "auto")
    assert res.exit_code == 0, res.err
    rep = json.loads((tmp_path / "auto" / "report.json").read_text())
    auto = rep["quantize"]["auto"]
    assert auto["chosen"] == "per-op plan" and auto["met"] and "accuracy dropped" in auto["int8"]
    assert rep["verification"]["drop_pt"] <= 1.0 and rep["verification"]["gate"]["applied"]
    assert {w["layer"] for w in auto["kept_wide"]} >= {"fc1"}
    assert all(w["precision"] in ("int16x8", "float") for w in auto["kept_wide"])
    assert auto["counts"]["int8"] >= 1  # the rest stays int8
    assert "auto" in (tmp_path / "auto" / "recipe.yaml").read_text()  # the recipe rebuilds it the same way


def test_auto_is_plain_int8_when_int8_meets_the_limit(run_cli, files, tmp_path):
    res = _package(run_cli, files, "plain.h5", tmp_path / "auto")
    assert res.exit_code == 0, res.err
    int8 = run_cli("package", str(files / "plain.h5"), "--quantize", "int8", "--calibration",
                   str(files / "calib.npz"), "--eval", str(files / "eval.npz"), "--out", str(tmp_path / "int8"))
    assert int8.exit_code == 0, int8.err
    rep = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert rep["quantize"]["auto"]["chosen"] == "int8" and rep["quantize"]["auto"]["kept_wide"] == []
    from edgepack.runtime import LiteRT

    # The same converter as --quantize int8 (the embedded metadata differs: it records the recipe's hash).
    a = (tmp_path / "auto" / "model.tflite").read_bytes()
    b = (tmp_path / "int8" / "model.tflite").read_bytes()
    x = digits()[1].x[:64]
    assert np.array_equal(LiteRT(a).predict(x), LiteRT(b).predict(x))


def test_auto_with_uint8_io_is_refused_before_any_work(run_cli, files, tmp_path):
    res = _package(run_cli, files, "plain.h5", tmp_path / "out", "--io", "uint8")
    assert res.exit_code == 1 and "io" in res.err and not (tmp_path / "out").exists()


@pytest.mark.slow  # ~3 min: Keras 3 builds MobileNetV3Small in a child, then the per-op search
def test_auto_skips_plans_litert_cannot_load_on_mobilenet_v3(run_cli, tmp_path):
    """On MobileNetV3Small some int16x8 promotions give an ADD LiteRT cannot rescale (``input1_shift <= 0``):
    those candidates are refused, the search goes on and the build packages with a plan that loads."""
    import os
    import subprocess
    import sys

    from locations import TESTS

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    r = subprocess.run([sys.executable, str(TESTS / "model_corpus.py"), str(tmp_path), "mobilenet_v3_small"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    with np.load(tmp_path / "mobilenet_v3_small.npz") as z:  # corpus-like pixels, enough to score agreement
        shape = z["x0"].shape[1:]
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).uniform(0, 255, (64, *shape)).astype(np.float32))
    res = run_cli("package", str(tmp_path / manifest["mobilenet_v3_small"]["files"]["keras"]), "--quantize", "auto",
                  "--calibration", str(tmp_path / "calib.npz"), "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.err
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["quantize"]["auto"]["chosen"] in ("int8", "per-op plan")
    from edgepack.runtime import LiteRT

    LiteRT((tmp_path / "out" / "model.tflite").read_bytes())  # the packaged plan loads
