"""Offline memory plan (edgepack.tflm.memplan): lifetimes as TFLM marks them, placements that never
overlap, the OfflineMemoryAllocation words TFLM reads, and the keep-only-if-smaller decision measured
in the real host TFLM interpreter (and, with a TFLM tree, on the emulated Cortex-M4)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from arena_models import int8_tflite, mean_net, vww_mobilenet
from edgepack.tflm import Tflm, find_arena
from edgepack.tflm import memplan as mp
from edgepack.tflm.arena import arena_parts
from locations import ROOT


@pytest.fixture(scope="module")
def mean_model():
    """A mini MobileNetV1 (32x32) ending in MEAN (a kernel with a scratch buffer): TFLM's own plan is
    above the live-set bound here, so an offline plan can win."""
    return int8_tflite(mean_net())


def _raw(model: bytes, arena: int, x: np.ndarray) -> list[np.ndarray]:
    t = Tflm(model, arena_size=arena)
    q = t.input["quantization"]
    outs = []
    for i in range(x.shape[0]):
        xi = np.clip(np.round(x[i : i + 1] / q[0] + q[1]), -128, 127).astype(np.int8)
        outs.append(t.invoke_raw(xi))
    return outs


def test_lifetimes_follow_tflm_marking(mean_model):
    model, _ = mean_model
    g = mp.read_graph(model)
    from edgepack.convert.flatbuffer import read_tflite

    info = read_tflite(model)
    by_tensor = {b.tensor: b for b in g.buffers}
    assert g.n_tensors == len(info.tensors) and g.n_ops == len(info.ops)
    assert by_tensor[info.inputs[0]].first == 0  # inputs exist before the first op
    assert by_tensor[info.outputs[0]].last == g.n_ops  # outputs stay to the end
    assert all(b.size % 16 == 0 and b.size >= 16 for b in g.buffers)
    assert not any(info.tensors[b.tensor].is_constant for b in g.buffers)
    for i, op in enumerate(info.ops):  # scope i+1: outputs created there, inputs alive up to it
        for t in op.outputs:
            assert by_tensor[t].first <= i + 1 <= by_tensor[t].last
        for t in op.inputs:
            if t in by_tensor:
                assert by_tensor[t].first <= i + 1 <= by_tensor[t].last
    conv0 = info.tensors[info.ops[0].outputs[0]]
    assert by_tensor[conv0.index].size == int(np.prod(conv0.shape))  # int8, 16x16x8: already aligned


def test_plans_never_overlap_and_never_go_below_the_bound():
    rng = random.Random(3)
    for _ in range(40):
        bufs = []
        for t in range(rng.randrange(2, 25)):
            a = rng.randrange(0, 20)
            bufs.append(mp.Buffer(tensor=t, size=16 * rng.randrange(1, 40), first=a, last=a + rng.randrange(0, 6)))
        g = mp.Graph(n_tensors=len(bufs), n_ops=30, n_inputs=1, n_outputs=1, buffers=bufs)
        found = mp.plans(g, search=50)
        assert found == sorted(found, key=lambda p: p.peak_bytes)
        for p in found:
            mp.check_plan(g, p)
            assert p.peak_bytes >= p.bound_bytes == mp.live_bound(bufs)[0]
            assert set(p.offsets) == {b.tensor for b in bufs}


def test_a_chain_reaches_the_bound_where_largest_first_does_not():
    """MobileNet's first stage: a big input, then big buffers alive two at a time. Largest-first
    (TFLM's greedy order) leaves a hole; ordering by lifetime packs them to the live-set bound."""
    sizes = [27648, 18432, 18432, 36864, 9216, 18432]
    bufs = [mp.Buffer(tensor=i, size=s, first=max(0, i), last=i + 1) for i, s in enumerate(sizes)]
    g = mp.Graph(n_tensors=len(bufs), n_ops=len(bufs), n_inputs=1, n_outputs=1, buffers=bufs)
    _, greedy = mp.place(sorted(bufs, key=lambda b: -b.size))
    best = mp.best_plan(g)
    assert best.peak_bytes == best.bound_bytes == 55296 < greedy


def test_check_plan_rejects_overlapping_offsets():
    a, b = mp.Buffer(0, 32, 0, 2), mp.Buffer(1, 32, 1, 3)
    g = mp.Graph(n_tensors=2, n_ops=3, n_inputs=1, n_outputs=1, buffers=[a, b])
    with pytest.raises(AssertionError, match="overlap"):
        mp.check_plan(g, mp.Plan({0: 0, 1: 16}, 48, 64, 1, "wrong"))


def test_metadata_words_round_trip_and_keep_weights_aligned(mean_model):
    model, _ = mean_model
    g = mp.read_graph(model)
    words = mp.best_plan(g).words(g)
    assert words[:3] == [0, 1, g.n_tensors] and len(words) == 3 + g.n_tensors
    planned = mp.with_offline_plan(model, words)
    assert mp.read_offline_plan(model) is None and mp.read_offline_plan(planned) == words
    again = mp.with_offline_plan(planned, [0, 1, g.n_tensors] + [-1] * g.n_tensors)  # replaced, not added
    from edgepack.convert.flatbuffer import tflite_schema

    m = tflite_schema().Model.GetRootAsModel(again, 0)
    assert [m.Metadata(i).Name() for i in range(m.MetadataLength())].count(b"OfflineMemoryAllocation") == 1
    base = np.frombuffer(again, np.uint8).ctypes.data
    offsets = [m.Buffers(i).DataAsNumpy().ctypes.data - base for i in range(m.BuffersLength())
               if m.Buffers(i).DataLength()]
    assert offsets and all(off % 16 == 0 for off in offsets)


def test_plan_on_a_mean_model_is_kept_smaller_and_bit_identical(mean_model):
    model, x = mean_model
    own = find_arena(model)
    r = mp.apply_plan(model, own, x)
    rep = r.report()
    assert r.kept, rep["reason"]
    assert r.arena.min_bytes < own.min_bytes == rep["own_arena"]["bytes"]
    assert rep["planned_arena"]["head"] < rep["own_arena"]["head"]
    assert rep["live_set_bound"]["bytes"] <= rep["planned_arena"]["head"]
    assert rep["planned_arena"]["tail"] == rep["own_arena"]["tail"]  # the plan moves activations only
    assert mp.read_offline_plan(r.model) is not None and rep["outputs_checked_samples"] == len(x)
    assert mp.apply_plan(model, own, x).model == r.model  # same inputs, same bytes
    # independently of apply_plan: the planned model at its smallest arena computes the same bytes,
    # and TFLM really cannot run it in one aligned step less
    for a, b in zip(_raw(model, own.min_bytes, x), _raw(r.model, r.arena.min_bytes, x)):
        np.testing.assert_array_equal(a, b)
    from edgepack.tflm import arena_fits

    assert not arena_fits(r.model, r.arena.min_bytes - 16)


def test_kws_and_resnet8_stay_byte_identical(mlperf_dir):
    for name in ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite"):
        model = (mlperf_dir / name).read_bytes()
        r = mp.apply_plan(model, find_arena(model))
        assert not r.kept and r.model == model, name
        assert "already at the live-set bound" in r.reason
        assert r.report()["own_arena"]["head"] == r.report()["live_set_bound"]["bytes"]


def test_a_model_that_already_carries_a_plan_is_left_as_given(mean_model):
    """A user's own OfflineMemoryAllocation wins."""
    model, _ = mean_model
    g = mp.read_graph(model)
    planned = mp.with_offline_plan(model, mp.best_plan(g).words(g))
    r = mp.apply_plan(planned, find_arena(planned))
    assert not r.kept and r.model == planned and "already carries" in r.reason


def test_control_flow_models_are_left_to_tflm():
    """Several subgraphs (WHILE): lifetimes cross subgraphs, TFLM's own planner stays in charge."""
    from edgepack.keras_compat import tf

    t = tf()

    @t.function(input_signature=[t.TensorSpec([1, 4], t.float32)])
    def loop(x):
        return t.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, v * 2.0 + 1.0), [t.constant(0), x])[1]

    conv = t.lite.TFLiteConverter.from_concrete_functions([loop.get_concrete_function()], loop)
    model = conv.convert()
    assert mp.read_graph(model) is None
    r = mp.apply_plan(model, find_arena(model))
    assert not r.kept and r.model == model and "subgraphs" in r.reason


def test_a_guess_speeds_up_find_arena_without_changing_it(mean_model):
    model, _ = mean_model
    plain = find_arena(model)
    for guess in (100, plain.min_bytes, 3 * plain.min_bytes):  # far below, exact, far above
        assert find_arena(model, guess=guess) == plain, guess


def test_arena_parts_add_up(mean_model):
    model, _ = mean_model
    own = find_arena(model)
    parts = arena_parts(model, own.recommended_bytes)
    assert parts["head"] + parts["tail"] == own.recorded_bytes


def _package(run_cli, model_path, out, recipe=None, calibration=None):
    args = ["package", model_path, "--target", "tflm", "--device", "nucleo-l4r5zi", "--out", out, "-q"]
    if recipe:
        args += ["--recipe", recipe]
    if calibration:
        args += ["--calibration", calibration]
    r = run_cli(*args)
    assert r.exit_code == 0, r.err
    return json.loads((out / "report.json").read_text())


def test_package_tflm_ships_the_plan_and_the_knob_turns_it_off(run_cli, mean_model, tmp_path):
    model, x = mean_model
    src = tmp_path / "mini.tflite"
    src.write_bytes(model)
    np.save(tmp_path / "calib.npy", x[:12])
    rep = _package(run_cli, src, tmp_path / "on", calibration=tmp_path / "calib.npy")
    mpl, arena = rep["firmware"]["memory_plan"], rep["firmware"]["arena"]
    assert mpl["outputs_checked_samples"] == 12  # the calibration samples, not noise
    assert mpl["kept"] and arena["min_bytes"] == mpl["planned_arena"]["bytes"] < mpl["own_arena"]["bytes"]
    shipped = (tmp_path / "on" / "model.tflite").read_bytes()
    assert mp.read_offline_plan(shipped) is not None
    assert f"#define EP_ARENA_SIZE {arena['recommended_bytes']}u" in (tmp_path / "on" / "model_config.h").read_text()
    assert rep["firmware"]["budget"]["ram"]["arena"] == arena["recommended_bytes"]
    assert "kept: TFLM needs" in (tmp_path / "on" / "report.md").read_text()
    (tmp_path / "off.yaml").write_text("tflm: {offline_plan: false}\n")
    off = _package(run_cli, src, tmp_path / "off", tmp_path / "off.yaml")
    assert not off["firmware"]["memory_plan"]["kept"] and "off" in off["firmware"]["memory_plan"]["reason"]
    assert (tmp_path / "off" / "model.tflite").read_bytes() == model
    assert off["firmware"]["arena"]["min_bytes"] == mpl["own_arena"]["bytes"]


@pytest.mark.slow
def test_vww_plan_reaches_the_live_set_bound_bit_identical(mlperf_dir):
    """MLPerf VWW's architecture (MobileNetV1-0.25, 96x96x3; the .tflite is not in ../shared, so it is
    rebuilt): TFLM's own plan 73,728 B of activations, the live-set bound 55,296 B."""
    model, x = int8_tflite(vww_mobilenet(), n=8)
    own = find_arena(model)
    r = mp.apply_plan(model, own, x)
    rep = r.report()
    assert r.kept, rep["reason"]
    assert rep["own_arena"]["head"] == 73728 and rep["planned_arena"]["head"] == rep["live_set_bound"]["bytes"] == 55296
    assert r.arena.min_bytes <= 0.85 * own.min_bytes
    for a, b in zip(_raw(model, own.min_bytes, x), _raw(r.model, r.arena.min_bytes, x)):
        np.testing.assert_array_equal(a, b)


from tflm_helpers import TFLM_ROOT, needs_tree


@pytest.mark.slow
@needs_tree
def test_planned_model_runs_on_the_emulated_cortex_m4(mean_model, tmp_path):
    """The plan on the 32-bit build: same output CRC as without it (both checked against the host
    interpreter by the harness), and a smaller arena measured on the device itself."""
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    model, x = mean_model
    planned = mp.apply_plan(model, find_arena(model), x)
    assert planned.kept
    results = {}
    for name, data in (("own", model), ("planned", planned.model)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile="nucleo-l4r5zi") as dev:
            results[name] = dev.profile(path, Settings(runs=1, warmup=0))
    own, plan = results["own"], results["planned"]
    assert plan.output_checksum == own.output_checksum
    assert any("matches the TFLM host interpreter" in n for n in plan.notes)
    assert 0 < plan.memory.arena_bytes < own.memory.arena_bytes
    head_saving = planned.report()["own_arena"]["head"] - planned.report()["planned_arena"]["head"]
    assert own.memory.arena_bytes - plan.memory.arena_bytes == head_saving


@pytest.mark.slow
def test_find_arena_right_after_a_conversion_in_a_fresh_process(tmp_path):
    """The TFLM runtime is imported before the probe forks: first imported in a child of a process
    that has run the TF converter, it segfaulted (find_arena then reported a crashed model)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; sys.path.insert(0, sys.argv[1]); from arena_models import int8_tflite, mean_net\n"
            "from edgepack.tflm import find_arena\n"
            "print('arena', find_arena(int8_tflite(mean_net(), n=4)[0]).min_bytes)\n")
    root = ROOT
    env = {**os.environ, "PYTHONPATH": str(root)}
    r = subprocess.run([sys.executable, "-c", code, str(root / "tests")], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0 and "arena " in r.stdout, r.stderr[-2000:]


def test_a_board_that_fits_only_with_the_plan_packages_and_without_it_is_refused(run_cli, mean_model, tmp_path):
    """The budget is judged on the final model: a RAM the planned arena fits and TFLM's own does not."""
    import yaml

    model, x = mean_model
    src = tmp_path / "mini.tflite"
    src.write_bytes(model)
    np.save(tmp_path / "calib.npy", x[:12])
    rep = _package(run_cli, src, tmp_path / "ref", calibration=tmp_path / "calib.npy")
    mpl, ram = rep["firmware"]["memory_plan"], rep["firmware"]["budget"]["ram"]
    assert mpl["kept"]
    own_needed = ram["needed"] - ram["arena"] + find_arena(model).recommended_bytes
    prof = yaml.safe_load((ROOT / "device_profiles" / "nucleo-l4r5zi.yaml").read_text())
    prof.update(name="tight", ram_bytes=(ram["needed"] + own_needed) // 2)  # between planned and own
    assert ram["needed"] <= prof["ram_bytes"] < own_needed
    (tmp_path / "tight.yaml").write_text(yaml.safe_dump(prof))
    args = ["package", src, "--target", "tflm", "--device", tmp_path / "tight.yaml", "--calibration",
            tmp_path / "calib.npy", "-q"]
    ok = run_cli(*map(str, args + ["--out", tmp_path / "fits"]))
    assert ok.exit_code == 0, ok.err
    (tmp_path / "off.yaml").write_text("tflm: {offline_plan: false}\n")
    refused = run_cli(*map(str, args + ["--recipe", tmp_path / "off.yaml", "--out", tmp_path / "over"]))
    assert refused.exit_code == 1 and "does not fit tight RAM" in refused.err and not (tmp_path / "over").exists()
