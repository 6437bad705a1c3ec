"""Channel counts the target's kernels run at full speed: the default ``round_to`` of structured pruning.

Kernels process output (and input) channels in fixed-width tiles; a layer with a
channel count that is not a multiple of the tile runs a partial tile (or a slower
generic path) and the MACs saved do not all become time saved (issue 11: ResNet-8
pruned to the same MACs ran 2x faster with ``round_to: 8`` and 1.25x without).

* ``xnnpack`` (LiteRT on Android and on the host): GEMM micro-kernels compute
  ``NR`` output channels per tile, 8 for the fp32 NEON/AVX kernels and many int8
  ones (e.g. ``qs8-gemm 4x8c4__neondot``, ``3x8c8__avx2``) and 16 for the wider
  int8 ones (``4x16c4__neondot``); the packed weights are padded to ``NR`` and
  ``kc`` is rounded up to 4 or 8 (``kc = round_up_po2(kc, 8)``; google/XNNPACK
  src/qs8-gemm/gen/*, src/qu8-igemm/gen/qu8-igemm-8x16c8-minmax-rndnu-neoni8mm.c).
  Multiples of 8 are whole tiles on 8-wide kernels and whole half-tiles on 16-wide
  ones, without rounding small layers (16-64 channels) away.
* ``cmsis_nn`` (TFLM with CMSIS-NN on Cortex-M): the fast 1x1 path needs input
  channels % 4 == 0 (``arm_convolve_1x1_s8_fast``: ``if (input_dims->c % 4 != 0)``
  return ARM_CMSIS_NN_ARG_ERROR), the DSP convolution/depthwise kernels read 4
  int8 values per 32-bit load (``arm_nn_read_s8x4_ia``) and MVE works in
  16-lane vectors of which 4 output rows are computed at once
  (ARM-software/CMSIS-NN Source/ConvolutionFunctions/). 4 keeps every layer on
  the fast path.
* ``reference`` (TFLM's portable kernels): scalar loops, time follows MACs: no multiple.

Example::

    multiple, why = channel_multiple(ctx.channel_multiple)    # (8, "...") without a target
"""

from __future__ import annotations

from typing import Optional

KERNELS = {
    "xnnpack": (8, "XNNPACK (LiteRT) GEMM tiles of 8/16 output channels"),
    "cmsis_nn": (4, "CMSIS-NN int8 kernels: 4-channel loads, 1x1 fast path needs channels % 4 == 0"),
    "cmsis_nn_mve": (16, "CMSIS-NN Helium (MVE) kernels: 16 int8 lanes per vector"),
    "esp_nn": (16, "ESP-NN on the ESP32-S3's Xtensa LX7: 128-bit SIMD, 16 int8 lanes"),
    "reference": (1, "TFLM reference kernels: time follows MACs"),
}
DEFAULT_KERNELS = "xnnpack"  # when the step does not know its target
#: The kernels TFLM builds use on each core (a device profile's ``core``); unknown cores: CMSIS-NN's.
CORE_KERNELS = {"cortex-m0plus": "reference", "cortex-m3": "reference", "cortex-m4": "cmsis_nn",
                "cortex-m7": "cmsis_nn", "cortex-m33": "cmsis_nn", "cortex-m55": "cmsis_nn_mve",
                "cortex-m85": "cmsis_nn_mve", "xtensa-lx6": "reference", "xtensa-lx7": "esp_nn",
                "riscv32": "reference"}


def channel_multiple(from_target: Optional[int], configured: Optional[int] = None) -> tuple[int, str]:
    """The ``round_to`` a step uses and why: the recipe's value, else the target's, else XNNPACK's."""
    if configured is not None:
        return configured, "recipe round_to"
    if from_target is not None:
        return from_target, "the target's kernels"
    n, why = KERNELS[DEFAULT_KERNELS]
    return n, f"default (no target given): {why}"


def kernels_multiple(kernels: str) -> int:
    """The channel multiple of a kernel family (``xnnpack``, ``cmsis_nn``, ``reference``)."""
    return KERNELS[kernels][0]


def target_kernels(target_kernels: str, core: Optional[str] = None) -> str:
    """The kernel family a build runs on: the target's (``xnnpack`` on Android), or for TFLM the
    device profile's core's (``CORE_KERNELS``; the target's own default without a known core)."""
    if target_kernels == "xnnpack" or core is None:
        return target_kernels
    return CORE_KERNELS.get(core, target_kernels)

