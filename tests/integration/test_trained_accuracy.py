"""A trained model keeps its accuracy through Android int8 packaging (issue 24), measured with labels.

Keras 3's MobileNetV3Small at 32x32 (``weights=None``) trained a few epochs on tests/trained_corpus.py's
pattern task in a Keras 3 child, then packaged through the CLI as a user would (int8, the accuracy gate on).
The figures are the gate's own, from report.json: the float model the gate compares with is Keras 3's own (same
accuracy on the same eval samples), and the packaged model in LiteRT is within 1 pt of it. The other models of
the corpus and their figures: bench/trained_corpus_bench.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from locations import TESTS
from trained_corpus import child_env


@pytest.mark.slow  # ~2-3 min: training in a Keras 3 child, then the Keras 3 load proof, int8 and the gate
def test_trained_mobilenet_v3_small_packages_int8_within_a_point_of_keras(run_cli, tmp_path):
    from edgepack.report.schema import load_report

    r = subprocess.run([sys.executable, str(TESTS / "trained_corpus.py"), str(tmp_path), "mobilenet_v3_small"],
                       env=child_env(legacy=False), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    entry = json.loads((tmp_path / "mobilenet_v3_small.json").read_text())
    keras_acc = entry["keras_accuracy_pct"]
    assert keras_acc >= 85, entry  # the task was learnt: the accuracy below means something
    out = tmp_path / "android"
    res = run_cli("package", tmp_path / entry["model"], "--target", "android", "--quantize", "int8",
                  "--calibration", tmp_path / entry["calibration"], "--eval", tmp_path / entry["eval"],
                  "--out", out, "-q")
    assert res.exit_code == 0, res.err
    rep = load_report(out)
    v = rep.verification
    assert rep.source["framework"] == "keras3" and rep.quantize["mode"] == "int8"
    assert v.metric == "accuracy" and v.data == "eval" and v.samples == 400
    assert v.gate is not None and v.gate.applied and v.gate.limit_pt == 1.0
    assert v.float_accuracy_pct == pytest.approx(keras_acc, abs=0.25)  # at most one of 400 samples differs
    assert keras_acc - v.tflite_accuracy_pct <= 1.0, (keras_acc, v)
