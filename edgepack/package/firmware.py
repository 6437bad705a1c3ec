"""Firmware target ("tflm"): TFLite-Micro C arrays, op resolver, arena size, project files.

The target declares its checks (``spec``): every op has a TFLM kernel, an int8-only board
gets no float ops, the arena TFLM needs, flash and RAM against the device profile, and
TFLM-vs-LiteRT parity; :func:`edgepack.verify.run_checks` runs them before anything is
written. ``write`` renders the plain folder (CMake/Zephyr/ESP-IDF), the harness and an
Arduino library from those results.

Example (Python; the CLI passes --device/--array-name as options)::

    t = FirmwareTarget()
    spec = t.spec({"device": "nucleo-l4r5zi", "array_name": "g_kws"})
    build.checks = run_checks(build, spec)   # UnsupportedOpError / BudgetError / VerificationError
    files = t.write(build, staging_dir)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from .. import __version__
from ..boards import DeviceProfile, list_profiles, load_profile
from ..build import Build
from ..convert.c_array import c_identifier, check_identifier, model_array_files
from ..errors import UsageError
from ..fsutil import sha256_bytes
from ..paths import data_dir
from ..tflm.ops import model_ops_header
from ..verify import TargetSpec
from .base import Target

HARNESS_FILES = ("ep_harness.cc", "ep_harness.h", "ep_protocol.c", "ep_protocol.h", "board.h", "main.cc",
                 "board_mps2.c", "mps2_an386.ld")
ARDUINO_FILES = ("ep_harness.cc", "ep_harness.h", "ep_protocol.c", "ep_protocol.h", "board.h", "board_arduino.cpp")
CHECKS = ("tflm_ops", "int8_only", "arena", "budget", "tflm_parity")


@dataclass
class FirmwarePlan:
    """What the firmware files are rendered from: the checks' results and the names to use."""

    profile: DeviceProfile
    ident: str
    calls: list[str]
    arena: Any  # tflm.ArenaSize
    parity: dict
    budget: dict
    harness: dict
    advice: list[str]

    def report(self) -> dict:
        return {"device": self.profile.name, "board": self.profile.board, "array_name": self.ident,
                "op_registrations": self.calls, "arena": self.arena.as_dict(), "parity": self.parity,
                "budget": self.budget, "harness": self.harness, "advice": self.advice}


def advice_for(build: Build) -> list[str]:
    """Hints that would shrink the firmware (the report shows them; nothing is refused)."""
    info, out = build.info, []
    per_channel_fc = [op for op in info.ops if op.op == "FULLY_CONNECTED" and len(op.inputs) > 1
                      and op.inputs[1] >= 0 and len(info.tensors[op.inputs[1]].scale) > 1]
    if per_channel_fc:
        out.append(f"{len(per_channel_fc)} FULLY_CONNECTED op(s) have per-channel weights: TFLM keeps per-channel "
                   "multipliers in the arena and the flatbuffer carries per-channel scales; per-tensor dense weights "
                   "(recipe quantize.dense_per_channel: false, the tflm default) shrink both "
                   "(MLPerf autoencoder: arena 22,048 -> 4,640 B, model -12.5%)")
    return out


def array_name(build_options: dict, model_name: str) -> str:
    """The C identifier of the model array: ``array_name`` if given (checked), else from the model name."""
    name = build_options.get("array_name")
    return check_identifier(str(name)) if name else c_identifier(model_name)


class FirmwareTarget(Target):
    """TFLite-Micro firmware sources for a device profile."""

    name = "tflm"
    option_names = frozenset({"device", "array_name"})
    dense_per_channel = False

    def spec(self, options: dict[str, Any]) -> TargetSpec:
        device = options.get("device")
        if not device:
            raise UsageError("--target tflm needs --device NAME (a device profile); known: "
                             + ", ".join(list_profiles()))
        profile = load_profile(str(device))
        name = options.get("array_name")
        if name:
            check_identifier(str(name))
        return TargetSpec(name=self.name, checks=CHECKS, profile=profile)

    def plan(self, build: Build) -> FirmwarePlan:
        """The rendering plan from the checks' results (``build.checks``) and the expected harness output."""
        from ..tflm import harness_expectation

        c = build.checks
        profile = load_profile(str(build.options["device"]))
        exp = harness_expectation(build.tflite, arena_size=c["arena"].recommended_bytes)
        harness = {"protocol": 1, "expected_crc32": exp["crc32"], "in_bytes": exp["in_bytes"],
                   "out_bytes": exp["out_bytes"], "clock_hz": profile.clock_hz}
        return FirmwarePlan(profile=profile, ident=array_name(build.options, build.model_name), calls=c["tflm_ops"],
                            arena=c["arena"], parity=c["tflm_parity"], budget=c["budget"], harness=harness,
                            advice=advice_for(build))

    def check(self, build: Build) -> None:
        super().check(build)
        build.report["firmware"] = self.plan(build).report()

    def write(self, build: Build, out: Path) -> list[str]:
        if set(CHECKS) - set(build.checks):
            self.check(build)
        plan = self.plan(build)
        files = write_firmware(build, plan, Path(out))
        build.report["firmware"] = {**plan.report(), "files": files}
        return files


def _provenance_rows(build: Build, plan: FirmwarePlan) -> dict:
    q = build.recipe.quantize
    steps = ", ".join(s.type for s in build.recipe.steps) or "none"
    return {"model": build.model_name, "recipe": f"steps=[{steps}] quantize={q.mode} io={q.io}",
            "device": f"{plan.profile.name} ({plan.profile.board})",
            "tensor_arena_bytes": plan.arena.recommended_bytes, "generator": f"edgepack {__version__}"}


def model_config_header(build: Build, plan: FirmwarePlan) -> str:
    """``model_config.h``: the names and sizes the harness (and users) build with."""
    a = plan.arena
    return f"""/* Generated by edgepack; do not edit. */
#ifndef EDGEPACK_MODEL_CONFIG_H_
#define EDGEPACK_MODEL_CONFIG_H_

#define EP_MODEL_NAME "{plan.ident}"
#define EP_MODEL_DATA {plan.ident}
#define EP_MODEL_DATA_LEN {len(build.tflite)}u
#define EP_OPS_NAMESPACE {plan.ident}_ops
#define EP_DEVICE_PROFILE "{plan.profile.name}"

/* Tensor arena: {a.min_bytes} B smallest working on the 64-bit host TFLM (bisection),
 * + {a.margin_bytes} B margin (optimized-kernel scratch, tflite-micro #2738). */
#define EP_ARENA_SIZE {a.recommended_bytes}u
#define EP_ARENA_MIN_HOST_BYTES {a.min_bytes}u

#ifndef EP_CLOCK_HZ
#define EP_CLOCK_HZ {plan.profile.clock_hz}u
#endif

#endif /* EDGEPACK_MODEL_CONFIG_H_ */
"""


def _render(name: str, **values: Any) -> str:
    return Template((data_dir("targets") / "tflm" / name).read_text()).substitute(**values)


def _readme(build: Build, plan: FirmwarePlan, library: str) -> str:
    p, b, a, par = plan.profile, plan.budget, plan.arena, plan.parity
    parity = (f"bit-exact on {par['samples']} {par['data']} samples" if par["bit_exact"] else
              f"max difference {par['max_raw_diff']:g} ({par['max_abs_diff']:.3g} in output units) on "
              f"{par['samples']} {par['data']} samples")
    return _render("README.md.tmpl", ident=plan.ident, version=__version__, model=build.model_name,
                   device=p.name, board=p.board, size_bytes=len(build.tflite), sha256=sha256_bytes(build.tflite),
                   ops=", ".join(build.info.op_names()), arena_bytes=a.recommended_bytes, arena_min=a.min_bytes,
                   arena_recorded=a.recorded_bytes, arena_margin=a.margin_bytes,
                   flash_needed=b["flash"]["needed"], flash_total=b["flash"]["available"],
                   runtime_flash=p.runtime_flash_bytes, ram_needed=b["ram"]["needed"],
                   ram_total=b["ram"]["available"], runtime_ram=p.runtime_ram_bytes, parity=parity,
                   library=library, expected_crc32=plan.harness["expected_crc32"])


def _arduino(build: Build, plan: FirmwarePlan, out: Path, generated: dict[str, str]) -> list[str]:
    library = f"edgepack_{plan.ident}"
    root = out / "arduino" / library
    (root / "src").mkdir(parents=True)
    (root / "examples" / "Profile").mkdir(parents=True)
    tmpl = data_dir("targets") / "tflm"
    props = _render("arduino/library.properties.tmpl", library=library, version=__version__, ident=plan.ident,
                    model=build.model_name, size_bytes=len(build.tflite),
                    sha256_short=sha256_bytes(build.tflite)[:12], arena_bytes=plan.arena.recommended_bytes)
    (root / "library.properties").write_text(props)
    umbrella = (f"/* Generated by edgepack: the {plan.ident} model for TFLite-Micro. */\n"
                f"#ifndef EDGEPACK_{library.upper()}_H_\n#define EDGEPACK_{library.upper()}_H_\n"
                '#include "model_config.h"\n#include "model_data.h"\n#include "model_ops.h"\n'
                '#include "board.h"\n#include "ep_harness.h"\n'
                f"#endif\n")
    (root / "src" / f"{library}.h").write_text(umbrella)
    for name, text in generated.items():
        (root / "src" / name).write_text(text)
    for name in ARDUINO_FILES:
        shutil.copyfile(tmpl / name, root / "src" / name)
    (root / "examples" / "Profile" / "Profile.ino").write_text(_render("arduino/Profile.ino.tmpl", library=library))
    return sorted(str(p.relative_to(out)) for p in root.rglob("*") if p.is_file())


def write_firmware(build: Build, plan: FirmwarePlan, out: Path) -> list[str]:
    """Write all firmware files under ``out``; return their paths relative to it."""
    header, source = model_array_files(build.tflite, plan.ident, _provenance_rows(build, plan))
    generated = {"model_data.h": header, "model_data.cc": source,
                 "model_ops.h": model_ops_header(build.info, plan.ident),
                 "model_config.h": model_config_header(build, plan)}
    for name, text in generated.items():
        (out / name).write_text(text)
    (out / "model.tflite").write_bytes(build.tflite)
    tmpl = data_dir("targets") / "tflm"
    (out / "harness").mkdir()
    for name in HARNESS_FILES:
        shutil.copyfile(tmpl / name, out / "harness" / name)
    cmake = (tmpl / "CMakeLists.txt.tmpl").read_text().replace("@IDENT@", plan.ident)  # CMake owns ${...}
    (out / "CMakeLists.txt").write_text(cmake)
    library = f"edgepack_{plan.ident}"
    (out / "README.md").write_text(_readme(build, plan, library))
    files = [*generated, "model.tflite", "CMakeLists.txt", "README.md", *(f"harness/{n}" for n in HARNESS_FILES)]
    files += _arduino(build, plan, out, generated)
    return sorted(files)
