"""The tensor arena a model needs under TFLM: smallest working size by bisection, plus a margin.

TFLM's RecordingMicroAllocator total misses some Prepare-time buffers
(tflite-micro #2738), so the smallest arena is found by bisection on real
allocations instead, and a stated margin is added for the board.

Example::

    arena = find_arena(model_bytes)        # ArenaSize(min_bytes=..., recommended_bytes=...)
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from ..errors import EdgepackError, VerificationError
from ..fdcapture import capture_fd2
from .interpreter import MIN_ARENA_BYTES, Tflm, arena_fits, check_runs

ARENA_ALIGN = 16
MARGIN_FRACTION = 0.10  # optimized kernels (CMSIS-NN, ESP-NN) request scratch the reference kernels do not
MARGIN_MIN_BYTES = 1024


@dataclass
class ArenaSize:
    """Arena figures in bytes; ``recommended_bytes`` is what the firmware is built with."""

    min_bytes: int  # smallest arena that allocates and runs on the 64-bit host (bisection)
    recorded_bytes: int  # TFLM's RecordingMicroAllocator total at a generous arena
    margin_bytes: int
    recommended_bytes: int
    note: str = ("host build is 64-bit: an upper bound of a 32-bit board's need; margin covers scratch "
                 "buffers of optimized kernels (CMSIS-NN) and Prepare-time buffers TFLM's recorded total "
                 "misses (tflite-micro #2738)")

    def as_dict(self) -> dict:
        return asdict(self)


_PART = re.compile(r"Arena allocation (head|tail) (\d+) bytes")


def arena_parts(model: bytes, arena_size: int) -> dict[str, int]:
    """TFLM's own split of the arena after one invoke: ``head`` (non-persistent: activations and
    scratch buffers, what a memory plan changes) and ``tail`` (persistent: tensor structs,
    per-channel multipliers, op data), from its RecordingMicroAllocator.

    Example::

        arena_parts(model_bytes, 65536)     # {"head": 16000, "tail": 8272}
    """
    interp = Tflm(model, arena_size=arena_size)
    interp.invoke_raw(np.zeros(interp.input["shape"], interp.input["dtype"]))
    with capture_fd2() as log:
        interp.interp.print_allocations()
    parts = {k: int(v) for k, v in _PART.findall(log.text())}
    if set(parts) != {"head", "tail"}:
        raise EdgepackError("TFLM did not report its arena head and tail; update tflite-micro")
    return parts


def _align(n: int) -> int:
    return (n + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN


def _bracket(model: bytes, limit: int) -> tuple[int, int]:
    """(lo, hi): hi fits, lo does not (or is below the floor, never probed)."""
    hi = _align(max(4096, len(model) * 2))
    while not arena_fits(model, hi):
        if hi >= limit:
            raise VerificationError(f"TFLM could not allocate the model even with a {limit} byte arena")
        hi = min(hi * 2, limit)
    return MIN_ARENA_BYTES - ARENA_ALIGN, hi


def _bracket_near(model: bytes, guess: int, limit: int) -> tuple[int, int]:
    """(lo, hi) found by galloping from ``guess`` (2 probes when the guess is exact)."""
    floor = MIN_ARENA_BYTES - ARENA_ALIGN
    g, step = _align(max(guess, MIN_ARENA_BYTES)), ARENA_ALIGN
    if arena_fits(model, g):
        hi, lo = g, g - step
        while lo > floor and arena_fits(model, lo):
            hi, step = lo, step * 2
            lo = hi - step
        return max(lo, floor), hi
    lo, hi = g, g + step
    while not arena_fits(model, hi):
        if hi >= limit:
            raise VerificationError(f"TFLM could not allocate the model even with a {limit} byte arena")
        lo, step = hi, step * 2
        hi = min(lo + step, limit)
    return lo, hi


def find_arena(model: bytes, margin_fraction: float = MARGIN_FRACTION, limit: int = 16 << 20,
               guess: Optional[int] = None) -> ArenaSize:
    """Bisect the smallest working arena (to 16 bytes), check it runs, add the margin.

    ``guess`` (e.g. a memory plan's peak + the persistent part) only speeds the search up: the
    bracket gallops out from it, so a right guess costs two probes; the result is the same.
    """
    check_runs(model, limit)  # the real error (missing op, dtype) or a crash, before bisecting
    lo, hi = _bracket(model, limit) if guess is None else _bracket_near(model, guess, limit)
    while hi - lo > ARENA_ALIGN:
        mid = _align((lo + hi) // 2)
        if mid >= hi:
            break
        if arena_fits(model, mid):
            hi = mid
        else:
            lo = mid
    interp = Tflm(model, arena_size=hi)
    interp.invoke_raw(np.zeros(interp.input["shape"], interp.input["dtype"]))  # a real run, not only Prepare
    recorded = Tflm(model, arena_size=hi * 2)
    recorded.invoke_raw(np.zeros(recorded.input["shape"], recorded.input["dtype"]))
    margin = _align(max(MARGIN_MIN_BYTES, int(math.ceil(hi * margin_fraction))))
    return ArenaSize(min_bytes=hi, recorded_bytes=recorded.recorded_arena(), margin_bytes=margin,
                     recommended_bytes=hi + margin)
