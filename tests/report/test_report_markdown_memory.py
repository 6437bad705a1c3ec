"""report.md's memory section: the tensor arena with TFLM's own planner, the offline plan and patches, each with
its activations and persistent part apart, the peak op, the tiling's grid, stage ops and extra MACs, and whether
each was kept or why not (figures shaped as edgepack.tflm.memplan and edgepack.tflm.patches report them)."""

from __future__ import annotations

from edgepack.report.markdown import render_markdown

PLAN = {"kept": True, "reason": "TFLM needs 85728 B with the plan vs 104160 B with its own; outputs bit-identical",
        "own_arena": {"bytes": 104_160, "head": 73_728, "tail": 30_432, "recommended": 114_592},
        "planned_arena": {"bytes": 85_728, "head": 55_296, "tail": 30_432},
        "live_set_bound": {"bytes": 55_296, "op": 2, "name": "CONV_2D"}}
PATCHES = {"kept": False, "reason": "tiled, TFLM needs 87712 B (3x3 patches of the first 6 ops) vs 85728 B without "
           "patches (op copies grow the persistent part): model unchanged", "baseline_arena": 85_728,
           "patched_arena": 87_712, "patched_head": 41_472, "patched_tail": 46_240,
           "tiling": "3x3 patches of the first 6 ops", "grid": [3, 3], "stage_ops": 6, "extra_macs": 888_000,
           "extra_macs_pct": 11.9, "macs": 7_462_000, "mac_budget_pct": 20.0,
           "peak_op_before": {"op": 2, "name": "CONV_2D", "live_bytes": 55_296},
           "peak_op_after": {"op": 40, "name": "CONCATENATION", "live_bytes": 41_472},
           "measured": [{"tiling": "3x3 patches of the first 6 ops", "arena": 87_712, "planned_head": 41_472,
                         "tail": 46_240, "extra_macs": 888_000, "tiles_in_concat_output": False}]}
ARENA = {"min_bytes": 85_728, "recommended_bytes": 94_304}


def _memory(fw: dict) -> str:
    md = render_markdown({"model": "vww", "target": "tflm", "firmware": {"device": "d", "budget": {}, **fw}})
    assert md.count("### Memory: tensor arena") == 1
    return md[md.index("### Memory: tensor arena"):]


def _row(md: str, first: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {first}"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_arena_three_ways_with_activations_and_persistent_apart():
    md = _memory({"arena": ARENA, "memory_plan": PLAN, "patches": PATCHES})
    assert _row(md, "TFLM's own planner")[:5] == ["TFLM's own planner", "104,160", "73,728", "30,432",
                                                  "op 2 CONV_2D (55,296 B live)"]
    plan = _row(md, "offline plan")
    assert plan[1:4] == ["85,728", "55,296", "30,432"] and plan[5].startswith("kept: TFLM needs 85728 B")
    pat = _row(md, "patches: 3x3 patches of the first 6 ops")
    assert pat[1:5] == ["87,712", "41,472", "46,240", "op 40 CONCATENATION (41,472 B live)"]
    assert pat[5].startswith("not kept: tiled, TFLM needs 87712 B")
    assert _row(md, "live-set bound")[2] == "55,296"
    assert _row(md, "shipped")[1] == "85,728" and "94,304 B with the margin" in _row(md, "shipped")[5]
    assert _row(md, "patches: grid")[1] == "3x3" and _row(md, "patches: stage ops")[1] == "6"
    assert _row(md, "patches: extra MACs")[1] == "888,000 (+11.9% of 7,462,000)"
    assert "| 3x3 patches of the first 6 ops | 87,712 | 41,472 | 46,240 | 888,000 | no |" in md


def test_patches_off_or_no_memory_figures():
    md = _memory({"arena": ARENA, "memory_plan": {**PLAN, "kept": False, "reason": "off (recipe tflm.offline_plan: "
                                                  "false)", "planned_arena": {}}})
    assert _row(md, "patches")[5] == "off (--patches auto or recipe tflm.patches: auto tries them)"
    assert _row(md, "offline plan")[5] == "not kept: off (recipe tflm.offline_plan: false)"
    assert "patches: grid" not in md
    plain = render_markdown({"model": "m", "target": "tflm", "firmware": {"device": "d", "budget": {}, "arena": ARENA}})
    assert "Memory: tensor arena" not in plain  # no plan decided (e.g. an older report): no section


def test_report_html_has_the_same_memory_table():
    from edgepack.report.html import render_html

    page = render_html({"model": "vww", "target": "tflm", "firmware": {"device": "d", "budget": {}, "arena": ARENA,
                                                                        "memory_plan": PLAN, "patches": PATCHES}})
    section = page[page.index("Memory: tensor arena"):page.index("Memory: patch-based inference")]
    assert "<td>TFLM&#x27;s own planner</td><td>104,160</td><td>73,728</td><td>30,432</td>" in section
    assert "<td>patches: 3x3 patches of the first 6 ops</td><td>87,712</td><td>41,472</td><td>46,240</td>" in section
