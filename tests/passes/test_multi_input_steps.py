"""Compression steps on a model with several inputs (issue 24): the data of every step (fine-tune, BatchNorm
recalibration, importance, teacher outputs) is one array per input, and structured pruning follows channels
through the branches and the Concatenate where they meet (a flattened feature map beside a Dense output).

The CLI tests package the two-input model of tests/multi_input_model.py (an 8x8 image and 3 metadata
values) with each step through the real ``edgepack package``: each step packages and passes the accuracy
gate (report.json valid), or is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from multi_input_model import build_two_input, two_input_data, write_data
from refusal import assert_refused

from edgepack.keras_compat import keras
from edgepack.passes.base import Context, Labeled
from edgepack.passes.pruning.graph import build_graph
from edgepack.passes.pruning.importance import group_scores
from edgepack.passes.pruning.surgery import layer_channels, prune_model
from edgepack.passes.training import FitConfig, check_labels, fit, recalibrate_batchnorm
from edgepack.samples import Inputs


def _branches_model():
    """image -> Conv(8) -> pool -> Flatten; image -> Conv(6) -> GAP; meta -> Dense(6) -> BN;
    all three concatenated (a flattened map beside two vectors), Dropout, Dense(12), Dense(3)."""
    k = keras()
    L = k.layers
    k.utils.set_random_seed(0)
    image, meta = k.Input((6, 6, 2), name="image"), k.Input((5,), name="meta")
    a = L.Flatten(name="flat")(L.MaxPooling2D(name="pool")(L.Conv2D(8, 3, padding="same", activation="relu",
                                                                     name="conv_a")(image)))
    b = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(6, 3, activation="relu", name="conv_b")(image))
    m = L.BatchNormalization(name="bn")(L.Dense(6, activation="relu", name="meta_fc")(meta))
    z = L.Concatenate(name="cat2")([L.Concatenate(name="cat1")([a, m]), b])  # nested: parts stay in order
    z = L.Dense(12, activation="relu", name="fc")(L.Dropout(0.1, name="drop")(z))
    return k.Model([image, meta], L.Dense(3, name="out")(z))


def _inputs(n: int, seed: int = 0) -> Inputs:
    rng = np.random.default_rng(seed)
    return Inputs((rng.normal(size=(n, 6, 6, 2)).astype(np.float32), rng.normal(size=(n, 5)).astype(np.float32)),
                  ("image", "meta"))


def _zero(model, name: str, idx) -> None:
    w = model.get_layer(name).get_weights()
    w[0][..., idx], w[1][idx] = 0.0, 0.0
    model.get_layer(name).set_weights(w)


def test_channels_pruned_in_every_branch_of_a_concatenate_of_flattened_and_dense_outputs():
    model = _branches_model()
    g = build_graph(model)
    assert {grp.name for grp in g.prunable()} == {"conv_a", "conv_b", "meta_fc", "fc"}
    # zeroed channels give exact zeros after ReLU/pool/Flatten, GAP; the BN's beta and mean zeroed too
    _zero(model, "conv_a", [1, 4])
    _zero(model, "conv_b", [0])
    _zero(model, "meta_fc", [2, 3])
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    beta[[2, 3]], mean[[2, 3]] = 0.0, 0.0
    model.get_layer("bn").set_weights([gamma, beta, mean, var])
    keep = {g.group_of("conv_a").id: np.array([0, 2, 3, 5, 6, 7]), g.group_of("conv_b").id: np.arange(1, 6),
            g.group_of("meta_fc").id: np.array([0, 1, 4, 5])}
    pruned = prune_model(model, g, keep)
    assert pruned.get_layer("conv_a").filters == 6 and pruned.get_layer("meta_fc").units == 4
    assert pruned.get_layer("fc").get_weights()[0].shape[0] == 3 * 3 * 6 + 4 + 5  # rows per part, in order
    assert layer_channels(model, g, keep)["fc"] == (3 * 3 * 8 + 6 + 6, 3 * 3 * 6 + 4 + 5, 12, 12)
    x = _inputs(8)
    np.testing.assert_allclose(pruned(list(x.arrays)).numpy(), model(list(x.arrays)).numpy(), atol=1e-5)


def test_importance_from_data_of_every_input():
    model = _branches_model()
    g = build_graph(model)
    x, y = _inputs(40), np.arange(40) % 3
    for criterion in ("activation", "taylor"):
        scores = group_scores(model, g, criterion, x, y)
        assert set(scores) == {grp.id for grp in g.prunable()}
        meta = scores[g.group_of("meta_fc").id]
        assert meta.shape == (6,) and np.all(np.isfinite(meta)) and meta.max() > 0  # carried through the concat


def test_fit_and_batchnorm_recalibration_take_one_array_per_input():
    model = _branches_model()
    x = _inputs(64, 1)
    assert recalibrate_batchnorm(model, x) == 1
    m = np.maximum(x.arrays[1] @ model.get_layer("meta_fc").get_weights()[0] + model.get_layer("meta_fc").get_weights()[1], 0)
    np.testing.assert_allclose(model.get_layer("bn").moving_mean.numpy(), m.mean(axis=0), rtol=1e-4, atol=1e-5)
    data = Labeled(x, np.arange(64) % 3)
    hist = fit(model, data, Context(), FitConfig(epochs=1, validation_split=0.25))
    assert len(hist.history["loss"]) == 1
    wrong = Labeled(Inputs((x.arrays[0], x.arrays[1][:, :4]), x.names), data.y)
    with pytest.raises(Exception, match=r"input 'meta' \(4,\) \(the model expects \(5,\)\)"):
        check_labels(model, wrong)


# --------------------------------------------------------------------------- through the CLI

STEPS: dict[str, list[dict]] = {
    "prune_structured": [{"type": "prune_structured", "ratio": 0.25, "round_to": 2, "importance": "taylor",
                          "fine_tune": {"epochs": 3}}],
    "prune_magnitude": [{"type": "prune_magnitude", "sparsity": 0.5}],
    "prune_2of4": [{"type": "prune_magnitude", "m_by_n": [2, 4]}],
    "cluster": [{"type": "cluster"}],
    "qat": [{"type": "qat"}],
    "pqat": [{"type": "prune_magnitude", "sparsity": 0.5}, {"type": "qat"}],
    "cqat": [{"type": "cluster"}, {"type": "qat"}],
    "pcqat": [{"type": "prune_magnitude", "sparsity": 0.5}, {"type": "cluster"}, {"type": "qat"}],
    "lowrank": [{"type": "lowrank"}],
    "distill": [{"type": "distill"}],
    "mixed_precision": [{"type": "mixed_precision"}],
}


@pytest.fixture(scope="module")
def two_input(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("two_input_steps")
    model, _ = build_two_input(keras())
    model.save(folder / "two_input.h5")
    xi, xm, y = two_input_data(1500, 11)  # its own seed: not the model's training samples
    np.savez(folder / "train.npz", image=xi, meta=xm, y=y)
    return {"model": folder / "two_input.h5", "train": folder / "train.npz", **write_data(folder)}


def _package(run_cli, d: dict, tmp_path: Path, steps: list[dict], target: str = "android", train: bool = True):
    recipe = yaml.safe_load(d["recipe"].read_text()) | {"steps": steps}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    args = ["package", d["model"], "--target", target, "--recipe", tmp_path / "recipe.yaml", "--quantize", "int8",
            "--io", "int8", "--calibration", d["calib"], "--eval", d["eval"], "--out", out]
    if train:
        args += ["--train", d["train"]]
    if target == "tflm":
        args += ["--device", "nucleo-l4r5zi"]
    res = run_cli(*map(str, args))
    if res.exit_code != 0:
        return None, assert_refused(res, out=out)
    report = json.loads((out / "report.json").read_text())
    from edgepack.report.schema import PackageReport

    PackageReport.of(report, "report.json")
    ver = report["verification"]
    assert ver["gate"]["applied"] and ver["drop_pt"] <= ver["gate"]["limit_pt"] + 1e-9
    assert ver["samples"] == 600 and (out / "model.tflite").stat().st_size == report["tflite"]["size_bytes"]
    return report, None


def _check_step(step: str, report: dict) -> None:
    rec = {s["step"]: s for s in report["steps"]}
    if step == "prune_structured":
        # both branches: the image's Conv2D and the meta input's Dense (8 channels each; layer names are Keras'
        # automatic ones, which depend on what the process built before)
        layers = rec["prune_structured"]["layers"]
        conv = [r for r in layers if r["type"] == "Conv2D"]
        meta = [r for r in layers if r["type"] == "Dense" and r["channels_before"] == 8]
        assert len(conv) == len(meta) == 1 and conv[0]["channels_after"] < 8 and meta[0]["channels_after"] < 8
    if step in ("prune_magnitude", "pqat", "pcqat"):
        assert rec["prune_magnitude"]["sparsity"] >= 0.45 and rec["prune_magnitude"]["fine_tuned"]
    if step == "prune_2of4":
        assert rec["prune_magnitude"]["m_by_n"] == [2, 4]
    if "qat" in step:
        assert rec["qat"]["quantized_layers"] >= 4 and rec["qat"]["epochs_run"] >= 1
    if step == "lowrank":
        assert rec["lowrank"]["layers"]
    if step == "distill":
        assert rec["distill"]["epochs_run"] >= 1
    if step == "mixed_precision":
        assert rec["mixed_precision"]["ops"]


@pytest.mark.slow  # a CLI package with a fine-tune: the default suite keeps the surgery and data tests above
def test_cli_prune_structured_through_both_branches_for_android(two_input, run_cli, tmp_path):
    report, refused = _package(run_cli, two_input, tmp_path, STEPS["prune_structured"])
    assert refused is None, refused
    _check_step("prune_structured", report)
    assert report["verification"]["float_accuracy_pct"] >= 80


@pytest.mark.slow
def test_cli_every_step_packages_the_two_input_model_for_android(two_input, run_cli, tmp_path):
    results = {}
    for step, steps in STEPS.items():
        if step == "prune_structured":
            continue  # its own test above
        report, refused = _package(run_cli, two_input, tmp_path / step, steps)
        results[step] = refused or report
        if report is not None:
            _check_step(step, report)
    refused = {s: r for s, r in results.items() if isinstance(r, str)}
    assert not refused, refused


@pytest.mark.slow
def test_cli_qat_packages_the_two_input_model_for_tflm(two_input, run_cli, tmp_path):
    report, refused = _package(run_cli, two_input, tmp_path, STEPS["pqat"], target="tflm")
    assert refused is None, refused
    _check_step("pqat", report)
    assert report["firmware"]["parity"]["max_step_diff"] <= 1
