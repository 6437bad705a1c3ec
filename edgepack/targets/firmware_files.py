"""What the firmware target writes: the model header and the ecosystem layouts.

One folder drops into four build systems: plain CMake (``CMakeLists.txt``; with
``-DEDGEPACK_TFLM_ROOT=DIR`` it also builds TFLM from a source tree), a Zephyr module
(``zephyr/module.yml``, ``zephyr/CMakeLists.txt`` with ``zephyr_library()``,
``zephyr/Kconfig``), an ESP-IDF component (``idf_component.yml`` depending on
``espressif/esp-tflite-micro``, the same ``CMakeLists.txt``'s ``idf_component_register``)
and an Arduino library (``arduino/<name>/library.properties``, ``src/``, an inference and a
profiling example).

``model_config.h`` holds everything the firmware needs: per input/output tensor the
dtype, shape, scale and zero point with inline quantize/dequantize functions, the
preprocessing constants from the recipe, the labels, the arena size.

Every user string that reaches a generated file goes through one of: ``c_string`` (C
string literals), ``comment_text`` (C comments), ``one_line`` (properties, Markdown,
YAML values); identifiers are checked C names.

Example::

    files = write_firmware(build, plan, Path("staging"))   # plan from FirmwareTarget.plan
    text = model_config_header(build, plan)
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path
from string import Template
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from .. import __version__
from ..tflm.c_array import c_string, comment_text, model_array_files
from ..tflm.ops import DECODE_SOURCES, model_ops_header
from ..fsutil import sha256_bytes
from ..paths import data_dir
from ..build import Build
from .firmware_inputs import inputs_block, several_inputs_notes, several_sample
from .firmware_outputs import outputs_block, several_outputs_note
from .firmware_decode import CMAKE_DECODE_OS, IDF_DECODE, ZEPHYR_DECODE_OS, arduino_decode_check
from .firmware_plan import FirmwarePlan


HARNESS_FILES = ("ep_harness.cc", "ep_harness.h", "ep_protocol.c", "ep_protocol.h", "board.h", "main.cc",
                 "board_mps2.c", "mps2_an386.ld", "board_zephyr.c", "board_esp_idf.c",
                 "ep_inference.cc", "ep_inference.h")
ARDUINO_FILES = ("ep_harness.cc", "ep_harness.h", "ep_protocol.c", "ep_protocol.h", "board.h", "board_arduino.cpp",
                 "ep_inference.cc", "ep_inference.h")
ROOT_FILES = ("ep_quantize.h",)
# The TFLM library the Arduino library needs: tflite-micro-arduino-examples' library name.
ARDUINO_TFLM_LIBRARY = "Arduino_TensorFlowLite"
ESP_TFLITE_MICRO = ("espressif/esp-tflite-micro", "^1.3.4")
ESP_IDF_VERSION = ">=5.0"
ARDUINO_NAME_MAX = 63  # the Arduino library specification's cap on `name`
# TfLiteType values (tensorflow/lite/core/c/c_api_types.h) and the C types of the I/O dtypes.
TFLITE_TYPES = {"float32": 1, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7, "int8": 9, "float16": 10}
C_TYPES = {"float32": "float", "int32": "int32_t", "uint8": "uint8_t", "int64": "int64_t", "bool": "bool",
           "int16": "int16_t", "int8": "int8_t"}
QUANT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line of printable characters (for properties, Markdown and YAML values).

    Every line break (``\\n``, ``\\r``, U+2028, U+0085 ...) and control character becomes a
    space; backticks become quotes (Markdown code spans); runs of spaces collapse.

    >>> one_line("a\\nname=evil\\u2028`x`")
    "a name=evil 'x'"
    """
    chars = [" " if (unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") or c.isspace()) else
             "'" if c == "`" else c for c in str(text)]
    s = " ".join("".join(chars).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def c_float(x: float) -> str:
    """A float32 value as a C ``float`` literal that reads back bit-exact.

    >>> c_float(1.0), c_float(0.00390625), c_float(-2.5e-07)
    ('1.0f', '0.00390625f', '-2.5e-07f')
    """
    f = float(np.float32(x))
    if not np.isfinite(f):
        raise ValueError(f"{x} is not a finite float")
    s = f"{f:.9g}"
    for digits in range(1, 10):  # the shortest form that round-trips through float32
        t = f"{f:.{digits}g}"
        if float(np.float32(float(t))) == f:
            s = t
            break
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def quantize_like_tflm(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """TFLite's AffineQuantize in numpy: float32 ``x / scale``, halves away from zero, clamp.

    This is what ``ep_quantize`` in ``ep_quantize.h`` computes on the device (numpy's
    ``np.round`` rounds halves to even and would differ on ties).
    """
    lo, hi = QUANT_RANGES[dtype]
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.asarray(x, np.float32) / np.float32(scale)
        r = np.trunc(q) + np.where(np.abs(q - np.trunc(q)) >= 0.5, np.sign(q), 0)
        r = np.where(np.isnan(q), 0, np.clip(r, lo - zero_point - 1, hi - zero_point + 1))
    return np.clip(r.astype(np.int64) + zero_point, lo, hi).astype(dtype)


def library_name(ident: str) -> str:
    """The Arduino library's name (and folder): ``edgepack_`` + the array name, at most 63 characters."""
    return ("edgepack_" + ident)[:ARDUINO_NAME_MAX].rstrip("_")


# --------------------------------------------------------------------------- model_config.h

def _tensor_block(kind: str, n: int, t) -> list[str]:
    p = f"EP_{kind.upper()}{n}"
    fn = f"ep_{kind}{n}"
    elems = int(np.prod(t.shape)) if t.shape else 1
    ctype = C_TYPES.get(t.dtype)
    lines = [f"/* {kind} {n}: {comment_text(t.name, 120)} */",
             f"#define {p}_NAME {c_string(t.name)}",
             f"#define {p}_DTYPE {c_string(t.dtype)}",
             f"#define {p}_TFLITE_TYPE {TFLITE_TYPES.get(t.dtype, 0)}",
             f"#define {p}_DIMS {len(t.shape)}",
             f"#define {p}_SHAPE {{{', '.join(str(int(d)) for d in t.shape) or '1'}}}",
             f"#define {p}_ELEMENTS {elems}u"]
    if ctype:
        lines.append(f"#define {p}_CTYPE {ctype}")
        lines.append(f"#define {p}_BYTES {elems * np.dtype(t.dtype if t.dtype != 'bool' else 'uint8').itemsize}u")
    quantized = t.dtype in QUANT_RANGES and len(t.scale) == 1 and t.scale[0] > 0
    lines.append(f"#define {p}_QUANTIZED {1 if quantized else 0}")
    if quantized:
        lines += [f"#define {p}_SCALE {c_float(t.scale[0])}", f"#define {p}_ZERO_POINT ({int(t.zero_point[0])})",
                  f"static inline {ctype} {fn}_quantize(float x) {{",
                  f"  return ep_quantize_{t.dtype}(x, {p}_SCALE, {p}_ZERO_POINT);", "}",
                  f"static inline float {fn}_dequantize({ctype} q) {{",
                  f"  return ep_dequantize((int32_t)q, {p}_SCALE, {p}_ZERO_POINT);", "}"]
    elif t.dtype == "float32":
        lines += [f"#define {p}_SCALE 1.0f", f"#define {p}_ZERO_POINT 0",
                  f"static inline float {fn}_quantize(float x) {{ return x; }}",
                  f"static inline float {fn}_dequantize(float q) {{ return q; }}"]
    elif len(t.scale) > 1:
        lines.append(f"/* per-channel quantization ({len(t.scale)} scales): no per-tensor scale */")
    return lines + [""]


def _preprocess_block(build: Build) -> list[str]:
    pre = build.recipe.data.preprocess
    means = [pre.mean] if isinstance(pre.mean, (int, float)) else list(pre.mean)
    return ["/* Preprocessing from the recipe: model input x = (raw - mean[channel]) * scale, in float,",
            " * then ep_input0_quantize(x) for integer inputs. */",
            f"#define EP_PRE_SCALE {c_float(pre.scale)}",
            f"#define EP_PRE_MEAN_COUNT {len(means)}u",
            f"static const float ep_pre_mean[EP_PRE_MEAN_COUNT] = {{{', '.join(c_float(m) for m in means)}}};",
            "static inline float ep_preprocess(float raw, uint32_t channel) {",
            "  return (raw - ep_pre_mean[channel % EP_PRE_MEAN_COUNT]) * EP_PRE_SCALE;", "}", ""]


def _labels_block(labels: Optional[Sequence[str]]) -> list[str]:
    if not labels:
        return ["#define EP_HAVE_LABELS 0", ""]
    body = [f"  {c_string(str(lbl))}," for lbl in labels]
    return ["/* Class names, in output order. */", "#define EP_HAVE_LABELS 1", f"#define EP_LABEL_COUNT {len(labels)}u",
            "static const char* const ep_labels[EP_LABEL_COUNT] = {", *body, "};", ""]


def model_config_header(build: Build, plan: FirmwarePlan) -> str:
    """``model_config.h``: names, arena, I/O tensors (dtype, shape, scale, zero point, inline
    quantize/dequantize), preprocessing constants and labels. C99 and C++."""
    a, info = plan.arena, build.info
    ins, outs = [info.tensors[i] for i in info.inputs], [info.tensors[i] for i in info.outputs]
    blocks: list[str] = []
    for kind, tensors in (("input", ins), ("output", outs)):
        for n, t in enumerate(tensors):
            blocks += _tensor_block(kind, n, t)
    body = "\n".join([*blocks, *_preprocess_block(build), *inputs_block(build, ins, c_float),
                      *outputs_block(build, outs, C_TYPES), *_labels_block(build.labels)])
    return f"""/* Generated by edgepack; do not edit.
 * Model: {comment_text(build.model_name, 120)} ({len(build.tflite)} bytes) for {comment_text(plan.profile.name, 60)}.
 */
#ifndef EDGEPACK_MODEL_CONFIG_H_
#define EDGEPACK_MODEL_CONFIG_H_

#include <stdint.h>
#ifndef __cplusplus
#include <stdbool.h>
#endif

#include "ep_quantize.h"

#define EP_MODEL_NAME "{plan.ident}"
#define EP_MODEL_SOURCE {c_string(build.model_name)}
#define EP_MODEL_DATA {plan.ident}
#define EP_MODEL_DATA_LEN {len(build.tflite)}u
#define EP_OPS_NAMESPACE {plan.ident}_ops
#define EP_DEVICE_PROFILE {c_string(plan.profile.name)}

/* Tensor arena: {a.min_bytes} B smallest working on the 64-bit host TFLM (bisection),
 * + {a.margin_bytes} B margin (optimized-kernel scratch, tflite-micro #2738). */
#define EP_ARENA_SIZE {a.recommended_bytes}u
#define EP_ARENA_MIN_HOST_BYTES {a.min_bytes}u

#ifndef EP_CLOCK_HZ
#define EP_CLOCK_HZ {plan.profile.clock_hz}u
#endif

#define EP_INPUT_COUNT {len(ins)}u
#define EP_OUTPUT_COUNT {len(outs)}u

{body}
#endif /* EDGEPACK_MODEL_CONFIG_H_ */
"""


# --------------------------------------------------------------------------- the example's sample

def example_sample(build: Build) -> tuple[np.ndarray, str]:
    """Input 0's float sample for the inference example: the first calibration sample, else a
    seeded one over the input's range. Several inputs: every input's values in turn (input tensor
    order), flat."""
    if len(build.info.inputs) > 1:
        return several_sample(build, _seeded)
    t = build.info.tensors[build.info.inputs[0]]
    shape = [int(d) for d in t.shape[1:]] if t.shape else []
    if build.calibration is not None and len(build.calibration):
        return np.asarray(build.calibration[0], np.float32).reshape(shape), "the first calibration sample"
    return _seeded(t, shape, np.random.default_rng(0))


def _seeded(t, shape: list[int], rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if t.dtype in QUANT_RANGES and t.scale:
        lo, hi = QUANT_RANGES[t.dtype]
        q = rng.integers(lo, hi, size=shape, endpoint=True)
        return ((q - t.zero_point[0]) * np.float32(t.scale[0])).astype(np.float32), "a seeded random sample"
    return rng.standard_normal(shape).astype(np.float32), "a seeded random sample"


def example_expectation(build: Build, plan: FirmwarePlan, x: np.ndarray) -> dict:
    """Run the example's sample through the host TFLM as the device will: quantize with
    TFLite's rule, invoke, take the top class of the classification output (output 0 of a one-output model)."""
    from ..tflm import Tflm

    interp = Tflm(build.tflite, arena_size=plan.arena.recommended_bytes)
    qs, start = [], 0
    for i in build.info.inputs:  # several inputs: x holds each one's values in turn
        t_in = build.info.tensors[i]
        n = int(np.prod(t_in.shape[1:])) if len(build.info.inputs) > 1 else x.size
        xi = x if len(build.info.inputs) == 1 else x[start:start + n]
        start += n
        qs.append(quantize_like_tflm(xi, t_in.scale[0], t_in.zero_point[0], t_in.dtype)
                  if t_in.dtype in QUANT_RANGES else xi)
    y = interp.invoke_all(qs[0][None] if len(qs) == 1 else qs)[build.output].reshape(-1)
    t_out = build.info.tensors[build.info.outputs[build.output]]
    scores = ((y.astype(np.float64) - t_out.zero_point[0]) * t_out.scale[0] if t_out.dtype in QUANT_RANGES
              else y.astype(np.float64))
    top = int(np.argmax(scores))
    return {"top_class": top, "raw": y.tolist()[top] if y.size else None,
            "label": build.labels[top] if build.labels and top < len(build.labels) else None}


def example_input_header(build: Build, plan: FirmwarePlan) -> tuple[str, dict]:
    x, source = example_sample(build)
    exp = example_expectation(build, plan, x)
    flat = x.reshape(-1)
    rows = [", ".join(c_float(v) for v in flat[i : i + 8]) + "," for i in range(0, flat.size, 8)]
    label = f" ({comment_text(exp['label'], 80)})" if exp["label"] is not None else ""
    text = f"""/* Generated by edgepack; do not edit. The inference example's input: {source},
 * preprocessed float ({flat.size} values). The host TFLM gives top class {exp['top_class']}{label}. */
#ifndef EDGEPACK_EXAMPLE_INPUT_H_
#define EDGEPACK_EXAMPLE_INPUT_H_

#define EP_EXAMPLE_INPUT_LEN {flat.size}u
#define EP_EXAMPLE_EXPECTED_CLASS {exp['top_class']}

static const float ep_example_input[EP_EXAMPLE_INPUT_LEN] = {{
{chr(10).join('    ' + r for r in rows)}
}};

#endif /* EDGEPACK_EXAMPLE_INPUT_H_ */
"""
    return text, {**exp, "sample": source}


# --------------------------------------------------------------------------- ecosystem files

def _render(name: str, **values: Any) -> str:
    return Template((data_dir("templates") / "tflm" / name).read_text()).substitute(**values)


def _at(name: str, **values: str) -> str:
    """Templates whose language owns ``${...}`` (CMake, Kconfig): ``@KEY@`` placeholders."""
    text = (data_dir("templates") / "tflm" / name).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    return text


def zephyr_files(plan: FirmwarePlan) -> dict[str, str]:
    sym = f"EDGEPACK_{plan.ident.upper()}"
    module = yaml.safe_dump({"name": library_name(plan.ident),
                             "build": {"cmake": "zephyr", "kconfig": "zephyr/Kconfig"}}, sort_keys=False)
    return {"zephyr/module.yml": module,
            "zephyr/CMakeLists.txt": _at("zephyr/CMakeLists.txt.tmpl", SYM=sym, IDENT=plan.ident,
                                         DECODE_OS=ZEPHYR_DECODE_OS if _decodes(plan) else ""),
            "zephyr/Kconfig": _at("zephyr/Kconfig.tmpl", SYM=sym, IDENT=plan.ident,
                                  DECODE_DEFAULT="y" if _decodes(plan) else "n")}


def _decodes(plan: FirmwarePlan) -> bool:
    """Whether the model has TFLM's DECODE op (weights kept compressed in flash)."""
    return "AddDecode" in plan.calls


def compression_section(plan: FirmwarePlan) -> str:
    """The README's section on weights kept compressed in flash ('' when none are)."""
    c = plan.compression or {}
    if not _decodes(plan):
        return ""
    rows = "\n".join(f"| {one_line(t['name'], 60) or t['tensor']} | {t['op']} | {t['encoding']} | "
                      f"{t['bits'] if t['bits'] else ''} | {t['bytes_before']} | {t['bytes_after']} |"
                      for t in c.get("tensors", []))
    arena = c.get("arena_bytes") or {}
    return f"""## Weights compressed in flash (TFLM DECODE)

The model file is {c.get('compressed_bytes')} bytes instead of {c.get('plain_bytes')} (plain int8): TFLM's
`TFLM_DECODE` op decodes these tensors into the arena before the op that reads them (outputs
bit-identical to the plain model on the host TFLM; arena {arena.get('plain')} -> {arena.get('compressed')} B
on the host, included above).

| tensor | op | encoding | index bits | bytes before | bytes after |
|---|---|---|---|---|---|
{rows}

The TFLM library must include `tensorflow/lite/micro/kernels/` {', '.join(f'`{n}`' for n in DECODE_SOURCES)}
(no build flag), compiled for size (-Os) in every layout: `-DEDGEPACK_TFLM_ROOT` builds them (kernels/*.cc);
the Zephyr module compiles them from the tflite-micro module (`CONFIG_EDGEPACK_{plan.ident.upper()}_TFLM_DECODE`);
the ESP-IDF component sets -Os on esp-tflite-micro's copies and stops the build if it has none; the Arduino
library's `ep_decode_check.cc` stops the build if {ARDUINO_TFLM_LIBRARY} has none (Arduino cores compile
with -Os). Without them, package with the recipe's `tflm: {{compress: {{encoding: off}}}}`.

"""


def idf_manifest(build: Build, plan: FirmwarePlan) -> str:
    name, rng = ESP_TFLITE_MICRO
    manifest = {"version": __version__.split("+")[0],
                "description": one_line(f"The {build.model_name} model as TFLite-Micro C arrays with its op "
                                        f"resolver, I/O header and profiling harness (edgepack)", 250),
                "url": "https://github.com/tensorflow/tflite-micro",
                "dependencies": {"idf": {"version": ESP_IDF_VERSION}, name: {"version": rng}}}
    return "# Generated by edgepack; the ESP-IDF component manager reads this.\n" + yaml.safe_dump(
        manifest, sort_keys=False, allow_unicode=False, width=1000)


def library_properties(build: Build, plan: FirmwarePlan, library: str) -> str:
    """``library.properties`` per the Arduino library specification 1.5 (one line per key)."""
    sha = sha256_bytes(build.tflite)[:12]
    rows = {"name": library, "version": __version__.split("+")[0], "author": "edgepack",
            "maintainer": "edgepack",
            "sentence": f"The {plan.ident} model for TensorFlow Lite Micro: C arrays, op resolver, I/O header.",
            "paragraph": (f"Generated by edgepack from {build.model_name} ({len(build.tflite)} bytes, sha256 {sha}). "
                          f"Tensor arena: {plan.arena.recommended_bytes} bytes. Examples: Inference (one inference, "
                          "prints the top class) and Profile (the edgepack serial profiling harness)."),
            "category": "Data Processing", "url": "https://github.com/tensorflow/tflite-micro",
            "architectures": "*", "depends": ARDUINO_TFLM_LIBRARY, "dot_a_linkage": "true",
            "includes": f"{library}.h"}
    return "".join(f"{k}={one_line(v, 400)}\n" for k, v in rows.items())


def library_json(build: Build, plan: FirmwarePlan, library: str) -> str:
    """PlatformIO's ``library.json`` for the same Arduino library."""
    doc = {"name": library, "version": __version__.split("+")[0],
           "description": one_line(f"The {build.model_name} model for TensorFlow Lite Micro (edgepack)", 250),
           "keywords": ["tflite-micro", "tinyml", "edgepack"], "license": "Apache-2.0",
           "frameworks": ["arduino"], "platforms": "*",
           "build": {"libArchive": True}, "export": {"include": ["src", "examples", "library.properties"]}}
    return json.dumps(doc, indent=2, ensure_ascii=True) + "\n"


def _readme(build: Build, plan: FirmwarePlan, library: str, example: dict) -> str:
    p, b, a, par = plan.profile, plan.budget, plan.arena, plan.parity
    if par.get("skipped"):
        parity = "not checked: " + one_line(par["skipped"], 300)
    elif par["bit_exact"]:
        parity = f"bit-exact on {par['samples']} {par['data']} samples"
    else:
        parity = (f"max difference {par['max_raw_diff']:g} ({par['max_abs_diff']:.3g} in output units) on "
                  f"{par['samples']} {par['data']} samples")
    label = f" ({one_line(example['label'], 80)})" if example["label"] is not None else ""
    return _render("README.md.tmpl", ident=plan.ident, version=__version__, model=one_line(build.model_name, 120),
                   device=one_line(p.name), board=one_line(p.board), size_bytes=len(build.tflite),
                   sha256=sha256_bytes(build.tflite), ops=one_line(", ".join(build.info.op_names()), 1000),
                   arena_bytes=a.recommended_bytes, arena_min=a.min_bytes, arena_recorded=a.recorded_bytes,
                   arena_margin=a.margin_bytes, flash_needed=b["flash"]["needed"],
                   flash_total=b["flash"]["available"], runtime_flash=p.runtime_flash_bytes,
                   ram_needed=b["ram"]["needed"], ram_total=b["ram"]["available"], runtime_ram=p.runtime_ram_bytes,
                   parity=parity, library=library, expected_crc32=plan.harness["expected_crc32"],
                   sym=f"EDGEPACK_{plan.ident.upper()}", example_class=f"{example['top_class']}{label}",
                   example_sample=example["sample"], tflm_library=ARDUINO_TFLM_LIBRARY,
                   esp_dep=f"{ESP_TFLITE_MICRO[0]} {ESP_TFLITE_MICRO[1]}", compression=compression_section(plan),
                   **_notes(build))


def _notes(build: Build) -> dict[str, str]:
    """The README's notes on several inputs and several outputs (empty for one of each)."""
    notes = several_inputs_notes(len(build.info.inputs))
    return {**notes, "several_inputs": notes["several_inputs"] + several_outputs_note(build)}


def _arduino(build: Build, plan: FirmwarePlan, out: Path, generated: dict[str, str], example_h: str) -> list[str]:
    library = library_name(plan.ident)
    root = out / "arduino" / library
    tmpl = data_dir("templates") / "tflm"
    for sub in ("src", "examples/Profile", "examples/Inference"):
        (root / sub).mkdir(parents=True)
    (root / "library.properties").write_text(library_properties(build, plan, library))
    (root / "library.json").write_text(library_json(build, plan, library))
    guard = f"EDGEPACK_{library.upper()}_H_"
    umbrella = (f"/* Generated by edgepack: the {plan.ident} model for TFLite-Micro. */\n"
                f"#ifndef {guard}\n#define {guard}\n"
                '#include "model_config.h"\n#include "model_data.h"\n#include "model_ops.h"\n'
                '#include "board.h"\n#include "ep_harness.h"\n#include "ep_inference.h"\n'
                "#endif\n")
    (root / "src" / f"{library}.h").write_text(umbrella)
    for name, text in generated.items():
        (root / "src" / name).write_text(text)
    for name in (*ARDUINO_FILES, *ROOT_FILES):
        shutil.copyfile(tmpl / name, root / "src" / name)
    (root / "examples/Profile/Profile.ino").write_text(_render("arduino/Profile.ino.tmpl", library=library))
    (root / "examples/Inference/Inference.ino").write_text(_render("arduino/Inference.ino.tmpl", library=library))
    (root / "examples/Inference/example_input.h").write_text(example_h)
    if _decodes(plan):
        (root / "src" / "ep_decode_check.cc").write_text(arduino_decode_check(ARDUINO_TFLM_LIBRARY))
    return sorted(str(p.relative_to(out)) for p in root.rglob("*") if p.is_file())


def _provenance_rows(build: Build, plan: FirmwarePlan) -> dict:
    q = build.recipe.quantize
    steps = ", ".join(s.type for s in build.recipe.steps) or "none"
    return {"model": build.model_name, "recipe": f"steps=[{steps}] quantize={q.mode} io={q.io}",
            "device": f"{plan.profile.name} ({plan.profile.board})",
            "tensor_arena_bytes": plan.arena.recommended_bytes, "generator": f"edgepack {__version__}"}


def write_firmware(build: Build, plan: FirmwarePlan, out: Path) -> list[str]:
    """Write all firmware files under ``out``; return their paths relative to it."""
    out = Path(out)
    header, source = model_array_files(build.tflite, plan.ident, _provenance_rows(build, plan))
    generated = {"model_data.h": header, "model_data.cc": source,
                 "model_ops.h": model_ops_header(build.info, plan.ident),
                 "model_config.h": model_config_header(build, plan)}
    example_h, example = example_input_header(build, plan)
    tmpl = data_dir("templates") / "tflm"
    texts = {**generated, **zephyr_files(plan), "idf_component.yml": idf_manifest(build, plan),
             "CMakeLists.txt": _at("CMakeLists.txt.tmpl", IDENT=plan.ident, DECODE="ON" if _decodes(plan) else "OFF",
                                   DECODE_OS=CMAKE_DECODE_OS if _decodes(plan) else "",
                                   DECODE_IDF=IDF_DECODE if _decodes(plan) else ""),
             "examples/inference/main.cc": (tmpl / "inference_main.cc").read_text(),
             "examples/inference/example_input.h": example_h,
             "README.md": _readme(build, plan, library_name(plan.ident), example)}
    for name, text in texts.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    (out / "model.tflite").write_bytes(build.tflite)
    for name in ROOT_FILES:
        shutil.copyfile(tmpl / name, out / name)
    (out / "harness").mkdir()
    for name in HARNESS_FILES:
        shutil.copyfile(tmpl / name, out / "harness" / name)
    build.report["firmware_example"] = example
    files = [*texts, "model.tflite", *ROOT_FILES, *(f"harness/{n}" for n in HARNESS_FILES)]
    files += _arduino(build, plan, out, generated, example_h)
    return sorted(files)
