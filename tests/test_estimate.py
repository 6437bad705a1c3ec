"""The per-op latency/energy estimator and its calibration on MLPerf Tiny (no TF needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgepack.convert.flatbuffer import read_tflite
from edgepack.devices.base import open_device
from edgepack.devices.estimate import estimate_cycles, load_cost_model, op_work
from edgepack.devices.estimate_fit import (MLPERF_CLOCK_HZ, MLPERF_TINY_TFLM_REFERENCE_MS, InstructionModel,
                                           leave_one_out, load_mlperf_reference)
from edgepack.boards import load_profile
from edgepack.devices.result import Settings
from edgepack.errors import DeviceError

MLPERF = Path(__file__).resolve().parents[2] / "shared/models/mlperf_tiny"


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
    with pytest.raises(DeviceError, match="no latency cost model for core xtensa-lx7.*cores/xtensa-lx7.yaml"):
        open_device(f"estimate:{_profile(tmp_path, core='xtensa-lx7')}")


def test_shipped_cortex_m4_model_reproduces_its_leave_one_out_claims():
    cm = load_cost_model("cortex-m4")
    ins = cm.calibration["instructions"]
    base = InstructionModel(per_mac=ins["per_mac"], per_element=ins["per_element"], per_op=ins["per_op"])
    cpi, rows = leave_one_out(base, load_mlperf_reference(MLPERF))
    assert cpi == pytest.approx(cm.calibration["cpi"], rel=1e-3)
    claimed = {r["model"]: r["error_pct"] for r in cm.calibration["loo"]}
    for row in rows:
        assert row["error_pct"] == pytest.approx(claimed[row["model"]], abs=0.01)
    assert max(abs(r["error_pct"]) for r in rows) == pytest.approx(cm.calibration["loo_max_abs_error_pct"], abs=0.01)
    # the shipped tables are the instruction model scaled by the fitted CPI
    assert cm.cycles_per_mac["CONV_2D"] == pytest.approx(ins["per_mac"]["CONV_2D"] * cpi, rel=1e-3)


def test_estimate_for_the_mlperf_board_tracks_the_published_latencies():
    prof = load_profile("nucleo-l4r5zi")
    assert prof.clock_hz == MLPERF_CLOCK_HZ
    loo = {r["model"]: r for r in load_cost_model("cortex-m4").calibration["loo"]}
    for name, ms in MLPERF_TINY_TFLM_REFERENCE_MS.items():
        with open_device("estimate:nucleo-l4r5zi") as dev:
            r = dev.profile(MLPERF / name, Settings(runs=1, warmup=0))
        err = abs(r.latency.median_us / 1e3 - ms) / ms
        assert err <= abs(loo[name]["error_pct"]) / 100 + 0.25  # in-sample fit is no worse than held-out + slack
        assert any("leave-one-out" in n for n in r.notes)


def test_estimates_order_models_by_work():
    cm = load_cost_model("cortex-m4")
    cyc = {n: estimate_cycles(read_tflite((MLPERF / n).read_bytes()), cm)[0] for n in MLPERF_TINY_TFLM_REFERENCE_MS}
    assert cyc["ad01_int8.tflite"] < cyc["kws_ref_model.tflite"] < cyc["pretrainedResnet_quant.tflite"]


def test_devices_listing_says_which_profiles_can_be_estimated():
    from edgepack.devices.discover import profile_entries

    status = {e.spec: e.status for e in profile_entries()}
    assert status["estimate:nucleo-l4r5zi"] == "available"  # Cortex-M4: cost model shipped
    assert status["estimate:raspberry-pi-pico"] == "no cost model for cortex-m0plus"
