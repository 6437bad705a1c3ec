"""Does the model fit the board? Flash (model + TFLM runtime) and RAM (arena + runtime) against
the device profile, with the overshoot named when it does not.

Example::

    section = check_budget(len(tflite), profile, arena_bytes=61_584, model_name="resnet8")
    section["ram"]["headroom"]
"""

from __future__ import annotations

from ..profiles import DeviceProfile
from ..errors import BudgetError


# What shrinks each memory: compressed weights cost flash less but RAM more (decoded into the arena).
SHRINK = {"flash": ("Shrink the model: int8, and recipe steps cluster (2^k shared values) / prune_magnitude, whose "
                    "weights --target tflm keeps compressed in flash and TFLM's DECODE op decodes (recipe "
                    "tflm.compress; LUT 4-bit indices halve int8 weights)"),
          "RAM": ("Shrink the activations (smaller input, fewer channels: prune_structured), run the first "
                  "high-resolution stage tile by tile (--patches auto, recipe tflm.patches: auto), or keep the weights "
                  "plain int8 (recipe tflm: {compress: {encoding: off}}: decoded weights live in the arena)")}


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def check_budget(model_bytes: int, profile: DeviceProfile, arena_bytes: int, model_name: str,
                 raise_over: bool = True) -> dict:
    """The flash/RAM budget section; BudgetError when either does not fit (``raise_over=False``: the
    section says so under ``over`` instead, for a target that can still shrink the model)."""
    flash = model_bytes + profile.runtime_flash_bytes
    ram = arena_bytes + profile.runtime_ram_bytes
    budget = {"flash": {"needed": flash, "available": profile.flash_bytes, "model": model_bytes,
                        "runtime_estimate": profile.runtime_flash_bytes},
              "ram": {"needed": ram, "available": profile.ram_bytes, "arena": arena_bytes,
                      "runtime_estimate": profile.runtime_ram_bytes}}
    for kind, parts in (("flash", f"model {_kib(model_bytes)} + TFLM runtime estimate "
                                  f"{_kib(profile.runtime_flash_bytes)}"),
                        ("RAM", f"tensor arena {_kib(arena_bytes)} + runtime estimate {_kib(profile.runtime_ram_bytes)}")):
        b = budget[kind.lower()]
        if b["needed"] > b["available"]:
            over = b["needed"] - b["available"]
            message = (f"{model_name} does not fit {profile.name} {kind}: needs {_kib(b['needed'])} ({parts}) "
                       f"but the board has {_kib(b['available'])}; over by {_kib(over)} "
                       f"({100 * over / b['available']:.0f}%). {SHRINK[kind]} or pick a bigger device profile")
            if raise_over:
                raise BudgetError(message)
            budget.setdefault("over", message)
            continue
        b["headroom"] = b["available"] - b["needed"]
    return budget


def arena(build, spec, done):
    """Check ``arena``: the model allocates and runs under host TFLM; its arena size (tflm.ArenaSize)."""
    from ..tflm import find_arena

    return find_arena(build.tflite)


def budget(build, spec, done) -> dict:
    """Check ``budget``: flash and RAM fit ``spec.profile`` with the arena from check ``arena``. A target
    that shrinks the model after the checks (``spec.shrinks``: compressed weights, a memory plan) gets the
    section with ``over`` and raises itself if the final model still does not fit."""
    return check_budget(len(build.tflite), spec.profile, done["arena"].recommended_bytes, build.model_name,
                        raise_over=not spec.shrinks)
