"""Compression bench (issue 4), measured side by side in one run, JSON in bench/results/.

1. deep_compression: LeNet-300-100 on MNIST-5k (calibration_data/mnist) through the
   shipped recipe examples/deep_compression/recipe.yaml (prune -> cluster -> distill ->
   int8 -> entropy-coded package), against the float .tflite, the plain int8
   converter and zip. Goal: >= 40x (package vs float .tflite) at <= 0.5 pt drop.
   Also tries the converter's sparse weight format (EXPERIMENTAL_SPARSITY) in LiteRT.
2. mixed_precision: a model plain int8 breaks (one wide-range activation), float vs
   int8 vs int16x8 vs the automatic per-op plan: accuracy, size, host latency.
3. qat_vs_ptq: post-training int8 vs quantization-aware training on the same models.

Usage::

    python bench/compression_bench.py [--only deep_compression,mixed_precision,qat_vs_ptq]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepack.convert.tflite import convert  # noqa: E402
from edgepack.quantize.apply import quantize_model  # noqa: E402
from edgepack.data import Preprocess, load_dataset  # noqa: E402
from edgepack.epk import decode, encode, stream_stats  # noqa: E402
from edgepack.passes.base import Context, Labeled  # noqa: E402
from edgepack.passes.training import FitConfig, fit  # noqa: E402
from edgepack.recipe import QuantizeConfig, Recipe  # noqa: E402
from edgepack.runtime import LiteRT  # noqa: E402

DATA = ROOT / "calibration_data" / "mnist"
RECIPE = ROOT / "examples" / "deep_compression" / "recipe.yaml"
OUT = ROOT / "bench" / "results" / "compression_bench.json"
FLOAT = QuantizeConfig(mode="none")


def mnist(shape) -> tuple[Labeled, Labeled, np.ndarray]:
    pre = Preprocess(scale=1 / 255)
    tr, ev = load_dataset(DATA / "train.npz"), load_dataset(DATA / "eval.npz")
    cal = load_dataset(DATA / "calib.npz")
    return (Labeled(tr.model_input(pre, shape), tr.y), Labeled(ev.model_input(pre, shape), ev.y),
            cal.model_input(pre, shape))


def accuracy(tfl: bytes, ev: Labeled) -> float:
    return round(float(100 * np.mean(np.argmax(LiteRT(tfl).predict(ev.x), -1) == ev.y)), 2)


def latency_us(tfl: bytes) -> float:
    return round(LiteRT(tfl).median_latency_us(runs=200, warmup=20), 1)


def lenet(train: Labeled, seed: int = 0, epochs: int = 20):
    """LeNet-300-100 (784-300-100-10, logits) trained on MNIST-5k."""
    from edgepack.keras_compat import keras, set_seed

    k = keras()
    set_seed(seed)
    m = k.Sequential([k.layers.InputLayer((28, 28, 1)), k.layers.Flatten(),
                      k.layers.Dense(300, activation="relu", name="fc1"),
                      k.layers.Dense(100, activation="relu", name="fc2"), k.layers.Dense(10, name="fc3")])
    fit(m, train, Context(seed=seed), FitConfig(epochs=epochs, learning_rate=1e-3, validation_split=0.1, patience=4))
    return m


def builtin_accuracy(tfl: bytes, ev: Labeled) -> float:
    """Accuracy with LiteRT's builtin kernels only (no XNNPACK), which run sparse int8 weights."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=tfl, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    pred = []
    for k in range(len(ev.x)):
        it.set_tensor(i["index"], ev.x[k : k + 1].astype(np.float32))
        it.invoke()
        pred.append(int(np.argmax(it.get_tensor(o["index"]))))
    return round(float(100 * np.mean(np.array(pred) == ev.y)), 2)


def sparse_format(model, cal: np.ndarray, ev: Labeled) -> dict:
    """The converter's EXPERIMENTAL_SPARSITY weight format: size and whether LiteRT runs it."""
    from edgepack.convert.tflite import representative_dataset
    from edgepack.keras_compat import tf

    t = tf()
    out = {}
    for name, int8 in (("float_sparse", False), ("int8_sparse", True)):
        c = t.lite.TFLiteConverter.from_keras_model(model)
        c.optimizations = [t.lite.Optimize.EXPERIMENTAL_SPARSITY] + ([t.lite.Optimize.DEFAULT] if int8 else [])
        if int8:
            c.representative_dataset = representative_dataset(cal)
            c.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            data = bytes(c.convert())
            out[name] = {"bytes": len(data), "accuracy_pct": accuracy(data, ev), "latency_us": latency_us(data)}
        except Exception as e:  # noqa: BLE001 - record whatever the converter/runtime says
            out[name] = {"bytes": len(data), "error_with_xnnpack": str(e).splitlines()[0][:200]}
            try:
                out[name]["accuracy_pct_builtin_kernels"] = builtin_accuracy(data, ev)
            except Exception as e2:  # noqa: BLE001
                out[name]["error_builtin_kernels"] = str(e2).splitlines()[0][:200]
    return out


def deep_compression(tmp: Path) -> dict:
    from edgepack.keras_compat import keras
    from edgepack.pipeline import compress

    train, ev, cal = mnist((28, 28, 1))
    model = lenet(train)
    recipe = Recipe.from_yaml(RECIPE)
    float_tfl = convert(model, FLOAT)
    int8_tfl = convert(model, QuantizeConfig(mode="int8"), cal)
    ctx = Context(seed=0, calibration=cal[: recipe.data.calibration_limit], train=train, eval=ev)
    ctx.teacher = model
    student = keras().models.clone_model(model)
    student.set_weights(model.get_weights())
    t0 = time.time()
    compressed, plan = compress(student, recipe.build_passes(str(RECIPE)), ctx, recipe.quantize, measure=True)
    final = quantize_model(compressed, recipe.quantize, ctx.calibration, plan=plan)
    t_compress = time.time() - t0
    blob = encode(final)
    assert decode(blob) == final
    acc_float, acc_final = accuracy(float_tfl, ev), accuracy(final, ev)
    res = {
        "model": "LeNet-300-100 (784-300-100-10)", "data": "MNIST-5k (calibration_data/mnist train/eval)",
        "recipe": str(RECIPE.relative_to(ROOT)), "compress_seconds": round(t_compress, 1),
        "float_tflite_bytes": len(float_tfl), "float_accuracy_pct": acc_float,
        "plain_int8_bytes": len(int8_tfl), "plain_int8_accuracy_pct": accuracy(int8_tfl, ev),
        "plain_int8_ratio": round(len(float_tfl) / len(int8_tfl), 2),
        "final_tflite_bytes": len(final), "final_accuracy_pct": acc_final,
        "final_tflite_ratio": round(len(float_tfl) / len(final), 2),
        "package_bytes": len(blob), "package_ratio": round(len(float_tfl) / len(blob), 2),
        "final_zlib_bytes": len(zlib.compress(final, 9)),
        "final_zlib_ratio": round(len(float_tfl) / len(zlib.compress(final, 9)), 2),
        "accuracy_drop_pt": round(acc_float - acc_final, 2),
        "latency_us": {"float": latency_us(float_tfl), "plain_int8": latency_us(int8_tfl), "final": latency_us(final)},
        "steps": [{k: v for k, v in r.items() if k not in ("layers", "preserved", "skipped")} for r in ctx.records],
        "sparse_format": sparse_format(compressed, ctx.calibration, ev),
        "package_streams": stream_stats(final),
        "goal": {"package_ratio_min": 40.0, "max_drop_pt": 0.5},
    }
    res["goal_met"] = res["package_ratio"] >= 40.0 and res["accuracy_drop_pt"] <= 0.5
    return res


def outlier(model, layer: str, nxt: str, x: np.ndarray, scale: float = 3000.0):
    """Scale the most active ReLU neuron of ``layer`` by ``scale`` and its outgoing weights by 1/scale.

    ReLU is positively homogeneous: the float function is unchanged, the activation
    range of ``layer`` grows ``scale``-fold (an "outlier feature").
    """
    from edgepack.keras_compat import keras

    probe = keras().Model(model.inputs, model.get_layer(layer).output)
    j = int(np.argmax(probe.predict(x, verbose=0).mean(0)))
    w, b = model.get_layer(layer).get_weights()
    w[:, j] *= scale
    b[j] *= scale
    model.get_layer(layer).set_weights([w, b])
    w2, b2 = model.get_layer(nxt).get_weights()
    w2[j] /= scale
    model.get_layer(nxt).set_weights([w2, b2])
    return model


def mixed_precision(tmp: Path) -> dict:
    from edgepack.quantize.mixed_precision import MixedPrecision

    train, ev, cal = mnist((28, 28, 1))
    model = outlier(lenet(train, seed=1), "fc1", "fc2", cal)
    ctx = Context(seed=0, calibration=cal, eval=ev)
    t0 = time.time()
    plan = MixedPrecision(MixedPrecision.Config(max_accuracy_drop=0.5)).plan(model, ctx, QuantizeConfig(mode="int8"))
    search_s = time.time() - t0
    rec = ctx.records[-1]
    variants = {"float": convert(model, FLOAT), "int8": convert(model, QuantizeConfig(mode="int8"), cal),
                "int16x8": convert(model, QuantizeConfig(mode="int16x8"), cal),
                "mixed": quantize_model(model, QuantizeConfig(mode="int8"), cal, plan=plan)}
    fast = Context(seed=0, calibration=cal, eval=ev)  # prefer float fallbacks (XNNPACK-fast) over int16x8
    fast_plan = MixedPrecision(MixedPrecision.Config(max_accuracy_drop=0.5, allow=["float", "int16x8"])).plan(
        model, fast, QuantizeConfig(mode="int8"))
    variants["mixed_float_first"] = quantize_model(model, QuantizeConfig(mode="int8"), cal, plan=fast_plan)
    return {"model": "LeNet-300-100 on MNIST-5k with one fc1 neuron scaled x3000 (wide-range activation; "
                     "same float function)", "search_seconds": round(search_s, 1),
            "variants": {k: {"bytes": len(v), "accuracy_pct": accuracy(v, ev), "latency_us": latency_us(v)}
                         for k, v in variants.items()},
            "all_int8_same_quantizer": rec["search"][0],
            "plan": [{k: u[k] for k in ("layer", "op", "drop_pt", "rel_error", "choice")} for u in rec["ops"]],
            "search": rec["search"], "budget_pt": rec["budget_pt"]}


def qat_vs_ptq(tmp: Path) -> dict:
    """PTQ int8 vs QAT int8, with a control: the float model fine-tuned as long as QAT, then PTQ."""
    from edgepack.keras_compat import keras
    from edgepack.load import load_model
    from edgepack.passes.qat import QAT

    out = {}
    train, ev, cal = mnist((28, 28, 1))
    ft = {"epochs": 3, "learning_rate": 1e-4}
    models = {"LeNet-300-100": lenet(train, seed=2),
              "LeNet-300-100 with a wide-range fc1 neuron (x3000)": outlier(lenet(train, seed=1), "fc1", "fc2", cal),
              "examples/mnist CNN (Conv-BN-ReLU x2, Dense)": load_model(ROOT / "examples" / "mnist" / "model.h5")}
    int8 = QuantizeConfig(mode="int8", io="int8")

    def copy(m):
        c = keras().models.clone_model(m)
        c.set_weights(m.get_weights())
        return c

    for name, m in models.items():
        ctx = Context(seed=0, calibration=cal, train=train, eval=ev)
        qat = QAT(QAT.Config(fine_tune=ft)).apply(copy(m), ctx)
        control = copy(m)
        fit(control, train, Context(seed=0), FitConfig(**ft))
        out[name] = {"float_accuracy_pct": accuracy(convert(m, FLOAT), ev),
                     "ptq_int8_accuracy_pct": accuracy(convert(m, int8, cal), ev),
                     "qat_int8_accuracy_pct": accuracy(convert(qat, int8, cal), ev),
                     "control_float_finetuned_then_ptq_pct": accuracy(convert(control, int8, cal), ev),
                     "qat_float_layers": ctx.records[-1]["float_layers"]}
    return out


SECTIONS = {"deep_compression": deep_compression, "mixed_precision": mixed_precision, "qat_vs_ptq": qat_vs_ptq}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = ap.parse_args()
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            t0 = time.time()
            results[name] = SECTIONS[name](Path(tmp))
            results[name]["seconds"] = round(time.time() - t0, 1)
            print(json.dumps({name: results[name]}, indent=1, default=str))
            OUT.parent.mkdir(parents=True, exist_ok=True)
            OUT.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
