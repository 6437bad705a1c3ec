"""Issue 24's corpus, trained: Keras' own float accuracy vs the packaged Android int8 accuracy, from the real CLI.

Each model of tests/trained_corpus.py (MobileNetV3Small, EfficientNetB0, MobileNetV2 at 32x32; LSTM, GRU,
Bidirectional LSTM; a tf_keras LSTM ``.h5``; an Embedding + MultiHeadAttention token model; a two-input image +
metadata model) is trained a few epochs on its seeded synthetic task in a child process (Keras 3 without
``TF_USE_LEGACY_KERAS``, tf_keras with it), saved, and its calibration/eval ``.npz`` files written. Then
``python -m edgepack package MODEL --target android --quantize int8 --calibration C --eval E --out O`` runs as
a user would (the accuracy gate on, 1 pt); report.json (``edgepack.report.schema.load_report``) gives the float
accuracy the gate used (the model as edgepack loaded it, Keras 3 files translated), the packaged accuracy
(LiteRT, each sample from a reset state) and the drop. When int8 is refused, ``--quantize auto`` runs and its
plan is shown. "Keras acc" is Keras' own (the framework that trained it) on the same eval samples.

Prints one table; writes bench/results/trained_corpus_bench.json. Times are wall clock; "cpu" sums the
children's user+system seconds (the machine may be shared).

Example::

    python bench/trained_corpus_bench.py                 # all 9 models
    python bench/trained_corpus_bench.py lstm two_input  # only these
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results"

import trained_corpus as tc  # noqa: E402  (tests/: the models, their tasks and data files)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``cmd``; (result, wall seconds, child cpu seconds)."""
    t, c = time.perf_counter(), _cpu()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return r, time.perf_counter() - t, _cpu() - c


def train(work: Path, names: list[str]) -> dict[str, dict]:
    """Train ``names`` in one Keras 3 child and one tf_keras child; their NAME.json entries. A model already
    in ``work`` (its NAME.json written, a previous ``--work`` run) is reused."""
    for legacy in (False, True):
        group = [n for n in names if (n in tc.TF_KERAS) == legacy and not (work / f"{n}.json").is_file()]
        if not group:
            continue
        r, wall, cpu = _run([sys.executable, str(ROOT / "tests" / "trained_corpus.py"), str(work), *group],
                            tc.child_env(legacy))
        if r.returncode != 0:
            sys.exit(f"training {', '.join(group)} failed:\n{r.stderr[-3000:]}")
        print(f"trained {', '.join(group)} ({'tf_keras' if legacy else 'Keras 3'}) in {wall:.0f} s "
              f"(cpu {cpu:.0f} s)", file=sys.stderr, flush=True)
    return {n: json.loads((work / f"{n}.json").read_text()) for n in names}


def package(work: Path, name: str, entry: dict, mode: str) -> dict:
    """``edgepack package`` for Android with ``--quantize mode``: the figures of its report.json, or the
    refusal line (exit 1, nothing written)."""
    from edgepack.report.schema import load_report

    out = work / f"{name}_{mode}"
    cmd = [sys.executable, "-m", "edgepack", "package", str(work / entry["model"]), "--target", "android",
           "--quantize", mode, "--calibration", str(work / entry["calibration"]), "--eval", str(work / entry["eval"]),
           "--out", str(out), "--force", "-q"]
    if "recipe" in entry:
        cmd += ["--recipe", str(work / entry["recipe"])]
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    r, wall, cpu = _run(cmd, env)
    row = {"mode": mode, "exit": r.returncode, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
    print(f"{name} {mode}: exit {r.returncode} in {wall:.0f} s (cpu {cpu:.0f} s)", file=sys.stderr, flush=True)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        row["refused"] = lines[-1][:300] if lines else f"exit {r.returncode}"
        print(f"  {row['refused']}", file=sys.stderr, flush=True)
        return row
    rep = load_report(out)
    v = rep.verification
    auto = rep.quantize.get("auto") or {}
    wide = ", ".join(f"{w['op']} {w['precision']}" for w in auto.get("kept_wide", []))
    plan = auto.get("chosen", mode) + (f" ({wide})" if wide else "")
    return {**row, "float_acc": v.float_accuracy_pct, "packaged_acc": v.tflite_accuracy_pct, "drop_pt": v.drop_pt,
            "samples": v.samples, "plan": plan, "bytes": rep.tflite.size_bytes,
            "ops": rep.tflite.ops, "translated": bool(rep.source.get("translation"))}


def measure(work: Path, name: str, entry: dict) -> dict:
    """int8 first; ``--quantize auto`` when the gate refuses int8."""
    row = {"keras_acc": entry["keras_accuracy_pct"], "train_s": entry["train_s"], "runs": [package(work, name, entry,
                                                                                                   "int8")]}
    if row["runs"][0]["exit"] != 0:
        row["runs"].append(package(work, name, entry, "auto"))
    return row


def _f(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_row(name: str, row: dict) -> None:
    last = row["runs"][-1]
    wall = sum(r["wall_s"] for r in row["runs"])
    plan = last.get("plan") or "refused"
    if len(row["runs"]) > 1:
        plan = f"int8 refused -> auto: {plan}"
    print(f"{name:20} {row['keras_acc']:>9.2f} {_f(last.get('float_acc'), '.2f'):>9} "
          f"{_f(last.get('packaged_acc'), '.2f'):>9} {_f(last.get('drop_pt'), '+.2f'):>7} "
          f"{_f(last.get('bytes'), ','):>10} {row['train_s']:>7.0f} {wall:>7.0f}  {plan}", flush=True)
    for r in row["runs"]:
        if "refused" in r:
            print(f"{'':20}   {r['mode']}: {r['refused']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help=f"only these (default all: {', '.join(tc.MODELS)})")
    ap.add_argument("--work", type=Path, help="keep the models, data and bundles here; models trained there "
                    "before are reused (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=RESULTS / "trained_corpus_bench.json")
    args = ap.parse_args()
    names = args.models or list(tc.MODELS)
    unknown = [n for n in names if n not in tc.MODELS]
    if unknown:
        sys.exit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(tc.MODELS)}")
    t0, c0 = time.perf_counter(), _cpu()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        entries = train(work, names)
        head = (f"{'model':20} {'Keras acc':>9} {'float acc':>9} {'packaged':>9} {'drop pt':>7} {'bytes':>10} "
                f"{'train s':>7} {'pack s':>7}  quantize plan")
        print(head)
        print("-" * len(head))
        rows = {}
        for name in names:
            rows[name] = measure(work, name, entries[name])
            print_row(name, rows[name])
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    print(f"total {wall / 60:.1f} min wall, {cpu / 60:.1f} min cpu (children)", file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"target": "android", "limit_pt": 1.0, "wall_s": round(wall), "cpu_s": round(cpu),
                                     "models": rows}, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
