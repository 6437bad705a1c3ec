"""Models whose weights share few values (what clustering and pruning leave), for the TFLM compression tests
(tests/tflm/) and the firmware layout tests that build a compressed package (tests/targets/)."""

from __future__ import annotations

import numpy as np

X = np.random.default_rng(3).random((16, 12, 12, 1), dtype=np.float32)


def snap(w: np.ndarray, levels: int, zeros: float = 0.0) -> np.ndarray:
    """``w`` with each value replaced by the nearest of ``levels`` quantiles (k-means-like weight
    sharing), the ``zeros`` fraction of smallest magnitudes set to 0 first."""
    w = w.copy()
    if zeros:
        w[np.abs(w) <= np.quantile(np.abs(w), zeros)] = 0.0
    centers = np.quantile(w[w != 0] if zeros else w, np.linspace(0, 1, levels - (1 if zeros else 0)))
    if zeros:
        centers = np.append(centers, 0.0)
    return centers[np.abs(w[..., None] - centers).argmin(-1)].astype(np.float32)


def cnn(levels: int = 16, zeros: float = 0.0, seed: int = 0, dense_per_channel: bool = False) -> bytes:
    """A small CNN (conv, depthwise, conv, dense) whose kernels share ``levels`` values, int8 for TFLM."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.recipe import QuantizeConfig

    set_seed(seed)
    k = keras()
    m = k.Sequential([k.layers.Input((12, 12, 1)), k.layers.Conv2D(8, 3, activation="relu", name="c1"),
                      k.layers.DepthwiseConv2D(3, activation="relu", name="dw"),
                      k.layers.Conv2D(32, 3, activation="relu", name="c2"), k.layers.Flatten(),
                      k.layers.Dense(10, name="fc")])
    for layer in m.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([snap(ws[0], levels, zeros), *ws[1:]])
    return convert(m, QuantizeConfig(mode="int8", io="int8"), X, dense_per_channel=dense_per_channel)
