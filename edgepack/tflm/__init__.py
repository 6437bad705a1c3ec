"""Everything edgepack knows about TensorFlow Lite for Microcontrollers, in one place.

- :mod:`.interpreter`: the TFLM host interpreter (``tflite-micro`` package) and a crash-proof probe;
- :mod:`.arena`: the smallest working tensor arena (bisection) plus a margin;
- :mod:`.memplan`: an offline memory plan (``OfflineMemoryAllocation``), kept only when the arena shrinks;
- :mod:`.parity`: TFLM vs LiteRT on the same inputs; the output a correct harness reports;
- :mod:`.ops`: TFLM's op table and the ``MicroMutableOpResolver`` header;
- :mod:`.protocol`: the board harness serial line protocol.

Devices and targets use this package; it imports neither.

Example::

    from edgepack.tflm import Tflm, find_arena, parity
    arena = find_arena(model_bytes)
    p = parity(model_bytes, x, arena_size=arena.recommended_bytes)
"""

from .arena import ARENA_ALIGN, ArenaSize, find_arena
from .interpreter import ArenaTooSmall, Tflm, arena_fits, check_runs
from .parity import Parity, harness_expectation, parity

__all__ = ["ARENA_ALIGN", "ArenaSize", "ArenaTooSmall", "Parity", "Tflm", "arena_fits", "check_runs",
           "find_arena", "harness_expectation", "parity"]
