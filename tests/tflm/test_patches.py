"""Patch-based inference (edgepack.tflm.patches): the tiled graph is bit-exact in the real host TFLM
interpreter for every op kind and tile grid, it is kept only when TFLM then needs a smaller arena, and
``--patches auto`` / recipe ``tflm.patches`` ship it with its figures in report.json and report.html."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arena_models import border_net, expansion_net, int8_tflite, mean_net
from edgepack.convert.flatbuffer import read_tflite
from edgepack.tflm import Tflm, find_arena
from edgepack.tflm.patches import apply_patches, live_bytes, plan_patched
from edgepack.tflm.patches_rewrite import _load, extra_macs, find_chain, rewrite


@pytest.fixture(scope="module")
def border_model():
    return int8_tflite(border_net(), n=8)


@pytest.fixture(scope="module")
def expansion_model():
    return int8_tflite(expansion_net(), n=12)


def _outs(model: bytes, x: np.ndarray, arena: int = 1 << 20) -> list[np.ndarray]:
    t = Tflm(model, arena_size=arena)
    q = t.input["quantization"]
    return [t.invoke_raw(np.clip(np.round(x[i : i + 1] / q[0] + q[1]), -128, 127).astype(np.int8))
            for i in range(x.shape[0])]


def _equal(a: list, b: list) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_chain_reads_pad_pool_and_same_padding(border_model):
    model, _ = border_model
    chain = find_chain(model)
    assert [c.name for c in chain] == ["PAD", "CONV_2D", "AVERAGE_POOL_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
                                       "CONV_2D"]
    assert chain[0].pad == (1, 2)  # ZeroPadding2D ((1, 2), (2, 1)): rows before, cols before
    assert chain[3].pad == (1, 1) and chain[3].s == (2, 2) and chain[3].k == (5, 5)


@pytest.mark.parametrize("ops,grid", [(1, (2, 1)), (2, (2, 2)), (4, (3, 1)), (4, (1, 3)), (6, (2, 2)), (6, (3, 3))])
def test_tiled_stage_is_bit_exact_at_every_border(border_model, ops, grid):
    """PAD, VALID conv, pooling and a strided SAME depthwise conv cut into tiles: every output equal."""
    model, x = border_model
    chain = find_chain(model)[:ops]
    patched, rw = rewrite(model, chain, grid)
    assert _equal(_outs(model, x), _outs(patched, x))
    info = read_tflite(patched)
    assert info.op_counts()["STRIDED_SLICE"] == grid[0] * grid[1]
    assert len(rw.tile_outputs) == grid[0] * grid[1]
    tiled, whole = extra_macs(chain, grid)
    assert tiled >= whole


def test_tiles_share_the_weight_tensors(expansion_model):
    """Op copies point at the same weight tensors: the file grows by the slice/pad constants and op
    tables, never by a copy of the weights."""
    model, _ = expansion_model
    patched, _ = rewrite(model, find_chain(model)[:3], (3, 3))
    before, after = read_tflite(model), read_tflite(patched)
    weights = lambda info: {t.name for t in info.tensors if t.is_constant and t.dtype == "int8"}  # noqa: E731
    assert weights(before) == weights(after)
    convs = [o for o in after.ops if o.op == "CONV_2D"]
    assert len({o.inputs[1] for o in convs}) == len({o.inputs[1] for o in before.ops if o.op == "CONV_2D"})
    consts = lambda info: sum(t.nbytes for t in info.tensors if t.is_constant and not t.name.startswith("patch"))  # noqa: E731
    assert consts(before) == consts(after)  # the only new constants are the tiles' slice bounds and pads


def test_dilation_at_tile_borders_is_bit_exact(expansion_model):
    """A dilated SAME depthwise conv (dilation 2, set in the flatbuffer: the converter itself turns Keras
    dilation into SPACE_TO_BATCH_ND) tiled 3x3: the halo and border pads follow the dilated kernel."""
    from edgepack.tflm.memplan import pack_model

    model, x = expansion_model
    s, obj = _load(model)
    dw = next(op for op in obj.subgraphs[0].operators
              if obj.operatorCodes[op.opcodeIndex].builtinCode == s.BuiltinOperator.DEPTHWISE_CONV_2D)
    dw.builtinOptions.dilationHFactor = dw.builtinOptions.dilationWFactor = 2
    dilated = pack_model(obj)
    chain = find_chain(dilated)
    assert chain[2].d == (2, 2) and chain[2].pad == (1, 1)  # 24 -> 12 at stride 2, 5 taps wide: 3 pad rows, 1 before
    patched, _ = rewrite(dilated, chain[:3], (3, 3))
    ref = _outs(dilated, x)
    assert _equal(ref, _outs(patched, x))
    assert not _equal(ref, _outs(model, x))  # the dilation really changed the model


def test_strip_outputs_placed_inside_the_concatenation_are_bit_exact(expansion_model):
    """Strips whose outputs the offline plan places inside the concatenated tensor: CONCATENATION then
    copies each strip onto itself; outputs are unchanged and the stage output costs its size once."""
    model, x = expansion_model
    patched, rw = rewrite(model, find_chain(model)[:3], (4, 1))
    assert rw.offsets is not None and all(o % 16 == 0 for o in rw.offsets)
    planned, peak, inplace = plan_patched(patched, rw, inplace=True)
    apart = plan_patched(patched, rw, inplace=False)
    assert inplace and apart is not None and not apart[2]
    arena = find_arena(planned)
    assert _equal(_outs(model, x), _outs(planned, x, arena.min_bytes))


def test_apply_patches_keeps_a_smaller_arena_bit_exact(expansion_model):
    model, x = expansion_model
    base = find_arena(model)
    r = apply_patches(model, base, x)
    rep = r.report()
    assert r.kept, rep["reason"]
    assert r.arena.min_bytes == rep["patched_arena"] < base.min_bytes
    assert rep["bit_exact"] and rep["outputs_checked_samples"] == len(x)
    assert 0 <= rep["extra_macs_pct"] <= 20
    assert max(rep["live_bytes_after"]) < max(rep["live_bytes_before"]) == rep["peak_op_before"]["live_bytes"]
    assert rep["patched_head"] + rep["patched_tail"] <= r.arena.min_bytes
    assert find_arena(r.model).min_bytes == r.arena.min_bytes
    assert _equal(_outs(model, x), _outs(r.model, x, r.arena.min_bytes))
    assert live_bytes(r.model) == rep["live_bytes_after"]


def test_apply_patches_leaves_the_model_when_copies_cost_more_than_they_save():
    """mean_net's first stage is small beside the persistent bytes each op copy adds: against the arena
    the offline plan alone gives, no tiling pays."""
    from edgepack.tflm.memplan import apply_plan

    model, x = int8_tflite(mean_net(), n=8)
    base = apply_plan(model, find_arena(model), x).arena
    r = apply_patches(model, base, x, measured=2)
    assert not r.kept and r.model == model and r.arena is base
    assert "without patches" in r.reason and r.report()["measured"]


def test_a_zero_mac_budget_keeps_only_halo_free_tilings(expansion_model):
    model, x = expansion_model
    r = apply_patches(model, find_arena(model), x, mac_budget=0.0, measured=2)
    assert all(m["extra_macs"] == 0 for m in r.report()["measured"])


def test_recipe_patches_key_is_checked():
    from edgepack.errors import RecipeError
    from edgepack.recipe import Recipe

    assert Recipe().tflm.patches == "off" and "patches" not in Recipe().to_yaml()
    assert Recipe.from_dict({"tflm": {"patches": "auto"}}).tflm.patches == "auto"
    with pytest.raises(RecipeError, match="patches"):
        Recipe.from_dict({"tflm": {"patches": "sometimes"}})


def test_patches_flag_is_for_tflm_only(run_cli, tmp_path):
    r = run_cli("package", "x.tflite", "--target", "android", "--patches", "auto", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "--patches" in r.err and "--target tflm" in r.err  # a usage error


@pytest.mark.slow
def test_package_tflm_patches_auto_ships_the_tiled_model(run_cli, expansion_model, tmp_path):
    model, x = expansion_model
    src = tmp_path / "expansion.tflite"
    src.write_bytes(model)
    np.save(tmp_path / "calib.npy", x)
    base = ["package", src, "--target", "tflm", "--device", "nucleo-l4r5zi", "--calibration", tmp_path / "calib.npy", "-q"]
    r = run_cli(*map(str, base + ["--patches", "auto", "--out", tmp_path / "on"]))
    assert r.exit_code == 0, r.err
    rep = json.loads((tmp_path / "on" / "report.json").read_text())
    p = rep["firmware"]["patches"]
    assert p["kept"] and p["bit_exact"] and rep["firmware"]["arena"]["min_bytes"] == p["patched_arena"]
    assert any("fits with" in a for a in rep["firmware"]["advice"])
    shipped = (tmp_path / "on" / "model.tflite").read_bytes()
    assert "STRIDED_SLICE" in read_tflite(shipped).op_names()
    page = (tmp_path / "on" / "report.html").read_text()
    assert "patch-based inference" in page and "live activation bytes per op" in page
    (tmp_path / "off.yaml").write_text("tflm: {patches: off}\n")
    r = run_cli(*map(str, base + ["--out", tmp_path / "off"]))
    assert r.exit_code == 0, r.err
    off = json.loads((tmp_path / "off" / "report.json").read_text())
    assert "patches" not in off["firmware"] and off["firmware"]["arena"]["min_bytes"] > p["patched_arena"]


from tflm_helpers import TFLM_ROOT, needs_tree


@pytest.mark.slow
@needs_tree
def test_tiled_models_run_on_the_emulated_cortex_m4(expansion_model, tmp_path):
    """On the 32-bit build: the kept tiling and strips placed inside the concatenation (CONCATENATION copies
    each strip onto itself) give the unpatched model's output CRC, with a smaller arena for the kept one."""
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    model, x = expansion_model
    kept = apply_patches(model, find_arena(model), x)
    patched, rw = rewrite(model, find_chain(model)[:3], (4, 1))
    strips = plan_patched(patched, rw, inplace=True)[0]
    results = {}
    for name, data in (("own", model), ("kept", kept.model), ("strips", strips)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile="nucleo-l4r5zi") as dev:
            results[name] = dev.profile(path, Settings(runs=1, warmup=0))
    assert results["kept"].output_checksum == results["own"].output_checksum == results["strips"].output_checksum
    assert 0 < results["kept"].memory.arena_bytes < results["own"].memory.arena_bytes


def test_report_html_draws_memory_over_time():
    from edgepack.report.html import render_html

    patches = {"kept": True, "reason": "r", "baseline_arena": 4000, "patched_arena": 3000, "patched_head": 2000,
               "patched_tail": 1000, "tiling": "2x2 patches of the first 3 ops", "extra_macs": 10, "extra_macs_pct": 1.5,
               "live_bytes_before": [1000, 3500, 2000], "live_bytes_after": [900, 1200, 1500, 2000],
               "peak_op_before": {"op": 1, "name": "CONV_2D", "live_bytes": 3500},
               "peak_op_after": {"op": 3, "name": "CONV_2D", "live_bytes": 2000}, "bit_exact": True}
    page = render_html({"model": "m", "target": "tflm", "firmware": {"device": "d", "budget": {}, "patches": patches}})
    section = page[page.index("Memory: patch-based inference"):]
    assert "<svg" in section and "op 1 CONV_2D: 3500 B live" in section and "2000 + 1000" in section
    assert "Memory: patch-based inference" not in render_html({"model": "m", "target": "tflm",
                                                                "firmware": {"device": "d", "budget": {}}})
