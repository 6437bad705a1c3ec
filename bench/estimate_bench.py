"""Per-core latency cost models calibrated on published MLPerf Tiny results, with leave-one-out.

1. The *shape* (instructions per MAC / element / op of each op class) is TFLM's reference
   kernels on Cortex-M4, measured in QEMU mps2-an386 with -icount shift=0 on synthetic
   single-op int8 models (needs a TFLM tree: --tflm-root or EDGEPACK_TFLM_ROOT, plus
   arm-none-eabi-gcc and qemu-system-arm). Without a tree the shape stored in
   device_profiles/cores/cortex-m4.yaml is reused (said so in the output).
2. For each core, the published latencies of the boards in PUBLISHED (every figure
   cited: repository@commit, file, line) fit a few non-negative scales on that shape
   (scipy nnls on relative error); each form in costmodel.fit.FORMS is tried and the one
   with the lowest leave-one-model-out error is kept (a selection on the same data: the
   kept error is optimistic). Prints the errors per core and per model, and the energy
   leave-one-out where the board has published energy.

VWW has no .tflite in ../shared/models/mlperf_tiny: its work is computed from a MobileNetV1
0.25 96x96 built here with random weights and int8 PTQ (the op mix is what matters).

Run:  python bench/estimate_bench.py [--tflm-root DIR] [--person-detect-cc FILE] [--write-core]
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
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgepack.costmodel.estimate import cores_dir, load_cost_model, op_work  # noqa: E402
from edgepack.costmodel.fit import (FORMS, InstructionModel, Point, energy_leave_one_out, fit,  # noqa: E402
                                           latency_from_published, leave_one_out, max_abs_error, mlperf_work)

MODELS = REPO.parent / "shared" / "models" / "mlperf_tiny"
RESULTS = REPO / "bench" / "results"
GOAL_PCT = 20.0

V05 = "mlcommons/tiny_results_v0.5@d75aef63526dcbb30632f0529411f0219ed1003e"
V07 = "mlcommons/tiny_results_v0.7@64623f41b6721bdff6d0133a524c63a003123b3b"
V12 = "mlcommons/tiny_results_v1.2@cadb362343f559d459e7cdb8748685ba76b9eb23"
ESP = "espressif/esp-tflite-micro@99f49e1498b0984f4db54d9bf3938aceb99ad422"
MODEL_NAMES = {"kws": "KWS DS-CNN", "ic": "IC ResNet-8", "ad": "AD FC autoencoder", "vww": "VWW MobileNetV1-0.25",
               "person_detect": "TFLM person_detection (MobileNetV1-0.25 96x96x1)"}


def _mlperf(repo: str, results_dir: str, figures: dict, energy: dict | None = None, perf_line: int = 27,
            energy_line: int = 22) -> list[dict]:
    """Points of one MLPerf Tiny results folder: {model: throughput as printed}, energy {model: uJ}."""
    out = []
    for model, thr in figures.items():
        p = {"model": model, "published": f"Median throughput is {thr} inf./sec.",
             "source": f"{repo}:{results_dir}/{model}/performance/results.txt line {perf_line}"}
        if energy and model in energy:
            p["energy_uj"] = energy[model]
            p["energy_source"] = (f"{repo}:{results_dir}/{model}/energy/results.txt line {energy_line} "
                                  f"(Median energy cost is {energy[model]} uJ/inf.)")
        out.append(p)
    return out


# core -> what its cost model is calibrated on. Clock and software stack of every board are
# cited from the submission's system description.
PUBLISHED = {
    "cortex-m4": {
        "stack": "TensorFlow Lite Micro v2.3.1, reference kernels (MLPerf Tiny reference submission)",
        "boards": {"NUCLEO-L4R5ZI": (120_000_000, f"{V05}:closed/reference/systems/"
                                     "Nucleo_L4R5ZI_System_Description.json (Cortex-M4, 120 MHz, "
                                     "Inference Framework: TensorFlow Lite for Microcontrollers v2.3.1)")},
        "points": {"NUCLEO-L4R5ZI": _mlperf(V05, "closed/reference/results/Nucleo-L4R5ZI",
                                            {"kws": "5.497", "ic": "1.420", "ad": "99.487", "vww": "1.665"},
                                            {"kws": 7373.704, "ic": 29207.010, "ad": 416.312, "vww": 24312.648})},
    },
    "cortex-m33": {
        "stack": "TensorFlow Lite Micro with CMSIS(-NN) kernels (Renesas submission)",
        "boards": {"EK-RA6M4": (200_000_000, f"{V07}:closed/renesas/systems/EK-RA6M4_System_Description.json "
                                "(Cortex-M33, 200 MHz, Inference Framework: tflite-micro, Software Libraries: CMSIS)")},
        "points": {"EK-RA6M4": _mlperf(V07, "closed/renesas/results/EK-RA6M4",
                                       {"kws": "19.774", "ic": "4.062", "ad": "216.772", "vww": "6.159"},
                                       {"kws": 3796.957, "ic": 17723.829, "ad": 324.088, "vww": 11851.829})},
    },
    "cortex-m7": {
        "stack": "Bosch Hardware-Aware Lowering Engine (HALE) 1.0.175, int8 (no TFLM submission exists for a Cortex-M7)",
        "boards": {
            "DISCO-F746NG": (216_000_000, f"{V12}:closed/bosch/systems/DISCO_F746NG_int8.json (Cortex-M7, 216 MHz, "
                             "HALE 1.0.175)"),
            "NUCLEO-H7A3ZI": (280_000_000, f"{V12}:closed/bosch/systems/NUCLEO_H7A3ZI_int8.json (Cortex-M7, 280 MHz, "
                              "HALE 1.0.175)")},
        "points": {
            "DISCO-F746NG": _mlperf(V12, "closed/bosch/results/DISCO_F746NG_int8",
                                    {"kws": "52.746", "ic": "15.986", "ad": "584.38", "vww": "17.468"}),
            "NUCLEO-H7A3ZI": _mlperf(V12, "closed/bosch/results/NUCLEO_H7A3ZI_int8",
                                     {"kws": "68.083", "ic": "21.811", "ad": "735.615", "vww": "22.85"})},
    },
    "cortex-m0plus": {
        "stack": "Bosch Hardware-Aware Lowering Engine (HALE) 1.0.175, int8 (the only Cortex-M0+ submission)",
        "boards": {"NUCLEO-G0B1RE": (64_000_000, f"{V12}:closed/bosch/systems/NUCLEO_G0B1RE_int8.json (Cortex-M0+, "
                                     "64 MHz, HALE 1.0.175)")},
        "points": {"NUCLEO-G0B1RE": _mlperf(V12, "closed/bosch/results/NUCLEO_G0B1RE_int8",
                                            {"kws": "2.107", "ic": "0.657", "ad": "24.454", "vww": "0.707"})},
    },
    "cortex-m55": {
        "stack": "TensorFlow Lite for Microcontrollers with CMSIS(-NN) kernels on a Cortex-M85 (Renesas submission)",
        "proxy": ("no MLPerf Tiny result exists for a Cortex-M55 (nor for the Ethos-U55): calibrated on the Cortex-M85 "
                  "(EK-RA8D1), the nearest published core (same Armv8.1-M ISA with the Helium/MVE vector extension "
                  "CMSIS-NN uses); the M85 has a wider, faster pipeline, so M55 estimates are optimistic; the NPU "
                  "is not modelled (CPU-only inference)"),
        "boards": {"EK-RA8D1": (480_000_000, f"{V12}:closed/Renesas/systems/EK-RA8D1.json (Cortex-M85, 480 MHz, "
                                "Inference Framework: TensorFlow Lite for micro, Software Libraries: CMSIS)")},
        "points": {"EK-RA8D1": _mlperf(V12, "closed/Renesas/results/EK-RA8D1",
                                       {"kws": "288.611", "ic": "117.948", "ad": "1884.138", "vww": "74.665"})},
    },
    "cortex-m85": {
        "stack": "TensorFlow Lite for Microcontrollers with CMSIS(-NN) kernels (Renesas submission)",
        "boards": {"EK-RA8D1": (480_000_000, f"{V12}:closed/Renesas/systems/EK-RA8D1.json (Cortex-M85, 480 MHz, "
                                "Inference Framework: TensorFlow Lite for micro, Software Libraries: CMSIS)")},
        "points": {"EK-RA8D1": _mlperf(V12, "closed/Renesas/results/EK-RA8D1",
                                       {"kws": "288.611", "ic": "117.948", "ad": "1884.138", "vww": "74.665"})},
    },
    "xtensa-lx7": {
        "stack": "esp-tflite-micro (TFLM) with ESP-NN optimised kernels",
        "proxy": ("no MLPerf Tiny result exists for any Espressif chip: calibrated on the one figure Espressif publishes "
                  "for the ESP32-S3, the TFLM person_detection example (invoke() time, internal memory); one point "
                  "fits one scale, so there is no leave-one-out at all"),
        "boards": {"ESP32-S3": (240_000_000, f"{ESP}:README.md line 119 (ESP32-S3, CPU Freq 240MHz)")},
        "points": {"ESP32-S3": [{"model": "person_detect", "published": "with ESP-NN 54ms",
                                 "source": f"{ESP}:README.md line 119 (| ESP32-S3 | Person Detection | 2300ms | "
                                           "54ms | 240MHz |: without / with ESP-NN); model: "
                                           "examples/person_detection/main/person_detect_model_data.cc"}]},
    },
}


def _layers():
    from edgepack.keras_compat import keras

    return keras()


def synthetic_models() -> dict[str, tuple]:
    """Keras builders for single-op int8 models: name -> (build(), op)."""
    k = _layers()
    L = k.layers

    def seq(shape, layer):
        return lambda: k.Sequential([L.Input(shape), layer()])

    def add(shape):
        def build():
            x = L.Input(shape)
            return k.Model(x, L.Add()([x, x]))
        return build

    return {
        "tiny_add": (add((2,)), "ADD"),
        "conv_1x1_c4": (seq((16, 16, 4), lambda: L.Conv2D(16, 1)), "CONV_2D"),
        "conv_3x3_c32": (seq((12, 12, 32), lambda: L.Conv2D(16, 3, padding="same")), "CONV_2D"),
        "dw_3x3": (seq((16, 16, 16), lambda: L.DepthwiseConv2D(3, padding="same")), "DEPTHWISE_CONV_2D"),
        "dw_7x7": (seq((12, 12, 16), lambda: L.DepthwiseConv2D(7, padding="same")), "DEPTHWISE_CONV_2D"),
        "fc_64x256": (seq((64,), lambda: L.Dense(256)), "FULLY_CONNECTED"),
        "fc_1024x32": (seq((1024,), lambda: L.Dense(32)), "FULLY_CONNECTED"),
        "add_2048": (add((8, 8, 32)), "ADD"),
        "avgpool_2048": (seq((16, 16, 8), lambda: L.AveragePooling2D(2)), "AVERAGE_POOL_2D"),
    }


def _int8(model) -> bytes:
    from edgepack.convert.tflite import convert
    from edgepack.recipe import QuantizeConfig

    shape = (64,) + tuple(model.input_shape[1:])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return convert(model, QuantizeConfig(mode="int8", io="int8"), calibration=x)


def measure_instruction_model(tflm_root: str) -> tuple[InstructionModel, dict]:
    """Run every synthetic model in QEMU; solve instructions per MAC/element/op per class."""
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings
    from edgepack.keras_compat import set_seed

    set_seed(0)
    counts, work = {}, {}
    with tempfile.TemporaryDirectory() as tmp, open_device("qemu:mps2-an386", tflm_root=tflm_root) as dev:
        for name, (build, op) in synthetic_models().items():
            data = _int8(build())
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(data)
            main = [w for w in op_work(read_tflite(data)) if w.op == op]
            if len(main) != 1:
                raise SystemExit(f"{name}: expected one {op}, got {[w.op for w in op_work(read_tflite(data))]}")
            t = time.time()
            r = dev.profile(path, Settings(runs=2, warmup=1))
            counts[name], work[name] = r.latency.instructions, main[0]
            print(f"  {name:14s} {op:18s} MACs {main[0].macs:>8d} elements {main[0].elements:>6d} "
                  f"instructions {counts[name]:>9d}  ({time.time() - t:.0f} s)", flush=True)
    per_op = float(counts["tiny_add"])  # one near-empty op: the interpreter's per-op overhead
    m = InstructionModel(per_op=per_op)
    for op, (a, b) in {"CONV_2D": ("conv_1x1_c4", "conv_3x3_c32"),
                       "DEPTHWISE_CONV_2D": ("dw_3x3", "dw_7x7"),
                       "FULLY_CONNECTED": ("fc_64x256", "fc_1024x32")}.items():
        A = np.array([[work[a].macs, work[a].elements], [work[b].macs, work[b].elements]], dtype=np.float64)
        y = np.array([counts[a] - per_op, counts[b] - per_op], dtype=np.float64)
        mac, el = np.linalg.solve(A, y)
        m.per_mac[op], m.per_element[op] = float(mac), float(max(el, 0.0))
    for name, op in (("add_2048", "ADD"), ("avgpool_2048", "AVERAGE_POOL_2D")):
        m.per_element[op] = (counts[name] - per_op) / work[name].elements
    m.per_mac["DEFAULT"] = m.per_mac["CONV_2D"]
    m.per_element["DEFAULT"] = m.per_element["ADD"]
    return m, {"instructions": counts, "work": {k: [v.macs, v.elements] for k, v in work.items()}}


def mlperf_in_qemu(tflm_root: str, m: InstructionModel, work: dict) -> dict:
    """Whole MLPerf models in QEMU: how close the instruction model is to the real count, and
    the cycles per instruction each published TFLM-reference latency (Cortex-M4) implies."""
    from edgepack.devices.registry import open_device
    from edgepack.costmodel.fit import MLPERF_FILES
    from edgepack.devices.result import Settings
    from edgepack.tflm.build import find_tree

    published = {p["model"]: p for p in PUBLISHED["cortex-m4"]["points"]["NUCLEO-L4R5ZI"]}
    out = {}
    kernel_sets = ["reference"] + (["cmsis_nn"] if find_tree(Path(tflm_root)).cmsis_nn else [])
    for kernels in kernel_sets:
        rows = []
        with open_device("qemu:mps2-an386", tflm_root=tflm_root, kernels=kernels) as dev:
            for key, name in MLPERF_FILES.items():
                r = dev.profile(MODELS / name, Settings(runs=1, warmup=0))
                pred = sum(work[key][0].values())
                cycles = latency_from_published(published[key]["published"]) * 1e-3 * 120e6
                rows.append({"model": name, "qemu_instructions": r.latency.instructions,
                             "instruction_model": round(pred),
                             "model_vs_qemu_pct": 100 * (pred / r.latency.instructions - 1),
                             "published_cycles_per_qemu_instruction": cycles / r.latency.instructions,
                             "arena_bytes_32bit": r.memory.arena_bytes, "flash_bytes": r.memory.flash_bytes,
                             "ram_bytes": r.memory.ram_bytes})
                print(f"  QEMU {kernels:9s} {name:32s} instructions {r.latency.instructions:>11,d}  instruction "
                      f"model {rows[-1]['model_vs_qemu_pct']:+6.1f}%", flush=True)
        out["mlperf_qemu" if kernels == "reference" else f"mlperf_qemu_{kernels}"] = rows
    return out


def vww_tflite() -> bytes:
    """MobileNetV1 0.25 at 96x96x3 (MLPerf Tiny VWW architecture), random weights, int8 PTQ."""
    from edgepack.keras_compat import set_seed

    set_seed(0)
    k = _layers()
    L = k.layers

    def block(x, filters, stride):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, strides=stride, padding="same")(x)))
        return L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 1, padding="same")(x)))

    inp = L.Input((96, 96, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, padding="same")(inp)))
    for f, s in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1), (128, 1),
                 (128, 1), (256, 2), (256, 1)]:
        x = block(x, f, s)
    x = L.Dense(2, activation="softmax")(L.Flatten()(L.AveragePooling2D(x.shape[1])(x)))
    return _int8(k.Model(inp, x))


def stored_instruction_model() -> InstructionModel:
    cal = load_cost_model("cortex-m4").calibration
    if not cal.get("instructions"):
        raise SystemExit("no TFLM tree and no stored instruction model in device_profiles/cores/cortex-m4.yaml; "
                         "pass --tflm-root DIR")
    return InstructionModel.from_calibration(cal)


def stored_work(core: str, model: str):
    try:
        pts = load_cost_model(core).calibration.get("data", [])
    except Exception:  # noqa: BLE001 - no stored file yet
        return None
    return next(((p["work"], p["macs"]) for p in pts if p["model"] == model), None)


def model_work(ins: InstructionModel, person_cc: str | None) -> dict:
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.devices.artifact import model_from_c_array

    work = mlperf_work(MODELS, ins)
    t = time.time()
    info = read_tflite(vww_tflite())
    work["vww"] = (ins.work(info), int(sum(w.macs for w in op_work(info))))
    print(f"VWW MobileNetV1-0.25 built and int8-quantized here ({time.time() - t:.0f} s): "
          f"{work['vww'][1]:,d} MACs", flush=True)
    if person_cc:
        info = read_tflite(model_from_c_array(Path(person_cc)))
        work["person_detect"] = (ins.work(info), int(sum(w.macs for w in op_work(info))))
        print(f"person_detect read from {person_cc}: {work['person_detect'][1]:,d} MACs")
    else:
        stored = stored_work("xtensa-lx7", "person_detect")
        if stored is None:
            raise SystemExit("pass --person-detect-cc FILE (esp-tflite-micro examples/person_detection/main/"
                             "person_detect_model_data.cc): no stored work for it yet")
        print("person_detect work: read from device_profiles/cores/xtensa-lx7.yaml (pass --person-detect-cc to "
              "recompute)")
        work["person_detect"] = (stored[0], stored[1])
    return work


def core_points(core: str, work: dict) -> list[Point]:
    spec, out = PUBLISHED[core], []
    for board, pts in spec["points"].items():
        clock = spec["boards"][board][0]
        for p in pts:
            w, macs = work[p["model"]]
            out.append(Point(board=board, clock_hz=clock, stack=spec["stack"], latency_ms=latency_from_published(
                p["published"]), work={k: round(v, 1) for k, v in w.items()}, macs=macs, **p))
    return out


def calibrate(core: str, pts: list[Point]) -> dict:
    n_models = len({p.model for p in pts})
    tried = {}
    for form, groups in FORMS.items():
        if len(groups) > max(n_models - 1, 1):
            continue
        loo = leave_one_out(pts, form) if n_models > len(groups) else []
        tried[form] = {"scales": fit(pts, form), "loo": loo, "loo_max": max_abs_error(loo) if loo else None}
    best = min(tried, key=lambda f: (tried[f]["loo_max"] is None, tried[f]["loo_max"] or 0.0))
    return {"form": best, "tried": tried}


def print_core(core: str, pts: list[Point], cal: dict) -> None:
    spec = PUBLISHED[core]
    n_models, n_boards = len({p.model for p in pts}), len({p.board for p in pts})
    print(f"\n{core}: {spec['stack']}")
    print(f"  {n_boards} board(s) {', '.join(spec['boards'])}; {len(pts)} published point(s) on {n_models} model(s)")
    if spec.get("proxy"):
        print(f"  PROXY: {spec['proxy']}")
    for form, t in cal["tried"].items():
        mark = " <- kept" if form == cal["form"] else ""
        err = f"{t['loo_max']:.1f}%" if t["loo_max"] is not None else "n/a"
        sc = ", ".join(f"{k} {v:.3f}" for k, v in t["scales"].items())
        print(f"  form {form:14s} ({len(FORMS[form])} scale(s): {sc})  leave-one-out max |error| {err}{mark}")
    t = cal["tried"][cal["form"]]
    if t["loo"]:
        print(f"  {'model':24s} {'board':15s} {'measured ms':>12s} {'predicted ms':>13s} {'error':>8s}")
        for r in t["loo"]:
            print(f"  {MODEL_NAMES[r['model']]:24s} {r['board']:15s} {r['measured_ms']:12.2f} "
                  f"{r['predicted_ms']:13.2f} {r['error_pct']:+7.1f}%")
    en = energy_leave_one_out(pts, cal["form"])
    for r in en:
        print(f"  energy {MODEL_NAMES[r['model']]:17s} {r['board']:15s} measured {r['measured_uj']:9.1f} uJ  "
              f"predicted {r['predicted_uj']:9.1f} uJ ({r['mean_power_mw_others']:.1f} mW)  {r['error_pct']:+6.1f}%")
    worst = t["loo_max"]
    if worst is None:
        print(f"  leave-one-out: not possible ({n_models} model(s) for {len(FORMS[cal['form']])} scale(s))")
    else:
        print(f"  max |error| {worst:.1f}% (goal {GOAL_PCT:.0f}%) -> {'MET' if worst <= GOAL_PCT else 'NOT MET'}")
    cal["energy_loo"] = en


def thin_note(pts: list[Point], form: str) -> str:
    n_models, n_boards = len({p.model for p in pts}), len({p.board for p in pts})
    k = len(FORMS[form])
    if n_models <= k:
        return f"{n_models} model(s) for {k} scale(s): no leave-one-out is possible; the fit is exact on its data"
    note = (f"{n_models} models on {n_boards} board(s) for {k} scale(s): leave-one-out fits {k} scale(s) on "
            f"{n_models - 1} models")
    if n_models - 1 <= k + 1:
        note += ", barely more than the parameters: the error says little about an unseen model's op mix"
    return note


def core_yaml(core: str, ins: InstructionModel, pts: list[Point], cal: dict, extra: dict | None = None) -> dict:
    spec, form = PUBLISHED[core], cal["form"]
    t = cal["tried"][form]
    tab = ins.tables(form, t["scales"])
    r4 = lambda d: {k: round(v, 4) for k, v in sorted(d.items())}  # noqa: E731
    worst = t["loo_max"]
    calib = {
        "method": ("cycles = non-negative scales (scipy nnls on relative error) x the Cortex-M4 TFLM-reference "
                   "instruction model in cores/cortex-m4.yaml calibration.instructions; form " + form),
        "form": form,
        "scales": {k: round(v, 6) for k, v in t["scales"].items()},
        "data": [p.model_dump(exclude_none=True) for p in pts],
        "boards": {b: {"clock_hz": c, "source": s} for b, (c, s) in spec["boards"].items()},
        "loo": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in t["loo"]],
        "loo_max_abs_error_pct": None if worst is None else round(worst, 2),
        "loo_other_forms": {f: (None if x["loo_max"] is None else round(x["loo_max"], 2))
                            for f, x in cal["tried"].items() if f != form},
        "energy_loo": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                       for r in cal["energy_loo"]],
        "goal": f"leave-one-out error within {GOAL_PCT:.0f}% on each MLPerf Tiny model",
        "goal_met": None if worst is None else bool(worst <= GOAL_PCT),
        "data_note": thin_note(pts, form),
    }
    if spec.get("proxy"):
        calib["proxy"] = spec["proxy"]
    zero = [g for g, v in t["scales"].items() if v <= 0]
    if zero:
        what = {"rest": "per-element and per-op overhead", "dw": "depthwise per-MAC cost (its work is carried by "
                "the per-element term: a 3x3 depthwise does 9 MACs per output element)", "dense": "dense per-MAC cost",
                "mac": "per-MAC cost", "all": "everything"}
        calib["zero_scales"] = (f"the fit puts {', '.join(what[g] for g in zero)} at zero: the published models "
                                "cannot separate it from the other terms, so models dominated by such ops are "
                                "underestimated")
    calib.update(extra or {})
    return {
        "core": core,
        "stack": spec["stack"],
        "cycles_per_mac": r4(tab.cycles_per_mac),
        "cycles_per_element": r4(tab.cycles_per_element),
        "cycles_per_op": round(tab.cycles_per_op, 1),
        "sources": sorted({p.source for p in pts}) + [s for _, s in spec["boards"].values()],
        "calibration": calib,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflm-root", default=os.environ.get("EDGEPACK_TFLM_ROOT"))
    ap.add_argument("--person-detect-cc", help="esp-tflite-micro's person_detect_model_data.cc (work of the "
                    "ESP32-S3 calibration model); default: the work stored in cores/xtensa-lx7.yaml")
    ap.add_argument("--write-core", action="store_true", help="rewrite device_profiles/cores/*.yaml")
    args = ap.parse_args()
    m4 = load_cost_model("cortex-m4").calibration
    if args.tflm_root:
        print(f"measuring the instruction model in QEMU (TFLM tree {args.tflm_root}) ...", flush=True)
        ins, raw = measure_instruction_model(args.tflm_root)
        origin = "measured in QEMU in this run"
    else:
        ins, raw = stored_instruction_model(), m4.get("synthetic_runs", {})
        origin = "read from device_profiles/cores/cortex-m4.yaml (no TFLM tree given: not re-measured)"
    print(f"instruction model (the shape): {origin}")
    print(f"  per MAC     {json.dumps({k: round(v, 3) for k, v in ins.per_mac.items()})}")
    print(f"  per element {json.dumps({k: round(v, 3) for k, v in ins.per_element.items()})}")
    print(f"  per op      {ins.per_op:.0f}")
    work = model_work(ins, args.person_detect_cc)
    if args.tflm_root:
        raw.update(mlperf_in_qemu(args.tflm_root, ins, work))
    summary, files = {}, {}
    for core in PUBLISHED:
        pts = core_points(core, work)
        cal = calibrate(core, pts)
        print_core(core, pts, cal)
        extra = {"instructions": {"per_mac": {k: round(v, 4) for k, v in sorted(ins.per_mac.items())},
                                  "per_element": {k: round(v, 4) for k, v in sorted(ins.per_element.items())},
                                  "per_op": round(ins.per_op, 1)},
                 "synthetic_runs": raw} if core == "cortex-m4" else None
        files[core] = core_yaml(core, ins, pts, cal, extra)
        summary[core] = {"form": cal["form"], "loo_max_abs_error_pct": cal["tried"][cal["form"]]["loo_max"],
                         "loo": cal["tried"][cal["form"]]["loo"], "energy_loo": cal["energy_loo"]}
    print("\nsummary: leave-one-out max |error| per core (goal 20%)")
    for core, s in summary.items():
        e = s["loo_max_abs_error_pct"]
        print(f"  {core:14s} {('%.1f%%' % e) if e is not None else 'n/a (one point)':>16s}  "
              f"{'MET' if e is not None and e <= GOAL_PCT else 'NOT MET' if e is not None else 'not testable'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimate_bench.json").write_text(json.dumps({"instruction_model_origin": origin, "cores": summary},
                                                            indent=2))
    print(f"\nwrote {RESULTS / 'estimate_bench.json'}")
    if args.write_core:
        for core, doc in files.items():
            path = cores_dir() / f"{core}.yaml"
            header = (f"# Per-op latency cost model for {core} ({doc['stack']}).\n"
                      "# Generated by bench/estimate_bench.py --write-core; do not edit by hand.\n")
            path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=110))
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
