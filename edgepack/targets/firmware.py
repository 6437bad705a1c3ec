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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..profiles import DeviceProfile, list_profiles, load_profile
from ..build import Build
from ..errors import UsageError
from ..tflm.c_array import c_identifier, check_identifier
from ..verify import TargetSpec
from .base import Target
from .firmware_files import model_config_header, write_firmware  # noqa: F401 (re-exported)

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
    kernels = "cmsis_nn"  # what Arduino_TensorFlowLite, STM32 and most Cortex-M builds of TFLM use

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
        build.report["firmware"] = {**plan.report(), "example": build.report.pop("firmware_example", None),
                                    "files": files}
        return files
