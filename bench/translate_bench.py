"""Keras 3 -> tf_keras translation: max abs output difference vs Keras 3, per corpus model and format.

Builds the Keras 3 corpus (tests/model_corpus.py, in a Keras 3 child process), loads every file with
edgepack.load.load_source (which itself checks against Keras 3 in its worker), and also compares the
translation with the builder's own outputs (an independent reference). Prints one line per file and
writes JSON.

Example::

    python bench/translate_bench.py --all --json build/translate_bench.json
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


def build_corpus(out: Path, everything: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    cmd = [sys.executable, str(ROOT / "tests" / "model_corpus.py"), str(out)] + (["--all"] if everything else [])
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "manifest.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="include the slow corpus models")
    ap.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()
    from edgepack.load import load_source

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        manifest = build_corpus(out, args.all)
        print(f"built {len(manifest)} Keras 3 models in {time.perf_counter() - t0:.1f} s")
        print(f"{'model':14} {'format':8} {'kind':12} {'layers':>6} {'max|diff| vs worker':>20} "
              f"{'max|diff| vs builder':>21} {'load s':>7}")
        for name, entry in manifest.items():
            with np.load(out / f"{name}.npz") as z:
                xs = [z[f"x{i}"] for i in range(entry["inputs"])]
                ys = [z[f] for f in sorted(z.files) if f.startswith("y")]
            for fmt, rel in entry["files"].items():
                t = time.perf_counter()
                src = load_source(out / rel)
                secs = time.perf_counter() - t
                tr = src.translation or {}
                own = None
                if src.kind == "keras":
                    pred = src.model(xs[0] if len(xs) == 1 else xs, training=False)
                    pred = pred if isinstance(pred, (list, tuple)) else [pred]
                    own = max(float(np.max(np.abs(np.asarray(p) - y))) for p, y in zip(pred, ys))
                row = {"model": name, "format": fmt, "kind": src.kind, "layers": tr.get("layers"),
                       "max_abs_diff_worker": tr.get("max_abs_diff"), "max_abs_diff_builder": own,
                       "load_s": round(secs, 2)}
                rows.append(row)
                fmt_d = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
                print(f"{name:14} {fmt:8} {src.kind:12} {str(row['layers'] or '-'):>6} "
                      f"{fmt_d(row['max_abs_diff_worker']):>20} {fmt_d(own):>21} {secs:7.2f}")
    worst = max((r["max_abs_diff_builder"] or 0.0) for r in rows)
    print(f"{len(rows)} files; worst max abs diff vs Keras 3: {worst:.3g}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
