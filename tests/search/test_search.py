"""edgepack search against a real Ray cluster (a head on loopback, started here) on a tiny digits CNN.

One search of 4 trials runs once for the module (one worker, so it is sequential and
deterministic); the tests read its folder. While its trials run, the driver's input folder
is renamed away, so a worker that read the driver's files instead of the object store fails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from locations import ROOT

SPACE = """version: 1
sampler: tpe
epochs: 1
quantize: [int8]
steps:
  prune_structured: {ratio: {low: 0.1, high: 0.5}, round_to: [1, 4]}
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from compress_helpers import cnn, digits

    d = tmp_path_factory.mktemp("driver") / "inputs"
    d.mkdir()
    cnn(epochs=4).save(d / "digits_cnn.h5")
    tr, ev = digits()
    np.savez(d / "train.npz", x=tr.x[:500], y=tr.y[:500])
    np.savez(d / "eval.npz", x=ev.x, y=ev.y)
    np.savez(d / "calib.npz", x=tr.x[:64])
    (d.parent / "space.yaml").write_text(SPACE)
    return d


def config(inputs: Path, out: Path, **kw):
    from edgepack.search.engine import SearchConfig

    return SearchConfig(model=inputs / "digits_cnn.h5", out=out, calibration=inputs / "calib.npz",
                        **{"train": inputs / "train.npz", "eval": inputs / "eval.npz",
                           "space": inputs.parent / "space.yaml", "objective": "size", "trials": 4, "seed": 3,
                           "workers": 1, "fresh_worker": False, **kw})


@pytest.fixture(scope="module")
def search(ray_head, inputs, tmp_path_factory):
    """The module's search; trial 1 raises inside its worker."""
    from edgepack.search.engine import run_search

    out = tmp_path_factory.mktemp("s") / "search"
    hidden = inputs.with_name("inputs-hidden-while-trials-run")
    events = []

    def on_event(kind, info):
        events.append((kind, info.get("number", info.get("done"))))
        if kind == "trial_started" and info["number"] == 0:
            inputs.rename(hidden)  # the driver has read them; workers must not need them
        if kind == "trial_done" and info["done"] == info["total"]:
            hidden.rename(inputs)  # back for packaging best/ on the driver

    data = run_search(config(inputs, out, faults={1: "raise"}, events=on_event))
    return out, data, events


def test_trials_run_on_ray_and_are_recorded(search, ray_head):
    out, data, events = search
    on_disk = json.loads((out / "search.json").read_text())
    assert on_disk["state"] == "done" and [t["number"] for t in on_disk["trials"]] == [0, 1, 2, 3]
    nodes = {n["NodeID"] for n in ray_head.nodes()}
    for t in on_disk["trials"]:
        assert t["node_id"] in nodes and t["wall_s"] >= 0 and (out / t["recipe_file"]).is_file()
    base = on_disk["trials"][0]
    assert base["status"] == "ok" and base["recipe"]["steps"] == [] and base["metrics"]["size_bytes"] > 0
    # Workers used their own copies: the driver's folder was renamed away while they ran.
    for t in on_disk["trials"]:
        if t["status"] != "failed":
            assert not t["workdir"].startswith(str(Path(search[0]).parent)), t["workdir"]
    assert ("trial_started", 3) in events


def test_a_trial_that_raises_is_failed_and_the_search_goes_on(search):
    _, data, _ = search
    t1 = data["trials"][1]
    assert t1["status"] == "failed" and "injected fault" in t1["error"]
    later = data["trials"][2:]
    assert all("injected" not in t.get("error", "") for t in later)
    assert any(t["status"] in ("ok", "infeasible") and t["metrics"]["size_bytes"] > 0 for t in later)


def test_pareto_and_best_are_consistent(search):
    from edgepack.search.pareto import dominates

    out, data, _ = search
    pts = {t["number"]: (t["metrics"]["size_bytes"], t["metrics"]["drop_pt"]) for t in data["trials"]
           if t["status"] == "ok"}
    front = data["pareto_front"]
    assert front and set(front) <= set(pts)
    for n in pts:  # every feasible trial is on the front or dominated by a front trial
        assert n in front or any(dominates(pts[f], pts[n]) for f in front)
    best = data["best"]
    assert best["metrics"]["size_bytes"] == min(p[0] for p in pts.values())
    assert all(t["metrics"]["drop_pt"] <= 1.0 for t in data["trials"] if t["status"] == "ok")
    bp = data["best_package"]
    assert bp["trial"] == best["trial"] and bp["size_bytes"] == best["metrics"]["size_bytes"]
    assert (out / "best" / "model.tflite").is_file() and (out / "best" / "report.json").is_file()
    html = (out / "report.html").read_text()
    assert "<svg" in html and f"best (trial {best['trial']})" in html


def test_a_trial_recipe_reproduces_with_edgepack_package(search, inputs, run_cli, tmp_path):
    out, data, _ = search
    t = next(t for t in data["trials"] if t["number"] > 1 and t["status"] in ("ok", "infeasible"))
    r = run_cli("package", inputs / "digits_cnn.h5", "--recipe", out / t["recipe_file"], "--calibration",
                inputs / "calib.npz", "--train", inputs / "train.npz", "--eval", inputs / "eval.npz",
                "--seed", "3", "--max-accuracy-drop", "none", "--out", tmp_path / "again", "--json")
    assert r.exit_code == 0, r.err
    rep = json.loads(r.out)
    assert rep["tflite"]["size_bytes"] == t["metrics"]["size_bytes"]
    assert rep["provenance"]["outputs"]["model.tflite"] == t["tflite_sha256"]


def test_resume_gives_the_same_trials_and_survives_crash_and_timeout(search, inputs, tmp_path):
    """Cut search.json back to 3 trials, resume with a budget of 6: trial 3 is proposed again exactly
    as before (same seed, one worker); trial 4's worker process dies and trial 5 never ends (the timeout leaves a loaded host room for the real trial 3): both are
    recorded as failed and the search finishes."""
    from edgepack.search.engine import run_search

    out, data, _ = search
    again = tmp_path / "search"
    shutil.copytree(out, again)
    j = json.loads((again / "search.json").read_text())
    j["trials"] = j["trials"][:3] + [{"number": 3, "status": "running"}]  # as a Ctrl-C would leave it
    (again / "search.json").write_text(json.dumps(j))
    res = run_search(config(inputs, again, resume=True, trials=6, faults={4: "exit", 5: "hang"}, trial_timeout=40,
                            package_best=False))
    by_n = {t["number"]: t for t in res["trials"]}
    assert sorted(by_n) == [0, 1, 2, 3, 4, 5]
    assert by_n[3]["params"] == data["trials"][3]["params"] and by_n[3]["recipe"] == data["trials"][3]["recipe"]
    assert by_n[3]["metrics"]["size_bytes"] == data["trials"][3]["metrics"]["size_bytes"]
    assert by_n[4]["status"] == "failed" and "died" in by_n[4]["error"]
    assert by_n[5]["status"] == "failed" and "timed out after 40 s" in by_n[5]["error"]
    assert json.loads((again / "search.json").read_text())["state"] == "done"


@pytest.mark.slow
def test_ctrl_c_leaves_a_valid_search_json(inputs, tmp_path):
    """SIGINT to a running `edgepack search` (its own local Ray): exit 130, search.json parses, state
    interrupted, only finished trials in it; --resume then picks it up."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "edgepack", "search", str(inputs / "digits_cnn.h5"), "--calibration",
           str(inputs / "calib.npz"), "--train", str(inputs / "train.npz"), "--eval", str(inputs / "eval.npz"),
           "--space", str(inputs.parent / "space.yaml"), "--trials", "6", "--workers", "1", "--out", str(out), "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if (out / "search.json").is_file() and json.loads((out / "search.json").read_text())["trials"]:
            break
        time.sleep(1)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    data = json.loads((out / "search.json").read_text())
    assert data["state"] == "interrupted" and data["trials"]
    assert all(t["status"] in ("ok", "infeasible", "failed") for t in data["trials"])


@pytest.mark.slow
@pytest.mark.parametrize("target, train", [("tflm", True), ("android", False), ("tflm", False)])
def test_default_space_without_space_file_for_each_target_with_and_without_train(ray_head, inputs, tmp_path,
                                                                                  target, train):
    """The default path a new user takes: no --space (the space comes from the model and target)."""
    from edgepack.search.engine import run_search

    kw = {"space": None, "trials": 3, "epochs": 1}
    if not train:
        kw["train"] = None
    if target == "tflm":
        kw.update(target="tflm", device="nucleo-l4r5zi")
    data = run_search(config(inputs, tmp_path / "s", **kw))
    statuses = [t["status"] for t in data["trials"]]
    assert len(statuses) == 3 and "failed" not in statuses, [t.get("error") for t in data["trials"]]
    steps = data["space"]["steps"]
    assert "prune_structured" in steps and (("qat" in steps) == train)
    multiple = 4 if target == "tflm" else 8  # the kernels' channel multiple (cortex-m4: CMSIS-NN; XNNPACK)
    assert steps["prune_structured"]["round_to"] == [1, multiple]
    assert (tmp_path / "s" / "best" / "report.json").is_file()


def test_default_space_searches_weight_sharing_for_tflm_flash_but_not_android_size():
    """tflm keeps clustered / pruned weights compressed in flash (DECODE), so they lower its size objective;
    on android they shrink only the download."""
    from edgepack.keras_compat import tf
    from edgepack.search.space import default_space

    t = tf()
    x = t.keras.Input((16,))
    model = t.keras.Model(x, t.keras.layers.Dense(4)(t.keras.layers.Dense(32, activation="relu")(x)))
    tflm = default_space(model, "tflm", "size", has_train=False).steps
    android = default_space(model, "android", "size", has_train=False).steps
    assert {"prune_magnitude", "cluster"} <= set(tflm)
    assert not {"prune_magnitude", "cluster"} & set(android)
