"""Flash bench (issue 25): weights kept compressed in flash for TFLM's DECODE op, side by side in one run.

Per model, four weight variants, each packaged for ``--target tflm`` twice: as plain int8 tensors
(recipe ``tflm: {compress: {encoding: off}}``) and TFLM-compressed (``encoding: auto,
decode_code_bytes: 0``: per tensor the smallest of LUT / prune / Huffman / plain):

- ``int8``: the model as converted (no weight sharing);
- ``c16`` / ``c8``: 16 / 8 shared values per output channel (conv, depthwise; one set per tensor
  for dense weights, which TFLM quantizes per tensor);
- ``c8+pN`` (MLPerf) / ``deep`` (LeNet): pruned to N% zeros, then the non-zeros shared;
- ``sdeep`` (LeNet): structured + Deep Compression, half of fc1's hidden units removed first (TFLM's
  decoders cost at least 1 bit per weight: fc1's 235,200 weights alone would need 29.4 KB, more than
  1/40 of the float .tflite), then ``deep``.

Columns: model bytes (the C array), its ratio to the plain int8 model, the encodings chosen, the host
TFLM arena (decoded weights in it) and, for compressed models, the arena and region TFLM's alternate
decompression memory (``MicroInterpreter::SetDecompressionMemory``) would take instead (host TFLM,
bisected; DECODE's Prepare reuses the region from its start, so it needs the largest decoded
tensor), and with a TFLM tree (EDGEPACK_TFLM_ROOT) + arm-none-eabi-gcc + qemu: the linked Cortex-M4
ELF's flash (``arm-none-eabi-size`` text + data of the QEMU firmware: model + TFLM runtime, with the
DECODE kernel compiled -Os only when used), QEMU instructions per inference and the output CRC; and
accuracy on each model's eval proxy, run in the host TFLM on the very bytes shipped:

- LeNet-300-100: accuracy on the bundled MNIST eval set (calibration_data/mnist, 1000 digits), trained
  here on its train set (3,744 digits); ``c16``/``c8`` cluster with 2 epochs of fine-tune and ``deep`` is
  examples/deep_compression/recipe.yaml (prune 94% -> 16 shared values -> distill) and ``sdeep``
  examples/deep_compression/structured.yaml (prune_structured fc1 300 -> 152 units, then the same), all
  through edgepack's recipe steps. Its float .tflite is the reference of the 40x goal, and its float
  accuracy that of the "within 1 pt" (``deep``/``sdeep`` in the goals line: bytes, x float, drop vs float).
- MLPerf Tiny ResNet-8, DS-CNN KWS, FC autoencoder AD (../shared/models/mlperf_tiny): no CIFAR-10, Speech
  Commands or ToyADMOS offline, so no labels and no fine-tune. ResNet-8: top-1 agreement with the float
  Keras model on 32x32 crops of scikit-learn's two sample photographs; KWS: top-1 agreement with the float
  model on synthetic inputs (uniform over the int8 input range: the float model answers one class there,
  so the mean absolute output error ``output_mae`` is the figure to read); AD: agreement of the anomaly
  flag (reconstruction MSE above the float model's median) with the float model on synthetic inputs. Weight sharing there
  is 1-D k-means without fine-tune: conv channels share one codebook in the per-channel normalized
  domain (each channel's largest weight is +-1, so its int8 codes are the same few values in every
  channel: Huffman per tensor sees k symbols), dense weights are clustered after folding the next
  BatchNormalization (what the converter folds), so the int8 tensor has k values.

Run:  PYTHONPATH=. python bench/flash_bench.py [--models lenet,resnet8,ad,kws] [--variants int8,sdeep] [--no-qemu]
(``--variants``: only these weight variants; ``int8``, the reference of every ratio, always runs.)
Writes bench/results/flash_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MLPERF = Path(os.environ.get("EDGEPACK_MLPERF", ROOT.parent / "shared" / "models" / "mlperf_tiny"))  # or a worktree's
MNIST = ROOT / "calibration_data" / "mnist"
DEEP_RECIPE = ROOT / "examples" / "deep_compression" / "recipe.yaml"
STRUCTURED_RECIPE = ROOT / "examples" / "deep_compression" / "structured.yaml"
MLPERF_MODELS = {"resnet8": ("pretrainedResnet.h5", "pretrainedResnet_quant.tflite"),
                 "ad": ("ad01.h5", "ad01_int8.tflite"), "kws": ("kws_ref_model", "kws_ref_model.tflite")}
# (name, shared values, sparsity) per MLPerf model; KWS also tries a heavier prune towards its floor.
MLPERF_VARIANTS = [("int8", None, 0.0), ("c16", 16, 0.0), ("c8", 8, 0.0), ("c8+p50", 8, 0.5)]
EXTRA = {"kws": [("c4+p80", 4, 0.8)]}
N_EVAL = 300


# --------------------------------------------------------------------------- weight sharing (MLPerf: no data)

def kmeans_1d(w: np.ndarray, k: int, fixed: tuple = (), iters: int = 30) -> np.ndarray:
    """Lloyd's 1-D k-means of ``w`` (quantile init); ``fixed`` centroids never move. Returns centroids."""
    free = k - len(fixed)
    c = np.concatenate([np.quantile(w, np.linspace(0, 1, free + 2)[1:-1]) if free > 0 else [], fixed])
    for _ in range(iters):
        a = np.abs(w[:, None] - c[None]).argmin(1)
        new = np.array([w[a == i].mean() if np.any(a == i) and i < free else c[i] for i in range(len(c))])
        if np.allclose(new, c):
            break
        c = new
    return c


def nearest(w: np.ndarray, c: np.ndarray) -> np.ndarray:
    return c[np.abs(w.reshape(-1)[:, None] - c[None]).argmin(1)].reshape(w.shape)


def bn_scale(layer, n: int) -> np.ndarray:
    """The per-channel factor a following BatchNormalization folds into ``layer``'s kernel (ones if none)."""
    nodes = getattr(layer, "_outbound_nodes", [])
    nxt = [nd.outbound_layer for nd in nodes]
    if len(nxt) == 1 and nxt[0].__class__.__name__ == "BatchNormalization":
        bn = nxt[0]
        ws = dict(zip([v.name.split("/")[-1].split(":")[0] for v in bn.weights], bn.get_weights()))
        gamma = ws.get("gamma", np.ones(n))
        return gamma / np.sqrt(ws["moving_variance"] + bn.epsilon)
    return np.ones(n, np.float32)


def share_weights(model, k: int, sparsity: float):
    """Each kernel clustered to ``k`` values (and first pruned to ``sparsity`` zeros), in place (see module doc)."""
    for layer in model.layers:
        kind = layer.__class__.__name__
        if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        ws = layer.get_weights()
        w = ws[0].astype(np.float64)
        flat = w.reshape(-1, w.shape[-2] * w.shape[-1]) if kind == "DepthwiseConv2D" else w.reshape(-1, w.shape[-1])
        if kind == "Dense":  # per tensor, in the folded domain
            s = bn_scale(layer, flat.shape[1])[None]
            u = flat * s
            mask = np.abs(u) >= np.quantile(np.abs(u), sparsity) if sparsity else np.ones_like(u, bool)
            c = kmeans_1d(u[mask], k - (1 if sparsity else 0))
            q = np.where(mask, nearest(u, c), 0.0) / s
        else:  # per channel, normalized so every channel's largest weight is +-1: one codebook of int8 codes
            m = np.abs(flat).max(0, keepdims=True)
            m[m == 0] = 1
            u = flat / m
            mask = np.abs(u) >= np.quantile(np.abs(u), sparsity) if sparsity else np.ones_like(u, bool)
            c = kmeans_1d(u[mask], k - (1 if sparsity else 0), fixed=(-1.0, 1.0))
            q = np.where(mask, nearest(u, c), 0.0) * m
        layer.set_weights([q.reshape(w.shape).astype(np.float32), *ws[1:]])
    return model


# --------------------------------------------------------------------------- data and proxies

def mnist(part: str):
    d = np.load(MNIST / f"{part}.npz")
    return d["x"].astype(np.float32), d["y"]


def input_range(ref: bytes) -> tuple[list[int], float, float]:
    from edgepack.convert.flatbuffer import read_tflite

    info = read_tflite(ref)
    t = info.tensors[info.inputs[0]]
    return t.shape, (-128 - t.zero_point[0]) * t.scale[0], (127 - t.zero_point[0]) * t.scale[0]


def photo_crops(n: int, seed: int) -> np.ndarray:
    """``n`` 32x32 RGB crops (raw 0..255) of scikit-learn's two sample photographs, downscaled 2-8x."""
    from sklearn.datasets import load_sample_images

    rng, out = np.random.default_rng(seed), []
    images = load_sample_images().images
    while len(out) < n:
        im, f = images[rng.integers(len(images))], int(rng.choice([2, 3, 4, 6, 8]))
        h, w = im.shape[0] // f, im.shape[1] // f
        small = im[: h * f, : w * f].reshape(h, f, w, f, 3).mean((1, 3))
        y, x = rng.integers(0, h - 32), rng.integers(0, w - 32)
        out.append(small[y : y + 32, x : x + 32])
    return np.asarray(out, np.float32)


def mlperf_data(name: str, ref: bytes) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration, eval inputs, what the eval proxy is) of an MLPerf model."""
    shape, lo, hi = input_range(ref)
    if name == "resnet8":
        return (photo_crops(200, 0), photo_crops(N_EVAL, 1),
                "top-1 agreement with the float model on 32x32 crops of scikit-learn's sample photos")

    def uni(n, seed):
        return np.random.default_rng(seed).uniform(lo, hi, size=[n] + shape[1:]).astype(np.float32)

    what = ("anomaly-flag agreement with the float model (MSE > its median), synthetic uniform inputs" if name == "ad"
            else "top-1 agreement with the float model, synthetic uniform inputs (degenerate: one class)")
    return uni(200, 0), uni(N_EVAL, 1), what


def tflm_predict(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from edgepack.tflm.interpreter import Tflm

    return Tflm(tflite).predict(x)


def proxy(name: str, reference: np.ndarray, y: np.ndarray, x: np.ndarray, labels=None) -> float:
    """The eval proxy in percent (see module doc)."""
    if labels is not None:
        return float(100 * np.mean(y.argmax(-1) == labels))
    if name == "ad":
        ref = np.mean((reference.reshape(len(x), -1) - x.reshape(len(x), -1)) ** 2, 1)
        got = np.mean((y.reshape(len(x), -1) - x.reshape(len(x), -1)) ** 2, 1)
        t = np.median(ref)
        return float(100 * np.mean((ref > t) == (got > t)))
    return float(100 * np.mean(reference.argmax(-1) == y.argmax(-1)))


# --------------------------------------------------------------------------- packaging and QEMU

def recipe(encoding: str, per_channel: bool = True):
    from edgepack.recipe import Recipe

    return Recipe.from_dict({"quantize": {"mode": "int8", "io": "int8", "per_channel": per_channel},
                             "verify": {"max_accuracy_drop": "none", "step_metrics": False, "layer_errors": False},
                             "tflm": {"compress": {"encoding": encoding, "decode_code_bytes": 0}}})


def package_pair(model, calib: np.ndarray, work: Path, per_channel: bool) -> dict:
    from edgepack.pipeline import PackageRequest, package

    out = {}
    for enc in ("off", "auto"):
        rep = package(PackageRequest(model=model, out=work / enc, target="tflm", recipe=recipe(enc, per_channel),
                                     calibration=calib, compact=True, target_options={"device": "nucleo-h743zi2"},
                                     force=True))
        out[enc] = rep
    return out


def _runs_with_region(data: bytes, arena: int, region: int) -> bool:
    """Whether host TFLM allocates and runs ``data`` in ``arena`` bytes plus an alternate decompression
    region of ``region`` bytes (probed in a forked child: a crash is a no)."""
    from edgepack.errors import EdgepackError
    from edgepack.tflm.interpreter import _in_child
    from tflite_micro.python.tflite_micro import runtime as rt

    def run():  # the child reports failure through an EdgepackError only
        try:
            it = rt.Interpreter.from_bytes(data, arena_size=arena, alt_decompression_memory_size=region)
            d = it.get_input_details(0)
            it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
            it.invoke()
        except (RuntimeError, ValueError) as e:
            raise EdgepackError(str(e)) from None

    return arena >= 1024 and _in_child(run)[0] == "ok"


def _bisect(fits, lo: int, hi: int) -> int:
    """Smallest multiple of 16 in (lo, hi] for which ``fits`` holds (``fits(hi)`` must)."""
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def decompression_region(data: bytes, arena_with_decoded: int) -> dict:
    """TFLM's alternate decompression memory instead of decoded weights in the arena: the smallest
    arena with an ample region, then the smallest region that keeps that arena (host TFLM)."""
    arena = _bisect(lambda a: _runs_with_region(data, a, arena_with_decoded), 1008, arena_with_decoded)
    region = _bisect(lambda r: _runs_with_region(data, arena, r), 0, arena_with_decoded)
    return {"arena": arena, "region": region, "total": arena + region,
            "vs_arena_with_decoded": arena + region - arena_with_decoded}


def qemu(folder: Path) -> dict:
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    with open_device("qemu:mps2-an386", tflm_root=os.environ["EDGEPACK_TFLM_ROOT"]) as dev:
        r = dev.profile(folder, Settings(runs=1, warmup=0))
    return {"elf_flash": r.memory.flash_bytes, "instructions": r.latency.instructions, "crc": r.output_checksum}


def measure(model_name: str, variant: str, keras_model, calib, ev, ref_out, labels, work: Path, use_qemu: bool,
            per_channel: bool = True) -> list[dict]:
    reps = package_pair(keras_model, calib, work, per_channel)
    rows = []
    for enc in ("off", "auto"):
        rep, folder = reps[enc], work / enc
        data = (folder / "model.tflite").read_bytes()
        comp = (rep["firmware"].get("compression") or {})
        counts: dict[str, int] = {}
        for t in comp.get("tensors", []):
            counts[t["encoding"]] = counts.get(t["encoding"], 0) + 1
        row = {"model": model_name, "variant": variant, "tensors": "plain" if enc == "off" else "tflm",
               "model_bytes": len(data), "arena_min": rep["firmware"]["arena"]["min_bytes"],
               "encodings": counts if enc == "auto" else {},
               "per_tensor": [{k: t[k] for k in ("name", "op", "encoding", "bits", "bytes_before", "bytes_after")}
                              for t in comp.get("tensors", [])] if enc == "auto" else [],
               "bit_exact": (comp.get("bit_exact") or {}).get("bit_exact") if enc == "auto" else None,
               "proxy_pct": round(proxy(model_name, ref_out, y := tflm_predict(data, ev), ev, labels), 2),
               "output_mae": None if ref_out is None else float(np.mean(np.abs(y - ref_out.reshape(y.shape))))}
        if enc == "auto" and comp.get("decode_op"):
            row["alt_region"] = decompression_region(data, row["arena_min"])
        if use_qemu:
            row.update(qemu(folder))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- models

LENET_VARIANTS = ("int8", "c16", "c8", "deep", "sdeep")


def lenet_variants(work: Path, wanted: tuple[str, ...] = LENET_VARIANTS) -> tuple[dict, dict]:
    """LeNet-300-100 trained on MNIST-5k and its compressed ``wanted`` variants through edgepack's recipe
    steps (``int8`` always)."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.passes.base import Context, Labeled
    from edgepack.passes.training import FitConfig, fit
    from edgepack.pipeline import compress
    from edgepack.recipe import QuantizeConfig, Recipe

    (xt, yt), (xe, ye), (xc, _) = mnist("train"), mnist("eval"), mnist("calib")
    train, ev, cal = Labeled(xt / 255, yt), Labeled(xe / 255, ye), xc / 255
    k = keras()
    set_seed(0)
    model = k.Sequential([k.layers.InputLayer((28, 28, 1)), k.layers.Flatten(),
                          k.layers.Dense(300, activation="relu", name="fc1"),
                          k.layers.Dense(100, activation="relu", name="fc2"), k.layers.Dense(10, name="fc3")])
    fit(model, train, Context(seed=0), FitConfig(epochs=20, learning_rate=1e-3, validation_split=0.1, patience=4))
    variants = {"int8": model}
    for name, clusters in (("c16", 16), ("c8", 8)):
        if name not in wanted:
            continue
        r = Recipe.from_dict({"steps": [{"type": "cluster", "clusters": clusters,
                                         "fine_tune": {"epochs": 2, "learning_rate": 2e-4, "patience": 2}}]})
        ctx = Context(seed=0, calibration=cal, train=train, eval=ev)
        variants[name] = compress(model, r.build_passes("bench"), ctx, r.quantize)[0]
    for name, path in (("deep", DEEP_RECIPE), ("sdeep", STRUCTURED_RECIPE)):
        if name not in wanted:
            continue
        r = Recipe.from_yaml(path)
        ctx = Context(seed=0, calibration=cal, train=train, eval=ev)
        ctx.teacher = model
        variants[name] = compress(model, r.build_passes(str(path)), ctx, r.quantize)[0]
    float_tflite = convert(model, QuantizeConfig(mode="none"))
    float_acc = proxy("lenet", None, tflm_predict(float_tflite, ev.x), ev.x, ev.y)
    return variants, {"calib": cal, "eval": ev.x, "labels": ev.y, "float_tflite_bytes": len(float_tflite),
                      "float_accuracy_pct": round(float_acc, 2),
                      "proxy": "accuracy on MNIST eval (1000 digits, labels)"}


def run_lenet(work: Path, use_qemu: bool, wanted: tuple[str, ...] = LENET_VARIANTS) -> tuple[list[dict], dict]:
    variants, d = lenet_variants(work, wanted)
    rows = []
    for name, m in variants.items():
        rows += measure("lenet", name, m, d["calib"], d["eval"], None, d["labels"], work / name, use_qemu,
                        per_channel=False)
    return rows, {k: d[k] for k in ("float_tflite_bytes", "float_accuracy_pct", "proxy")}


def run_mlperf(name: str, work: Path, use_qemu: bool, wanted: Optional[tuple[str, ...]] = None
               ) -> tuple[list[dict], dict]:
    from edgepack.keras_compat import keras
    from edgepack.load import load_source

    keras_name, ref_name = MLPERF_MODELS[name]
    ref = (MLPERF / ref_name).read_bytes()
    base = load_source(MLPERF / keras_name).model
    calib, ev, what = mlperf_data(name, ref)
    ref_out = np.asarray(base.predict(ev, verbose=0))
    rows = []
    for variant, k, sparsity in MLPERF_VARIANTS + EXTRA.get(name, []):
        if wanted is not None and variant not in wanted and variant != "int8":
            continue
        m = base
        if k:
            m = keras().models.clone_model(base)
            m.set_weights(base.get_weights())
            share_weights(m, k, sparsity)
        rows += measure(name, variant, m, calib, ev, ref_out, None, work / variant, use_qemu)
    return rows, {"proxy": what, "mlperf_int8_bytes": len(ref), "fine_tune": "none (no training data offline)"}


# --------------------------------------------------------------------------- table

def floor_bytes(rows: list[dict]) -> int:
    """Non-weight bytes of the plain int8 model: its size minus its weight tensors' bytes."""
    r = next(r for r in rows if r["variant"] == "int8" and r["tensors"] == "tflm")
    return rows[0]["model_bytes"] - sum(t["bytes_before"] for t in r["per_tensor"])


def print_table(rows: list[dict], meta: dict, use_qemu: bool) -> dict:
    head = (f"{'model':<8} {'variant':<8} {'tensors':<6} {'model B':>8} {'x int8':>6} {'arena':>7} {'alt a+region':>14}"
            + (f" {'ELF flash':>9} {'instructions':>12} {'crc=plain':>9}" if use_qemu else "") + f" {'proxy %':>7} {'drop':>5}  encodings")
    print(head)
    goals = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == model]
        plain = next(r for r in rs if r["variant"] == "int8" and r["tensors"] == "plain")
        for r in rs:
            r["ratio"] = round(plain["model_bytes"] / r["model_bytes"], 3)
            r["drop_pt"] = round(plain["proxy_pct"] - r["proxy_pct"], 2)
            alt = r.get("alt_region")
            alt = f"{alt['arena']}+{alt['region']}" if alt else "-"
            line = (f"{model:<8} {r['variant']:<8} {r['tensors']:<6} {r['model_bytes']:>8} {r['ratio']:>6.2f} "
                    f"{r['arena_min']:>7} {alt:>14}")
            if use_qemu:  # the compressed firmware's output CRC equals the plain one's (same variant)
                twin = next(p for p in rs if p["variant"] == r["variant"] and p["tensors"] == "plain")
                r["crc_equal"] = None if r is twin else r["crc"] == twin["crc"]
                line += f" {r['elf_flash']:>9} {r['instructions']:>12} {str(r['crc_equal'] or '-'):>9}"
            enc = " ".join(f"{k}:{v}" for k, v in sorted(r["encodings"].items()))
            print(line + f" {r['proxy_pct']:>7.2f} {r['drop_pt']:>5.2f}  {enc}")
        ok = [r for r in rs if r["tensors"] == "tflm" and r["drop_pt"] <= 1.0]
        best = max(ok, key=lambda r: r["ratio"]) if ok else None
        g = {"proxy": meta[model]["proxy"], "plain_int8_bytes": plain["model_bytes"],
             "best_within_1pt": best and {k: best[k] for k in ("variant", "model_bytes", "ratio", "drop_pt")}}
        if model == "kws":
            fl = floor_bytes(rs)
            g["floor_non_weight_bytes"] = fl
            g["best_over_floor"] = best and round(best["model_bytes"] / fl, 3)
            smallest = min((r for r in rs if r["tensors"] == "tflm"), key=lambda r: r["model_bytes"])
            g["smallest_over_floor"] = {"variant": smallest["variant"], "bytes": smallest["model_bytes"],
                                        "over_floor": round(smallest["model_bytes"] / fl, 3),
                                        "drop_pt": smallest["drop_pt"]}
        if model == "lenet":
            fl, acc = meta[model]["float_tflite_bytes"], meta[model].get("float_accuracy_pct")
            g["float_tflite_bytes"], g["float_accuracy_pct"] = fl, acc
            for r in rs:
                if r["variant"] in ("deep", "sdeep") and r["tensors"] == "tflm":
                    drop = None if acc is None else round(acc - r["proxy_pct"], 2)
                    g[r["variant"]] = {"model_bytes": r["model_bytes"], "x_float": round(fl / r["model_bytes"], 2),
                                       "accuracy_pct": r["proxy_pct"], "drop_vs_float_pt": drop,
                                       "bit_exact": r["bit_exact"], "elf_flash": r.get("elf_flash"),
                                       "qemu_crc_equal": r.get("crc_equal"),
                                       "goal_40x_within_1pt": r["model_bytes"] * 40 <= fl and drop is not None
                                       and drop <= 1.0}
        goals[model] = g
    for model, g in goals.items():
        rs = [r for r in rows if r["model"] == model and r["variant"] == "int8"]
        if use_qemu and len(rs) == 2 and any(k != "plain" for k in rs[1]["encodings"]):
            plain, comp = rs
            g["decode_kernel_flash"] = (comp["elf_flash"] - plain["elf_flash"]
                                        - (comp["model_bytes"] - plain["model_bytes"]))
    print("\ndecode_kernel_flash = ELF(int8, tflm) - ELF(int8, plain) - the model's change: the linked DECODE kernel")
    for model, g in goals.items():
        print(f"{model}: {json.dumps(g)}")
    return goals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet,resnet8,ad,kws")
    ap.add_argument("--variants", default=None, help="only these weight variants, comma-separated (e.g. "
                    "sdeep; int8 always runs: every ratio is to it)")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "flash_bench.json")
    ap.add_argument("--merge", type=Path, nargs="*", help="print the table of earlier --json files (one run split "
                    "over processes) and write them together to --json")
    args = ap.parse_args()
    if args.merge:
        docs = [json.loads(p.read_text()) for p in args.merge]
        rows = [r for d in docs for r in d["rows"]]
        meta = {k: v for d in docs for k, v in d["meta"].items()}
        goals = print_table(rows, meta, "elf_flash" in rows[0])
        args.json.write_text(json.dumps({"rows": rows, "meta": meta, "goals": goals,
                                         "seconds": max(d.get("seconds", 0) for d in docs)}, indent=1) + "\n")
        return
    use_qemu = not args.no_qemu and bool(os.environ.get("EDGEPACK_TFLM_ROOT"))
    wanted = tuple(["int8"] + [v for v in args.variants.split(",") if v != "int8"]) if args.variants else None
    known = set(LENET_VARIANTS) | {v for v, _, _ in MLPERF_VARIANTS} | {v for e in EXTRA.values() for v, _, _ in e}
    if wanted and set(wanted) - known:
        sys.exit(f"flash_bench: unknown variant(s) {sorted(set(wanted) - known)}; known: {sorted(known)}")
    rows, meta, t0 = [], {}, time.time()
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            if name != "lenet" and not (MLPERF / MLPERF_MODELS[name][0]).exists():
                print(f"skip {name}: {MLPERF} not found", file=sys.stderr)
                continue
            r, meta[name] = (run_lenet(Path(tmp) / name, use_qemu, wanted or LENET_VARIANTS) if name == "lenet"
                             else run_mlperf(name, Path(tmp) / name, use_qemu, wanted))
            rows += r
            print(f"[{name} done, {time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
            args.json.write_text(json.dumps({"rows": rows, "meta": meta}, indent=1) + "\n")
    goals = print_table(rows, meta, use_qemu)
    args.json.write_text(json.dumps({"rows": rows, "meta": meta, "goals": goals,
                                                      "seconds": round(time.time() - t0)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
