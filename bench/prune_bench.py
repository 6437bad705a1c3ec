"""Pruning bench (issue 3), measured side by side in one run, JSON in bench/results/prune_bench.json.

1. resnet8: the MLPerf Tiny ResNet-8 (../shared/models/mlperf_tiny/pretrainedResnet.h5),
   fine-tuned from its reference weights on MNIST-5k padded to 32x32x3; structured
   pruning (prune_structured, MACs budget, iterative fine-tune) + int8 vs plain int8.
   Goal: >= 2x lower LiteRT latency, >= 2x fewer MACs, <= 1 pt accuracy lost.
2. lenet: LeNet-300-100 on MNIST-5k: hidden neurons removed vs accuracy (fine-tuned).
3. sparse_vs_structured: unstructured 80 % sparsity (prune_magnitude, tfmot) vs the
   structured pruning of the same LeNet with at least that accuracy: int8 size,
   zipped size, LiteRT latency.

Latency: LiteRT (XNNPACK), 1 thread, the models' invokes interleaved in rounds on
the same machine, median per-invoke time; only ratios are meaningful.

4. uniform_vs_searched (issue 11): ResNet-8 and the MLPerf KWS DS-CNN, each pruned
   - with a uniform ratio of 0.5 (``uniform_0.5``),
   - by the accuracy-budget search with one ratio for all (``uniform_1pt``: ``target:
     {max_accuracy_drop: 1.0}, search_allocation: uniform``), and
   - by the same search with per-layer ratios from measured sensitivity (``searched_1pt``),
   all with the default fine-tune and round_to; int8. The two searches land at equal
   accuracy (the budget), so their MACs compare the allocations. Latency ratios of the
   int8 and of the float builds (interleaved in the same rounds), and one 3x3 conv by
   channel count (int8 vs float): on a host whose int8 kernels are fast per MAC
   (AVX512-VNNI) a per-pixel cost dominates int8 convs and channels barely count.
   ``--reuse`` loads the Keras models an earlier run saved (re-measures only).
   Side by side: MACs ratio, LiteRT latency ratio (median of interleaved rounds), QEMU
   mps2-an386 (Cortex-M4, TFLM reference kernels) instruction ratio of a ``--target tflm``
   package, int8 accuracy drop on the proxy eval set. Proxy data (no CIFAR-10 / Speech
   Commands offline): MNIST-5k padded to 32x32x3 (ResNet-8) and resized to 49x10x1
   (KWS, digits as 10 of its 12 classes); both start from the MLPerf reference weights.
   QEMU needs EDGEPACK_TFLM_ROOT (skipped, saying so, without it).

Usage::

    python bench/prune_bench.py [--only resnet8,lenet,sparse_vs_structured,uniform_vs_searched] [--quick] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from typing import Optional
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# (oneDNN, which crashed fine-tuning the pruned ResNet-8, is turned off by edgepack.keras_compat.)

from edgepack.convert.flatbuffer import read_tflite  # noqa: E402
from edgepack.convert.tflite import convert  # noqa: E402
from edgepack.data import Preprocess, load_dataset  # noqa: E402
from edgepack.keras_compat import keras, set_seed  # noqa: E402
from edgepack.passes.base import Context, Labeled  # noqa: E402
from edgepack.passes.prune_magnitude import MagnitudePrune  # noqa: E402
from edgepack.passes.prune_structured import StructuredPrune  # noqa: E402
from edgepack.passes.training import FitConfig, evaluate_accuracy, fit  # noqa: E402
from edgepack.recipe import QuantizeConfig  # noqa: E402
from edgepack.runtime import LiteRT  # noqa: E402

DATA = ROOT / "calibration_data" / "mnist"
RESNET = ROOT.parent / "shared" / "models" / "mlperf_tiny" / "pretrainedResnet.h5"
OUT = ROOT / "bench" / "results" / "prune_bench.json"
MODELS = ROOT / "bench" / "results" / "prune_bench_models"  # the measured .tflite files (gitignored)
INT8 = QuantizeConfig(mode="int8", io="int8")
TOLERANCE_PT = 0.5  # "same accuracy" for the sparse-vs-structured comparison (1000 eval images: 0.1 pt each)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ctx_for(train=None, ev=None, calib=None) -> Context:
    return Context(seed=0, train=train, eval=ev, calibration=calib, log=lambda m: log("  " + m))


def mnist(shape, pad_rgb: bool = False):
    """MNIST-5k from calibration_data/mnist: train (3744), eval (1000), calib (256)."""
    pre = Preprocess(scale=1 / 255)
    sets = [load_dataset(DATA / f"{n}.npz") for n in ("train", "eval", "calib")]
    out = []
    for ds in sets:
        x = ds.model_input(pre, (28, 28, 1))
        if pad_rgb:
            x = np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
        out.append(Labeled(x.reshape((len(x),) + tuple(shape)), ds.y))
    return out[0], out[1], out[2].x


def _accuracy(tfl: bytes, ev: Labeled) -> float:
    return round(float(100 * np.mean(np.argmax(LiteRT(tfl).predict(ev.x), -1) == ev.y)), 2)


def _latencies_us(models: dict[str, bytes], x: np.ndarray, rounds: int, per_round: int) -> dict[str, float]:
    """Median per-invoke time of each model, invokes interleaved round by round (same load for all)."""
    runs = {k: LiteRT(v, num_threads=1) for k, v in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in runs.values():
        if x is None:  # each model on a zero input of its own shape
            d = r.inputs[0]
            r.interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        else:
            r.invoke_one(x[:1])
        for _ in range(10):
            r.interp.invoke()
    for _ in range(rounds):
        for k, r in runs.items():
            t0 = time.perf_counter()
            for _ in range(per_round):
                r.interp.invoke()
            times[k].append((time.perf_counter() - t0) / per_round * 1e6)
    # The least-disturbed round estimates the uncontended time (other jobs share this host);
    # the median is kept in the JSON as *_median.
    return {**{k: round(float(np.min(v)), 2) for k, v in times.items()},
            **{f"{k}_median": round(float(np.median(v)), 2) for k, v in times.items()}}


def measure(models: dict[str, bytes], ev: Optional[Labeled], per_round: int = 40, rounds: int = 30) -> dict[str, dict]:
    """LiteRT accuracy (with ``ev``) and interleaved latency of each model, in a fresh process.

    LiteRT and TensorFlow each bundle TFLite/XNNPACK; keeping the interpreters out of
    the training process avoids native clashes and TF's threads skewing the timings.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for k, v in models.items():
            (d / f"{k}.tflite").write_bytes(v)
        if ev is not None:
            np.savez(d / "eval.npz", x=ev.x, y=ev.y)
        res = subprocess.run([sys.executable, __file__, "--measure", str(d), "--per-round", str(per_round),
                              "--rounds", str(rounds)], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"measurement process failed: {res.stderr[-2000:]}")
        return json.loads(res.stdout.strip().splitlines()[-1])


def _measure_main(folder: Path, per_round: int, rounds: int) -> None:
    """The child of :func:`measure`: without eval.npz, latency only (each model on a zero input)."""
    ev = None
    if (folder / "eval.npz").is_file():
        z = np.load(folder / "eval.npz")
        ev = Labeled(z["x"], z["y"])
    models = {p.stem: p.read_bytes() for p in sorted(folder.glob("*.tflite"))}
    lat = _latencies_us(models, None if ev is None else ev.x, rounds, per_round)
    print(json.dumps({k: {**({} if ev is None else {"accuracy": _accuracy(v, ev)}), "latency_us": lat[k],
                          "latency_median_us": lat[f"{k}_median"]} for k, v in models.items()}))


def describe(tfl: bytes) -> dict:
    info = read_tflite(tfl)
    return {"size_bytes": len(tfl), "zipped_bytes": len(zlib.compress(tfl, 9)), "macs": info.macs(),
            "params": info.params()}


# -- 1. ResNet-8 -------------------------------------------------------------
def resnet8(quick: bool) -> dict:
    train, ev, calib = mnist((32, 32, 3), pad_rgb=True)
    set_seed(0)
    base = _reference("resnet8")
    epochs = 2 if quick else 12
    log(f"resnet8: fine-tune the reference weights on MNIST-5k 32x32x3 ({epochs} epochs)")
    t0 = time.time()
    fit(base, train, ctx_for(), FitConfig(epochs=epochs, batch_size=64, learning_rate=1e-3, patience=3), "base")
    base_s = time.time() - t0
    variants = {
        # least important channels model-wide, SIMD-friendly multiples of 8, <= 40 % of the MACs
        "global_r8": dict(target={"keep_macs": 0.4}, scope="global", round_to=8),
        # every group loses half its channels (multiples of 8)
        "uniform_r8": dict(ratio=0.5, round_to=8),
    }
    ft = {"epochs": 2 if quick else 8, "batch_size": 64, "learning_rate": 5e-4, "patience": 3}
    tfls = {"int8": convert(base, INT8, calib)}
    recs, cfgs, keras_acc, seconds = {}, {}, {"int8": round(evaluate_accuracy(base, ev), 2)}, {"base": round(base_s, 1)}
    for name, v in variants.items():
        cfg = StructuredPrune.Config(importance="l1", iterations=1 if quick else 3, fine_tune=ft, **v)
        ctx = ctx_for(train, ev, calib)
        log(f"resnet8: {name}: {v}, iterative fine-tune")
        t0 = time.time()
        pruned = StructuredPrune(cfg).apply(base, ctx)
        seconds[name] = round(time.time() - t0, 1)
        recs[name], cfgs[name] = ctx.records[-1], cfg.model_dump(mode="json", exclude_defaults=True)
        keras_acc[name] = round(evaluate_accuracy(pruned, ev), 2)
        tfls[name] = convert(pruned, INT8, calib)
    # Latency only (no fine-tuning): the global_r8 plan's MACs budget with no channel rounding.
    unaligned = StructuredPrune(StructuredPrune.Config(target={"keep_macs": 0.4}, scope="global")).apply(
        base, ctx_for(calib=calib))
    tfls["unaligned_oneshot"] = convert(unaligned, INT8, calib)
    MODELS.mkdir(parents=True, exist_ok=True)
    for name, tfl in tfls.items():
        (MODELS / f"resnet8_{name}.tflite").write_bytes(tfl)
    m = measure(tfls, ev)
    out = {"latency": "LiteRT 1 thread, interleaved rounds; latency_us = least-disturbed round (shared host)",
           "data": "MNIST-5k (3744 train / 1000 eval) padded to 32x32x3; fine-tuned from the MLPerf reference weights",
           "keras_float_accuracy": keras_acc, "seconds": seconds}
    for name, tfl in tfls.items():
        out[name] = {**describe(tfl), **m[name]}
    ref_lat, ref_macs, ref_acc = m["int8"]["latency_us"], out["int8"]["macs"], m["int8"]["accuracy"]
    for name in list(variants) + ["unaligned_oneshot"]:
        r = out[name]
        r.update(latency_speedup=round(ref_lat / r["latency_us"], 2), macs_reduction=round(ref_macs / r["macs"], 2),
                 size_reduction=round(out["int8"]["size_bytes"] / r["size_bytes"], 2),
                 accuracy_drop_pt=round(ref_acc - r["accuracy"], 2))
        if name in variants:
            r.update(recipe_step=cfgs[name], groups=recs[name]["groups"], layers=recs[name]["layers"],
                     goal={"latency_speedup>=2": r["latency_speedup"] >= 2, "macs_reduction>=2": r["macs_reduction"] >= 2,
                           "accuracy_drop<=1": r["accuracy_drop_pt"] <= 1})
    out["unaligned_oneshot"]["note"] = ("same MACs budget as global_r8 without round_to, one-shot: latency only "
                                        "(accuracy not fine-tuned)")
    return out


# -- 4. uniform vs searched ratios (issue 11) ----------------------------------------
KWS = ROOT.parent / "shared" / "models" / "mlperf_tiny" / "kws_ref_model"


def _kws_data():
    """MNIST-5k resized to the DS-CNN's 49x10x1 input (a proxy task: digits as classes 0-9 of 12)."""
    from edgepack.keras_compat import tf

    out = []
    for part in mnist((28, 28, 1)):
        x = part.x if isinstance(part, Labeled) else part
        r = np.asarray(tf().image.resize(x, (49, 10), method="bilinear"), dtype=np.float32)
        out.append(Labeled(r, part.y) if isinstance(part, Labeled) else r)
    return out


def _reference(name: str):
    """The MLPerf reference model with BatchNorm momentum 0.9 (training-time only): its moving statistics
    are CIFAR-10's / Speech Commands' and would otherwise take thousands of steps to forget."""
    from edgepack.load import load_model

    ref = load_model(RESNET if name == "resnet8" else KWS, unsafe=False)
    cfg = ref.get_config()
    for layer in cfg["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = 0.9
    base = keras().Model.from_config(cfg)
    base.set_weights(ref.get_weights())
    return base


def _qemu_instructions(models: dict, calib: np.ndarray, work: Path) -> dict:
    """Instructions per inference on QEMU mps2-an386 of a `--target tflm` int8 package of each model."""
    import os

    from edgepack.devices.registry import profile
    from edgepack.devices.result import Settings
    from edgepack.pipeline import PackageRequest, package

    if not os.environ.get("EDGEPACK_TFLM_ROOT"):
        return {k: None for k in models}
    np.savez(work / "calib.npz", x=calib)
    out = {}
    for name, model in models.items():
        h5 = work / f"{name}.h5"
        model.save(h5)
        folder = work / f"{name}_tflm"
        # an instruction count: accuracy is measured with LiteRT on the eval set, so no gate here
        package(PackageRequest(model=h5, out=folder, target="tflm", quantize="int8", io="int8",
                               calibration=work / "calib.npz", force=True, max_accuracy_drop="none",
                               target_options={"device": "nucleo-l4r5zi"}))
        log(f"  qemu: {name}")
        r = profile(folder, device="qemu:mps2-an386", settings=Settings(runs=1, warmup=0))
        out[name] = int(r.latency.instructions)
    return out


REUSE = False  # --reuse: load the trained/pruned Keras models of an earlier run (re-measure only)


def _checkpoint(key: str, make):
    """(Keras model, JSON-able extras) from ``make()``, saved under MODELS; with --reuse, loaded from there."""
    from edgepack.load import load_model

    h5, meta = MODELS / f"{key}.h5", MODELS / f"{key}.json"
    if REUSE and h5.is_file() and meta.is_file():
        log(f"  reusing {h5.name}")
        return load_model(h5, unsafe=False), json.loads(meta.read_text())
    model, extras = make()
    MODELS.mkdir(parents=True, exist_ok=True)
    model.save(h5)
    meta.write_text(json.dumps(extras, default=str))
    return model, extras


def uniform_vs_searched(quick: bool) -> dict:
    import tempfile

    results = {}
    import os

    for name in os.environ.get("PRUNE_BENCH_MODELS", "resnet8,kws").split(","):
        if name == "resnet8":
            train, ev, calib = mnist((32, 32, 3), pad_rgb=True)
        else:
            train, ev, calib = _kws_data()
        n = 1200 if quick else len(train.x)
        train = Labeled(train.x[:n], train.y[:n])
        set_seed(0)
        epochs = (2 if quick else 6) if name == "resnet8" else (5 if quick else 12)

        def train_base():
            base = _reference(name)
            log(f"{name}: fine-tune the reference weights on the proxy data ({epochs} epochs, {n} samples)")
            fit(base, train, ctx_for(), FitConfig(epochs=epochs, learning_rate=1e-3), f"{name} base")
            return base, {}

        base, _ = _checkpoint(f"{name}_base{'_quick' if quick else ''}", train_base)
        # the default fine-tune (8 epochs) unless --quick; the searches use their default probes
        ft = {"epochs": 2} if quick else {}
        budget = {"max_accuracy_drop": 1.0}
        variants = {"uniform_0.5": dict(ratio=0.5, fine_tune=ft),
                    "uniform_1pt": dict(target=budget, fine_tune=ft, search_allocation="uniform"),
                    "searched_1pt": dict(target=budget, fine_tune=ft)}
        if quick:
            for v in ("uniform_1pt", "searched_1pt"):
                variants[v]["search_probes"] = 3
        keras_models, recs, seconds = {"base": base}, {}, {}
        for vname, v in variants.items():
            def prune(v=v, vname=vname):
                ctx = ctx_for(train, ev, calib)
                t0 = time.time()
                log(f"{name}: {vname}: {v}")
                pruned = StructuredPrune(StructuredPrune.Config(**v)).apply(base, ctx)
                return pruned, {"record": ctx.records[-1], "seconds": round(time.time() - t0, 1)}

            keras_models[vname], saved = _checkpoint(f"{name}_{vname}{'_quick' if quick else ''}", prune)
            seconds[vname], recs[vname] = saved["seconds"], saved["record"]
        tfls = {k: convert(m, INT8, calib) for k, m in keras_models.items()}
        floats = {f"{k}_float": convert(m, QuantizeConfig(mode="none")) for k, m in keras_models.items()}
        # int8 and float builds interleaved in the same rounds (one load for all)
        m = measure({**tfls, **floats}, ev, per_round=20 if name == "resnet8" else 50, rounds=31)
        with tempfile.TemporaryDirectory() as tmp:
            qemu = _qemu_instructions(keras_models, calib, Path(tmp))
        rows = {}
        b = describe(tfls["base"])
        for k, tfl in tfls.items():
            d = describe(tfl)
            rows[k] = {"macs": d["macs"], "macs_ratio": round(d["macs"] / b["macs"], 3),
                       "latency_median_us": m[k]["latency_median_us"],
                       "latency_ratio": round(m[k]["latency_median_us"] / m["base"]["latency_median_us"], 3),
                       "float_latency_median_us": m[f"{k}_float"]["latency_median_us"],
                       "float_latency_ratio": round(m[f"{k}_float"]["latency_median_us"]
                                                    / m["base_float"]["latency_median_us"], 3),
                       "qemu_instructions": qemu[k],
                       "qemu_ratio": None if qemu[k] is None else round(qemu[k] / qemu["base"], 3),
                       "int8_accuracy": m[k]["accuracy"],
                       "accuracy_drop_pt": round(m["base"]["accuracy"] - m[k]["accuracy"], 2)}
            if k in recs:
                rows[k].update(seconds=seconds[k], round_to=recs[k]["round_to"],
                               groups={g["group"]: [g["channels_before"], g["channels_after"]]
                                       for g in recs[k]["groups"]},
                               search=recs[k].get("search"), search_result=recs[k].get("search_result"),
                               search_decided_on=recs[k].get("search_decided_on"))
        results[name] = {"data": "MNIST-5k proxy (see module doc)", "train_samples": n, "rows": rows}
    results["int8_conv_floor"] = _int8_conv_floor()
    return results


def _int8_conv_floor() -> dict:
    """LiteRT time of one 3x3 conv on 32x32 by channel count, int8 and float: on a host whose int8
    kernels are fast per MAC (AVX512-VNNI), a per-pixel cost dominates and channels barely count."""
    k = keras()
    x = np.random.default_rng(0).random((32, 32, 32, 64), dtype=np.float32)
    models = {}
    for c in (8, 16, 32, 64):
        set_seed(0)
        m = k.Sequential([k.Input((32, 32, c)), k.layers.Conv2D(c, 3, padding="same")])
        models[f"int8_c{c}"] = convert(m, INT8, x[:, :, :, :c])
        models[f"float_c{c}"] = convert(m, QuantizeConfig(mode="none"))
    lat = measure(models, None, per_round=50, rounds=15)
    return {"note": "one Conv2D 3x3, 32x32, c in = c out; LiteRT 1 thread, median us",
            **{k: v["latency_median_us"] for k, v in lat.items()}}


# -- 2./3. LeNet-300-100 -------------------------------------------------------
def lenet_model():
    k = keras()
    L = k.layers
    return k.Sequential([k.Input((784,)), L.Dense(300, activation="relu", name="fc1"),
                         L.Dense(100, activation="relu", name="fc2"), L.Dense(10, name="out")], name="lenet_300_100")


def lenet_base(quick: bool):
    train, ev, calib = mnist((784,))
    set_seed(0)
    base = lenet_model()
    fit(base, train, ctx_for(), FitConfig(epochs=8 if quick else 20, batch_size=64, patience=3), "lenet base")
    return base, train, ev, calib


def lenet(quick: bool, shared: dict) -> dict:
    base, train, ev, calib = shared["lenet"]
    tfls = {"r0.0": convert(base, INT8, calib)}
    neurons = {"r0.0": 400}
    for ratio in (0.5, 0.75, 0.9, 0.95):
        ctx = ctx_for(train, ev)
        cfg = StructuredPrune.Config(ratio=ratio, iterations=1 if quick else 2,
                                     fine_tune={"epochs": 3 if quick else 6, "patience": 3})
        pruned = StructuredPrune(cfg).apply(base, ctx)
        tfls[f"r{ratio}"] = convert(pruned, INT8, calib)
        neurons[f"r{ratio}"] = int(pruned.get_layer("fc1").units + pruned.get_layer("fc2").units)
        log(f"lenet: ratio {ratio}: {neurons[f'r{ratio}']} hidden neurons")
    m = measure(tfls, ev, per_round=400)
    rows = [{"ratio": float(k[1:]), "hidden_neurons": neurons[k], "accuracy_int8": m[k]["accuracy"],
             "latency_us": m[k]["latency_us"], **describe(t)} for k, t in tfls.items()]
    shared["structured"] = {r["ratio"]: (tfls[f"r{r['ratio']}"], r["accuracy_int8"]) for r in rows}
    return {"data": "MNIST-5k (3744 train / 1000 eval)", "rows": rows}


def sparse_vs_structured(quick: bool, shared: dict) -> dict:
    base, train, ev, calib = shared["lenet"]
    ctx = ctx_for(train, ev)
    sparse = MagnitudePrune(MagnitudePrune.Config(sparsity=0.8, fine_tune={"epochs": 4 if quick else 8,
                                                                           "patience": 3})).apply(base, ctx)
    sparse_tfl = convert(sparse, INT8, calib)
    sparse_acc = measure({"s": sparse_tfl}, ev, per_round=1, rounds=1)["s"]["accuracy"]
    # the most-pruned structured LeNet within TOLERANCE_PT of the sparse model's accuracy (0.0 = unpruned)
    ok = [(r, t) for r, (t, a) in shared["structured"].items() if a >= sparse_acc - TOLERANCE_PT]
    ratio, struct_tfl = max(ok) if ok else (0.0, shared["structured"][0.0][0])
    models = {"dense_int8": shared["structured"][0.0][0], "sparse80_int8": sparse_tfl, "structured_int8": struct_tfl}
    m = measure(models, ev, per_round=400)
    out = {"note": "unstructured zeros keep every shape: the .tflite is as large (until zipped) and as slow as "
                   "the dense model; structured pruning shrinks both",
           "matched_on": f"int8 accuracy on the 1000 eval images: the most pruned structured model within "
                         f"{TOLERANCE_PT} pt of the sparse model"}
    for name, tfl in models.items():
        out[name] = {**describe(tfl), "accuracy_int8": m[name]["accuracy"], "latency_us": m[name]["latency_us"]}
    out["structured_int8"]["ratio"] = ratio
    out["sparse80_int8"]["weight_sparsity"] = ctx.records[-1]["sparsity"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="uniform_vs_searched")
    ap.add_argument("--quick", action="store_true", help="fewer epochs (smoke run; figures not representative)")
    ap.add_argument("--reuse", action="store_true", help="reuse the Keras models an earlier run saved under "
                    "bench/results/prune_bench_models (uniform_vs_searched; re-measures only)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process: LiteRT measurements
    ap.add_argument("--per-round", type=int, default=40, help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=30, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure is not None:
        return _measure_main(args.measure, args.per_round, args.rounds)
    global REUSE
    REUSE = args.reuse
    only = args.only.split(",")
    results: dict = {"quick": args.quick}
    shared: dict = {}
    t0 = time.time()
    if "sparse_vs_structured" in only and "lenet" not in only:
        only.append("lenet")
    for name in ("resnet8", "lenet", "sparse_vs_structured", "uniform_vs_searched"):
        if name == "lenet" and name in only:
            shared["lenet"] = lenet_base(args.quick)
        if name in only:
            log(f"== {name}")
            fn = {"resnet8": lambda q: resnet8(q), "lenet": lambda q: lenet(q, shared),
                  "sparse_vs_structured": lambda q: sparse_vs_structured(q, shared),
                  "uniform_vs_searched": uniform_vs_searched}[name]
            results[name] = fn(args.quick)
            results[name]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["seconds"] = round(time.time() - t0, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if OUT.exists() and set(only) != {"resnet8", "lenet", "sparse_vs_structured", "uniform_vs_searched"}:
        # a partial run updates its sections and keeps the others (each carries measured_at)
        results = {**json.loads(OUT.read_text()), **results}
    OUT.write_text(json.dumps(results, indent=2, default=str))
    print(summary(results))
    print(f"wrote {OUT}")


def summary(res: dict) -> str:
    lines = []
    if "uniform_vs_searched" in res:
        lines.append("Uniform vs searched per-layer ratios, int8 (ratios to the unpruned int8 model; LiteRT median of "
                     "interleaved rounds; QEMU mps2-an386 TFLM reference kernels):")
        lines.append(f"  {'model':<8} {'variant':<13} {'MACs':>6} {'int8 LiteRT':>11} {'float':>6} {'QEMU':>6} "
                     f"{'drop pt':>8}  channels")
        for model in ("resnet8", "kws"):
            for k, r in res["uniform_vs_searched"].get(model, {}).get("rows", {}).items():
                ch = ", ".join(f"{g} {a}->{b}" for g, (a, b) in r.get("groups", {}).items())
                lines.append(f"  {model:<8} {k:<13} {r['macs_ratio']:>6} {r['latency_ratio']:>11} "
                             f"{r.get('float_latency_ratio', '-'):>6} {str(r['qemu_ratio']):>6} "
                             f"{r['accuracy_drop_pt']:>8}  {ch}")
        floor = res["uniform_vs_searched"].get("int8_conv_floor")
        if floor:
            lines.append("  one 3x3 conv 32x32, LiteRT us by channels (int8 | float): " + ", ".join(
                f"c{c} {floor[f'int8_c{c}']} | {floor[f'float_c{c}']}" for c in (8, 16, 32, 64)))
    if "resnet8" in res:
        r = res["resnet8"]
        b = r["int8"]
        lines += ["ResNet-8 (MNIST-5k 32x32x3), structured pruning + int8 vs plain int8 "
                  "(MACs, LiteRT latency, bytes, int8 accuracy):",
                  f"  {'int8':<18} {b['macs']:>10,} {b['latency_us']:>8} us {b['size_bytes']:>8,} B {b['accuracy']:>6} %"]
        for name in ("global_r8", "uniform_r8", "unaligned_oneshot"):
            v = r[name]
            lines.append(f"  {name:<18} {v['macs']:>10,} {v['latency_us']:>8} us {v['size_bytes']:>8,} B "
                         f"{v['accuracy']:>6} %  -> {v['macs_reduction']}x fewer MACs, {v['latency_speedup']}x "
                         f"faster, {v['size_reduction']}x smaller, drop {v['accuracy_drop_pt']} pt")
            if "groups" in v:
                lines.append("      groups: " + ", ".join(f"{g['group']} {g['channels_before']}->{g['channels_after']}"
                                                     for g in v["groups"]) + f"; goals met: {v['goal']}")
    if "lenet" in res:
        lines.append("LeNet-300-100 (MNIST-5k): ratio, hidden neurons, int8 accuracy, int8 bytes, MACs, latency")
        lines += [f"  {row['ratio']:<5} {row['hidden_neurons']:>4} {row['accuracy_int8']:>6} % "
                  f"{row['size_bytes']:>8,} B {row['macs']:>8,} {row['latency_us']:>7} us"
                  for row in res["lenet"]["rows"]]
    if "sparse_vs_structured" in res:
        s = res["sparse_vs_structured"]
        lines.append("Unstructured 80 % vs structured (LeNet-300-100, int8): accuracy, bytes, zipped, latency")
        for k in ("dense_int8", "sparse80_int8", "structured_int8"):
            v = s[k]
            lines.append(f"  {k:<16} {v['accuracy_int8']:>6} % {v['size_bytes']:>8,} B {v['zipped_bytes']:>8,} B "
                         f"{v['latency_us']:>8} us")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
