"""A corpus of small Keras architectures, buildable with tf_keras or Keras 3 (same code, ``k`` = module).

Keras 3 models are built in a separate process (``python tests/model_corpus.py OUT [--all]``, run without
``TF_USE_LEGACY_KERAS``), each saved as ``.keras`` and ``.h5`` (and ``export()``-ed when marked), with
``NAME.npz`` holding deterministic inputs ``x0..`` and Keras 3's own outputs ``y0..``, and
``manifest.json`` describing them. tf_keras models are built in the test process with :func:`build`.

Example::

    python tests/model_corpus.py /tmp/corpus
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

# name -> (builder, flags). flags: "package" (int8 through the pipeline in the default suite),
# "export" (also model.export()), "slow" (only in the full sweep), "no_twin" (conversion-only),
# "keras3" (Keras 3 only: keras.ops nodes or Keras 3 applications), "pixels" (inputs in 0..255).
SPECS: dict[str, tuple[str, set]] = {}


def spec(*flags: str):
    def deco(fn):
        SPECS[fn.__name__] = (fn, set(flags))
        return fn
    return deco


@spec()
def mlp(k):
    return k.Sequential([k.Input((12,)), k.layers.Dense(16, activation="relu"), k.layers.Dropout(0.2),
                         k.layers.Dense(5, activation="softmax")], name="mlp")


@spec()
def cnn(k):
    return k.Sequential([k.Input((10, 10, 1)), k.layers.Conv2D(4, 3, activation="relu"), k.layers.MaxPooling2D(),
                         k.layers.Conv2D(6, 3, padding="same"), k.layers.GlobalAveragePooling2D(),
                         k.layers.Dense(4)], name="cnn")


@spec("package", "export")
def resnet_dw(k):
    L = k.layers
    i = k.Input((12, 12, 1), name="image")
    x = L.Rescaling(1 / 255.0)(i)
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.BatchNormalization()(y)
    x = L.Add()([x, y])
    x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(i, L.Dense(10, activation="softmax")(x), name="resnet_dw")


@spec()
def separable(k):
    L = k.layers
    return k.Sequential([k.Input((12, 12, 3)), L.SeparableConv2D(6, 3, activation="relu"),
                         L.AveragePooling2D(2), L.Flatten(), L.Dense(3)], name="separable")


@spec()
def conv1d(k):
    L = k.layers
    return k.Sequential([k.Input((16, 3)), L.Conv1D(6, 3, activation="relu"), L.MaxPooling1D(),
                         L.Conv1D(4, 3, padding="same"), L.GlobalMaxPooling1D(), L.Dense(2)], name="conv1d")


@spec()
def gru(k):
    L = k.layers
    return k.Sequential([k.Input((10, 4)), L.GRU(6), L.Dense(3, activation="softmax")], name="gru")


@spec()
def lstm(k):
    L = k.layers
    return k.Sequential([k.Input((10, 4)), L.LSTM(5, return_sequences=True), L.LSTM(4), L.Dense(2)], name="lstm")


@spec()
def embedding(k):
    L = k.layers
    i = k.Input((8,), dtype="int32", name="tokens")
    x = L.Embedding(30, 6)(i)
    x = L.GlobalAveragePooling1D()(x)
    return k.Model(i, L.Dense(2, activation="softmax")(x), name="embedding")


@spec()
def multi_io(k):
    L = k.layers
    a, b = k.Input((6,), name="a"), k.Input((4,), name="b")
    x = L.Concatenate()([L.Dense(5, activation="relu")(a), b])
    return k.Model([a, b], [L.Dense(2, name="head1")(x), L.Dense(3, activation="softmax", name="head2")(x)],
                   name="multi_io")


@spec("package")
def image_meta(k):
    """Two inputs (an image and a metadata vector), one output: packaged with one calibration array per input."""
    L = k.layers
    image, meta = k.Input((8, 8, 1), name="image"), k.Input((3,), name="meta")
    h = L.Flatten()(L.MaxPooling2D(2)(L.Conv2D(4, 3, activation="relu", padding="same")(image)))
    z = L.Concatenate()([h, L.Dense(4, activation="relu")(meta)])
    return k.Model([image, meta], L.Dense(4, activation="softmax")(z), name="image_meta")


@spec("package")
def merges(k):
    L = k.layers
    i = k.Input((8,))
    p, q = L.Dense(6, name="p")(i), L.Dense(6, name="q")(i)
    x = L.Concatenate()([L.Add()([p, q]), L.Subtract()([p, q]), L.Multiply()([p, q]), L.Average()([p, q]),
                         L.Maximum()([p, q])])
    return k.Model(i, L.Dense(3)(x), name="merges")


@spec()
def layernorm(k):
    L = k.layers
    return k.Sequential([k.Input((6, 8)), L.Dense(8), L.LayerNormalization(), L.Activation("gelu"),
                         L.Flatten(), L.Dense(4), L.Softmax()], name="layernorm")


@spec()
def normalization(k):
    L = k.layers
    return k.Sequential([k.Input((5,)), L.Normalization(mean=[1.0, 2.0, 3.0, 4.0, 5.0],
                                                         variance=[1.0, 4.0, 9.0, 1.0, 0.25]),
                         L.Dense(4, activation="tanh"), L.Dense(2)], name="normalization")


@spec()
def pad_upsample(k):
    L = k.layers
    return k.Sequential([k.Input((6, 6, 2)), L.ZeroPadding2D(1), L.Conv2D(4, 3), L.UpSampling2D(),
                         L.Conv2D(2, 3, padding="same"), L.Reshape((12 * 12 * 2,)), L.Dense(3)], name="pad_upsample")


@spec()
def nested(k):
    L = k.layers
    block = k.Sequential([k.Input((8,)), L.Dense(8, name="inner_dense"), L.BatchNormalization(name="inner_bn"),
                          L.ReLU()], name="block")
    fi = k.Input((8,))
    sub = k.Model(fi, L.Dense(8, activation="relu", name="fn_dense")(fi), name="sub_functional")
    i = k.Input((8,))
    x = block(i)
    x = L.Add()([sub(x), x])
    return k.Model(i, L.Dense(3)(x), name="nested")


@spec()
def activations(k):
    L = k.layers
    return k.Sequential([k.Input((6,)), L.Dense(8), L.LeakyReLU(), L.Dense(8), L.ReLU(max_value=6.0), L.Dense(8),
                         L.ELU(), L.Dense(8, activation="swish"), L.Dense(4), L.Softmax()], name="activations")


@spec()
def conv_pool(k):
    L = k.layers
    i = k.Input((16, 16, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = L.MaxPooling2D()(x)
    x = L.UpSampling2D()(x)
    x = L.GlobalMaxPooling2D()(x)
    return k.Model(i, L.Dense(5)(x), name="conv_pool")


@spec("no_twin")
def rms_norm(k):
    L = k.layers
    return k.Sequential([k.Input((8,)), L.Dense(8), L.LayerNormalization(rms_scaling=True), L.Dense(2)],
                        name="rms_norm")


@spec("slow")
def wide_cnn(k):
    L = k.layers
    i = k.Input((24, 24, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(i)
    for _ in range(3):
        y = L.SeparableConv2D(16, 3, padding="same")(x)
        y = L.BatchNormalization()(y)
        x = L.Add()([x, L.ReLU()(y)])
    x = L.ZeroPadding2D(((0, 1), (1, 0)))(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dropout(0.3)(x)
    return k.Model(i, L.Dense(6, activation="softmax")(x), name="wide_cnn")


@spec("keras3")
def keras_ops(k):
    """keras.ops nodes of every kind in the table: arithmetic with constants, slicing, shapes, joins,
    reductions, matmul, activations (hard_silu/hard_sigmoid as op chains), cast, cumsum."""
    ops, L = k.ops, k.layers
    i = k.Input((8, 6), name="series")
    x = L.Dense(6)(i)
    a = ops.relu6(x + 3.0) / 6.0 * x - 0.5
    b = ops.concatenate([a[:, :4], a[:, 4:]], axis=1)
    c = ops.transpose(ops.reshape(b, (-1, 8, 3, 2)), (0, 1, 3, 2))
    c = ops.squeeze(ops.expand_dims(ops.reshape(c, (-1, 8, 6)), 1), 1)
    d = ops.matmul(c, ops.transpose(x, (0, 2, 1)))  # (8, 8) scores
    d = ops.softmax(d, axis=-1) + ops.mean(d, axis=-1, keepdims=True) * 0.01
    e = ops.stack([ops.max(d, axis=-1), ops.sum(d, axis=-1), ops.min(d, axis=-1)], axis=-1)
    f = ops.hard_swish(e) + ops.hard_sigmoid(e) + ops.gelu(e) + ops.silu(e) + ops.sigmoid(e) + ops.tanh(e)
    f = (ops.maximum(f, -1.0) + ops.minimum(f, 1.0)) * 0.5 + ops.square(f) * 0.01 + ops.sqrt(ops.abs(f) + 1.0) * 0.1
    f = ops.clip(f, -5.0, 5.0) + ops.cast(ops.cumsum(ops.ones_like(ops.cast(f, "int32")), axis=1), "float32") * 0.1
    f = ops.where(f > 0.0, f, ops.exp(f) - 1.0) + ops.rsqrt(ops.abs(f) + 1.0) + ops.log(ops.abs(f) + 1.0)
    f = ops.relu(f) + ops.negative(f[..., None][:, :, :, 0]) * 0.5 + 2.0 - f
    return k.Model(i, L.Dense(4, activation="softmax")(L.Flatten()(f)), name="keras_ops")


@spec("keras3", "pixels")
def mobilenet_v3_small(k):
    return k.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10, minimalistic=False,
                                           include_preprocessing=True, name="mobilenet_v3_small")


@spec("keras3", "pixels", "slow")
def mobilenet_v3_large(k):
    return k.applications.MobileNetV3Large(input_shape=(32, 32, 3), weights=None, classes=10, minimalistic=False,
                                           include_preprocessing=True, name="mobilenet_v3_large")


@spec("keras3", "pixels", "slow")
def efficientnet_b0(k):
    return k.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10, name="efficientnet_b0")


@spec("keras3")
def transformer_tokens(k):
    """Tokens -> token Embedding + learned position Embedding (positions from keras.ops cumsum/ones_like)
    -> MultiHeadAttention -> residual + LayerNormalization -> Dense(gelu) -> pooling -> softmax."""
    ops, L = k.ops, k.layers
    t = k.Input((8,), dtype="int32", name="tokens")
    pos = ops.cumsum(ops.ones_like(t), axis=1) - 1
    x = L.Embedding(32, 16)(t) + L.Embedding(8, 16)(pos)
    x = L.LayerNormalization()(x + L.MultiHeadAttention(2, 8)(x, x))
    x = L.Dense(16, activation="gelu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return k.Model(t, L.Dense(3, activation="softmax")(x), name="transformer_tokens")


@spec("keras3", "package")
def transformer_features(k):
    """16 timesteps x 8 features -> Dense + sinusoidal positions (keras.ops on arange, a constant) ->
    MultiHeadAttention (self, 2 heads) -> residual + LayerNormalization -> Dense(gelu) -> pooling -> logits."""
    ops, L = k.ops, k.layers
    i = k.Input((16, 8), name="features")
    steps = ops.expand_dims(ops.arange(16, dtype="float32"), -1)
    pos = ops.sin(steps / ops.power(100.0, ops.arange(16, dtype="float32") / 16.0))
    x = L.Dense(16)(i) + pos
    x = L.LayerNormalization()(x + L.MultiHeadAttention(2, 8, dropout=0.1)(x, x))
    x = L.Dense(32, activation="gelu")(x)
    x = L.Dense(16)(x)
    x = L.GlobalAveragePooling1D()(x)
    return k.Model(i, L.Dense(4)(x), name="transformer_features")  # logits: a softmax head saturates here


def calibrate_bn(model, seed: int = 0) -> None:
    """For deep applications: Keras' own kernel initialisation, BatchNorm gamma/beta randomised and its moving
    statistics set, layer by layer in model order, to the statistics of its input on corpus-like images (with
    the initial 0/1 statistics an untrained MobileNetV3/EfficientNet gives the same output for every input,
    which would prove nothing about the translation)."""
    import keras

    rng = np.random.default_rng(seed)
    x = inputs(model, n=32, seed=2)[0]
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        a = np.asarray(keras.Model(model.inputs, layer.input)(x, training=False))
        axes = tuple(range(a.ndim - 1))
        gamma, beta, _, _ = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                           rng.normal(0, 0.2, beta.shape).astype(np.float32),
                           a.mean(axes).astype(np.float32), (a.var(axes) + 1e-3).astype(np.float32)])


def randomize(model, seed: int = 0) -> None:
    """Non-trivial weights: BatchNorm statistics and biases away from their 0/1 initial values."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "variance" in w.name:
            w.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        else:
            w.assign((rng.normal(0, 0.4, shape)).astype(w.dtype.as_numpy_dtype if hasattr(w.dtype, "as_numpy_dtype")
                                                          else np.float32))


def inputs(model, n: int = 16, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = [n] + [int(d) for d in t.shape[1:]]
        if "int" in str(t.dtype):
            out.append(rng.integers(0, 30, size=shape).astype(np.int32))
        else:
            pixels = "pixels" in SPECS.get(model.name, (None, set()))[1]
            scale = 255.0 if t.shape[1:] == (12, 12, 1) or pixels else 1.0
            out.append((rng.uniform(0, 1, size=shape) * scale).astype(np.float32))
    return out


def build(k, name: str):
    model = SPECS[name][0](k)
    (calibrate_bn if "pixels" in SPECS[name][1] else randomize)(model)
    return model


def predict(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    ys = model(xs[0] if len(xs) == 1 else xs, training=False)
    return [np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]


def build_keras3(out: Path, everything: bool, only: tuple = ()) -> dict:
    """Build and save the Keras 3 corpus into ``out`` (run in a process where ``keras`` is Keras 3);
    ``only``: just these models."""
    import keras

    assert keras.__version__.startswith("3."), keras.__version__
    manifest = {}
    for name, (_, flags) in SPECS.items():
        if ("slow" in flags and not everything) or (only and name not in only):
            continue
        keras.utils.set_random_seed(0)  # each model the same whatever was built before it
        model = build(keras, name)
        model.compile(loss=keras.losses.MeanSquaredError(), optimizer=keras.optimizers.Adam(1e-3),
                      metrics=[keras.metrics.MeanAbsoluteError()])
        xs = inputs(model)
        np.savez(out / f"{name}.npz", **{f"x{i}": x for i, x in enumerate(xs)},
                 **{f"y{i}": y for i, y in enumerate(predict(model, xs))})
        files = {"keras": f"{name}.keras", "h5": f"{name}.h5"}
        model.save(out / files["keras"])
        model.save(out / files["h5"])
        if "export" in flags:
            model.export(str(out / f"{name}_export"), verbose=False)
            files["export"] = f"{name}_export"
        manifest[name] = {"files": files, "flags": sorted(flags), "inputs": len(xs)}
    _hostile(keras, out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _hostile(keras, out: Path) -> None:
    """``lambda.keras``: a Keras 3 Lambda whose code touches ``lambda_ran`` whenever it runs (the sentinel
    the safety tests look for; created here by the symbolic call, then removed)."""
    sentinel = out / "lambda_ran"
    i = keras.Input((4,))
    payload = eval(f"lambda t: t * float(open({str(sentinel)!r}, 'a').close() is None)")  # path in the bytecode
    x = keras.layers.Lambda(payload, name="payload")(i)
    keras.Model(i, keras.layers.Dense(2)(x)).save(out / "lambda.keras")
    sentinel.unlink()


if __name__ == "__main__":
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    args = sys.argv[2:]
    build_keras3(Path(sys.argv[1]), "--all" in args, tuple(a for a in args if not a.startswith("--")))
