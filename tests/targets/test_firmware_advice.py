"""The firmware advice says what made the arena fit, on the real memory plan and patch decisions: "fits with the
offline plan", "fits with 6x1 patches of the first 4 ops at +16% MACs", and by how much RAM would be over
without them (issue 26, point 3)."""

from __future__ import annotations

import re

import pytest
import yaml

from arena_models import expansion_net, int8_tflite, mean_net
from locations import ROOT
from tflm_helpers import build_for


def _board(tmp_path, ram_bytes: int) -> str:
    """nucleo-l4r5zi with only ``ram_bytes`` of RAM, as a profile file."""
    board = yaml.safe_load((ROOT / "device_profiles" / "nucleo-l4r5zi.yaml").read_text())
    board.update(name=f"ram-{ram_bytes}", ram_bytes=ram_bytes)
    path = tmp_path / f"ram-{ram_bytes}.yaml"
    path.write_text(yaml.safe_dump(board))
    return str(path)


def _fits(build) -> list[str]:
    from edgepack.targets.firmware import advice_for

    return [a for a in advice_for(build) if a.startswith("fits with")]


def _checked(model: bytes, x, device: str):
    """A build after the arena and budget checks, as finalize_model receives it."""
    from edgepack.profiles import load_profile
    from edgepack.tflm import find_arena
    from edgepack.verify.budget import check_budget

    build = build_for(model, options={"device": device}, calibration=x)
    arena = find_arena(model)
    build.checks["arena"] = arena
    build.checks["budget"] = check_budget(len(model), load_profile(device), arena.recommended_bytes, "m",
                                          raise_over=False)
    return build


@pytest.fixture(scope="module")
def mean_model():
    return int8_tflite(mean_net(), n=8)


def test_fits_with_the_offline_plan_and_what_ram_would_be_without(mean_model, tmp_path):
    from edgepack.targets.firmware import plan_memory

    model, x = mean_model
    build = _checked(model, x, "nucleo-l4r5zi")
    assert _fits(build) == []  # nothing decided yet: nothing said
    plan_memory(build)
    mp = build.report["memory_plan"]
    assert mp["kept"], mp["reason"]
    own, planned = mp["own_arena"]["bytes"], mp["planned_arena"]["bytes"]
    pct = round(100 * (planned / own - 1))
    assert _fits(build) == [f"fits with the offline plan: arena {own:,} -> {planned:,} B ({pct}%) "
                                 "(recipe tflm.offline_plan)"]
    # A board whose RAM holds the planned arena but not TFLM's own: the advice says by how much.
    runtime = build.checks["budget"]["ram"]["runtime_estimate"]
    ram = (mp["own_arena"]["recommended"] + build.checks["arena"].recommended_bytes) // 2 + runtime
    small = _checked(model, x, _board(tmp_path, ram))
    assert "over" in small.checks["budget"]  # TFLM's own plan does not fit it
    plan_memory(small)
    over = mp["own_arena"]["recommended"] + runtime - ram
    assert "over" not in small.checks["budget"]
    assert _fits(small)[0].endswith(f"; without it RAM would be over by {over:,} B (recipe tflm.offline_plan)")


@pytest.mark.slow
def test_fits_with_patches_at_extra_macs_on_a_board_too_small_without(tmp_path):
    from edgepack.targets.firmware import advice_for, patch_memory, plan_memory

    model, x = int8_tflite(expansion_net(), n=12)
    device = _board(tmp_path, 88_000)  # expansion_net needs ~96.6 KB RAM unpatched, ~74 KB with patches
    build = _checked(model, x, device)
    assert "over" in build.checks["budget"]
    assert any(a.startswith("RAM is short (") for a in advice_for(build))  # over: names --patches auto
    build.tflite = plan_memory(build)
    build.tflite = patch_memory(build, model)
    p = build.report["patches"]
    assert p["kept"] and "over" not in build.checks["budget"]
    (line,) = _fits(build)
    m = re.fullmatch(r"fits with (\d)x(\d) patches of the first (\d+) ops at \+(\d+)% MACs: arena ([\d,]+) -> "
                     r"([\d,]+) B; without it RAM would be over by ([\d,]+) B \(--patches auto\)", line)
    assert m, line
    assert [int(m[1]), int(m[2])] == p["grid"] and int(m[3]) == p["stage_ops"]
    assert int(m[4]) == round(p["extra_macs_pct"]) <= 20
    assert int(m[5].replace(",", "")) == p["baseline_arena"] and int(m[6].replace(",", "")) == p["patched_arena"]
    ram = build.checks["budget"]["ram"]
    assert int(m[7].replace(",", "")) == p["baseline_recommended_arena"] + ram["runtime_estimate"] - 88_000 > 0


def test_kept_patches_are_worded_before_the_plan(mean_model):
    """Patches are measured against the planned arena: when kept, their line replaces the plan's."""
    model, x = mean_model
    build = _checked(model, x, "nucleo-l4r5zi")
    build.report["memory_plan"] = {"kept": True, "own_arena": {"bytes": 104_160}, "planned_arena": {"bytes": 85_728}}
    assert _fits(build) == ["fits with the offline plan: arena 104,160 -> 85,728 B (-18%) (recipe tflm.offline_plan)"]
    build.report["patches"] = {"kept": True, "tiling": "3x3 patches of the first 6 ops", "extra_macs_pct": 12.04,
                               "baseline_arena": 85_728, "patched_arena": 60_000}
    assert _fits(build) == ["fits with 3x3 patches of the first 6 ops at +12% MACs: arena 85,728 -> 60,000 B "
                            "(--patches auto)"]
    build.checks["budget"]["ram"].pop("headroom")  # RAM does not fit: nothing "fits"
    assert _fits(build) == []
