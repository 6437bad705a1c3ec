"""``--quantize auto`` judges candidate plans with the accuracy gate's own metric: without labels, when top-1
agreement cannot mean anything (fewer than 30 samples, or logits as here) the gate uses the relative RMS output
error. On a digits MLP with a 300x outlier neuron, 16 calibration samples: int8 keeps 100 % agreement but is
> 10 % off in relative RMS, so a search scoring agreement accepted all-int8 and the gate then refused it."""

import json

import numpy as np
import pytest

from compress_helpers import digits, outlier_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("auto_gate")
    np.savez(d / "calib16.npz", x=digits()[0].x[:16])
    outlier_model(300.0).save(d / "outlier300.h5")
    return d


def test_auto_plan_passes_the_gate_on_relative_error_when_agreement_cannot_be_used(run_cli, files, tmp_path):
    res = run_cli("package", str(files / "outlier300.h5"), "--quantize", "auto", "--calibration",
                  str(files / "calib16.npz"), "--out", str(tmp_path / "auto"))
    assert res.exit_code == 0, res.err
    rep = json.loads((tmp_path / "auto" / "report.json").read_text())
    auto, ver = rep["quantize"]["auto"], rep["verification"]
    assert "relative RMS" in auto["int8"] and "agreement cannot be used" in auto["int8"]  # int8: refused on the error
    assert auto["chosen"] == "per-op plan" and auto["metric"] == "rel_rms_error" and auto["met"]
    assert auto["rel_rms_error"] <= auto["limit_rel_rms_error"] == 0.10
    assert {w["layer"] for w in auto["kept_wide"]} >= {"fc1"}
    assert ver["gate"]["on"] == "rel_rms_error" and ver["rel_rms_error"] <= 0.10
    assert ver["top1_agreement_pct"] == 100.0  # agreement alone would have accepted all-int8
