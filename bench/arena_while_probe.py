"""Why patch-based inference does not use a WHILE loop on stock TFLM: a loop variable is copied.

The patch loop MCUNetV2 describes (one body that runs once per tile, so the stage's ops exist once) needs
the input image inside the loop body. A TFLM subgraph reads only its own inputs, so the image must be a
loop variable, and TFLM's ``kernels/while.cc`` copies loop variables between the op's inputs, its outputs
and the cond / body subgraphs' inputs and outputs, which all live in the arena at once. This probe builds
the same tile work twice, unrolled (SLICE per tile) and in a ``tf.while_loop`` (the WHILE op), converts
both (float: the TFLite converter crashes quantizing this WHILE graph to int8) and prints the arena host
TFLM needs for each, in units of the image's bytes.

Example::

    python bench/arena_while_probe.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

H = W = 96
C = 3
TILES = 4  # horizontal strips of 24 rows


def build():
    import tensorflow as tf

    k = tf.constant(np.random.default_rng(0).normal(size=(3, 3, C, 8)).astype(np.float32) * 0.1)
    rows = H // TILES

    def tile(img, i):
        strip = tf.slice(img, [0, i * rows, 0, 0], [1, rows, W, C])
        return tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(strip, k, 1, "SAME")), axis=[1, 2])

    spec = [tf.TensorSpec([1, H, W, C], tf.float32)]

    @tf.function(input_signature=spec)
    def unrolled(img):
        acc = tf.zeros([1, 8])
        for i in range(TILES):
            acc = acc + tile(img, i)
        return acc

    @tf.function(input_signature=spec)
    def looped(img):
        def body(i, img, acc):
            return i + 1, img, acc + tile(img, i)

        return tf.while_loop(lambda i, img, acc: i < TILES, body, [tf.constant(0), img, tf.zeros([1, 8])],
                             maximum_iterations=TILES)[2]

    out = {}
    for name, fn in (("unrolled", unrolled), ("while", looped)):
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        out[name] = bytes(conv.convert())
    return out


def main() -> None:
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.tflm.arena import find_arena

    image = H * W * C * 4
    print(f"image (the loop variable): {image:,} B")
    for name, data in build().items():
        ops = sorted({o.op for o in read_tflite(data).ops})
        a = find_arena(data, margin_fraction=0.0)
        print(f"{name:9s} ops {','.join(ops):28s} arena {a.min_bytes:>9,} B = {a.min_bytes / image:.2f} images")


if __name__ == "__main__":
    main()
