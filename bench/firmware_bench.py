"""Firmware target bench: the MLPerf Tiny models packaged for TFLM on two boards.

For each model: edgepack's int8 flatbuffer size vs MLPerf's own int8 .tflite (goal: no
larger), the tensor arena found (edgepack's model and MLPerf's, side by side), TFLM/LiteRT
parity and the time to package (load + convert + checks + write). Calibration inputs are
synthetic (uniform over the input range of MLPerf's own int8 model): the data sets are not
available offline, so only label-free figures are measured.

Run:  /work/venv/bin/python bench/firmware_bench.py [--devices a,b] [--samples N]
Writes bench/results/firmware_bench.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
MODELS = {  # name: (float model, MLPerf int8 flatbuffer)
    "ic_resnet8": ("pretrainedResnet.h5", "pretrainedResnet_quant.tflite"),
    "kws_dscnn": ("kws_ref_model", "kws_ref_model.tflite"),
    "ad_fc_autoencoder": ("ad01.h5", "ad01_int8.tflite"),
}


def synthetic_calibration(reference: bytes, n: int, seed: int = 0) -> np.ndarray:
    """Uniform samples over the float range MLPerf's int8 input quantization covers."""
    from edgepack.convert.flatbuffer import read_tflite

    info = read_tflite(reference)
    t = info.tensors[info.inputs[0]]
    scale, zp = t.scale[0], t.zero_point[0]
    lo, hi = (-128 - zp) * scale, (127 - zp) * scale
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, size=[n] + t.shape[1:]).astype(np.float32)


def package_one(model: Path, calib: Path, device: str, out: Path, compact: bool = False) -> tuple[dict, float]:
    from edgepack.pipeline import PackageRequest, package

    t0 = time.perf_counter()
    report = package(PackageRequest(model=model, out=out, target="tflm", quantize="int8", io="int8",
                                    calibration=calib, target_options={"device": device}, compact=compact,
                                    force=True))
    return report, time.perf_counter() - t0


def reference_figures(data: bytes, device: str) -> dict:
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.build import Build
    from edgepack.targets.firmware import FirmwareTarget
    from edgepack.recipe import Recipe

    b = Build(tflite=data, info=read_tflite(data), recipe=Recipe(), model_name="mlperf",
              options={"device": device})
    FirmwareTarget().check(b)
    return b.report["firmware"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="nucleo-l4r5zi,arduino-nano-33-ble-sense")
    ap.add_argument("--samples", type=int, default=200, help="synthetic calibration samples")
    args = ap.parse_args()
    if not MLPERF.is_dir():
        print(f"MLPerf Tiny models not found at {MLPERF}", file=sys.stderr)
        return 2
    devices = args.devices.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (float_name, ref_name) in MODELS.items():
            ref = (MLPERF / ref_name).read_bytes()
            calib = Path(tmp) / f"{name}.npz"
            np.savez(calib, x=synthetic_calibration(ref, args.samples))
            var_rep, _ = package_one(MLPERF / float_name, calib, devices[0], Path(tmp) / f"{name}-compact", True)
            variant, var_fw = var_rep["tflite"]["size_bytes"], var_rep["firmware"]
            for device in devices:
                rep, secs = package_one(MLPERF / float_name, calib, device, Path(tmp) / f"{name}-{device}")
                fw, mine = rep["firmware"], rep["tflite"]["size_bytes"]
                theirs = reference_figures(ref, device)
                rows.append({
                    "model": name, "device": device, "edgepack_int8_bytes": mine, "mlperf_int8_bytes": len(ref),
                    "size_ratio": round(mine / len(ref), 4),
                    "arena_bytes": fw["arena"]["recommended_bytes"], "arena_min_host_bytes": fw["arena"]["min_bytes"],
                    "arena_recorded_bytes": fw["arena"]["recorded_bytes"],
                    "mlperf_arena_min_host_bytes": theirs["arena"]["min_bytes"],
                    "flash_needed": fw["budget"]["flash"]["needed"], "flash_available": fw["budget"]["flash"]["available"],
                    "ram_needed": fw["budget"]["ram"]["needed"], "ram_available": fw["budget"]["ram"]["available"],
                    "parity_bit_exact": fw["parity"]["bit_exact"], "parity_max_raw_diff": fw["parity"]["max_raw_diff"],
                    "parity_mismatch_pct": fw["parity"]["mismatch_pct"], "package_seconds": round(secs, 2),
                    "compact_int8_bytes": variant,
                    "compact_size_ratio": round(variant / len(ref), 4),
                    "compact_arena_min_host_bytes": var_fw["arena"]["min_bytes"],
                    "ops": rep["tflite"]["ops"]})
                r = rows[-1]
                print(f"{name:18s} {device:26s} int8 {mine:>8,d} B vs MLPerf {len(ref):>8,d} B "
                      f"(x{r['size_ratio']:.3f})  arena {r['arena_bytes']:>7,d} B "
                      f"(host min {r['arena_min_host_bytes']:,d}; MLPerf model {r['mlperf_arena_min_host_bytes']:,d})  "
                      f"parity {'exact' if r['parity_bit_exact'] else 'max ' + str(r['parity_max_raw_diff'])}  "
                      f"{secs:5.1f} s", flush=True)
                print(f"{'':18s} {'  --compact':26s} int8 {variant:>8,d} B (x{variant / len(ref):.3f})"
                      f"  host min arena {var_fw['arena']['min_bytes']:,d} B", flush=True)
    out = ROOT / "bench" / "results" / "firmware_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "firmware", "calibration": f"synthetic uniform, {args.samples} samples",
                               "rows": rows}, indent=2) + "\n")
    worst = max(r["size_ratio"] for r in rows)
    worst_var = max(r["compact_size_ratio"] for r in rows)
    print(f"largest edgepack/MLPerf int8 size ratio: x{worst:.3f} default, x{worst_var:.3f} with --compact "
          f"(goal <= 1.000)  -> {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
