"""Flash bench: plain int8 vs weights kept compressed for TFLM's DECODE op, side by side.

For each model, clustered to 16 shared values (the recipe's ``cluster`` step, no fine-tune:
accuracy is not the point here, only what the encodings give) and packaged for tflm twice,
with ``tflm: {compress: {encoding: off}}`` and ``tflm: {compress: {encoding: auto, decode_code_bytes: 0}}``:

- model bytes (the C array), and per encoding how many tensors took it; model + the DECODE
  kernel's code (edgepack.tflm.compress.DECODE_CODE_BYTES) and what ``auto`` ships given it;
- the arena (host TFLM bisection: decoded weights live in it);
- with a TFLM tree (EDGEPACK_TFLM_ROOT) and arm-none-eabi-gcc + qemu: the linked Cortex-M4
  ELF's flash (text + data: model + TFLM runtime, with the DECODE kernel only when used),
  the QEMU instruction count per inference (the decode cost) and that the output CRCs agree.

Models: a digits CNN (sklearn digits, trained 2 epochs), and the MLPerf Tiny KWS (DS-CNN) and
ResNet-8 Keras models from ../shared/models/mlperf_tiny when present. Calibration inputs
are synthetic (uniform over MLPerf's int8 input range; the data sets are not available offline).

Run:  PYTHONPATH=. python bench/flash_bench.py [--no-qemu] [--models cnn,kws,resnet8]
Writes bench/results/flash_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
MLPERF_MODELS = {"kws": ("kws_ref_model", "kws_ref_model.tflite"),
                 "resnet8": ("pretrainedResnet.h5", "pretrainedResnet_quant.tflite")}


def _recipe(encoding: str, cluster: bool = True):
    from edgepack.recipe import Recipe

    return Recipe.from_dict({"steps": [{"type": "cluster", "clusters": 16}] if cluster else [],
                             "quantize": {"mode": "int8", "io": "int8"},
                             "verify": {"max_accuracy_drop": "none", "step_metrics": False, "layer_errors": False},
                             # the compressed variant: per tensor the smallest encoding, whatever the kernel costs
                             "tflm": {"compress": {"encoding": encoding, "decode_code_bytes": 0}}})


def models(names: list[str]) -> dict[str, tuple]:
    out = {}
    if "cnn" in names:
        sys.path.insert(0, str(ROOT / "tests"))
        from compress_helpers import cnn, digits

        out["digits_cnn"] = (cnn(epochs=2), digits()[0].x[:64])
    for name in ("kws", "resnet8"):
        if name not in names:
            continue
        keras_name, ref = MLPERF_MODELS[name]
        if not (MLPERF / keras_name).exists():
            print(f"skip {name}: {MLPERF / keras_name} not found", file=sys.stderr)
            continue
        from edgepack.convert.flatbuffer import read_tflite

        t = read_tflite((MLPERF / ref).read_bytes())
        t = t.tensors[t.inputs[0]]
        lo, hi = (-128 - t.zero_point[0]) * t.scale[0], (127 - t.zero_point[0]) * t.scale[0]
        x = np.random.default_rng(0).uniform(lo, hi, size=[64] + t.shape[1:]).astype(np.float32)
        out[name] = (MLPERF / keras_name, x)
    return out


def kmeans_kernels(model, k: int = 16, iters: int = 25):
    """The model with each layer's kernel replaced by its nearest of ``k`` 1-D k-means centroids
    (Lloyd's, quantile init): tfmot's per-tensor clustering without fine-tune, for models its
    wrapper cannot clone (the KWS SavedModel: "Graph disconnected")."""
    from edgepack.load import load_source

    m = load_source(model).model if not hasattr(model, "layers") else model
    for layer in m.layers:
        ws = layer.get_weights()
        if not ws or ws[0].ndim < 2:
            continue
        w = ws[0].reshape(-1)
        c = np.quantile(w, np.linspace(0, 1, k))
        for _ in range(iters):
            a = np.abs(w[:, None] - c).argmin(1)
            c = np.array([w[a == i].mean() if np.any(a == i) else c[i] for i in range(k)])
        a = np.abs(w[:, None] - c).argmin(1)
        layer.set_weights([c[a].reshape(ws[0].shape).astype(np.float32), *ws[1:]])
    return m


def package_pair(model, calib, work: Path) -> tuple[dict, str]:
    from edgepack.pipeline import PackageRequest, package

    reps, how = {}, "cluster step (tfmot, 16 per tensor, no fine-tune)"
    for enc in ("off", "auto"):
        def run(m, cluster: bool):
            return package(PackageRequest(model=m, out=work / enc, target="tflm", recipe=_recipe(enc, cluster),
                                          calibration=calib, target_options={"device": "nucleo-h743zi2"},
                                          force=True))
        try:
            reps[enc] = run(model, how.startswith("cluster"))
        except ValueError as e:  # tfmot's clone of some functional models fails
            print(f"cluster step failed ({str(e)[:80]}...): 1-D k-means on the kernels instead", file=sys.stderr)
            model, how = kmeans_kernels(model), "1-D k-means, 16 per kernel, no fine-tune"
            reps[enc] = run(model, False)
    return reps, how


def qemu_pair(work: Path) -> dict:
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    out = {}
    for enc in ("off", "auto"):
        with open_device("qemu:mps2-an386", tflm_root=os.environ["EDGEPACK_TFLM_ROOT"]) as dev:
            r = dev.profile(work / enc, Settings(runs=1, warmup=0))
        out[enc] = {"elf_flash": r.memory.flash_bytes, "instructions": r.latency.instructions,
                    "crc": r.output_checksum}
    return out


def row(name: str, reps: dict, q: dict | None) -> dict:
    off, auto = reps["off"], reps["auto"]
    comp = auto["firmware"]["compression"]
    counts: dict[str, int] = {}
    for t in comp["tensors"]:
        counts[t["encoding"]] = counts.get(t["encoding"], 0) + 1
    r = {"model": name, "plain_bytes": off["tflite"]["size_bytes"], "compressed_bytes": auto["tflite"]["size_bytes"],
         "encodings": counts, "arena_plain": off["firmware"]["arena"]["min_bytes"],
         "arena_compressed": auto["firmware"]["arena"]["min_bytes"],
         "bit_exact": (comp.get("bit_exact") or {}).get("bit_exact"),
         "tensors": [{k: t[k] for k in ("op", "encoding", "bits", "bytes_before", "bytes_after")}
                     for t in comp["tensors"]]}
    if q:
        r.update(elf_flash_plain=q["off"]["elf_flash"], elf_flash_compressed=q["auto"]["elf_flash"],
                 instructions_plain=q["off"]["instructions"], instructions_compressed=q["auto"]["instructions"],
                 crc_equal=q["off"]["crc"] == q["auto"]["crc"])
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="cnn,kws,resnet8")
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    use_qemu = not args.no_qemu and bool(os.environ.get("EDGEPACK_TFLM_ROOT"))
    rows = []
    for name, (model, calib) in models(args.models.split(",")).items():
        with tempfile.TemporaryDirectory() as tmp:
            reps, how = package_pair(model, calib, Path(tmp))
            rows.append({**row(name, reps, qemu_pair(Path(tmp)) if use_qemu else None), "clustering": how})
    from edgepack.tflm.compress import DECODE_CODE_BYTES

    head = (f"{'model':<12} {'plain B':>8} {'DECODE B':>8} {'ratio':>6} {'+code B':>8} {'auto ships':>10} "
            f"{'arena plain':>11} {'arena comp':>10}")
    if use_qemu:
        head += f" {'ELF plain':>9} {'ELF comp':>9} {'instr plain':>11} {'instr comp':>10} crc="
    print(head)
    for r in rows:
        with_code = r["compressed_bytes"] + DECODE_CODE_BYTES
        r["auto_ships"] = "compressed" if with_code < r["plain_bytes"] else "plain"
        line = (f"{r['model']:<12} {r['plain_bytes']:>8} {r['compressed_bytes']:>8} "
                f"{r['compressed_bytes'] / r['plain_bytes']:>6.3f} {with_code:>8} {r['auto_ships']:>10} "
                f"{r['arena_plain']:>11} {r['arena_compressed']:>10}")
        if use_qemu:
            line += (f" {r['elf_flash_plain']:>9} {r['elf_flash_compressed']:>9} {r['instructions_plain']:>11} "
                     f"{r['instructions_compressed']:>10} {r['crc_equal']}")
        print(line + f"  {r['encodings']} bit_exact={r['bit_exact']}")
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / "flash_bench.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
