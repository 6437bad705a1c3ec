"""Device profiler bench: host vs ADB path agreement, energy accuracy, repeatability.

Measured side by side in one run on the MLPerf Tiny int8 models:

1. host (LiteRT + XNNPACK in a child process) vs the ADB path (adb-shell ->
   device emulator on loopback -> benchmark_model running LiteRT on the same
   CPU): ratio of median latencies (should be ~1: both time the same
   interpreter) and the ratio of wall time per profile (protocol + tool cost).
2. Energy: the ADB path's measured excess power against the emulator battery's
   known load (ground truth), over several repeats: bias and how often the truth
   lies within 2 stated standard errors.
3. Repeatability of the host median over repeats (coefficient of variation).

Writes bench/results/profile_bench.json.

    python bench/profile_bench.py [--runs 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from edgepack.devices.android.adb import ensure_key  # noqa: E402
from edgepack.devices.registry import open_device  # noqa: E402
from edgepack.devices.result import Settings  # noqa: E402
from emulators.adb_device import AdbEmulator, install_benchmark_model, true_excess_mw  # noqa: E402

MODELS = REPO.parent / "shared" / "models" / "mlperf_tiny"
NAMES = ["ad01_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite"]
RESULTS = REPO / "bench" / "results"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def agreement(host, adb, runs: int) -> list[dict]:
    rows = []
    for name in NAMES:
        path = MODELS / name
        s = Settings(runs=runs, warmup=10)
        h, th = timed(lambda: host.profile(path, s))
        a, ta = timed(lambda: adb.profile(path, s))
        rows.append({"model": name, "host_median_us": h.latency.median_us, "adb_median_us": a.latency.median_us,
                     "adb_over_host_latency": a.latency.median_us / h.latency.median_us,
                     "host_wall_s": th, "adb_wall_s": ta, "adb_over_host_wall": ta / th})
        print(f"{name:32s} median host {h.latency.median_us:9.1f} us  adb {a.latency.median_us:9.1f} us  "
              f"adb/host {rows[-1]['adb_over_host_latency']:.3f}x   wall adb/host {ta / th:.1f}x")
    return rows


def energy(dev, repeats: int) -> dict:
    truth = true_excess_mw()
    got, covered = [], 0
    for _ in range(repeats):
        r = dev.profile(MODELS / "kws_ref_model.tflite", Settings(runs=50, warmup=5))
        mean_s = r.latency.mean_us * 1e-6
        excess = r.energy.per_inference_mj / mean_s
        sigma = r.energy.uncertainty_mj / mean_s
        got.append(excess)
        covered += abs(excess - truth) <= 2 * sigma
        print(f"  excess power {excess:7.1f} +/- {sigma:5.1f} mW (truth {truth:.1f})  "
              f"{r.energy.per_inference_mj:.4f} +/- {r.energy.uncertainty_mj:.4f} mJ/inference")
    bias = statistics.mean(got) / truth
    print(f"energy: measured/true excess power {bias:.3f}x over {repeats} repeats; "
          f"truth within 2 sigma in {covered}/{repeats}")
    return {"truth_mw": truth, "measured_mw": got, "measured_over_truth": bias,
            "within_2_sigma": covered, "repeats": repeats}


def repeatability(host, repeats: int, runs: int) -> dict:
    meds = [host.profile(MODELS / "kws_ref_model.tflite", Settings(runs=runs, warmup=10)).latency.median_us
            for _ in range(repeats)]
    cv = statistics.pstdev(meds) / statistics.mean(meds)
    print(f"host median over {repeats} repeats: {statistics.mean(meds):.1f} us, CV {100 * cv:.1f}%")
    return {"medians_us": meds, "cv": cv}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        key = ensure_key(tmp / "keys" / "adbkey")
        binary = install_benchmark_model(tmp / "benchmark_model", sys.executable)
        pub = (tmp / "keys" / "adbkey.pub").read_text()
        host = open_device("host")
        with AdbEmulator(tmp / "device", authorized_keys=[pub]) as emu:
            with open_device(f"adb-tcp:{emu.serial}", benchmark_binary=binary, adb_key=key,
                             energy=False) as adb:
                rows = agreement(host, adb, args.runs)
            with open_device(f"adb-tcp:{emu.serial}", benchmark_binary=binary, adb_key=key,
                             idle_seconds=1.5, energy_seconds=2.0) as adb_e:
                en = energy(adb_e, args.repeats)
        rep = repeatability(host, args.repeats, args.runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "profile_bench.json"
    out.write_text(json.dumps({"agreement": rows, "energy": en, "host_repeatability": rep,
                               "runs": args.runs}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
