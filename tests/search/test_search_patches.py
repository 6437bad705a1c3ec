"""edgepack search and patch-based inference (recipe tflm.patches): when trials try it (the RAM objective, or
trial 0 short of the board's RAM), how a trial's arena with and without patches is recorded and shown, and
one real search on a loopback Ray cluster with a board too small for the unpatched arena."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.errors import UsageError
from edgepack.search.space import SearchSpace, default_space, patches_decision
from locations import ROOT

SPACE = "version: 1\nepochs: 0\nquantize: [int8]\nsteps: {}\npatches: when_ram_short\n"


def test_patches_are_searched_for_ram_or_when_trial_0_is_short_of_the_boards_ram():
    space = SearchSpace.from_dict({"patches": "when_ram_short"})
    ok = {"status": "ok", "metrics": {"ram_bytes": 95_000}}
    assert patches_decision(space, "size", None, 100_000) is None  # waits for trial 0
    assert patches_decision(space, "ram", None, 100_000)["searched"]  # the objective alone decides
    short = patches_decision(space, "size", ok, 100_000)
    assert short["searched"] and "95,000 B of the board's 100,000 B RAM (5,000 B left: short)" in short["why"]
    assert not patches_decision(space, "size", ok, 200_000)["searched"]  # 105,000 B left
    over = {"status": "infeasible", "error_type": "BudgetError", "error": "m does not fit b RAM: needs 90.0 KiB "
            "(tensor arena ...) but the board has 85.9 KiB; over by 4.1 KiB (5%). Shrink ..."}
    assert patches_decision(space, "size", over, 88_000)["searched"]
    flash = {**over, "error": over["error"].replace(" RAM: ", " flash: ")}
    assert not patches_decision(space, "size", flash, 88_000)["searched"]  # flash is what does not fit
    assert not patches_decision(space, "size", {"status": "failed", "error": "boom"}, 88_000)["searched"]
    assert not patches_decision(SearchSpace(), "ram", ok, 100_000)["searched"]  # fixed: the base recipe's


def test_a_searched_trial_sets_recipe_tflm_patches_and_default_spaces_ask_for_it():
    from types import SimpleNamespace

    import optuna

    from edgepack.recipe import Recipe

    space = SearchSpace.from_dict({"patches": "searched"})
    base = {"quantize": {"io": "int8"}, "tflm": {"offline_plan": True}}
    raw = space.sample(optuna.trial.FixedTrial({"patches": "auto"}), base, 1.0, patches=True)
    assert Recipe.from_dict(raw).tflm.patches == "auto" and raw["tflm"]["offline_plan"] is True
    assert "tflm" not in space.sample(optuna.trial.FixedTrial({}), {}, 1.0, patches=False)
    model = SimpleNamespace(layers=[])  # the patches knob does not depend on the layers
    assert default_space(model, "tflm", "ram", False).patches == "searched"
    assert default_space(model, "tflm", "size", False).patches == "when_ram_short"
    assert default_space(model, "android", "size", False).patches == "fixed"


def test_ram_objective_and_patches_are_for_tflm_only(run_cli, mnist, tmp_path):
    r = run_cli("search", mnist.model, "--calibration", mnist.calib, "--objective", "ram", "--out", tmp_path / "s")
    assert r.exit_code == 2 and "--objective ram needs --target tflm" in r.err and not (tmp_path / "s").exists()
    (tmp_path / "space.yaml").write_text(SPACE)
    r = run_cli("search", mnist.model, "--calibration", mnist.calib, "--space", tmp_path / "space.yaml",
                "--out", tmp_path / "s")
    assert r.exit_code == 2 and "patches: when_ram_short is for --target tflm" in r.err


def test_trial_metrics_and_page_show_the_arena_with_and_without_patches():
    from edgepack.search.report import render_search_html
    from edgepack.search.trial import patch_metrics

    kept = {"kept": True, "tiling": "6x1 patches of the first 4 ops", "extra_macs_pct": 15.97,
            "baseline_recommended_arena": 80_352}
    m1 = {"size_bytes": 30_000, "drop_pt": 0.0, "arena_bytes": 57_616, **patch_metrics(kept, 57_616)}
    assert m1["patches"] == "6x1 patches of the first 4 ops (+16% MACs)" and m1["arena_unpatched_bytes"] == 80_352
    m2 = {"size_bytes": 21_000, "drop_pt": 0.0, "arena_bytes": 80_352, **patch_metrics({"kept": False}, 80_352)}
    assert m2["patches"] == "tried, not kept" and m2["arena_unpatched_bytes"] == 80_352
    assert patch_metrics(None, 1) == {"patches": "off"}
    trials = [{"number": 0, "status": "ok", "metrics": m2, "recipe": {"quantize": {"mode": "int8"}}},
              {"number": 1, "status": "ok", "metrics": m1,
               "recipe": {"quantize": {"mode": "int8"}, "tflm": {"patches": "auto"}}}]
    data = {"objective": "ram", "objective_key": "arena_bytes", "target": "tflm", "device": "d",
            "inputs": {"model": {"name": "m.h5"}}, "max_accuracy_drop": 1.0, "trials_budget": 2, "seed": 0,
            "space": {"sampler": "tpe"}, "state": "done", "trials": trials, "pareto_front": [1],
            "patches": {"searched": True, "why": "the objective is RAM (the tensor arena)"},
            "best": {"trial": 1, "metrics": m1}}
    page = render_search_html(data)
    assert "same trial without patches" in page and "1.39x smaller than plain int8" in page
    row = page[page.index("<tr class='best'>"):].split("</tr>")[0]
    assert "57,616" in row and "80,352" in row and "6x1 patches of the first 4 ops" in row and "int8 + patches" in row
    assert "searched per trial: the objective is RAM" in page


# -- one real search ---------------------------------------------------------------------------------------
SMALL_RAM = 88_000  # expansion_net (int8 I/O): ~96.7 KB RAM unpatched, ~74 KB patched (with nucleo-l4r5zi's runtime)


@pytest.mark.slow
def test_search_tries_patches_when_the_board_is_short_of_ram(ray_head, tmp_path):
    """A board with 88,000 B of RAM: trial 0 (plain int8) does not fit, so trial 1 may pick patches (enqueued:
    it does); it fits, and search.json and report.html give its arena with and without them."""
    import yaml

    from arena_models import expansion_net
    from edgepack.search.engine import SearchConfig, run_search

    model = expansion_net()
    model.save(tmp_path / "expansion.h5")
    x = np.random.default_rng(0).uniform(-1, 1, (20, 48, 48, 3)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x[:12])
    np.savez(tmp_path / "eval.npz", x=x[12:], y=model.predict(x[12:], verbose=0).argmax(1))
    board = yaml.safe_load((ROOT / "device_profiles" / "nucleo-l4r5zi.yaml").read_text())
    board.update(name="small-ram-board", ram_bytes=SMALL_RAM)
    (tmp_path / "small-ram-board.yaml").write_text(yaml.safe_dump(board))
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "base.yaml").write_text("quantize: {io: int8}\n")
    out = tmp_path / "search"
    data = run_search(SearchConfig(
        model=tmp_path / "expansion.h5", out=out, target="tflm", device=str(tmp_path / "small-ram-board.yaml"),
        calibration=tmp_path / "calib.npz", eval=tmp_path / "eval.npz", recipe=tmp_path / "base.yaml",
        space=tmp_path / "space.yaml", objective="size", trials=2, workers=1, fresh_worker=False,
        enqueue=[{"patches": "auto"}], package_best=False))
    t0, t1 = data["trials"]
    assert t0["status"] == "infeasible" and " RAM: needs " in t0["error"], t0
    assert data["patches"]["searched"] and "does not fit the board's RAM" in data["patches"]["why"]
    assert t0["recipe"]["tflm"]["patches"] == "off" and t1["recipe"]["tflm"]["patches"] == "auto"
    m = t1["metrics"]
    assert t1["status"] == "ok" and "patches of the first" in m["patches"], t1
    runtime = board["runtime_ram_bytes"]
    assert m["arena_bytes"] + runtime <= SMALL_RAM < m["arena_unpatched_bytes"] + runtime
    assert data["best"]["trial"] == 1 and json.loads((out / "search.json").read_text())["patches"] == data["patches"]
    page = (out / "report.html").read_text()
    assert f"{m['arena_unpatched_bytes']:,}" in page and "arena w/o patches" in page
