"""Entropy-coded package: exact byte-for-byte restore of real converted models."""

import lzma

import numpy as np
import pytest

from edgepack.epk import decode, encode, order0_bytes, rans_decode, rans_encode, report, stream_stats, unpack
from edgepack.epk.limits import HEADER_SIZE
from edgepack.errors import ModelLoadError


def _models():
    """A float and an int8 model of the same tiny MLP, its kernels pruned 80% and clustered to 8 values."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.recipe import QuantizeConfig

    set_seed(0)
    k = keras()
    m = k.Sequential([k.layers.InputLayer((64,)), k.layers.Dense(96, activation="relu"),
                      k.layers.Dense(10)])
    rng = np.random.RandomState(0)
    for layer in m.layers:
        w, b = layer.get_weights()
        centroids = rng.normal(0, 0.1, size=8).astype(np.float32)
        w = centroids[rng.randint(0, 8, size=w.shape)]
        w[rng.rand(*w.shape) < 0.8] = 0.0
        layer.set_weights([w, b])
    x = rng.rand(32, 64).astype(np.float32)
    return (convert(m, QuantizeConfig(mode="none")),
            convert(m, QuantizeConfig(mode="int8", per_channel=True), calibration=x),
            convert(m, QuantizeConfig(mode="int8", per_channel=False), calibration=x))


@pytest.fixture(scope="module")
def models():
    return _models()


def test_round_trip_is_byte_exact(models):
    for data in models:
        blob = encode(data)
        assert decode(blob) == data


def test_clustered_sparse_weights_beat_plain_xz(models):
    for data in models:
        blob = encode(data)
        xz = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
        assert len(blob) < len(xz) < len(data)
    rep = report(models[2])
    assert rep["package_bytes"] < rep["xz_bytes"] and rep["ratio"] > 1


def test_random_weights_still_round_trip():
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras
    from edgepack.recipe import QuantizeConfig

    k = keras()
    m = k.Sequential([k.layers.InputLayer((8, 8, 1)), k.layers.Conv2D(4, 3, activation="relu"),
                      k.layers.DepthwiseConv2D(3), k.layers.Flatten(), k.layers.Dense(5)])
    x = np.random.RandomState(1).rand(8, 8, 8, 1).astype(np.float32)
    for mode in ("none", "float16", "int8"):
        data = convert(m, QuantizeConfig(mode=mode), calibration=x)
        assert decode(encode(data)) == data


def test_corrupt_and_foreign_input_fail_clearly(models, tmp_path):
    blob = bytearray(encode(models[1]))
    with pytest.raises(ModelLoadError, match="not a TFLite"):
        encode(b"hello world, not a model")
    with pytest.raises(ModelLoadError, match="EPK"):
        decode(b"PK\x03\x04" + bytes(60))
    bad = bytearray(blob)
    bad[3] = 99
    with pytest.raises(ModelLoadError, match="version 99"):
        decode(bytes(bad))
    bad = bytearray(blob)
    bad[20] ^= 0xFF  # flip a bit of the stored SHA-256
    with pytest.raises(ModelLoadError, match="SHA-256"):
        decode(bytes(bad))
    with pytest.raises(ModelLoadError, match="corrupt|truncated"):
        decode(bytes(blob[: len(blob) // 2]))
    with pytest.raises(ModelLoadError, match="no such"):
        unpack(tmp_path / "missing.epk", tmp_path / "out.tflite")


def test_unpack_writes_the_exact_model(models, tmp_path):
    src = tmp_path / "model.tflite.epk"
    src.write_bytes(encode(models[1]))
    out = tmp_path / "model.tflite"
    assert unpack(src, out) == len(models[1])
    assert out.read_bytes() == models[1]
    from edgepack.runtime import LiteRT

    y = LiteRT(out.read_bytes()).predict(np.zeros((2, 64), np.float32))
    assert y.shape == (2, 10)


def test_rans_round_trips_and_reaches_the_order0_bound():
    rng = np.random.RandomState(3)
    sparse = np.where(rng.rand(50000) < 0.93, 0, rng.randint(1, 17, 50000)).astype(np.uint8).tobytes()
    for data in (sparse, bytes(range(256)) * 7, b"\x05" * 1000, rng.randint(0, 256, 4000).astype(np.uint8).tobytes()):
        blob = rans_encode(data)
        assert rans_decode(blob, len(data)) == data
    coded = len(rans_encode(sparse))
    assert coded < 1.03 * order0_bytes(sparse) + 200  # within 3% of the entropy (+ its table)
    assert coded < len(lzma.compress(sparse, preset=9 | lzma.PRESET_EXTREME))


def test_stream_stats_report_every_codec(models):
    rows = {r["name"]: r for r in stream_stats(models[2])}
    assert set(rows) == {"regions", "skeleton", "tables", "codes", "raw"}
    assert rows["codes"]["rans0"] <= rows["codes"]["lzma"]
    best = sum(min([r["raw"]] + [v for k, v in r.items() if k in ("lzma", "rans0")]) for r in rows.values())
    assert len(encode(models[2])) <= best + HEADER_SIZE  # the smallest codec per stream (or the whole file as one)
