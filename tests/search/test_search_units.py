"""edgepack search without Ray: Pareto bookkeeping, the space file, search.json, the HTML page, CLI errors."""

from __future__ import annotations

import json

import pytest

from edgepack.errors import RecipeError, UsageError
from edgepack.search.pareto import best_trial, dominates, pareto_front
from edgepack.search.space import SearchSpace
from edgepack.search.store import SearchStore


def rec(n, size, drop, status="ok"):
    return {"number": n, "status": status, "metrics": {"size_bytes": size, "drop_pt": drop}}


def test_dominance_and_front():
    assert dominates((1, 1), (2, 1)) and not dominates((1, 1), (1, 1)) and not dominates((1, 2), (2, 1))
    trials = [rec(0, 100, 0.0), rec(1, 60, 0.5), rec(2, 70, 0.6),  # 2 dominated by 1
              rec(3, 40, 0.9), rec(4, 30, 3.0, "infeasible"),      # 4 over budget: not on the front
              rec(5, 60, 0.5), {"number": 6, "status": "failed", "error": "boom"},  # 5 duplicates 1
              rec(7, 100, -0.2)]                                   # accuracy went up: dominates 0
    assert pareto_front(trials, "size_bytes") == [3, 1, 7]
    assert best_trial(trials, "size_bytes")["number"] == 3
    assert best_trial([rec(0, 10, 0.5), rec(1, 10, 0.2)], "size_bytes")["number"] == 1  # tie: smaller drop
    assert best_trial([t for t in trials if t["status"] != "ok"], "size_bytes") is None


def test_space_file_is_validated_like_a_recipe(tmp_path):
    good = tmp_path / "space.yaml"
    good.write_text("version: 1\nsampler: nsga2\nepochs: 1\nquantize: [int8, mixed]\nsteps:\n"
                    "  prune_structured: {ratio: {low: 0.2, high: 0.6}, round_to: [1, 8], importance: l2}\n"
                    "  cluster: {clusters: [8, 16], optional: false}\n")
    space = SearchSpace.from_yaml(good)
    assert space.sampler == "nsga2" and list(space.steps) == ["prune_structured", "cluster"]
    cases = {"steps: {prune_structured: {ratio: {low: 0.2, high: 0.6}, colour: red}}": "colour",
             "steps: {prune_structured: {ratio: {low: 0.6, high: 0.2}}}": "below high",
             "steps: {cluster: {clusters: [1, 8]}}": "clusters",  # 1 shared value: the step rejects it
             "steps: {teleport: {}}": "unknown step",
             "samplr: tpe": "samplr",
             "quantize: [int4]": "quantize"}
    for body, needle in cases.items():
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 1\n" + body + "\n")
        with pytest.raises(RecipeError, match=needle):
            SearchSpace.from_yaml(bad)


def test_a_sample_is_an_ordinary_recipe():
    import optuna

    from edgepack.recipe import Recipe

    space = SearchSpace.from_dict({"epochs": 1, "quantize": ["int8", "int16x8"], "steps": {
        "prune_structured": {"ratio": {"low": 0.2, "high": 0.6}, "round_to": [1, 8]}, "qat": {}}})
    trial = optuna.trial.FixedTrial({"quantize": "int16x8", "prune_structured": True, "prune_structured.ratio": 0.4,
                                     "prune_structured.round_to": 8})
    raw = space.sample(trial, {"quantize": {"io": "int8"}}, 1.0)
    r = Recipe.from_dict(raw)
    assert [s.type for s in r.steps] == ["prune_structured"]  # no qat with int16x8
    assert r.steps[0].params()["ratio"] == 0.4 and r.quantize.mode == "int16x8" and r.quantize.io == "int16"
    assert r.verify.max_accuracy_drop == 1.0 and r.verify.step_metrics is False


def test_search_json_resume_checks_and_drops_running(tmp_path):
    header = {"inputs": {"model": {"name": "m.h5", "sha256": "a"}}, "target": "android", "device": None,
              "objective": "size", "objective_key": "size_bytes", "max_accuracy_drop": 1.0, "seed": 0,
              "space": {}, "base_recipe": {}, "trials_budget": 4}
    store = SearchStore.create(tmp_path, header)
    store.record(rec(0, 100, 0.0))
    store.record(rec(1, 50, 0.3))
    store.data["trials"].append({"number": 2, "status": "running"})
    store.save()
    assert json.loads((tmp_path / "search.json").read_text())["best"]["trial"] == 1
    assert not list(tmp_path.glob(".search.json.*"))  # atomic write left no temporary file
    again = SearchStore.resume(tmp_path, {**header, "trials_budget": 8})
    assert [t["number"] for t in again.trials] == [0, 1] and again.data["trials_budget"] == 8
    with pytest.raises(UsageError, match="different seed"):
        SearchStore.resume(tmp_path, {**header, "seed": 1})


def test_html_page_is_self_contained():
    from edgepack.search.report import render_search_html

    data = {"objective": "size", "objective_key": "size_bytes", "target": "android", "device": None,
            "inputs": {"model": {"name": "m.h5"}}, "max_accuracy_drop": 1.0, "trials_budget": 3, "seed": 0,
            "space": {"sampler": "tpe", "notes": ["lowrank left out"]}, "state": "done",
            "trials": [rec(0, 100, 0.0), rec(1, 40, 0.5), rec(2, 30, 2.0, "infeasible")],
            "pareto_front": [1, 0], "best": {"trial": 1, "metrics": {"size_bytes": 40, "drop_pt": 0.5}}}
    html = render_search_html(data)
    assert "<svg" in html and "2.50x smaller than plain int8" in html and "lowrank left out" in html
    assert not any(tag in html for tag in ("<link", "<script", "src=", "<img"))  # no external resources


def test_cli_rejects_energy_without_a_board(run_cli, mnist, tmp_path):
    r = run_cli("search", mnist.model, "--calibration", mnist.calib, "--objective", "energy", "--out", tmp_path / "s")
    assert r.exit_code == 2 and "--objective energy needs --target tflm" in r.err
    assert not (tmp_path / "s").exists()
