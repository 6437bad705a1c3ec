"""Firmware layouts checked by the real tools: CMake (plain, against the shared TFLM tree; Zephyr's and
ESP-IDF's CMake entry points through faithful copies of their functions), pykwalify with Zephyr's
module.yml rules, kconfiglib (Zephyr's Kconfig parser), the ESP-IDF component manager's own manifest
validation, the Arduino library specification's rules; the model header's quantize helpers against
numpy; hostile names that must not inject anything into a generated file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgepack.targets.firmware import FirmwareTarget
from edgepack.targets.firmware_files import QUANT_RANGES, c_float, quantize_like_tflm
from tflm_helpers import build_for, calib
from zephyr_shim import ZEPHYR_CMAKE_SHIM
from locations import ROOT, GOLDEN, TFLM_TREE

LABELS = ["zero", "one", "two"]
HOSTILE = 'evil\nname=pwned\r\n*/ #define X 1 /* "q" \\ é ☃ ??/ \u2028next'
needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
needs_cc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("g++") is None, reason="no host gcc/g++")


def _package(out: Path, name: str = "tiny", labels=LABELS, array_name: str | None = "g_tiny") -> dict:
    opts = {"device": "nucleo-l4r5zi", **({"array_name": array_name} if array_name else {})}
    build = build_for((GOLDEN / "tiny_int8.tflite").read_bytes(), name=name, options=opts, calibration=calib(16))
    build.labels = labels
    files = FirmwareTarget().write(build, out)
    return {**build.report["firmware"], "written": files}


@pytest.fixture(scope="module")
def pkg(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fw")
    return out, _package(out)


def _run(*cmd, cwd: Path | None = None, env=None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"{cmd[0]} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


# ----------------------------------------------------------------------------------------------- Zephyr

# The rules scripts/zephyr_module.py (zephyrproject-rtos/zephyr) validates zephyr/module.yml with, written
# as a pykwalify schema: the keys Zephyr knows and their types; anything else is an error.
ZEPHYR_MODULE_RULES = {
    "type": "map", "mapping": {
        "name": {"type": "str"},
        "build": {"type": "map", "mapping": {
            "cmake": {"type": "str"}, "kconfig": {"type": "str"},
            "cmake-ext": {"type": "bool"}, "kconfig-ext": {"type": "bool"},
            "sysbuild-cmake": {"type": "str"}, "sysbuild-kconfig": {"type": "str"},
            "sysbuild-cmake-ext": {"type": "bool"}, "sysbuild-kconfig-ext": {"type": "bool"},
            "depends": {"type": "seq", "sequence": [{"type": "str"}]},
            "settings": {"type": "map", "mapping": {k: {"type": "str"} for k in (
                "board_root", "dts_root", "soc_root", "arch_root", "module_ext_root", "sca_root")}}}},
        "tests": {"type": "seq", "sequence": [{"type": "str"}]},
        "samples": {"type": "seq", "sequence": [{"type": "str"}]},
        "boards": {"type": "seq", "sequence": [{"type": "str"}]},
    }}



def test_zephyr_module_yml_follows_zephyr_rules(pkg):
    from pykwalify.core import Core

    out, fw = pkg
    meta = yaml.safe_load((out / "zephyr/module.yml").read_text())
    Core(source_data=meta, schema_data=ZEPHYR_MODULE_RULES).validate(raise_exception=True)
    # zephyr_module.py's own checks: the cmake folder holds a CMakeLists.txt, kconfig names a file
    assert (out / meta["build"]["cmake"] / "CMakeLists.txt").is_file()
    assert (out / meta["build"]["kconfig"]).is_file()
    assert meta["name"] == "edgepack_g_tiny" and "zephyr/module.yml" in fw["written"]
    with pytest.raises(Exception):  # the rules do catch a malformed build section
        Core(source_data={"build": {"cmake": ["zephyr"]}}, schema_data=ZEPHYR_MODULE_RULES).validate(
            raise_exception=True)


def test_zephyr_kconfig_parses_with_kconfiglib(pkg, tmp_path):
    import kconfiglib

    out, _ = pkg
    # what Zephyr's build does with a module's Kconfig: a menu that osources it (zephyr_module.py's snippet)
    top = tmp_path / "Kconfig"
    top.write_text('config TENSORFLOW_LITE_MICRO\n\tbool "TFLM"\nconfig CPP\n\tbool "C++"\n'
                   'config SERIAL\n\tbool "serial"\n'
                   f'menu "edgepack_g_tiny ({out})"\nosource "{out}/zephyr/Kconfig"\n'
                   "config ZEPHYR_EDGEPACK_G_TINY_MODULE\n\tbool\n\tdefault y\nendmenu\n")
    kconf = kconfiglib.Kconfig(str(top), warn_to_stderr=False)
    assert kconf.warnings == []
    sym = kconf.syms["EDGEPACK_G_TINY"]
    assert sym.str_value == "n" and sym.visibility == 0  # hidden until TFLM and C++ are on
    for name in ("TENSORFLOW_LITE_MICRO", "CPP", "EDGEPACK_G_TINY"):
        assert kconf.syms[name].set_value(2)
    assert kconf.syms["EDGEPACK_G_TINY_INFERENCE"].str_value == "y"  # default y once the model is on
    assert kconf.syms["EDGEPACK_G_TINY_HARNESS"].visibility == 0  # needs SERIAL
    kconf.syms["SERIAL"].set_value(2)
    assert kconf.syms["EDGEPACK_G_TINY_HARNESS"].set_value(2)


@needs_cmake
@needs_cc
def test_zephyr_cmake_builds_through_zephyr_library(pkg, tmp_path):
    out, _ = pkg
    shim = tmp_path / "app"
    shim.mkdir()
    (shim / "CMakeLists.txt").write_text(
        ZEPHYR_CMAKE_SHIM + "set(CONFIG_EDGEPACK_G_TINY y)\nset(CONFIG_EDGEPACK_G_TINY_INFERENCE y)\n"
        f'add_subdirectory("{out}/zephyr" module)\n'
        'add_executable(app app.c)\ntarget_link_libraries(app PRIVATE zephyr_interface)\n'
        'file(READ ${CMAKE_BINARY_DIR}/zephyr_libs.txt _libs)\nstring(STRIP "${_libs}" _libs)\n'
        'get_target_property(_srcs ${_libs} SOURCES)\nfile(WRITE ${CMAKE_BINARY_DIR}/sources.txt "${_srcs}")\n')
    # the application sees the module's headers through zephyr_interface
    (shim / "app.c").write_text('#include "model_config.h"\n#include "model_data.h"\n#include "ep_inference.h"\n'
                                "int main(void) { return (int)EP_ARENA_SIZE == 0; }\n")
    b = tmp_path / "b"
    _run("cmake", "-S", shim, "-B", b)
    sources = (b / "sources.txt").read_text().split(";")
    assert sorted(Path(s).name for s in sources) == ["ep_inference.cc", "model_data.cc"]
    _run("cmake", "--build", b, "--target", "app")  # compiles model_data.cc into the zephyr library and app.c


# ----------------------------------------------------------------------------------------------- ESP-IDF

def test_idf_component_manifest_is_valid_for_the_component_manager(pkg):
    from idf_component_tools.manager import ManifestManager, UploadMode

    out, _ = pkg
    mm = ManifestManager(out, "g_tiny", upload_mode=UploadMode.component)
    assert mm.validation_errors == []
    reqs = {r.name: r.version_spec for r in mm.load().raw_requirements}
    assert reqs["espressif/esp-tflite-micro"] == "^1.3.4" and reqs["idf"] == ">=5.0"
    bad = out.parent / "bad_manifest"
    bad.mkdir(exist_ok=True)
    (bad / "idf_component.yml").write_text("dependencies:\n  espressif/esp-tflite-micro:\n    version: '^^1'\n")
    assert ManifestManager(bad, "x").validation_errors  # the validator does refuse a bad range


@needs_cmake
def test_idf_component_register_names_real_files(pkg, tmp_path):
    """ESP-IDF's idf_component_register arguments, checked the way IDF resolves them (paths relative to the
    component folder)."""
    out, _ = pkg
    shim = tmp_path / "idf"
    shim.mkdir()
    (shim / "CMakeLists.txt").write_text(r"""
cmake_minimum_required(VERSION 3.13)
project(idf_shim NONE)
function(idf_component_register)
  cmake_parse_arguments(C "" "" "SRCS;SRC_DIRS;INCLUDE_DIRS;PRIV_INCLUDE_DIRS;REQUIRES;PRIV_REQUIRES;EMBED_FILES" ${ARGN})
  if(C_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "idf_component_register: unknown arguments ${C_UNPARSED_ARGUMENTS}")
  endif()
  foreach(s ${C_SRCS})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${s})
      message(FATAL_ERROR "SRCS: no such file ${s}")
    endif()
  endforeach()
  foreach(d ${C_INCLUDE_DIRS})
    if(NOT IS_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/${d})
      message(FATAL_ERROR "INCLUDE_DIRS: no such folder ${d}")
    endif()
  endforeach()
  file(WRITE ${CMAKE_BINARY_DIR}/component.json "{\"srcs\": \"${C_SRCS}\", \"requires\": \"${C_REQUIRES}\"}")
endfunction()
set(ESP_PLATFORM 1)
""" + f'add_subdirectory("{out}" component)\n')
    b = tmp_path / "b"
    _run("cmake", "-S", shim, "-B", b)
    comp = json.loads((b / "component.json").read_text())
    assert comp["requires"] == "esp-tflite-micro"
    assert {"model_data.cc", "harness/ep_inference.cc", "harness/board_esp_idf.c"} <= set(comp["srcs"].split(";"))


# ----------------------------------------------------------------------------------------------- Arduino

ARDUINO_CATEGORIES = {"Display", "Communication", "Signal Input/Output", "Sensors", "Device Control", "Timing",
                      "Data Storage", "Data Processing", "Other"}
ARDUINO_KEYS = {"name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                "architectures", "depends", "dot_a_linkage", "includes", "precompiled", "ldflags"}
ARDUINO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]*$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.\-]+)?(\+[0-9A-Za-z.\-]+)?$")


def check_arduino_library(lib: Path) -> dict:
    """The Arduino library specification (1.5 format) rules a library folder must meet; returns the properties."""
    text = (lib / "library.properties").read_text(encoding="utf-8")
    props = {}
    for ln in text.splitlines():
        assert "=" in ln and not ln.startswith((" ", "\t")), f"not a key=value line: {ln!r}"
        key, value = ln.split("=", 1)
        assert key in ARDUINO_KEYS and key not in props, f"unknown or repeated key {key!r}"
        props[key] = value
    for key in ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                "architectures"):
        assert props.get(key, "").strip(), f"library.properties lacks {key}"
    assert ARDUINO_NAME.match(props["name"]) and len(props["name"]) <= 63 and re.search("[A-Za-z]", props["name"])
    assert SEMVER.match(props["version"]) and props["category"] in ARDUINO_CATEGORIES
    assert re.match(r"^https?://\S+$", props["url"]) and props["dot_a_linkage"] in ("true", "false")
    for dep in filter(None, (d.strip() for d in props.get("depends", "").split(","))):
        assert ARDUINO_NAME.match(re.sub(r"\s*\(.*\)$", "", dep)), dep
    for inc in props["includes"].split(","):
        assert (lib / "src" / inc.strip()).is_file(), f"includes names {inc}, not in src/"
    for ex in (lib / "examples").iterdir():  # each example is a sketch folder holding <folder>.ino
        assert (ex / f"{ex.name}.ino").is_file(), ex
    assert not (lib / "src" / "main.cc").exists()  # Arduino compiles every file in src/
    return props


def test_arduino_library_meets_the_specification(pkg):
    out, _ = pkg
    lib = out / "arduino" / "edgepack_g_tiny"
    props = check_arduino_library(lib)
    assert props["name"] == lib.name and props["depends"] == "Arduino_TensorFlowLite"
    assert {p.name for p in (lib / "examples").iterdir()} == {"Inference", "Profile"}
    ino = (lib / "examples/Inference/Inference.ino").read_text()
    assert "ep_run_inference(ep_example_input, EP_EXAMPLE_INPUT_LEN)" in ino and "ep_labels[" in ino
    pio = json.loads((lib / "library.json").read_text())
    assert pio["name"] == props["name"] and pio["version"] == props["version"] and pio["frameworks"] == ["arduino"]


# ----------------------------------------------------------------------------------------------- plain CMake

@needs_cmake
@pytest.mark.skipif(not (TFLM_TREE / "tensorflow/lite/micro/micro_interpreter.h").is_file(),
                    reason=f"no TFLM tree at {TFLM_TREE}")
@needs_cc
def test_plain_cmake_configures_against_a_tflm_tree(pkg, tmp_path):
    out, _ = pkg
    b = tmp_path / "b"
    _run("cmake", "-S", out, "-B", b, f"-DEDGEPACK_TFLM_ROOT={TFLM_TREE}", "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror")
    targets = _run("cmake", "--build", b, "--target", "help").stdout
    for t in ("edgepack_tflm", "g_tiny_model", "g_tiny_inference", "g_tiny_harness", "g_tiny_inference_example"):
        assert re.search(rf"\b{t}\b", targets), t
    # our own sources compile against the tree's headers (the TFLM library itself: the slow test below)
    _run("make", "harness/ep_inference.cc.o", "harness/ep_harness.cc.o", "examples/inference/main.cc.o", cwd=b)
    bad = tmp_path / "bad"
    r = subprocess.run(["cmake", "-S", out, "-B", bad, f"-DEDGEPACK_TFLM_ROOT={tmp_path}"], capture_output=True, text=True)
    assert r.returncode != 0 and "holds no tensorflow/lite/micro/micro_interpreter.h" in r.stderr


@pytest.mark.slow
@needs_cmake
@needs_cc
@pytest.mark.skipif(not (TFLM_TREE / "tensorflow/lite/micro/micro_interpreter.h").is_file(), reason="no TFLM tree")
def test_inference_example_runs_on_the_host_and_finds_the_packaged_top_class(pkg, tmp_path):
    out, fw = pkg
    b = tmp_path / "b"
    _run("cmake", "-S", out, "-B", b, f"-DEDGEPACK_TFLM_ROOT={TFLM_TREE}", "-DCMAKE_BUILD_TYPE=Release")
    _run("cmake", "--build", b, "--target", "g_tiny_inference_example", "-j", str(os.cpu_count() or 2))
    r = subprocess.run([str(b / "g_tiny_inference_example")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    top = fw["example"]["top_class"]
    assert f"top class {top} " in r.stdout and f"label {LABELS[top]}" in r.stdout


# ----------------------------------------------------------------------------------------------- the model header

HELPER_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ep_quantize.h"
int main(int argc, char** argv) {
  float scale = strtof(argv[1], NULL);
  int zp = atoi(argv[2]);
  int kind = atoi(argv[3]);
  unsigned n;
  if (argc < 4 || fread(&n, 4, 1, stdin) != 1) return 3;
  for (unsigned i = 0; i < n; ++i) {
    float x;
    if (fread(&x, 4, 1, stdin) != 1) return 4;
    int q = kind == 0 ? ep_quantize_int8(x, scale, zp) : kind == 1 ? ep_quantize_uint8(x, scale, zp)
                                                        : ep_quantize_int16(x, scale, zp);
    float d = ep_dequantize(q, scale, zp);
    fwrite(&q, 4, 1, stdout);
    fwrite(&d, 4, 1, stdout);
  }
  return 0;
}
"""


@needs_cc
@pytest.mark.parametrize("compiler, std, src", [("gcc", "-std=c99", "q.c"), ("g++", "-std=c++11", "q.cc")])
def test_quantize_helpers_match_tflite_rounding(tmp_path, compiler, std, src):
    """The C helpers against numpy on random values, exact halves, the range ends, +-inf and NaN."""
    shutil.copyfile(ROOT / "templates/tflm/ep_quantize.h", tmp_path / "ep_quantize.h")
    (tmp_path / src).write_text(HELPER_PROGRAM)
    _run(compiler, std, "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", src, "-o", "q", cwd=tmp_path)
    rng = np.random.default_rng(7)
    for kind, (dtype, scale, zp) in enumerate([("int8", 0.0039177486, -128), ("uint8", 0.02352941, 128),
                                               ("int16", 0.000030518, 0)]):
        scale = np.float32(scale)
        lo, hi = QUANT_RANGES[dtype]
        steps = np.arange(lo - zp - 3, hi - zp + 3, dtype=np.float32)
        x = np.concatenate([rng.uniform((lo - zp - 20) * scale, (hi - zp + 20) * scale, 4000).astype(np.float32),
                            (steps + np.float32(0.5)) * scale, (steps - np.float32(0.5)) * scale, steps * scale,
                            np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30], np.float32)])
        r = subprocess.run([str(tmp_path / "q"), repr(float(scale)), str(zp), str(kind)],
                           input=np.uint32(x.size).tobytes() + x.tobytes(), capture_output=True, check=True)
        got = np.frombuffer(r.stdout, dtype=np.int32).reshape(-1, 2)
        want = quantize_like_tflm(x, float(scale), zp, dtype).astype(np.int32)
        assert np.array_equal(got[:, 0], want), dtype
        deq = got[:, 1].copy().view(np.float32)
        assert np.array_equal(deq, (scale * (want - zp).astype(np.float32)).astype(np.float32))
        # away from exact halves numpy's np.round (half to even) agrees too
        finite = np.isfinite(x)
        q = x[finite] / scale
        off = np.abs(np.abs(q - np.trunc(q)) - 0.5) > 1e-3
        ref = np.clip(np.round(q[off]) + zp, lo, hi)
        assert np.array_equal(got[:, 0][finite][off], ref.astype(np.int32))
        # and at exact halves the rule is TFLite's (away from zero), not numpy's
        half = (np.float32(2.5) * scale) if dtype != "uint8" else (np.float32(-2.5) * scale)
        assert quantize_like_tflm(np.array([half]), float(scale), zp, dtype)[0] == (zp + 3 if dtype != "uint8" else zp - 3)


def test_c_float_round_trips_float32():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.standard_normal(500) * 10.0 ** rng.integers(-8, 8, 500),
                             [0.0, 1.0, -1.0, 1 / 255, 0.00390625, 3.4e38, 1e-45]]).astype(np.float32)
    for v in values:
        lit = c_float(float(v))
        assert lit.endswith("f") and np.float32(float(lit[:-1])) == v, lit


@needs_cc
def test_model_header_carries_io_preprocessing_and_labels(pkg, tmp_path):
    """Compile model_config.h into a host program that prints what it declares; compare with the flatbuffer."""
    from edgepack.convert.flatbuffer import read_tflite

    out, _ = pkg
    info = read_tflite((out / "model.tflite").read_bytes())
    tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    prog = tmp_path / "p.c"
    prog.write_text('#include <stdio.h>\n#include "model_config.h"\n'
                    "int main(void) { const int s[] = EP_INPUT0_SHAPE; unsigned i;\n"
                    '  printf("%d %d %d %d %.9g %d %.9g %d %u %u %.9g\\n", s[0], s[1], s[2], s[3], EP_INPUT0_SCALE,\n'
                    "         EP_INPUT0_ZERO_POINT, EP_OUTPUT0_SCALE, EP_OUTPUT0_ZERO_POINT, EP_INPUT0_ELEMENTS,\n"
                    "         EP_OUTPUT0_BYTES, ep_preprocess(2.0f, 0));\n"
                    '  for (i = 0; i < EP_LABEL_COUNT; ++i) printf("%s\\n", ep_labels[i]);\n'
                    "  return EP_INPUT_COUNT == 1 && EP_OUTPUT_COUNT == 1 && sizeof(EP_INPUT0_CTYPE) == 1 ? 0 : 1; }\n")
    _run("gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{out}", str(prog), "-o", tmp_path / "p")
    lines = _run(tmp_path / "p").stdout.splitlines()
    f = lines[0].split()
    assert [int(v) for v in f[:4]] == tin.shape
    assert np.float32(float(f[4])) == np.float32(tin.scale[0]) and int(f[5]) == tin.zero_point[0]
    assert np.float32(float(f[6])) == np.float32(tout.scale[0]) and int(f[7]) == tout.zero_point[0]
    assert int(f[8]) == int(np.prod(tin.shape)) and int(f[9]) == int(np.prod(tout.shape))
    assert float(f[10]) == 2.0  # the tiny recipe's preprocess: scale 1, mean 0
    assert lines[1:] == LABELS


# ----------------------------------------------------------------------------------------------- hostile names

@needs_cc
def test_hostile_names_and_labels_inject_nothing(tmp_path):
    out = tmp_path / "fw"
    out.mkdir()
    labels = [HOSTILE, 'a"b', "c\\", "*/", "ü"]
    fw = _package(out, name=HOSTILE, labels=labels, array_name=None)
    ident = fw["array_name"]
    assert re.fullmatch(r"[a-z0-9_]+", ident)
    lib = out / "arduino" / f"edgepack_{ident}"
    props = check_arduino_library(lib)  # still one key per line, nothing injected
    assert "name=pwned" not in (lib / "library.properties").read_text().splitlines()
    assert "\n" not in props["paragraph"] and "evil name=pwned" in props["paragraph"]
    for text_file in [*out.glob("*.h"), *out.glob("*.cc"), *out.rglob("*.ino"), *out.rglob("*.md")]:
        text = text_file.read_text()
        assert not re.search(r"^\s*(name=pwned|#define X 1|next)", text, flags=re.M), text_file
    # the C strings hold the exact UTF-8 bytes of the user's text; the comments end where they should
    prog = tmp_path / "p.c"
    prog.write_text('#include <stdio.h>\n#include "model_config.h"\n#include "model_data.h"\n'
                    "#ifdef X\n#error comment injection\n#endif\n"
                    'int main(void) { unsigned i; fputs(EP_MODEL_SOURCE, stdout); fputc(0, stdout);\n'
                    "  for (i = 0; i < EP_LABEL_COUNT; ++i) { fputs(ep_labels[i], stdout); fputc(0, stdout); }\n"
                    "  return 0; }\n")
    for std in ("-std=c99", "-std=gnu11"):
        _run("gcc", std, "-trigraphs", "-Wall", "-Wextra", "-Werror", f"-I{out}", str(prog), "-o", tmp_path / "p")
        got = subprocess.run([str(tmp_path / "p")], capture_output=True, check=True).stdout
        assert got.split(b"\0")[:-1] == [s.encode() for s in [HOSTILE, *labels]]
    _run("g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", f"-I{out}", "-c", out / "model_data.cc", "-o",
         tmp_path / "m.o")
    for yml in ("idf_component.yml", "zephyr/module.yml"):
        doc = yaml.safe_load((out / yml).read_text())
        assert doc is not None
    desc = yaml.safe_load((out / "idf_component.yml").read_text())["description"]
    assert "\n" not in desc and "evil name=pwned" in desc
    readme = (out / "README.md").read_text()
    assert "from `evil name=pwned * / #define" in readme or "from `evil name=pwned */ #define" in readme


# ----------------------------------------------------------------------------------------------- compressed weights

needs_tree = pytest.mark.skipif(not (TFLM_TREE / "tensorflow/lite/micro/kernels/decode.cc").is_file(),
                                reason=f"no TFLM tree with the DECODE kernel at {TFLM_TREE}")
DECODE_SOURCES = ("decode.cc", "decode_state.cc", "decode_state_lut.cc", "decode_state_prune.cc",
                  "decode_state_huffman.cc")


@pytest.fixture(scope="module")
def decode_pkg(tmp_path_factory) -> Path:
    """A package whose weights stay compressed in flash (TFLM_DECODE): a small CNN sharing 16 values."""
    from edgepack.build import Build
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.recipe import Recipe
    from shared_values import X, cnn as _cnn

    data = _cnn(16)
    recipe = Recipe.from_dict({"quantize": {"mode": "int8", "io": "int8"},
                               "tflm": {"compress": {"decode_code_bytes": 0}, "offline_plan": False}})
    build = Build(tflite=data, info=read_tflite(data), recipe=recipe, model_name="packed", calibration=X,
                  options={"device": "nucleo-l4r5zi", "array_name": "g_packed"})
    t = FirmwareTarget()
    t.check(build)
    t.finalize_model(build)
    assert "AddDecode" in build.checks["tflm_ops"]
    out = tmp_path_factory.mktemp("fw_decode")
    t.write(build, out)
    return out


def _compile_commands(b: Path) -> dict[str, str]:
    return {Path(c["file"]).name: c.get("command") or " ".join(c["arguments"])
            for c in json.loads((b / "compile_commands.json").read_text())}


def _last_opt(command: str) -> str:
    return [f for f in command.split() if re.fullmatch(r"-O[0-3sz]?", f)][-1]


def test_uncompressed_layouts_carry_no_decode_build_lines(pkg):
    out, _ = pkg
    for name in ("CMakeLists.txt", "zephyr/CMakeLists.txt"):
        text = (out / name).read_text()
        assert "set_source_files_properties" not in text and "@DECODE" not in text, name
    assert "idf_component_get_property" not in (out / "CMakeLists.txt").read_text()
    assert not list(out.rglob("ep_decode_check.cc"))


@needs_cmake
@needs_cc
@needs_tree
def test_plain_cmake_compiles_the_decode_kernel_for_size(decode_pkg, tmp_path):
    b = tmp_path / "b"
    _run("cmake", "-S", decode_pkg, "-B", b, f"-DEDGEPACK_TFLM_ROOT={TFLM_TREE}", "-DCMAKE_BUILD_TYPE=Release",
         "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON")
    cmds = _compile_commands(b)
    assert all(_last_opt(cmds[n]) == "-Os" for n in DECODE_SOURCES)
    assert _last_opt(cmds["conv.cc"]) == "-O3"  # the rest of TFLM keeps the build type's flags
    # the real compile of the LUT decoder with those flags (the -Os object is smaller than -O3's)
    lut = cmds["decode_state_lut.cc"]
    r = subprocess.run(lut, shell=True, cwd=b, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


@needs_cmake
@needs_cc
@needs_tree
def test_zephyr_module_compiles_the_decode_kernel_for_size(decode_pkg, tmp_path):
    shim = tmp_path / "app"
    shim.mkdir()
    (shim / "CMakeLists.txt").write_text(
        ZEPHYR_CMAKE_SHIM + "set(CMAKE_EXPORT_COMPILE_COMMANDS ON)\n"
        f'set(ZEPHYR_TFLITE_MICRO_MODULE_DIR "{TFLM_TREE}")\n'
        "set(CONFIG_EDGEPACK_G_PACKED y)\nset(CONFIG_EDGEPACK_G_PACKED_TFLM_DECODE y)\n"
        f'add_subdirectory("{decode_pkg}/zephyr" module)\n'
        'file(READ ${CMAKE_BINARY_DIR}/zephyr_libs.txt _libs)\nstring(STRIP "${_libs}" _libs)\n'
        'get_target_property(_srcs ${_libs} SOURCES)\nfile(WRITE ${CMAKE_BINARY_DIR}/sources.txt "${_srcs}")\n')
    b = tmp_path / "b"
    _run("cmake", "-S", shim, "-B", b)
    names = sorted(Path(s).name for s in (b / "sources.txt").read_text().split(";"))
    assert names == sorted(["model_data.cc", *DECODE_SOURCES])
    cmds = _compile_commands(b)
    assert all(_last_opt(cmds[n]) == "-Os" for n in DECODE_SOURCES) and "-Os" not in cmds["model_data.cc"]


def _idf_shim(tmp_path: Path, component: Path, tflm_dir: Path) -> subprocess.CompletedProcess:
    """ESP-IDF's component functions as they act here: the build's component list, a component's folder
    and library target (esp-tflite-micro's, defined in its own directory as IDF does)."""
    shim = tmp_path / "idf"
    (shim / "tflm").mkdir(parents=True)
    (shim / "tflm" / "stub.cc").write_text("int ep_stub;\n")
    (shim / "tflm" / "CMakeLists.txt").write_text(
        f'file(GLOB _k "{tflm_dir}/tensorflow/lite/micro/kernels/*.cc")\n'
        "add_library(__idf_espressif__esp-tflite-micro STATIC stub.cc ${_k})\n")
    (shim / "CMakeLists.txt").write_text(f"""
cmake_minimum_required(VERSION 3.18)
project(idf_shim CXX)
add_subdirectory(tflm)
function(idf_component_register)
endfunction()
function(idf_build_get_property var prop)
  set(${{var}} "main;espressif__esp-tflite-micro;esp_timer" PARENT_SCOPE)
endfunction()
function(idf_component_get_property var component prop)
  if(NOT component STREQUAL "espressif__esp-tflite-micro")
    message(FATAL_ERROR "unknown component ${{component}}")
  endif()
  if(prop STREQUAL "COMPONENT_DIR")
    set(${{var}} "{tflm_dir}" PARENT_SCOPE)
  elseif(prop STREQUAL "COMPONENT_LIB")
    set(${{var}} __idf_espressif__esp-tflite-micro PARENT_SCOPE)
  endif()
endfunction()
set(ESP_PLATFORM 1)
add_subdirectory("{component}" component)
get_source_file_property(_o "{tflm_dir}/tensorflow/lite/micro/kernels/decode_state_lut.cc"
                         TARGET_DIRECTORY __idf_espressif__esp-tflite-micro COMPILE_OPTIONS)
file(WRITE ${{CMAKE_BINARY_DIR}}/decode_opts.txt "${{_o}}")
""")
    return subprocess.run(["cmake", "-S", str(shim), "-B", str(tmp_path / "b")], capture_output=True, text=True)


@needs_cmake
@needs_cc
@needs_tree
def test_esp_idf_component_compiles_esp_tflite_micros_decode_kernel_for_size(decode_pkg, pkg, tmp_path):
    r = _idf_shim(tmp_path / "ok", decode_pkg, TFLM_TREE)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "ok/b/decode_opts.txt").read_text() == "-Os"
    r = _idf_shim(tmp_path / "old", decode_pkg, tmp_path)  # an esp-tflite-micro without the DECODE kernel
    assert r.returncode != 0 and "has no tensorflow/lite/micro/kernels/decode.cc" in " ".join(r.stderr.split())
    r = _idf_shim(tmp_path / "plain", pkg[0], tmp_path)  # an uncompressed model asks nothing of it
    assert r.returncode == 0, r.stderr[-2000:]


@needs_cc
@needs_tree
def test_arduino_library_stops_the_build_without_the_decode_kernel(decode_pkg, tmp_path):
    lib = decode_pkg / "arduino" / "edgepack_g_packed"
    check_arduino_library(lib)
    check = lib / "src" / "ep_decode_check.cc"
    _run("g++", "-std=c++11", "-Os", f"-I{TFLM_TREE}", "-c", check, "-o", tmp_path / "ok.o")
    r = subprocess.run(["g++", "-std=c++11", f"-I{tmp_path}", "-c", str(check), "-o", str(tmp_path / "no.o")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Arduino_TensorFlowLite lacks TFLM's DECODE kernel" in r.stderr
