"""The integration matrix: every compression step and quantize mode, for android and tflm, with default
options, on models that look like users' (a Conv+BatchNorm+depthwise+residual CNN, a Sequential MLP and a
Keras 3 file), through the real ``edgepack package`` command.

Each cell must either package (bundle written, gate applied, report complete) or be refused in one line
(exit 1, no traceback, nothing written): before any work for an invalid combination, or by the accuracy
gate naming the step that lost accuracy. Never a traceback, never a crash after training.

Cells whose steps fine-tune are ``slow`` (CI runs them). With ``EDGEPACK_MATRIX_LOG=FILE`` every cell
appends one JSON line (cell, result, accuracy drop, bytes): ``python tests/integration/matrix_table.py FILE``
prints the table.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from edgepack.recipe import Recipe
from refusal import assert_refused

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "calibration_data" / "mnist"
PREPROCESS = {"scale": 1 / 255.0, "mean": 0.0}

# Steps as a user writes them: the knobs a step requires, nothing else.
STEPS: dict[str, list[dict]] = {
    "prune_structured": [{"type": "prune_structured", "ratio": 0.5}],
    "prune_magnitude": [{"type": "prune_magnitude", "sparsity": 0.75}],
    "prune_2of4": [{"type": "prune_magnitude", "m_by_n": [2, 4]}],
    "cluster": [{"type": "cluster"}],
    "qat": [{"type": "qat"}],
    "pqat": [{"type": "prune_magnitude", "sparsity": 0.75}, {"type": "qat"}],
    "cqat": [{"type": "cluster"}, {"type": "qat"}],
    "pcqat": [{"type": "prune_magnitude", "sparsity": 0.75}, {"type": "cluster"}, {"type": "qat"}],
    "lowrank": [{"type": "lowrank"}],
    "distill": [{"type": "distill"}],
    "mixed_precision": [{"type": "mixed_precision"}],
}
# Steps that do not train without --train (cluster, lowrank, one-shot pruning) also run without it.
NO_TRAIN = {"cluster", "lowrank", "prune_magnitude", "prune_2of4", "mixed_precision"}

# (mode, io) pairs; tflm cells are the ones its kernels run (int8 and int16x8 full-integer, float I/O).
QUANT_ANDROID = [("none", None), ("dynamic", None), ("float16", None), ("int8", "float"), ("int8", "int8"),
                 ("int8", "uint8"), ("int16x8", "float"), ("int16x8", "int16")]
QUANT_TFLM = [("int8", "int8"), ("int8", "float"), ("int8", "uint8"), ("int16x8", "int16"), ("none", None)]
# Which model gets which rows: bn_cnn everything on both targets; the MLP every step and mode on android;
# the Keras 3 file (translated to the same architecture) the load path through int8 and the main chains.
KERAS3_STEPS = ("prune_structured", "prune_magnitude", "cluster", "qat", "pcqat")
# The default suite's share (one cell per family of user path); the rest is slow (CI runs it whole).
FAST = {"bn_cnn-android-int8-int8", "bn_cnn-tflm-int8-int8", "bn_cnn-tflm-int16x8-int16",
        "bn_cnn-android-cluster-notrain", "mlp-android-dynamic-default", "keras3_cnn-android-int8-int8"}


def _quant_rows():
    for mode, io in QUANT_ANDROID:
        yield "bn_cnn", "android", mode, io
        yield "mlp", "android", mode, io
    for mode, io in QUANT_TFLM:
        yield "bn_cnn", "tflm", mode, io
    yield "mlp", "tflm", "int8", "int8"
    yield "keras3_cnn", "android", "int8", "int8"
    yield "keras3_cnn", "tflm", "int8", "int8"


def _step_rows():
    for step in STEPS:
        for target in ("android", "tflm"):
            yield "bn_cnn", target, step, True
            if step in NO_TRAIN:
                yield "bn_cnn", target, step, False
        yield "mlp", "android", step, True
        if step in KERAS3_STEPS:
            yield "keras3_cnn", "android", step, True


def _param(cell_id: str, *values):
    return pytest.param(*values, id=cell_id, marks=() if cell_id in FAST else (pytest.mark.slow,))


def _cells():
    for model, target, mode, io in _quant_rows():
        yield _param(f"{model}-{target}-{mode}-{io or 'default'}", model, target, None, mode, io, False)
    for model, target, step, train in _step_rows():
        yield _param(f"{model}-{target}-{step}-{'train' if train else 'notrain'}", model, target, step, None, None,
                     train)


def _record(cell: str, result: str, report: dict | None, message: str = "", wall_s: float = 0.0) -> None:
    log = os.environ.get("EDGEPACK_MATRIX_LOG")
    if not log:
        return
    row = {"cell": cell, "result": result, "message": message[:300], "wall_s": round(wall_s, 1)}
    if report:
        ver = report.get("verification", {})
        row.update(drop_pt=ver.get("drop_pt"), float_pct=ver.get("float_accuracy_pct"),
                   packaged_pct=ver.get("tflite_accuracy_pct"), bytes=report["tflite"]["size_bytes"])
    with open(log, "a") as f:
        f.write(json.dumps(row) + "\n")


def _check_packaged(out: Path, target: str, report: dict, has_eval: bool) -> None:
    assert (out / "model.tflite").stat().st_size == report["tflite"]["size_bytes"]
    for name in report["files"]:
        assert (out / name).exists(), f"report lists {name}, not written"
    for key in ("model", "source", "quantize", "tflite", "provenance", "entropy", "files"):
        assert key in report, f"report.json has no '{key}'"
    if has_eval:
        gate = report["verification"]["gate"]
        assert gate["applied"], gate
        assert report["verification"]["drop_pt"] <= gate["limit_pt"] + 1e-9
    if target == "tflm":
        for name in ("model_data.cc", "model_data.h", "model_ops.h", "model_config.h"):
            assert (out / name).is_file(), name
        fw = report["firmware"]
        assert fw["arena"]["min_bytes"] > 0 and fw["budget"]["flash"]["needed"] > 0 and "parity" in fw
    else:
        assert (out / "manifest.json").is_file()
    Recipe.from_yaml(out / "recipe.yaml")  # the written recipe rebuilds the bundle


@pytest.fixture(scope="session")
def user_models(tmp_path_factory):
    """name -> model file: lazily built once per test process (a cell pays only for the models it uses)."""
    import user_models as um  # tests/integration/user_models.py (this folder is on sys.path for its tests)

    out = tmp_path_factory.mktemp("user_models")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = um.build_keras3(out) if name == "keras3_cnn" else um.build_tf_keras(out, name)
        return built[name]

    return get


@pytest.mark.parametrize("model,target,step,mode,io,train", list(_cells()))
def test_cell(model, target, step, mode, io, train, user_models, run_cli, tmp_path, request):
    recipe = {"version": 1, "data": {"preprocess": PREPROCESS}, "steps": STEPS[step] if step else []}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = tmp_path / "out"
    args = ["package", user_models(model), "--target", target, "--recipe", tmp_path / "recipe.yaml",
            "--calibration", DATA / "calib.npz", "--eval", DATA / "eval.npz", "--out", out]
    if target == "tflm":
        args += ["--device", "nucleo-l4r5zi"]
    if mode:
        args += ["--quantize", mode]
    if io:
        args += ["--io", io]
    if train:
        args += ["--train", DATA / "train.npz"]
    user_models(model)  # built before the clock starts
    t0 = time.monotonic()
    res = run_cli(*map(str, args))
    wall = time.monotonic() - t0
    cell = request.node.callspec.id
    if res.exit_code == 0:
        report = json.loads((out / "report.json").read_text())
        _check_packaged(out, target, report, has_eval=True)
        _record(cell, "packaged", report, wall_s=wall)
    else:
        msg = assert_refused(res, out=out)  # exit 1, one line, no traceback, nothing written
        _record(cell, "refused (gate)" if "accuracy dropped" in msg or "disagree" in msg else "refused", None, msg,
                wall_s=wall)
