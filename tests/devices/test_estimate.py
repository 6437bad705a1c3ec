"""The per-op latency/energy estimator and its calibration on MLPerf Tiny (no TF needed)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from edgepack.convert.flatbuffer import read_tflite
from edgepack.devices.registry import open_device
from edgepack.costmodel.estimate import estimate_cycles, load_cost_model, op_work
from edgepack.costmodel.fit import (MLPERF_FILES, InstructionModel, Point, fit, latency_from_published,
                                           leave_one_out, max_abs_error, mlperf_work)
from edgepack.profiles import load_profile
from edgepack.devices.result import Settings
from edgepack.errors import DeviceError
from locations import GOLDEN, MLPERF



def _profile(tmp_path: Path, cost_model: str = "", core: str = "cortex-m4") -> Path:
    path = tmp_path / "est-board.yaml"
    fields = ("clock_hz", "flash_bytes", "ram_bytes", "runtime_flash_bytes", "runtime_ram_bytes",
              "power.active_mw", "power.idle_mw")
    path.write_text(textwrap.dedent(f"""\
        name: est-board
        board: Estimate test board
        mcu: TEST
        core: {core}
        fpu: sp
        clock_hz: 50000000
        flash_bytes: 1048576
        ram_bytes: 262144
        int8_only: true
        runtime_flash_bytes: 60000
        runtime_ram_bytes: 16000
        power: {{active_mw: 20.0, idle_mw: 2.0}}
        """) + cost_model + "sources:\n" + "".join(f"  {f}: [test]\n" for f in fields))
    return path


def test_op_work_counts_the_flatbuffer_macs():
    info = read_tflite((MLPERF / "kws_ref_model.tflite").read_bytes())
    work = op_work(info)
    assert [w.op for w in work] == [o.op for o in info.ops]
    assert sum(w.macs for w in work) == info.macs()
    pool = next(w for w, o in zip(work, info.ops) if o.op == "AVERAGE_POOL_2D")
    x = info.tensors[next(o for o in info.ops if o.op == "AVERAGE_POOL_2D").inputs[0]].shape
    assert pool.elements == x[0] * x[1] * x[2] * x[3]  # pooling work counts its input


def test_profile_cost_model_block_drives_the_estimate(tmp_path):
    block = ("cost_model:\n  cycles_per_mac: {DEFAULT: 2.0, DEPTHWISE_CONV_2D: 6.0}\n"
             "  cycles_per_element: {DEFAULT: 1.0}\n  cycles_per_op: 500\n")
    prof = _profile(tmp_path, block)
    kws = MLPERF / "kws_ref_model.tflite"
    with open_device(f"estimate:{prof}") as dev:
        r = dev.profile(kws, Settings(runs=1, warmup=0))
    info = read_tflite(kws.read_bytes())
    want = sum((6.0 if w.op == "DEPTHWISE_CONV_2D" else 2.0) * w.macs + w.elements + 500 for w in op_work(info))
    assert r.latency.cycles == pytest.approx(want)
    assert r.latency.source == "estimated" and r.energy.source == "estimated"
    assert r.latency.median_us == pytest.approx(want / 50.0)
    assert r.energy.per_inference_mj == pytest.approx(20.0 * r.latency.median_us / 1e6)
    assert sum(o.percent for o in r.ops) == pytest.approx(100.0)
    assert r.ops[0].op == "CONV_2D" and r.device.kind == "estimate"


def test_core_without_a_cost_model_names_the_file(tmp_path):
    with pytest.raises(DeviceError, match="no latency cost model for core cortex-m3.*cores/cortex-m3.yaml"):
        open_device(f"estimate:{_profile(tmp_path, core='cortex-m3')}")


CORES = ("cortex-m4", "cortex-m33", "cortex-m7", "cortex-m0plus", "cortex-m55", "cortex-m85", "xtensa-lx7")


def _points(cm) -> list[Point]:
    return [Point(**p) for p in cm.calibration["data"]]


@pytest.mark.parametrize("core", CORES)
def test_shipped_fit_is_recomputed_from_its_cited_figures(core):
    cm = load_cost_model(core)
    cal = cm.calibration
    pts = _points(cm)
    for p in pts:  # every figure says where it was published, and the latency is that figure
        assert re.search(r"@[0-9a-f]{40}:\S+ line \d+", p.source), p.source
        assert p.latency_ms == pytest.approx(latency_from_published(p.published), rel=1e-12)
        assert p.stack == cm.stack and p.clock_hz == cal["boards"][p.board]["clock_hz"]
    scales = fit(pts, cal["form"])
    assert scales == pytest.approx(cal["scales"], abs=1e-5)
    ins = InstructionModel.from_calibration(load_cost_model("cortex-m4").calibration)
    tab = ins.tables(cal["form"], scales)  # the shipped tables are the shape times the fitted scales
    assert cm.cycles_per_mac == pytest.approx(tab.cycles_per_mac, abs=1e-3)
    assert cm.cycles_per_element == pytest.approx(tab.cycles_per_element, abs=1e-3)
    assert cm.cycles_per_op == pytest.approx(tab.cycles_per_op, abs=0.1)
    rows = leave_one_out(pts, cal["form"]) if cal["loo"] else []
    assert [r["model"] for r in rows] == [r["model"] for r in cal["loo"]]
    for got, claimed in zip(rows, cal["loo"]):
        assert got["error_pct"] == pytest.approx(claimed["error_pct"], abs=0.01)
    if rows:
        assert max_abs_error(rows) == pytest.approx(cal["loo_max_abs_error_pct"], abs=0.01)
        assert cal["goal_met"] == (cal["loo_max_abs_error_pct"] <= 20)
    else:
        assert cal["loo_max_abs_error_pct"] is None and cal["goal_met"] is None


@pytest.mark.parametrize("core", CORES)
def test_stored_work_of_the_mlperf_models_matches_the_tflite_files(core):
    ins = InstructionModel.from_calibration(load_cost_model("cortex-m4").calibration)
    live = mlperf_work(MLPERF, ins)
    for p in _points(load_cost_model(core)):
        if p.model in live:
            work, macs = live[p.model]
            assert p.macs == macs
            assert p.work == pytest.approx(work, abs=0.1)


def test_the_fit_moves_with_the_cited_figures():
    pts = _points(load_cost_model("cortex-m33"))
    form = load_cost_model("cortex-m33").calibration["form"]
    slower = [p.model_copy(update={"latency_ms": p.latency_ms * 2}) for p in pts]
    assert fit(slower, form) == pytest.approx({k: 2 * v for k, v in fit(pts, form).items()}, rel=1e-6)


@pytest.mark.parametrize("profile", ["nucleo-l4r5zi", "nucleo-h743zi2", "raspberry-pi-pico",
                                     "alif-ensemble-e7-hp", "esp32-s3-devkitc-1", "arduino-nano-33-ble-sense"])
def test_estimator_runs_on_every_shipped_profile(profile):
    prof = load_profile(profile)
    with open_device(f"estimate:{profile}") as dev:
        r = dev.profile(MLPERF / "kws_ref_model.tflite", Settings(runs=1, warmup=0))
    cm = load_cost_model(prof.core)
    want = estimate_cycles(read_tflite((MLPERF / "kws_ref_model.tflite").read_bytes()), cm)[0]
    assert r.latency.cycles == pytest.approx(want) and r.latency.median_us == pytest.approx(want * 1e6 / prof.clock_hz)
    assert r.memory.source == "not_available"  # a bare .tflite: no package report to carry memory from
    assert any(cm.stack in n for n in r.notes)
    if cm.calibration.get("proxy"):
        assert any(n.startswith("proxy calibration") for n in r.notes)


def test_estimate_for_the_mlperf_board_tracks_the_published_latencies():
    prof = load_profile("nucleo-l4r5zi")
    cm = load_cost_model("cortex-m4")
    loo = {r["model"]: r for r in cm.calibration["loo"]}
    for p in _points(cm):
        if p.model not in MLPERF_FILES:
            continue
        assert p.clock_hz == prof.clock_hz
        with open_device("estimate:nucleo-l4r5zi") as dev:
            r = dev.profile(MLPERF / MLPERF_FILES[p.model], Settings(runs=1, warmup=0))
        err = abs(r.latency.median_us / 1e3 - p.latency_ms) / p.latency_ms
        assert err <= abs(loo[p.model]["error_pct"]) / 100 + 0.05  # in-sample fit is no worse than held-out + slack
        assert any("leave-one-out" in n for n in r.notes)


def test_estimates_order_models_by_work():
    for core in CORES:
        cm = load_cost_model(core)
        cyc = {k: estimate_cycles(read_tflite((MLPERF / n).read_bytes()), cm)[0] for k, n in MLPERF_FILES.items()}
        assert cyc["ad"] < cyc["kws"] < cyc["ic"], core


def test_devices_listing_has_a_cost_model_for_every_shipped_profile():
    from edgepack.devices.discover import profile_entries

    status = {e.spec: e.status for e in profile_entries()}
    assert status and all(s == "available" for s in status.values()), status


@pytest.fixture(scope="module")
def firmware_folder(tmp_path_factory) -> tuple[Path, dict]:
    """A real firmware package written by the pipeline (a .tflite input for --target tflm)."""
    from edgepack.pipeline import PackageRequest, package
    from tflm_helpers import calib

    tiny = GOLDEN / "tiny_int8.tflite"
    out = tmp_path_factory.mktemp("fw") / "pkg"
    report = package(PackageRequest(model=tiny, out=out, target="tflm", calibration=calib(16),
                                    target_options={"device": "raspberry-pi-pico"}))
    return out, report["firmware"]


def test_estimate_carries_memory_from_the_firmware_report(firmware_folder):
    folder, fw = firmware_folder
    with open_device("estimate:raspberry-pi-pico") as dev:
        r = dev.profile(folder, Settings(runs=1, warmup=0))
    assert r.memory.source == "estimated"
    assert r.memory.arena_bytes == fw["budget"]["ram"]["arena"] == fw["arena"]["recommended_bytes"]
    assert r.memory.flash_bytes == fw["budget"]["flash"]["needed"] and r.memory.ram_bytes == fw["budget"]["ram"]["needed"]
    assert any("not measured" in n and "arena" in n for n in r.notes)


def test_bare_estimate_uses_the_profile_the_folder_was_packaged_for(firmware_folder, run_cli):
    folder, fw = firmware_folder
    with open_device("estimate") as dev:
        r = dev.profile(folder, Settings(runs=1, warmup=0))
    assert r.device.profile == fw["device"] == "raspberry-pi-pico"
    assert r.memory.arena_bytes == fw["budget"]["ram"]["arena"]
    res = run_cli("profile", str(folder), "--device", "estimate", "--json")
    assert res.exit_code == 0, res.err
    assert '"raspberry-pi-pico"' in res.out and str(fw["budget"]["ram"]["arena"]) in res.out


def test_bare_estimate_on_a_tflite_says_what_to_pass():
    with pytest.raises(DeviceError, match="use --device estimate:PROFILE"):
        with open_device("estimate") as dev:
            dev.profile(MLPERF / "kws_ref_model.tflite", Settings(runs=1, warmup=0))
