"""Search bench (issue 15), measured in one run; JSON in bench/results/search_bench.json.

1. mnist: the bundled MNIST CNN. The same trials run twice, with 1 and with 2 Ray workers
   (the 2-worker run is told the 1-worker run's proposals through Optuna's enqueue), giving
   the scaling ratio of the trial phase; the best trial within 1 pt vs plain int8 (trial 0):
   .tflite bytes, download bytes, MACs, host latency (LiteRT, 1 thread, both packages
   measured here back to back) and accuracy.
2. resnet8: MLPerf Tiny ResNet-8. There is no CIFAR-10 offline: MNIST digits padded to
   32x32 and repeated over 3 channels are the proxy data, and the reference weights are
   first fine-tuned on them for a few epochs (BatchNorm momentum 0.9) so that accuracy means
   something. Then a small search, as for mnist.
3. bn_cnn: the integration matrix's Conv+BatchNorm+depthwise+residual CNN searched with the default space
   (no --space), 8 trials: the share of failed trials (goal 0) and best vs plain int8.
4. done_when: an unseen small CNN (built and trained here, not the bundled one), `edgepack
   search` run as a command with an 8-trial budget and --max-accuracy-drop 1.0 against a Ray
   head started on loopback (`ray start --head --node-ip-address 127.0.0.1`); is the best at
   most half the size of plain int8?

Sized for a shared 2-core machine (~15 min): few trials, one-epoch fine-tunes.

    python bench/search_bench.py [--trials 5] [--only mnist,resnet8,bn_cnn,done_when]

Every search prints ``failed_share`` (trials that ended in an error, not the gate's refusals).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "calibration_data" / "mnist"
RESNET = ROOT.parent / "shared" / "models" / "mlperf_tiny" / "pretrainedResnet.h5"
OUT = ROOT / "bench" / "results" / "search_bench.json"
RAY = Path(sys.executable).with_name("ray")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def latency_us(folder: Path, runs: int = 200) -> float:
    from edgepack.devices.registry import profile
    from edgepack.devices.result import Settings

    return round(profile(folder, device="host", settings=Settings(runs=runs, warmup=10, threads=1)).latency.median_us, 1)


def plain_int8(model: Path, recipe: Path | None, calib: Path, ev: Path, out: Path) -> dict:
    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe

    base = Recipe.from_yaml(recipe).model_dump(mode="json") if recipe else {}
    base.update(steps=[], verify={"step_metrics": False})
    base.setdefault("quantize", {})["mode"] = "int8"
    return package(PackageRequest(model=model, out=out, recipe=Recipe.from_dict(base), calibration=calib, eval=ev,
                                  force=True))


def compare(data: dict, search_dir: Path, model: Path, recipe: Path | None, calib: Path, ev: Path) -> dict:
    """Best trial vs plain int8: sizes, MACs, accuracy from the reports; host latency measured here."""
    tmp = Path(tempfile.mkdtemp())
    base = plain_int8(model, recipe, calib, ev, tmp / "int8")
    best = json.loads((search_dir / "best" / "report.json").read_text())
    rows = {}
    for name, rep, folder in (("plain_int8", base, tmp / "int8"), ("best", best, search_dir / "best")):
        v = rep.get("verification") or {}
        rows[name] = {"tflite_bytes": rep["tflite"]["size_bytes"], "download_bytes": rep["entropy"]["package_bytes"],
                      "macs": rep["tflite"]["macs"], "accuracy_pct": v.get("tflite_accuracy_pct"),
                      "drop_pt": v.get("drop_pt"), "host_latency_us": latency_us(folder)}
    b, p = rows["best"], rows["plain_int8"]
    rows["ratios_plain_over_best"] = {k: round(p[k] / b[k], 2) for k in ("tflite_bytes", "download_bytes", "macs",
                                                                           "host_latency_us")}
    rows["best_trial"] = data["best"]["trial"]
    rows["best_recipe_steps"] = next(t for t in data["trials"] if t["number"] == data["best"]["trial"])["recipe"]["steps"]
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def summary(data: dict) -> dict:
    failed = [t for t in data["trials"] if t["status"] == "failed"]
    return {"failed_share": round(len(failed) / max(1, len(data["trials"])), 3),
            "failed": [{"n": t["number"], "error": t.get("error", "")[:200]} for t in failed],
            "trials": [{"n": t["number"], "status": t["status"], "wall_s": t["wall_s"], "node": t["node_id"][:8],
                        "size": (t.get("metrics") or {}).get("size_bytes"),
                        "drop": (t.get("metrics") or {}).get("drop_pt"),
                        "steps": [s["type"] for s in t["recipe"]["steps"]] + [t["recipe"]["quantize"]["mode"]]}
                       for t in data["trials"]],
            "pareto_front": data["pareto_front"], "search_wall_s": data["search_wall_s"], "ray": data["ray"]}


def mnist(trials: int, work: Path) -> dict:
    from edgepack.search.engine import SearchConfig, run_search

    kw = dict(model=ROOT / "examples/mnist/model.h5", recipe=ROOT / "examples/mnist/recipe.yaml",
              calibration=DATA / "calib.npz", train=DATA / "train.npz", eval=DATA / "eval.npz",
              objective="size", trials=trials, seed=0, epochs=1)
    log(f"mnist: {trials} trials, 1 worker")
    one = run_search(SearchConfig(out=work / "mnist_1w", workers=1, package_best=False, **kw))
    enqueue = [t["params"] for t in one["trials"] if t["number"] > 0]
    log(f"mnist: the same {trials} trials, 2 workers")
    two = run_search(SearchConfig(out=work / "mnist_2w", workers=2, enqueue=enqueue, **kw))
    same = [t["recipe"] for t in one["trials"]] == [t["recipe"] for t in two["trials"]]
    out = {"one_worker": summary(one), "two_workers": summary(two), "same_trials": same,
           "scaling_1w_over_2w": round(one["search_wall_s"] / two["search_wall_s"], 2)}
    out["best_vs_int8"] = compare(two, work / "mnist_2w", kw["model"], kw["recipe"], kw["calibration"], kw["eval"])
    return out


def resnet_data(work: Path) -> tuple[Path, Path, Path]:
    from edgepack.data import Preprocess, load_dataset

    paths = []
    for n in ("train", "eval", "calib"):
        ds = load_dataset(DATA / f"{n}.npz")
        x = ds.model_input(Preprocess(scale=1.0), (28, 28, 1)).astype(np.uint8)
        x = np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
        p = work / f"resnet_{n}.npz"
        keep = 2000 if n == "train" else len(x)  # a shorter fine-tune per trial
        np.savez(p, x=x[:keep], y=ds.y[:keep]) if ds.y is not None else np.savez(p, x=x)
        paths.append(p)
    return tuple(paths)


def resnet_base(train: Path, work: Path, epochs: int) -> Path:
    """The MLPerf reference ResNet-8, its weights fine-tuned on the proxy digits."""
    from edgepack.keras_compat import keras, set_seed
    from edgepack.load import load_model
    from edgepack.passes.base import Context, Labeled
    from edgepack.passes.training import FitConfig, fit

    set_seed(0)
    ref = load_model(RESNET, unsafe=False)
    cfg = ref.get_config()
    for layer in cfg["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = 0.9
    m = keras().Model.from_config(cfg)
    m.set_weights(ref.get_weights())
    z = np.load(train)
    tr = Labeled(z["x"].astype(np.float32) / 255.0, z["y"])
    fit(m, tr, Context(seed=0, train=tr), FitConfig(epochs=epochs, batch_size=64, learning_rate=1e-3, patience=3))
    out = work / "resnet8_digits.h5"
    m.save(out)
    return out


def resnet8(trials: int, work: Path) -> dict:
    from edgepack.search.engine import SearchConfig, run_search

    train, ev, calib = resnet_data(work)
    recipe = work / "resnet_recipe.yaml"
    recipe.write_text("version: 1\ndata: {preprocess: {scale: 0.00392156862745098, mean: 0.0}}\n")
    t0 = time.time()
    log("resnet8: fine-tune the reference weights on proxy digits (3 epochs)")
    model = resnet_base(train, work, 3)
    base_s = round(time.time() - t0, 1)
    log(f"resnet8: {trials} trials, 2 workers")
    data = run_search(SearchConfig(model=model, out=work / "resnet8", recipe=recipe, calibration=calib, train=train,
                                   eval=ev, objective="size", trials=trials, seed=0, epochs=1, workers=2))
    return {"data": "MNIST digits padded to 32x32x3 (no CIFAR-10 offline); reference weights fine-tuned 3 epochs "
                    f"on them first ({base_s} s)", "search": summary(data),
            "best_vs_int8": compare(data, work / "resnet8", model, recipe, calib, ev)}


def unseen_cnn(work: Path) -> Path:
    """A small CNN no edgepack test or example uses, trained here on MNIST-5k for 3 epochs."""
    from edgepack.keras_compat import keras, set_seed
    from edgepack.passes.base import Context, Labeled
    from edgepack.passes.training import FitConfig, fit

    k = keras()
    set_seed(1)
    m = k.Sequential([k.layers.InputLayer((28, 28, 1)),
                      k.layers.Conv2D(24, 3, activation="relu", name="c1"), k.layers.MaxPooling2D(name="p1"),
                      k.layers.Conv2D(48, 3, activation="relu", name="c2"), k.layers.MaxPooling2D(name="p2"),
                      k.layers.Flatten(name="flat"), k.layers.Dense(96, activation="relu", name="fc"),
                      k.layers.Dense(10, name="logits")])
    z = np.load(DATA / "train.npz")
    tr = Labeled(z["x"].astype(np.float32)[..., :1] / 255.0, z["y"])
    fit(m, tr, Context(seed=1, train=tr), FitConfig(epochs=3, batch_size=64, learning_rate=2e-3, patience=2))
    out = work / "unseen_cnn.h5"
    m.save(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_head(work: Path, port: int) -> tuple[subprocess.Popen, dict]:
    """`ray start --head --block` on loopback with a token of its own (other Ray users on this machine
    keep theirs); stopped by signalling its own process group, never with `ray stop`."""
    import secrets

    token = work / "ray_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port",
                             str(port), "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
                            start_new_session=True)
    return head, env


def stop_head(head: subprocess.Popen) -> None:
    import signal

    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()


def bn_cnn(work: Path) -> dict:
    """The integration matrix's Conv+BatchNorm+depthwise+residual CNN, searched with the default space
    as a new user would (no --space), 8 trials: the share of failed trials and best vs plain int8."""
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    import user_models

    log("bn_cnn: train the BatchNorm residual CNN")
    model = user_models.build_tf_keras(work, "bn_cnn")
    return cli_search(model, work / "bn_cnn", [])


def cli_search(model: Path, out: Path, extra: list[str], env: dict | None = None) -> dict:
    """`edgepack search` as a command with 8 trials, --max-accuracy-drop 1.0, --objective size."""
    cmd = [sys.executable, "-m", "edgepack", "search", str(model), "--target", "android",
           "--recipe", str(ROOT / "examples/mnist/recipe.yaml"), "--calibration", str(DATA / "calib.npz"),
           "--train", str(DATA / "train.npz"), "--eval", str(DATA / "eval.npz"), "--max-accuracy-drop", "1.0",
           "--objective", "size", "--trials", "8", "--epochs", "1", "--seed", "0", *extra, "--out", str(out), "-q"]
    log(" ".join(cmd[1:]))
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = round(time.time() - t0, 1)
    if res.returncode != 0:
        raise RuntimeError(f"edgepack search failed: {res.stderr[-3000:]}")
    data = json.loads((out / "search.json").read_text())
    base = next(t for t in data["trials"] if t["number"] == 0)["metrics"]["size_bytes"]
    best = data["best"]["metrics"]
    return {"command": "edgepack " + " ".join(cmd[3:]), "stdout": res.stdout.strip().splitlines(), "wall_s": wall,
            "search": summary(data), "plain_int8_bytes": base, "best_bytes": best["size_bytes"],
            "best_drop_pt": best["drop_pt"], "best_over_int8": round(best["size_bytes"] / base, 3),
            "at_most_half": best["size_bytes"] * 2 <= base}


def done_when(work: Path) -> dict:
    log("done_when: train an unseen small CNN")
    model = unseen_cnn(work)
    port = free_port()
    log(f"done_when: ray start --head --node-ip-address 127.0.0.1 --port {port}")
    head, env = ray_head(work, port)
    try:
        time.sleep(10)
        return cli_search(model, work / "done_when", ["--ray-address", f"127.0.0.1:{port}"], env=env)
    finally:
        stop_head(head)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5, help="trials per mnist/resnet8 search (trial 0 = plain int8)")
    ap.add_argument("--only", default="mnist,resnet8,bn_cnn,done_when")
    ap.add_argument("--keep", type=Path, help="keep the search folders here")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="search-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"cpus": os.cpu_count()}
    t0 = time.time()
    for name in args.only.split(","):
        fn = {"mnist": lambda: mnist(args.trials, work), "resnet8": lambda: resnet8(max(3, args.trials - 1), work),
              "bn_cnn": lambda: bn_cnn(work), "done_when": lambda: done_when(work)}[name]
        results[name] = fn()
        print(json.dumps({name: results[name]}, indent=1, default=str), flush=True)
    results["bench_wall_s"] = round(time.time() - t0, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {OUT} ({results['bench_wall_s']} s)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
