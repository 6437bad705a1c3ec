"""Firmware target ("tflm"): TFLite-Micro C arrays, op resolver, arena size, project files.

The target declares its checks (``spec``): every op has a TFLM kernel, an int8-only board
gets no float ops, the arena TFLM needs, flash and RAM against the device profile, and
TFLM-vs-LiteRT parity; :func:`edgepack.verify.run_checks` runs them before anything is
written. ``finalize_model`` keeps clustered/pruned weights compressed in flash for TFLM's
DECODE op (:mod:`edgepack.tflm.compress`, recipe ``tflm.compress``), re-measuring the arena and
budget on that model and proving its host TFLM outputs bit-identical. ``write`` renders the plain folder (CMake/Zephyr/ESP-IDF), the harness and an
Arduino library from those results.

Example (Python; the CLI passes --device/--array-name as options)::

    t = FirmwareTarget()
    spec = t.spec({"device": "nucleo-l4r5zi", "array_name": "g_kws"})
    build.checks = run_checks(build, spec)   # UnsupportedOpError / BudgetError / VerificationError
    files = t.write(build, staging_dir)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..profiles import list_profiles, load_profile
from ..build import Build
from ..errors import BudgetError, UsageError
from ..tflm.c_array import c_identifier, check_identifier
from ..verify import TargetSpec
from .base import Target
from .firmware_files import model_config_header, write_firmware  # noqa: F401 (re-exported)
from .firmware_plan import FirmwarePlan

CHECKS = ("tflm_ops", "int8_only", "arena", "budget", "tflm_parity")
# Steps after which the recipe's unset ``compress`` means auto (few distinct values, zeros);
# without them, or for a .tflite input, the weights stay plain unless the recipe sets ``compress``.
WEIGHT_SHARING_STEPS = ("cluster", "prune_magnitude")


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
    comp = build.checks.get("compression") or {}
    if comp.get("dropped"):
        out.append(f"weights kept plain int8 in flash: {comp['dropped']}")
    budget = build.checks.get("budget") or {}
    left = _short(budget.get("flash"))
    if not comp.get("decode_op") and left is not None:
        out.append(f"flash is short ({left} B left): clustered or pruned weights (recipe steps cluster, "
                   "prune_magnitude) stay compressed in flash for TFLM's DECODE op (recipe tflm.compress)")
    pat = build.report.get("patches") or {}
    left = _short(budget.get("ram"))
    if not pat and left is not None:
        out.append(f"RAM is short ({left} B left): --patches auto (recipe tflm.patches: auto) runs the first "
                   "high-resolution stage tile by tile when that gives a smaller arena, outputs bit-exact")
    return out + _fits_with(budget.get("ram") or {}, build.report.get("memory_plan") or {}, pat)


def _pct(x: float) -> str:
    """A percentage as the advice words it: whole points from 1% up ("+12%"), else two digits ("+0.45%")."""
    return f"{x:.0f}" if abs(x) >= 1 else f"{x:.2g}"


def _fits_with(ram: dict, plan: dict, pat: dict) -> list[str]:
    """What made the arena the budget checked smaller: "fits with the offline plan", "fits with 3x3 patches of
    the first 6 ops at +12% MACs" (only while RAM fits), and by how much RAM would be over without it."""
    if not ram.get("available") or "headroom" not in ram or "arena" not in ram:
        return []

    def without(arena: Optional[int]) -> str:
        over = ram["needed"] - ram["arena"] + arena - ram["available"] if arena else 0
        return f"; without it RAM would be over by {over:,} B" if over > 0 else ""

    if pat.get("kept"):
        return [f"fits with {pat['tiling']} at +{_pct(pat['extra_macs_pct'])}% MACs: arena {pat['baseline_arena']:,} "
                f"-> {pat['patched_arena']:,} B{without(pat.get('baseline_recommended_arena'))} (--patches auto)"]
    if plan.get("kept"):
        own, planned = plan["own_arena"], plan["planned_arena"]
        return [f"fits with the offline plan: arena {own['bytes']:,} -> {planned['bytes']:,} B "
                f"({_pct(100 * (planned['bytes'] / own['bytes'] - 1))}%){without(own.get('recommended'))} "
                "(recipe tflm.offline_plan)"]
    return []


def _short(memory: Optional[dict]) -> Optional[int]:
    """Bytes left of a budget section's memory when under 10% of what the board has (negative: over), else None."""
    memory = memory or {}
    left = memory.get("headroom", memory.get("available", 0) - memory.get("needed", 0))
    return left if memory.get("available") and left < 0.1 * memory["available"] else None


def plan_memory(build: Build) -> bytes:
    """The model with an offline memory plan (:func:`edgepack.tflm.memplan.apply_plan`) when TFLM then needs a
    smaller arena, outputs bit-identical; the arena and RAM budget follow. Report: ``firmware.memory_plan``."""
    from ..tflm.memplan import apply_plan
    from ..verify.budget import check_budget

    if "memory_plan" in build.report or "arena" not in build.checks:
        return build.tflite  # already decided, or no measured arena to compare with
    if not build.recipe.tflm.offline_plan:
        build.report["memory_plan"] = {"kept": False, "reason": "off (recipe tflm.offline_plan: false)"}
        return build.tflite
    res = apply_plan(build.tflite, build.checks["arena"], build.calibration)
    build.report["memory_plan"] = res.report()
    if res.kept:
        build.checks["arena"] = res.arena
        build.checks["budget"] = check_budget(len(res.model), load_profile(str(build.options["device"])),
                                              res.arena.recommended_bytes, build.model_name, raise_over=False)
    return res.model


def patch_memory(build: Build, unplanned: bytes) -> bytes:
    """The model run patch by patch (:func:`edgepack.tflm.patches.apply_patches` on ``unplanned``) when TFLM then
    needs a smaller arena than the plan alone gives; arena, budget and ops follow. Report: ``firmware.patches``."""
    from ..convert.flatbuffer import read_tflite
    from ..tflm.ops import registrations
    from ..tflm.patches import apply_patches
    from ..verify.budget import check_budget

    res = apply_patches(unplanned, build.checks["arena"], build.calibration)
    build.report["patches"] = res.report()
    if not res.kept:
        return build.tflite
    build.info = read_tflite(res.model)
    build.checks.update(arena=res.arena, tflm_ops=registrations(build.info),
                        budget=check_budget(len(res.model), load_profile(str(build.options["device"])),
                                            res.arena.recommended_bytes, build.model_name, raise_over=False))
    return res.model


def array_name(build_options: dict, model_name: str) -> str:
    """The C identifier of the model array: ``array_name`` if given (checked), else from the model name."""
    name = build_options.get("array_name")
    return check_identifier(str(name)) if name else c_identifier(model_name)


def apply_compression(build: Build, fc) -> None:
    """Make the compressed model the build's (checks re-run on it), unless its arena no longer fits."""
    from ..convert.flatbuffer import read_tflite
    from ..tflm.ops import registrations
    from ..verify.budget import check_budget

    budget = check_budget(len(fc.tflite), load_profile(str(build.options["device"])),
                          fc.arena.recommended_bytes, build.model_name, raise_over=False)
    if "over" in budget and "over" not in build.checks["budget"]:  # the plain model fits, the compressed not
        build.checks["compression"].update(decode_op=False, dropped=f"plain int8 kept: compressed, {budget['over']}")
        return
    build.tflite, build.info = fc.tflite, read_tflite(fc.tflite)
    build.checks.update(arena=fc.arena, budget=budget, tflm_ops=registrations(build.info))
    build.checks["tflm_parity"] = {**build.checks["tflm_parity"], "compressed_vs_plain": fc.bit_exact}


class FirmwareTarget(Target):
    """TFLite-Micro firmware sources for a device profile."""

    name = "tflm"
    option_names = frozenset({"device", "array_name", "patches"})
    dense_per_channel = False
    tflm = True
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
        return TargetSpec(name=self.name, checks=CHECKS, profile=profile, shrinks=True)

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
                            advice=advice_for(build), compression=c.get("compression"))

    def check(self, build: Build) -> None:
        super().check(build)
        build.report["firmware"] = self.plan(build).report()

    def finalize_model(self, build: Build) -> bytes:
        """The model with its weights kept compressed for TFLM's DECODE op (recipe ``tflm.compress``,
        :mod:`edgepack.tflm.compress`), then an offline memory plan when TFLM needs a smaller arena with it
        (recipe ``tflm.offline_plan``, :func:`plan_memory`); arena, budget and ops re-measured, outputs
        proven bit-exact at each stage."""
        from ..recipe import CompressConfig
        from ..tflm.compress import compress_for_firmware

        config = build.recipe.tflm.compress
        if config is None and not any(s.type in WEIGHT_SHARING_STEPS for s in build.recipe.steps):
            config = CompressConfig(encoding="off")  # unset and nothing clustered/pruned: the plain bytes as before
        fc = compress_for_firmware(build.tflite, config, build.calibration, build.checks.get("arena"))
        build.checks["compression"] = fc.report()
        if fc.arena is not None:
            apply_compression(build, fc)
        unplanned = build.tflite
        build.tflite = plan_memory(build)  # last: the plan places the final graph's tensors (decoded weights too)
        if (build.options.get("patches") or build.recipe.tflm.patches) == "auto":
            build.tflite = patch_memory(build, unplanned)
        if "over" in build.checks["budget"]:  # neither compression nor the memory plan made it fit
            raise BudgetError(build.checks["budget"]["over"])
        return build.tflite

    def write(self, build: Build, out: Path) -> list[str]:
        if set(CHECKS) - set(build.checks):
            self.check(build)
        plan = self.plan(build)
        files = write_firmware(build, plan, Path(out))
        build.report["firmware"] = {**plan.report(), "example": build.report.pop("firmware_example", None),
                                    "memory_plan": build.report.pop("memory_plan", None), "files": files}
        if "patches" in build.report:
            build.report["firmware"]["patches"] = build.report.pop("patches")
        return files
