"""TFLM parity's LiteRT reference: the reference kernels, or the builtin ones when those lack an op."""

from __future__ import annotations

import numpy as np

from edgepack.keras_compat import tf
from edgepack.tflm.parity import parity


def test_parity_runs_an_int8_elu_model_the_reference_resolver_lacks():
    """LiteRT's BUILTIN_REF resolver has no ELU ("Didn't find op for builtin opcode 'ELU'"); parity used to
    fail with "LiteRT cannot load the model" on any model with an ELU activation."""
    t = tf()
    t.keras.utils.set_random_seed(0)
    x = t.keras.Input((12,))
    h = t.keras.layers.Dense(16, activation="elu")(x)
    model = t.keras.Model(x, t.keras.layers.Dense(3, activation="softmax")(h))
    xs = np.random.default_rng(0).normal(size=(16, 12)).astype(np.float32)
    conv = t.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [t.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([xs[i : i + 1]] for i in range(len(xs)))
    conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = t.int8
    data = bytes(conv.convert())
    p = parity(data, xs)
    assert p.max_raw_diff <= 1, p
