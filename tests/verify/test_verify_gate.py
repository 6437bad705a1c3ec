"""The accuracy gate is on by default: a build that destroys accuracy fails, naming the step."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compress_helpers import digits, mlp
from compress_helpers import outlier_model


def _save(tmp_path, model, name="m.h5"):
    path = tmp_path / name
    model.save(path)
    return path


def _data(tmp_path):
    tr, ev = digits()
    np.savez(tmp_path / "calib.npz", x=tr.x[:128])
    np.savez(tmp_path / "eval.npz", x=ev.x, y=ev.y)
    np.savez(tmp_path / "train.npz", x=tr.x, y=tr.y)
    return tmp_path / "calib.npz", tmp_path / "eval.npz"


@pytest.fixture(scope="module")
def outlier_h5(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    return _save(tmp, outlier_model()), _data(tmp)


def test_default_gate_refuses_a_quantization_that_wrecks_accuracy(run_cli, outlier_h5, tmp_path):
    model, (calib, ev) = outlier_h5
    out = tmp_path / "out"
    r = run_cli("package", model, "--calibration", calib, "--eval", ev, "--out", out, "-q")
    assert r.exit_code == 1
    assert len(r.err.strip().splitlines()) == 1
    assert "limit 1.00 pt" in r.err and "the conversion (quantization) lost" in r.err and "int16x8" in r.err
    assert not out.exists()
    r = run_cli("package", model, "--calibration", calib, "--eval", ev, "--out", out, "-q",
                "--max-accuracy-drop", "none", "--json")
    assert r.exit_code == 0, r.err
    rep = json.loads(r.out)
    assert rep["verification"]["drop_pt"] > 20 and rep["verification"]["gate"]["applied"] is False


def test_gate_names_the_compression_step_that_lost_it(run_cli, tmp_path):
    model = _save(tmp_path, mlp(softmax=True))
    calib, ev = _data(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: [{type: prune_magnitude, sparsity: 0.995}]\nverify: {step_metrics: false}\n")
    r = run_cli("package", model, "--recipe", recipe, "--calibration", calib, "--eval", ev,
                "--out", tmp_path / "o", "-q")
    assert r.exit_code == 1, r.err
    assert "step 'prune_magnitude' lost" in r.err and "sparsity" in r.err
    assert not (tmp_path / "o").exists()


def test_meaningless_agreement_is_flagged_and_the_output_error_gates(run_cli, tmp_path):
    model = _save(tmp_path, mlp(softmax=True))
    np.savez(tmp_path / "zeros.npz", x=np.zeros((64, 8, 8, 1), np.float32))  # one class for every sample
    r = run_cli("package", model, "--calibration", tmp_path / "zeros.npz", "--out", tmp_path / "o", "-q", "--json")
    assert r.exit_code == 0, r.err
    ver = json.loads(r.out)["verification"]
    assert ver["agreement_meaningful"] is False and "predicts class" in ver["agreement_caveat"]
    assert ver["gate"]["on"] == "rel_rms_error" and ver["rel_rms_error"] < 0.1


def test_limit_accepts_points_or_none_only(run_cli, outlier_h5, tmp_path):
    model, (calib, _) = outlier_h5
    r = run_cli("package", model, "--calibration", calib, "--out", tmp_path / "o", "--max-accuracy-drop", "lots")
    assert r.exit_code == 2 and "neither a number of points nor 'none'" in r.err


def test_one_shot_pruning_warning_reaches_stderr_and_the_report(run_cli, tmp_path):
    model = _save(tmp_path, mlp(softmax=True))
    calib, ev = _data(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: [{type: prune_magnitude, sparsity: 0.3}]\nverify: {step_metrics: false}\n")
    out = tmp_path / "o"
    r = run_cli("package", model, "--recipe", recipe, "--calibration", calib, "--eval", ev, "--out", out)
    assert r.exit_code == 0, r.err
    assert "warning: magnitude pruning without training data" in r.err
    assert "without training data" in json.loads((out / "report.json").read_text())["warnings"][0]
    assert "## Warnings" in (out / "report.md").read_text()
