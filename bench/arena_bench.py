"""Arena bench: TFLM's own memory plan vs edgepack's offline plan vs patch-based inference, side by side.

For each MLPerf Tiny model in ../shared/models/mlperf_tiny (VWW, KWS, ResNet-8, AD; the VWW .tflite
is not in ../shared, so MLPerf's architecture, MobileNetV1-0.25 at 96x96x3, is rebuilt here with
random weights), a mini MobileNetV1 ending in MEAN (a scratch-buffer kernel) and the bundled MNIST
model, the whole ``package --target tflm`` pipeline runs (nucleo-l4r5zi) and its ``memory_plan``
section is read: TFLM's own arena (smallest working on the host TFLM, bisection; head =
activations and scratch, tail = persistent), the arena with the offline plan, the live-set lower
bound of the head, the ratio, whether the plan was kept and why, planning time beside the package
time. A kept plan was checked bit-identical on the calibration samples (synthetic, uniform over
the input range: the data sets are not available offline). With ``--qemu`` (and
EDGEPACK_TFLM_ROOT) the .tflite sources also run on the emulated Cortex-M4 three ways (TFLM's own plan, the
offline plan, the best tiling measured): output CRCs, 32-bit arenas and instruction counts.

Every model is packaged with ``--patches auto`` (edgepack.tflm.patches): the patches columns give the
best tiling measured (arena, activations + persistent, extra MACs) whether or not it was kept (it is
kept only when below the offline plan's arena and bit-exact). A MobileNetV2 (keras.applications,
alpha 0.35, 96x96x3, random weights, int8) is added beside the MLPerf models.

Run:  PYTHONPATH=. python bench/arena_bench.py [--qemu] [--only vww,kws]
Writes bench/results/arena_bench.json (arena_bench_qemu.json with --qemu).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
sys.path.insert(0, str(ROOT / "tests"))  # the rebuilt VWW and the MEAN net live beside the tests that use them
MLPERF_FILES = {"kws": "kws_ref_model.tflite", "resnet8": "pretrainedResnet_quant.tflite", "ad": "ad01_int8.tflite"}
VWW_FILES = ("vww_96_int8.tflite", "vww_int8.tflite")  # MLPerf's own name, if a copy is ever added
DEVICE = "nucleo-l4r5zi"


def synthetic_calibration(model: bytes, n: int = 16, seed: int = 0) -> np.ndarray:
    """Uniform float samples over the range the model's int8 input quantization covers."""
    from edgepack.convert.flatbuffer import read_tflite

    info = read_tflite(model)
    t = info.tensors[info.inputs[0]]
    scale, zp = (t.scale[0], t.zero_point[0]) if t.scale else (1.0 / 128, 0)
    return np.random.default_rng(seed).uniform((-128 - zp) * scale, (127 - zp) * scale,
                                               size=[n] + t.shape[1:]).astype(np.float32)


def sources(only: set[str]) -> dict[str, tuple[object, object, str]]:
    """name -> (model path or live model, calibration, note)."""
    from arena_models import int8_tflite, mean_net, mobilenet_v2, vww_mobilenet

    out: dict[str, tuple[object, object, str]] = {}
    want = lambda name: not only or name in only  # noqa: E731
    vww = next((MLPERF / f for f in VWW_FILES if (MLPERF / f).is_file()), None)
    if want("vww"):
        if vww is not None:
            out["vww"] = (vww, None, "MLPerf's own VWW .tflite")
        else:
            data, _ = int8_tflite(vww_mobilenet(), n=32)
            path = Path(tempfile.mkdtemp(prefix="arena-bench-")) / "vww_mobilenet_v1_025_96.tflite"
            path.write_bytes(data)
            out["vww"] = (path, None, "MobileNetV1-0.25 96x96x3 rebuilt (MLPerf VWW architecture, random weights)")
    if want("mnv2"):
        data, _ = int8_tflite(mobilenet_v2(), n=32)
        path = Path(tempfile.mkdtemp(prefix="arena-bench-")) / "mobilenet_v2_035_96.tflite"
        path.write_bytes(data)
        out["mnv2"] = (path, None, "MobileNetV2-0.35 96x96x3 (keras.applications, random weights)")
    for name, f in MLPERF_FILES.items():
        if want(name) and (MLPERF / f).is_file():
            out[name] = (MLPERF / f, None, f"MLPerf's own {f}")
    if want("mean"):
        data, _ = int8_tflite(mean_net(), n=32)
        path = Path(tempfile.mkdtemp(prefix="arena-bench-")) / "mini_mobilenet_mean.tflite"
        path.write_bytes(data)
        out["mean"] = (path, None, "mini MobileNetV1 32x32 ending in MEAN (scratch buffer)")
    if want("mnist"):
        out["mnist"] = (ROOT / "examples/mnist/model.h5", ROOT / "calibration_data/mnist/calib.npz",
                        "bundled MNIST example, int8 via its recipe")
    return out


def package_one(name: str, model, calib, out: Path) -> tuple[dict, float, bytes]:
    from edgepack.pipeline import PackageRequest, package

    recipe = ROOT / "examples/mnist/recipe.yaml" if name == "mnist" else None
    if calib is None:
        calib = synthetic_calibration(Path(model).read_bytes())
    t0 = time.perf_counter()
    report = package(PackageRequest(model=model, out=out, target="tflm", recipe_path=recipe, calibration=calib,
                                    target_options={"device": DEVICE, "patches": "auto"}, force=True))
    return report, time.perf_counter() - t0, (out / "model.tflite").read_bytes()


def qemu_variants(src: bytes, calib: np.ndarray) -> dict[str, bytes]:
    """TFLM's own, the offline plan, and the best tiling measured (kept or not) of a .tflite source."""
    from edgepack.tflm.arena import find_arena
    from edgepack.tflm.memplan import apply_plan
    from edgepack.tflm.patches import apply_patches, plan_patched
    from edgepack.tflm.patches_rewrite import find_chain, rewrite

    plan = apply_plan(src, find_arena(src), calib)
    r = apply_patches(src, plan.arena, calib)
    out = {"own": src, "planned": plan.model}
    if r.figures.get("stage_ops"):
        chain = find_chain(src)[: r.figures["stage_ops"]]
        out["patched"] = r.model if r.kept else plan_patched(*rewrite(src, chain, tuple(r.figures["grid"])))[0]
    return out


def qemu_run(models: dict[str, bytes], work: Path) -> dict:
    """Each model on the emulated Cortex-M4: output CRC, the 32-bit arena the harness measured (TFLM's
    arena_used_bytes: activations + persistent), instructions; beside it the host TFLM's smallest arena and its
    head (activations) and tail (persistent). The harness reports only the total: the Cortex-M4 persistent part
    is that total minus the host head (the head holds the same int8 tensor bytes at the same 16-byte alignment on
    both builds, placed by the same plan; the tail's structs are what the 64-bit build makes larger)."""
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings
    from edgepack.tflm.arena import arena_parts, find_arena

    res = {}
    for tag, data in models.items():
        path = work / f"{tag}.tflite"
        path.write_bytes(data)
        with open_device("qemu:mps2-an386", tflm_root=os.environ["EDGEPACK_TFLM_ROOT"], profile=DEVICE) as dev:
            r = dev.profile(path, Settings(runs=1, warmup=0))
        host = find_arena(data)
        parts = arena_parts(data, host.recommended_bytes)
        res[tag] = {"arena_bytes": r.memory.arena_bytes, "crc": r.output_checksum,
                    "instructions": r.latency.instructions, "host_arena": host.min_bytes,
                    "host_head": parts["head"], "host_tail": parts["tail"],
                    "m4_persistent_derived": r.memory.arena_bytes - parts["head"]}
    res["same_output"] = len({v["crc"] for v in res.values()}) == 1
    return res


def row(name: str, note: str, report: dict, seconds: float) -> dict:
    mp = report["firmware"]["memory_plan"]
    own, planned, bound = mp.get("own_arena", {}), mp.get("planned_arena") or {}, mp.get("live_set_bound", {})
    final = report["firmware"]["arena"]["min_bytes"]
    return {"model": name, "source": note, "own_arena": own.get("bytes"), "own_head": own.get("head"),
            "own_tail": own.get("tail"), "planned_arena": planned.get("bytes"), "planned_head": planned.get("head"),
            "bound_head": bound.get("bytes"), "bound_op": bound.get("op"), "shipped_arena": final,
            "ratio": round(final / own["bytes"], 4) if own.get("bytes") else None, "kept": mp["kept"],
            "reason": mp["reason"], "plan_method": (mp.get("plan") or {}).get("method"),
            "plan_seconds": mp.get("seconds"), "package_seconds": round(seconds, 1),
            "outputs_checked_samples": mp.get("outputs_checked_samples", 0), **patch_columns(report)}


def patch_columns(report: dict) -> dict:
    """The patches figures: the best tiling measured, kept or not."""
    p = report["firmware"].get("patches") or {}
    return {"patches_kept": p.get("kept"), "patches_reason": p.get("reason"), "patches_tiling": p.get("tiling"),
            "patches_arena": p.get("patched_arena"), "patches_head": p.get("patched_head"),
            "patches_tail": p.get("patched_tail"), "extra_macs_pct": p.get("extra_macs_pct"),
            "macs": p.get("macs"), "patches_bit_exact": p.get("bit_exact"), "patches_seconds": p.get("seconds"),
            "peak_op_before": p.get("peak_op_before"), "peak_op_after": p.get("peak_op_after")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", action="store_true", help="also run own/planned/patched on QEMU (needs EDGEPACK_TFLM_ROOT)")
    ap.add_argument("--only", default="", help="comma-separated subset of vww,mnv2,kws,resnet8,ad,mean,mnist")
    args = ap.parse_args()
    if args.qemu and not os.environ.get("EDGEPACK_TFLM_ROOT"):
        raise SystemExit("--qemu needs EDGEPACK_TFLM_ROOT (a TFLM tree)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, calib, note) in sources({s for s in args.only.split(",") if s}).items():
            report, seconds, shipped = package_one(name, model, calib, Path(tmp) / name)
            r = row(name, note, report, seconds)
            if args.qemu:
                if str(model).endswith(".tflite"):
                    src = Path(model).read_bytes()
                    r["qemu"] = qemu_run(qemu_variants(src, synthetic_calibration(src)), Path(tmp))
                else:
                    r["qemu"] = "skipped (Keras source: no unplanned int8 file to compare with)"
            rows.append(r)
            print(f"{name}: done in {seconds:.1f} s", file=sys.stderr, flush=True)
    hdr = (f"{'model':8s} {'TFLM own':>9s} {'(head+tail)':>15s} {'planned':>9s} {'head':>7s} {'bound':>7s} "
           f"{'ratio':>6s} {'plan?':>5s} {'plan s':>7s} {'pkg s':>6s}  reason")
    print(hdr)
    for r in rows:
        ht = f"{r['own_head']}+{r['own_tail']}" if r["own_head"] is not None else "-"
        print(f"{r['model']:8s} {r['own_arena'] or '-':>9} {ht:>15s} {r['planned_arena'] or '-':>9} "
              f"{r['planned_head'] or '-':>7} {r['bound_head'] or '-':>7} {r['ratio'] or '-':>6} "
              f"{'yes' if r['kept'] else 'no':>5s} {r['plan_seconds'] or 0:>7.2f} {r['package_seconds']:>6.1f}  "
              f"{r['reason']}")
        if r["patches_arena"]:
            own = r["own_arena"] or 1
            print(f"{'':8s} patches: {r['patches_arena']} B ({r['patches_head']}+{r['patches_tail']}, "
                  f"{r['patches_arena'] / own:.4f} of TFLM's own) with {r['patches_tiling']}, +{r['extra_macs_pct']}% "
                  f"MACs, kept: {'yes' if r['patches_kept'] else 'no'}, bit-exact: "
                  f"{ {True: 'yes', False: 'no', None: 'not checked (not kept)'}[r['patches_bit_exact']] }")
        elif r["patches_reason"]:
            print(f"{'':8s} patches: {r['patches_reason']}")
        if isinstance(r.get("qemu"), dict):
            q = r["qemu"]
            print(f"{'':8s} QEMU Cortex-M4 (same output CRC: {q['same_output']}):")
            for k, v in q.items():
                if k != "same_output":
                    print(f"{'':10s}{k:8s} M4 arena {v['arena_bytes']} B = activations {v['host_head']} + persistent "
                          f"{v['m4_persistent_derived']} (derived); host {v['host_arena']} B = {v['host_head']} + "
                          f"{v['host_tail']}; {v['instructions']} instr.")
    out = ROOT / "bench" / "results" / ("arena_bench_qemu.json" if args.qemu else "arena_bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "arena", "device": DEVICE, "host": "64-bit host TFLM (tflite-micro wheel)",
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
