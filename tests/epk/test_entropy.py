"""Entropy-coded package: exact byte-for-byte restore of real converted models."""

import lzma
from pathlib import Path

import numpy as np
import pytest

from edgepack.epk import decode, encode, order0_bytes, rans_decode, rans_encode, report, stream_stats, unpack
from edgepack.epk.limits import HEADER_SIZE

from edgepack.errors import ModelLoadError
from locations import ROOT


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
    best = rows["regions"]["raw"] + sum(min([r["raw"]] + [v for k, v in r.items() if k in ("lzma", "rans0")])
                                        for name, r in rows.items() if name != "regions")  # region table: stored
    assert len(encode(models[2])) <= best + HEADER_SIZE  # the smallest codec per stream (or the whole file as one)


# ---------------------------------------------------------------- hostile packages (issue 12)
_CHILD = """
import resource, sys, time
from edgepack.epk import decode
from edgepack.errors import EdgepackError
good, bad = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
t = time.perf_counter(); decode(good); t_good = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    decode(bad)
    print("accepted")
except EdgepackError as e:
    print("error:", e)
t_bad = time.perf_counter() - t
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss, t_good, t_bad)
"""


def _v1(length: int, streams: list[tuple[int, bytes]], digest: bytes = bytes(32)) -> bytes:
    """A version-1 package: header, then (codec, u32 length, bytes) per stream."""
    import struct

    return b"EPK\x01" + struct.pack("<Q", length) + digest + b"".join(struct.pack("<BI", c, len(p)) + p
                                                                     for c, p in streams)


def _bombs() -> dict[str, bytes]:
    import struct
    import zlib

    frame = struct.pack("<IH", 1 << 30, 2) + struct.pack("<BH", 0, 8191) + struct.pack("<BH", 1, 8191) + bytes(
        [0, 0x80, 0, 0])
    count_bomb = _v1(1000, [(4, frame), (0, b""), (0, b""), (0, b"")])
    c = zlib.compressobj(9)
    z = b"".join([c.compress(bytes(1 << 20)) for _ in range(128)] + [c.flush()])
    zlib_bomb = _v1(1000, [(1, z), (0, b""), (0, b""), (0, b"")])
    v2_count = bytearray(b"EPK\x02" + struct.pack("<Q", 1000) + bytes(32))
    v2_count += struct.pack("<BII", 0, 4, 4) + struct.pack("<BII", 4, 1000, len(frame)) + bytes(27) + bytes(4) + frame
    return {"count_bomb_v1": count_bomb, "zlib_bomb_v1": zlib_bomb, "count_bomb_v2": bytes(v2_count)}


def test_bombs_fail_fast_in_bounded_memory(models, tmp_path):
    import subprocess
    import sys

    good = tmp_path / "good.epk"
    good.write_bytes(encode(models[1]))
    bombs = _bombs()
    assert len(bombs["count_bomb_v1"]) <= 80 and len(bombs["zlib_bomb_v1"]) > 100_000
    for name, blob in bombs.items():
        bad = tmp_path / f"{name}.epk"
        bad.write_bytes(blob)
        r = subprocess.run([sys.executable, "-c", _CHILD, str(good), str(bad)], capture_output=True, text=True,
                           timeout=120, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        verdict, figures = r.stdout.strip().splitlines()
        rss_kb, t_good, t_bad = (float(v) for v in figures.split())
        assert verdict.startswith("error: entropy package is corrupt"), (name, verdict)
        assert rss_kb < 16 * 1024, (name, rss_kb)  # peak memory grew by less than 16 MB
        assert t_bad < 10 * t_good, (name, t_bad, t_good)  # no slower than 10 good decodes


def test_version1_packages_still_unpack(models):
    import hashlib
    import zlib

    data = models[1]
    blob = _v1(len(data), [(1, zlib.compress(b"\0\0\0\0" + data)), (0, b""), (0, b""), (0, b"")],
               hashlib.sha256(data).digest())
    assert decode(blob) == data


def test_truncations_and_bit_flips_give_one_clear_error(models):
    from edgepack.errors import EdgepackError

    blob = encode(models[1])
    rng = np.random.RandomState(1)
    cases = [blob[:n] for n in (0, 3, 43, 44, 88, len(blob) // 2, len(blob) - 1)]
    for i in rng.choice(len(blob), 40, replace=False):
        b = bytearray(blob)
        b[int(i)] ^= 1 << int(rng.randint(8))
        cases.append(bytes(b))
    rejected = 0
    for bad in cases:  # a flip in a byte no decoder reads (e.g. past an LZMA stream's end) still restores the model
        try:
            assert decode(bad) == models[1]
            continue
        except EdgepackError as e:
            err, rejected = str(e), rejected + 1
        assert "\n" not in err and ("download it again" in err or "give a .epk" in err or "not supported" in err)
    assert rejected >= len(cases) - 5


def test_unpack_destinations(models, tmp_path, run_cli):
    src = tmp_path / "model.tflite.epk"
    src.write_bytes(encode(models[1]))
    out = tmp_path / "out.tflite"
    out.write_bytes(b"keep me")
    r = run_cli("unpack", src, out)
    assert r.exit_code == 1 and "exists; pass --force" in r.err and out.read_bytes() == b"keep me"
    r = run_cli("unpack", src, out, "--force")
    assert r.exit_code == 0 and out.read_bytes() == models[1]
    r = run_cli("unpack", src, src, "--force")
    assert r.exit_code == 2 and "package itself" in r.err and src.read_bytes()[:3] == b"EPK"
    r = run_cli("unpack", src, tmp_path / "missing" / "m.tflite")
    assert r.exit_code == 2 and "folder does not exist" in r.err and not (tmp_path / "missing").exists()
    r = run_cli("unpack", src, tmp_path)
    assert r.exit_code == 2 and "is a folder" in r.err
    bad = tmp_path / "bad.epk"
    bad.write_bytes(src.read_bytes()[:-10])
    r = run_cli("unpack", bad, tmp_path / "new.tflite")
    assert r.exit_code == 1 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.epk", "model.tflite.epk", "out.tflite"]  # no .part
