"""Pruning with fine-tuning and the accuracy-budget search, on real (offline) digits; CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from edgepack.keras_compat import keras, set_seed
from edgepack.passes.base import Context, Labeled
from edgepack.passes.prune_structured import StructuredPrune
from edgepack.passes.training import evaluate_accuracy


@pytest.fixture(scope="module")
def digits():
    return train_digits()


def train_digits():
    """A small CNN trained on 1400 sklearn digits; the other 397 are the eval set."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    tr, ev = order[:1400], order[1400:]
    set_seed(0)
    k = keras()
    L = k.layers
    m = k.Sequential([k.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same", name="c1"),
                      L.BatchNormalization(name="bn1"), L.ReLU(name="r1"),
                      L.Conv2D(16, 3, activation="relu", name="c2"), L.MaxPooling2D(name="mp"),
                      L.Flatten(name="flat"), L.Dense(32, activation="relu", name="fc"), L.Dense(10, name="out")])
    m.compile(k.optimizers.Adam(3e-3), k.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    m.fit(x[tr], y[tr], epochs=6, batch_size=64, verbose=0)
    return m, Labeled(x[tr], y[tr]), Labeled(x[ev], y[ev])


def test_iterative_fine_tuning_recovers_accuracy(digits):
    model, train, ev = digits
    one_shot = Context(eval=ev)
    a = StructuredPrune(StructuredPrune.Config(ratio=0.75)).apply(model, one_shot)
    events = []
    tuned = Context(train=train, eval=ev, progress=lambda label, done, total: events.append((label, done, total)))
    b = StructuredPrune(StructuredPrune.Config(ratio=0.75, iterations=2, fine_tune={"epochs": 2})).apply(model, tuned)
    assert a.count_params() == b.count_params()
    acc_a, acc_b = evaluate_accuracy(a, ev), evaluate_accuracy(b, ev)
    assert acc_b > acc_a
    assert tuned.records[-1]["accuracy_after"] == pytest.approx(acc_b, abs=1e-3)
    labels = {e[0] for e in events}
    assert labels == {"prune 1/2: fine-tune", "prune 2/2: fine-tune"}
    assert all(e[2] == 2 for e in events)


def _search(model, train, ev, limit, **cfg):
    ctx = Context(train=train, eval=ev)
    out = StructuredPrune(StructuredPrune.Config(target={"max_accuracy_drop": limit}, round_to=1, **cfg)).apply(
        model, ctx)
    rec = ctx.records[-1]
    assert rec["macs_after"] < rec["macs_before"]
    assert set(rec["sensitivity"]) == {"c1", "c2", "fc"} and rec["search"]
    assert evaluate_accuracy(out, ev) == pytest.approx(rec["accuracy_after"], abs=1e-3)
    return rec


def test_accuracy_budget_search_one_shot_decides_on_eval(digits):
    model, _, ev = digits
    rec = _search(model, None, ev, 3.0, search_probes=3)
    assert rec["fine_tuned"] is False and rec["accuracy_drop"] <= 3.0
    assert rec["search_decided_on"].startswith("--eval")


@pytest.mark.slow
def test_accuracy_budget_search_with_fine_tuning(digits):
    model, train, ev = digits
    tuned = _search(model, train, ev, 1.0, search_probes=5, fine_tune={"epochs": 3})
    assert tuned["search_decided_on"].startswith("held-out")


def test_accuracy_budget_needs_labelled_data(digits):
    from edgepack.errors import RecipeError

    model, train, _ = digits
    with pytest.raises(RecipeError, match="needs labelled data to decide on; pass --train"):
        StructuredPrune(StructuredPrune.Config(target={"max_accuracy_drop": 1.0})).apply(
            model, Context(calibration=train.x[:32]))


def test_cli_package_runs_pruning_before_conversion(tmp_path, mnist, run_cli):
    recipe = yaml.safe_load(mnist.recipe.read_text())
    recipe["steps"] = [{"type": "prune_structured", "ratio": 0.5, "round_to": 4, "fine_tune": {"epochs": 1}}]
    recipe["verify"] = {"max_accuracy_drop": 5.0}  # checked on the calibration set (no --eval: faster)
    rpath = tmp_path / "recipe.yaml"
    rpath.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    res = run_cli("package", mnist.model, "--recipe", rpath, "--quantize", "none", "--calibration", mnist.calib,
                  "--train", mnist.train, "-o", out, "--quiet")
    assert res.exit_code == 0, res.err
    report = json.loads((out / "report.json").read_text())
    step = next(s for s in report["steps"] if s["step"] == "prune_structured")
    rows = {r["name"]: r for r in step["layers"]}
    assert rows["conv1"]["channels_before"] == 16 and rows["conv1"]["channels_after"] == 8
    assert rows["fc1"]["channels_after"] == 32 and rows["probs"]["channels_after"] == 10
    assert report["tflite"]["macs"] == step["macs_after"] < step["macs_before"]
    assert step["fine_tuned"] is True
    md = (out / "report.md").read_text()
    assert "### prune_structured: layers" in md and "channels_after" in md
