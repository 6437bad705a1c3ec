"""Firmware target ("tflm"): TFLite-Micro C arrays, op resolver, arena size, budget checks.

``check`` proves, before anything is written, that the model runs under TFLM (every op
has a kernel, int8-only boards get no float ops), that TFLM on the host matches LiteRT,
and that model + arena + runtime fit the device profile's flash and RAM. ``write`` puts
the plain folder (CMake/Zephyr/ESP-IDF), the harness and an Arduino library in place.

Example (Python; the CLI passes --device/--array-name as options)::

    t = FirmwareTarget()
    build.options = {"device": "nucleo-l4r5zi", "array_name": "g_kws"}
    t.check(build)                  # UnsupportedOpError / BudgetError / VerificationError
    files = t.write(build, staging_dir)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..convert.c_array import c_identifier, check_identifier
from ..convert.op_resolver import check_int8_only, check_tflm_ops
from ..devices.profiles import DeviceProfile, list_profiles, load_profile
from ..errors import BudgetError, UsageError, VerificationError
from ..fsutil import sha256_bytes
from .base import Build, Target
from .firmware_files import model_config_header, write_firmware  # noqa: F401 (re-exported)

PARITY_SAMPLES = 32  # calibration samples compared TFLM vs LiteRT
RANDOM_PARITY_SAMPLES = 8  # without calibration data: random inputs over the input's quantized range
# TFLM and LiteRT (reference kernels) are bit-exact on most int8 models, but FULLY_CONNECTED
# requantization can round one step differently; stacked layers and SOFTMAX widen that (seen: 3 steps
# on the MLPerf autoencoder, 10 on ResNet-8's softmax, on random full-range inputs). Differences
# beyond this many steps mean a real kernel mismatch, not rounding.
INT_PARITY_STEPS = 16
FLOAT_PARITY_ABS = 1e-3


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


@dataclass
class FirmwarePlan:
    """Everything ``check`` established; ``write`` only renders it."""

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


def _parity_inputs(build: Build, interp) -> tuple[np.ndarray, str]:
    if build.calibration is not None and len(build.calibration):
        return np.asarray(build.calibration[:PARITY_SAMPLES], dtype=np.float32), "calibration"
    rng = np.random.default_rng(0)
    shape = [RANDOM_PARITY_SAMPLES] + list(interp.input["shape"][1:])
    dtype, (scale, zp) = interp.input["dtype"], interp.input["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = rng.integers(info.min, info.max, size=shape, endpoint=True)
        return ((q - zp) * scale).astype(np.float32), "random"
    return rng.standard_normal(shape).astype(np.float32), "random"


def _check_parity(build: Build, arena_bytes: int) -> dict:
    from ..tflm import Tflm, parity

    interp = Tflm(build.tflite, arena_size=arena_bytes)
    x, source = _parity_inputs(build, interp)
    p = parity(build.tflite, x, arena_size=arena_bytes)
    out = {**p.as_dict(), "data": source}
    integer = np.issubdtype(np.dtype(p.output_dtype), np.integer)
    if (integer and p.max_raw_diff > INT_PARITY_STEPS) or (not integer and p.max_abs_diff > FLOAT_PARITY_ABS):
        unit = "quantization steps" if integer else "(float)"
        raise VerificationError(
            f"TFLM (host) and LiteRT disagree on {build.model_name}: max output difference {p.max_raw_diff:g} "
            f"{unit} over {p.samples} {source} samples; nothing written. Report the model to edgepack")
    return out


def _check_budget(build: Build, profile: DeviceProfile, arena_bytes: int) -> dict:
    flash = len(build.tflite) + profile.runtime_flash_bytes
    ram = arena_bytes + profile.runtime_ram_bytes
    budget = {"flash": {"needed": flash, "available": profile.flash_bytes, "model": len(build.tflite),
                        "runtime_estimate": profile.runtime_flash_bytes},
              "ram": {"needed": ram, "available": profile.ram_bytes, "arena": arena_bytes,
                      "runtime_estimate": profile.runtime_ram_bytes}}
    for kind, parts in (("flash", f"model {_kib(len(build.tflite))} + TFLM runtime estimate "
                                  f"{_kib(profile.runtime_flash_bytes)}"),
                        ("RAM", f"tensor arena {_kib(arena_bytes)} + runtime estimate {_kib(profile.runtime_ram_bytes)}")):
        b = budget[kind.lower()]
        if b["needed"] > b["available"]:
            over = b["needed"] - b["available"]
            raise BudgetError(
                f"{build.model_name} does not fit {profile.name} {kind}: needs {_kib(b['needed'])} ({parts}) "
                f"but the board has {_kib(b['available'])}; over by {_kib(over)} ({100 * over / b['available']:.0f}%). "
                "Shrink the model (int8, prune/cluster steps) or pick a bigger device profile")
        b["headroom"] = b["available"] - b["needed"]
    return budget


class FirmwareTarget(Target):
    """TFLite-Micro firmware sources for a device profile."""

    name = "tflm"
    option_names = frozenset({"device", "array_name"})
    dense_per_channel = False

    def __init__(self) -> None:
        self._plan: Optional[FirmwarePlan] = None
        self._planned_sha: Optional[str] = None

    def plan(self, build: Build) -> FirmwarePlan:
        """Run every check (in the order a user would want to hear about problems)."""
        from ..tflm import find_arena, harness_expectation

        device = build.options.get("device")
        if not device:
            raise UsageError("--target tflm needs --device NAME (a device profile); known: "
                             + ", ".join(list_profiles()))
        profile = load_profile(str(device))
        name = build.options.get("array_name")
        ident = check_identifier(str(name)) if name else c_identifier(build.model_name)
        calls = check_tflm_ops(build.info)
        if profile.int8_only:
            check_int8_only(build.info, profile.name)
        arena = find_arena(build.tflite)
        budget = _check_budget(build, profile, arena.recommended_bytes)
        par = _check_parity(build, arena.recommended_bytes)
        exp = harness_expectation(build.tflite, arena_size=arena.recommended_bytes)
        harness = {"protocol": 1, "expected_crc32": exp["crc32"], "in_bytes": exp["in_bytes"],
                   "out_bytes": exp["out_bytes"], "clock_hz": profile.clock_hz}
        return FirmwarePlan(profile=profile, ident=ident, calls=calls, arena=arena, parity=par,
                            budget=budget, harness=harness, advice=advice_for(build))

    def check(self, build: Build) -> None:
        self._plan = self.plan(build)
        self._planned_sha = sha256_bytes(build.tflite)
        build.report["firmware"] = self._plan.report()

    def write(self, build: Build, out: Path) -> list[str]:
        if self._plan is None or self._planned_sha != sha256_bytes(build.tflite):
            self.check(build)
        plan = self._plan
        files = write_firmware(build, plan, Path(out))
        build.report["firmware"] = {**plan.report(), "example": build.report.pop("firmware_example", None),
                                    "files": files}
        return files
