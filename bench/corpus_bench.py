"""The model corpus, one row per model: loaded / translated max diff / int8 drop / auto plan / TFLM parity.

Builds the Keras 3 corpus (tests/model_corpus.py, in a Keras 3 child process: keras.ops graphs,
MobileNetV3, EfficientNetB0, transformers, ...), loads each ``.keras`` file with
``edgepack.load.load_source`` (translated to tf_keras and proven against Keras 3 itself), converts the
translation to int8 with edgepack's converter (calibrated on the corpus inputs) and runs it in LiteRT on
the same inputs. No labels exist offline, so the int8 figure is top-1 agreement with Keras 3's own float
outputs (the "drop" is 100 - agreement) and the max abs output error. TFLM op support is
``edgepack.verify.ops.check_tflm_ops`` on the int8 flatbuffer converted as ``--target tflm`` does (the op TFLM
lacks is named); TFLM parity is host TFLM vs LiteRT on the same inputs, in output quantization steps. The auto
plan is ``--quantize auto``'s per-op plan (edgepack.quantize.auto) when plain int8 drops more than 1 pt.
Writes bench/results/corpus_bench.json.

Example::

    python bench/corpus_bench.py            # --all adds the slow models (MobileNetV3Large, EfficientNetB0, ...)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def build_corpus(out: Path, everything: bool, only: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    cmd = [sys.executable, str(ROOT / "tests" / "model_corpus.py"), str(out), *only] + (["--all"] if everything else [])
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "manifest.json").read_text())


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:120]


def measure(path: Path, xs: list[np.ndarray], ys: list[np.ndarray]) -> dict:
    """One corpus model: load, int8 convert, LiteRT agreement with Keras 3, TFLM op check."""
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.convert.tflite import convert
    from edgepack.errors import EdgepackError
    from edgepack.load import load_source
    from edgepack.recipe import QuantizeConfig
    from edgepack.runtime import LiteRT
    from edgepack.verify.ops import check_tflm_ops

    row: dict = {}
    t = time.perf_counter()
    try:
        src = load_source(path)
    except EdgepackError as e:
        return {**row, "loaded": "refused", "why": _first_line(e)}
    row.update(loaded=src.kind, load_s=round(time.perf_counter() - t, 1))
    if src.translation:
        row["max_abs_diff"] = src.translation.get("max_abs_diff")
    if src.kind != "keras":
        return {**row, "why": src.reason}
    from edgepack.samples import Inputs

    x = xs[0] if len(xs) == 1 else Inputs(tuple(xs), tuple(src.model.input_names))  # calibrated by input name
    try:
        data = convert(src.model, QuantizeConfig(mode="int8"), calibration=x)
    except EdgepackError as e:
        return {**row, "int8": "failed", "why": _first_line(e)}
    # several outputs: the classification output is the first (Keras order), found among the converted
    # outputs by name (edgepack.outputs), as the accuracy gate does
    from edgepack.outputs import choose, output_names

    pos = choose([str(n) for n in src.model.output_names], None).position(output_names(data))
    pred, ref = LiteRT(data).predict(x, output=pos), ys[0]
    if len(ys) > 1:
        row["why"] = f"{len(ys)} outputs: scored on the first (the classification output by default)"
    row["int8_max_abs_err"] = float(np.abs(pred - ref).max())
    if ref.ndim == 2 and ref.shape[-1] > 1:
        agree = float(np.mean(pred.argmax(-1) == ref.argmax(-1)) * 100)
        row.update(int8_agreement_pct=agree, int8_drop_pt=round(100 - agree, 2))
    if "int8_drop_pt" in row:  # a classifier: agreement means something
        row["auto_plan"] = "int8" if row["int8_drop_pt"] <= 1.0 or len(ys) > 1 else auto_plan(src.model, x)
    row.update(tflm(src.model, x))
    return row


def auto_plan(model, x) -> str:
    """``--quantize auto``'s per-op plan when plain int8 misses 1 pt (agreement with float, no labels):
    how many ops it keeps int16x8 / float, and the drop it reaches."""
    from edgepack.errors import EdgepackError
    from edgepack.passes.base import Context
    from edgepack.quantize.auto import wider_plan
    from edgepack.recipe import QuantizeConfig

    try:
        _, sec = wider_plan(model, Context(calibration=x), QuantizeConfig(mode="int8"), 1.0, "int8 > 1 pt")
    except EdgepackError as e:
        return "failed: " + _first_line(e)
    counts = sec.get("counts") or {}
    wide = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "int8" and v)
    return f"{wide or 'int8'}: drop {sec.get('drop_pt')}" + ("" if sec.get("met") else " (limit missed)")


def tflm(model, x) -> dict:
    """The model as --target tflm converts it (edgepack.tflm.prepare.for_tflm: batch 1, GELU's tanh form; dense
    per tensor; SELECT as SELECT_V2), int8: TFLM op support, then host TFLM vs LiteRT on the corpus inputs (max
    output steps)."""
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.convert.tflite import convert
    from edgepack.errors import EdgepackError
    from edgepack.recipe import QuantizeConfig
    from edgepack.tflm.parity import parity
    from edgepack.tflm.prepare import for_tflm, select_v2
    from edgepack.verify.ops import check_tflm_ops
    from edgepack.verify.parity import output_step

    try:
        data = select_v2(convert(for_tflm(model), QuantizeConfig(mode="int8"), calibration=x, dense_per_channel=False))
        info = read_tflite(data)
        check_tflm_ops(info)
    except EdgepackError as e:
        msg = str(e)
        return {"tflm_ops": "no: " + msg.split("kernel for ", 1)[-1].split(" at ")[0] if "kernel for" in msg
                else "no: " + _first_line(e)}
    try:
        p = parity(data, x)
    except EdgepackError as e:
        return {"tflm_ops": "yes", "tflm_parity": "failed: " + _first_line(e)}
    step = output_step(info) or 1.0
    steps = p.max_abs_diff / step
    return {"tflm_ops": "yes", "tflm_parity_steps": round(steps, 2),
            "tflm_parity": "bit-exact" if p.bit_exact else f"{steps:.0f} steps"}


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="include the slow corpus models")
    ap.add_argument("models", nargs="*", help="only these corpus models")
    ap.add_argument("--json", type=Path, default=RESULTS / "corpus_bench.json")
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        manifest = build_corpus(out, args.all, args.models)
        print(f"built {len(manifest)} Keras 3 models in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        head = (f"{'model':22} {'loaded':12} {'max|diff|':>10} {'int8 agree%':>11} {'drop pt':>8} "
                f"{'int8 max err':>12}  {'auto plan':22} {'TFLM ops':18} {'TFLM parity':12} note")
        print(head)
        print("-" * len(head))
        for name, entry in manifest.items():
            with np.load(out / f"{name}.npz") as z:
                xs = [z[f"x{i}"] for i in range(entry["inputs"])]
                ys = [z[f] for f in sorted(z.files) if f.startswith("y")]
            row = measure(out / entry["files"]["keras"], xs, ys)
            rows[name] = row
            print(f"{name:22} {row['loaded']:12} {_fmt(row.get('max_abs_diff'), '.1e'):>10} "
                  f"{_fmt(row.get('int8_agreement_pct'), '.1f'):>11} {_fmt(row.get('int8_drop_pt'), '.1f'):>8} "
                  f"{_fmt(row.get('int8_max_abs_err'), '.3f'):>12}  {row.get('auto_plan', '-'):22} "
                  f"{row.get('tflm_ops', '-'):18} {row.get('tflm_parity', '-'):12} "
                  f"{row.get('why', '')}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"samples_per_model": 16, "reference": "Keras 3 float outputs (no labels)",
                                     "models": rows}, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
