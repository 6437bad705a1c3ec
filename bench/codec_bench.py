"""Codec bench (issue 13 point 3): the .epk package against brotli / xz / zstd, and its three decoders.

Per model (MNIST int8 and float, MLPerf Tiny ResNet-8 / KWS / AD int8, a pruned+clustered CNN):
sizes of the .epk package, brotli -q11 (24-bit window), xz -9e and zstd -19 of the same .tflite;
then decode speed (MB/s of restored .tflite, best of several runs, measured side by side in one run)
of the Python reader, the C decoder (gcc -O2, CPU time) and the Java decoder (JDK 17, warm JIT),
with the standard codecs' own (C library) decoders for reference. JSON in bench/results/.

What the package does when a standard codec is smaller: the encoder only picks among codecs it ships
decoders for (stored, LZMA, rANS: edgepack/epk/limits.py); brotli is not one of them (see the report).

Usage::

    python bench/codec_bench.py [--runs 5] [--only mnist_int8,ad01_int8]
"""

from __future__ import annotations

import argparse
import json
import lzma
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepack.epk import decode, encode  # noqa: E402

MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
OUT = ROOT / "bench" / "results" / "codec_bench.json"
SRC = ROOT / "templates" / "epk"


def _mnist():
    from edgepack.data import Preprocess, load_dataset

    pre = Preprocess(scale=1 / 255)
    return {k: load_dataset(ROOT / "calibration_data" / "mnist" / f"{k}.npz") for k in ("train", "calib")}, pre


def pruned_clustered_cnn() -> bytes:
    """A small CNN on MNIST-5k, pruned to 80% zeros and clustered to 16 shared values (fine-tuned), int8."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.passes.base import Context, Labeled
    from edgepack.passes.cluster import Cluster
    from edgepack.passes.prune_magnitude import MagnitudePrune
    from edgepack.passes.training import FitConfig, fit
    from edgepack.recipe import QuantizeConfig

    data, pre = _mnist()
    shape = (28, 28, 1)
    train = Labeled(data["train"].model_input(pre, shape), data["train"].y)
    set_seed(0)
    k = keras()
    m = k.Sequential([k.layers.InputLayer(shape), k.layers.Conv2D(16, 3, activation="relu"),
                      k.layers.MaxPooling2D(), k.layers.Conv2D(32, 3, activation="relu"), k.layers.MaxPooling2D(),
                      k.layers.Flatten(), k.layers.Dense(64, activation="relu"), k.layers.Dense(10)])
    ctx = Context(seed=0, train=train)
    fit(m, train, ctx, FitConfig(epochs=2))
    m = MagnitudePrune(MagnitudePrune.Config(sparsity=0.8, fine_tune=FitConfig(epochs=2))).apply(m, ctx)
    m = Cluster(Cluster.Config(clusters=16, preserve_sparsity=True, fine_tune=FitConfig(epochs=1))).apply(m, ctx)
    cal = data["calib"].model_input(pre, shape)[:128]
    return convert(m, QuantizeConfig(mode="int8", per_channel=False), calibration=cal)


def corpus(only: set[str] | None) -> dict[str, bytes]:
    from edgepack.convert.tflite import convert
    from edgepack.load import load_model
    from edgepack.recipe import QuantizeConfig

    models: dict[str, bytes] = {}
    want = (lambda n: only is None or n in only)
    if want("mnist_int8") or want("mnist_float"):
        m = load_model(ROOT / "examples" / "mnist" / "model.h5")
        data, pre = _mnist()
        cal = data["calib"].model_input(pre, m.input_shape[1:])
        models["mnist_int8"] = convert(m, QuantizeConfig(mode="int8"), calibration=cal)
        models["mnist_float"] = convert(m, QuantizeConfig(mode="none"))
    for name, f in (("resnet8_int8", "pretrainedResnet_quant.tflite"), ("kws_ds_cnn_int8", "kws_ref_model.tflite"),
                    ("ad01_int8", "ad01_int8.tflite")):
        if want(name) and (MLPERF / f).is_file():
            models[name] = (MLPERF / f).read_bytes()
    if want("cnn_pruned_clustered_int8"):
        models["cnn_pruned_clustered_int8"] = pruned_clustered_cnn()
    return {k: v for k, v in models.items() if want(k)}


def standard_sizes(data: bytes) -> dict[str, tuple[int, float]]:
    """name -> (bytes, decode MB/s of its own C library) for brotli -q11, xz -9e, zstd -19."""
    import brotli
    import zstandard

    out = {}
    codecs = {"brotli-q11": (lambda d: brotli.compress(d, quality=11, lgwin=24), brotli.decompress),
              "xz-9e": (lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
              "zstd-19": (lambda d: zstandard.ZstdCompressor(level=19).compress(d),
                          lambda b: zstandard.ZstdDecompressor().decompress(b))}
    for name, (enc, dec) in codecs.items():
        blob = enc(data)
        assert dec(blob) == data
        out[name] = (len(blob), len(data) / 1e6 / _best_time(lambda: dec(blob), 5))
    return out


def _best_time(fn, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def build_tools(tmp: Path) -> dict[str, list[str]]:
    tools = {}
    if shutil.which("gcc"):
        exe = tmp / "epk_unpack"
        subprocess.run(["gcc", "-std=c99", "-O2", "-o", str(exe), str(SRC / "c/epk_unpack.c"), str(SRC / "c/epk.c")],
                       check=True)
        tools["c"] = [str(exe)]
    if shutil.which("javac") and shutil.which("java"):
        subprocess.run(["javac", "--release", "17", "-d", str(tmp / "cls"),
                        str(SRC / "java/dev/edgepack/epk/EpkDecoder.java")], check=True)
        tools["java"] = ["java", "-cp", str(tmp / "cls"), "dev.edgepack.epk.EpkDecoder"]
    return tools


def tool_speed(tool: list[str], pkg: Path, out: Path, data: bytes, runs: int) -> float:
    r = subprocess.run([*tool, str(pkg), str(out), str(runs)], capture_output=True, text=True, check=True)
    assert out.read_bytes() == data, "decoder output differs"
    seconds = float(re.search(r"decode_seconds=([0-9.eE+-]+)", r.stdout).group(1))
    return len(data) / 1e6 / max(seconds, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tools = build_tools(tmp)
        for name, data in corpus(only).items():
            blob = encode(data)
            pkg = tmp / f"{name}.epk"
            pkg.write_bytes(blob)
            std = standard_sizes(data)
            best_std = min(std, key=lambda k: std[k][0])
            row = {"model": name, "tflite_bytes": len(data), "epk_bytes": len(blob),
                   **{f"{k}_bytes": v[0] for k, v in std.items()},
                   "epk_vs_best_standard_pct": round(100 * (len(blob) / std[best_std][0] - 1), 2),
                   "best_standard": best_std,
                   "decode_mb_s": {"python": round(len(data) / 1e6 / _best_time(lambda: decode(blob), args.runs), 1),
                                   **{k: round(tool_speed(t, pkg, tmp / f"{name}.{k}.tflite", data,
                                                          args.runs * (4 if k == "java" else 1)), 1)
                                      for k, t in tools.items()},
                                   **{k: round(v[1], 1) for k, v in std.items()}}}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    head = (f"{'model':26} {'tflite':>8} {'epk':>8} {'brotli':>8} {'xz':>8} {'zstd':>8} {'epk vs best':>12} "
            f"{'py MB/s':>8} {'C MB/s':>7} {'Java MB/s':>9} {'br/xz/zstd MB/s':>16}")
    print(head)
    for r in rows:
        s = r["decode_mb_s"]
        print(f"{r['model']:26} {r['tflite_bytes']:>8} {r['epk_bytes']:>8} {r['brotli-q11_bytes']:>8} "
              f"{r['xz-9e_bytes']:>8} {r['zstd-19_bytes']:>8} {r['epk_vs_best_standard_pct']:>+11.2f}% "
              f"{s['python']:>8} {s.get('c', '-'):>7} {s.get('java', '-'):>9} "
              f"{s['brotli-q11']:>5}/{s['xz-9e']}/{s['zstd-19']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "runs": args.runs,
                               "note": "sizes in bytes; decode MB/s of restored .tflite, best of runs"}, indent=1))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    np.set_printoptions(suppress=True)
    main()
