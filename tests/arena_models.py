"""Models for the memory-plan tests and bench, built here (no download): a visual-wake-words-shaped
MobileNetV1 and a small conv net with a MEAN op (a kernel that asks TFLM for a scratch buffer)."""

from __future__ import annotations

import numpy as np


def _he_init(model, seed: int) -> None:
    """He-normal kernels (BatchNorm left at identity) so activations keep their scale through the
    whole net; with Keras' default init the logits of a deep random net shrink until TFLM's int8
    SOFTMAX cannot represent their scale (it aborts in QuantizeMultiplierGreaterThanOne)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if len(shape) == 4 and "kernel" in w.name:
            fan_in = shape[0] * shape[1] * (1 if "depthwise" in w.name else shape[2])
            w.assign(rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32))


def vww_mobilenet():
    """MobileNetV1 alpha 0.25 at 96x96x3, 2 classes: the MLPerf Tiny VWW architecture, random weights."""
    from edgepack.keras_compat import keras, set_seed

    set_seed(0)
    model = keras().applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, weights=None, classes=2)
    _he_init(model, 0)
    return model


def mean_net(size: int = 32):
    """A mini MobileNetV1 (its first stages at ``size`` x ``size``) ending in a global average
    (MEAN: TFLM plans a scratch buffer for it) and a dense layer."""
    from edgepack.keras_compat import keras, set_seed

    set_seed(0)
    k = keras()
    L = k.layers
    inp = L.Input((size, size, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    for filters, stride in ((16, 1), (32, 2), (32, 1)):
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu")(x)
        x = L.Conv2D(filters, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = k.Model(inp, L.Dense(4)(x))
    _he_init(model, 0)
    return model


def int8_tflite(model, n: int = 32, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """(int8 .tflite with int8 I/O, the float calibration samples used)."""
    from edgepack.convert.tflite import convert
    from edgepack.recipe import QuantizeConfig

    shape = (n,) + tuple(int(d) for d in model.input_shape[1:])
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    return convert(model, QuantizeConfig(mode="int8", io="int8"), calibration=x), x


def mobilenet_v2(size: int = 96):
    """MobileNetV2 alpha 0.35 at ``size`` x ``size`` x 3, 2 classes (keras.applications, random weights):
    its expanded first blocks (48x48x48 at 96x96) make the live-set peak of the high-resolution stage."""
    from edgepack.keras_compat import keras, set_seed

    set_seed(0)
    model = keras().applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None, classes=2)
    _he_init(model, 0)
    return model


def expansion_net(size: int = 48, expand: int = 96):
    """A MobileNetV2-like first stage at ``size`` x ``size``: a strided conv, a wide 1x1 expansion (the live-set
    peak), a strided depthwise conv and a projection, then a global average and a dense layer. Patch-based
    inference removes the wide tensor from the peak."""
    from edgepack.keras_compat import keras, set_seed

    set_seed(0)
    k = keras()
    L = k.layers
    inp = L.Input((size, size, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)
    x = L.Conv2D(expand, 1, activation="relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 1)(x)
    x = L.GlobalAveragePooling2D()(x)
    model = k.Model(inp, L.Dense(2)(x))
    _he_init(model, 0)
    return model


def border_net(size: int = 24):
    """Ops whose borders need care when tiled: an asymmetric ZeroPadding2D (a PAD op) before a VALID conv,
    a VALID average pool, a strided 5x5 SAME depthwise conv, a VALID 3x3 max pool, then a dense head."""
    from edgepack.keras_compat import keras, set_seed

    set_seed(1)
    k = keras()
    L = k.layers
    inp = L.Input((size, size, 3))
    x = L.ZeroPadding2D(((1, 2), (2, 1)))(inp)
    x = L.Conv2D(8, 3, padding="valid", activation="relu")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.DepthwiseConv2D(5, strides=2, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(3, strides=1)(x)
    x = L.Conv2D(8, 1)(x)
    x = L.Flatten()(x)
    model = k.Model(inp, L.Dense(3)(x))
    _he_init(model, 1)
    return model
