"""The shipped .epk decoders (portable C, Java 17) restore every corpus model byte-exact, and reject
the same bad files as the Python reader; the C decoder builds for Cortex-M4 without any heap."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import numpy as np
import pytest

from edgepack.epk import decode, decoder_sources, encode
from edgepack.errors import EdgepackError
from edgepack.paths import data_dir

SRC = data_dir("templates") / "epk"
C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (apt-get install gcc / openjdk-17-jdk-headless / gcc-arm-none-eabi)")
    return path


def _tiny_models() -> dict[str, bytes]:
    """A pruned+clustered CNN (int8 and float16), a transposed-friendly dense model, a float MLP."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.recipe import QuantizeConfig

    set_seed(0)
    k, rng = keras(), np.random.RandomState(0)
    cnn = k.Sequential([k.layers.InputLayer((12, 12, 3)), k.layers.Conv2D(16, 3, activation="relu"),
                        k.layers.Conv2D(16, 3, strides=2), k.layers.Flatten(), k.layers.Dense(10)])
    for layer in cnn.layers:
        if layer.get_weights():
            w, b = layer.get_weights()
            w = rng.normal(0, 0.1, 8).astype(np.float32)[rng.randint(0, 8, w.shape)]
            w[rng.rand(*w.shape) < 0.8] = 0
            layer.set_weights([w, b])
    dense = k.Sequential([k.layers.InputLayer((96,)), k.layers.Dense(128), k.layers.Dense(3)])
    w, b = dense.layers[0].get_weights()
    w = rng.normal(0, 0.2, (1, 128, 4)).astype(np.float32)[0, np.arange(128)[None, :], rng.randint(0, 4, w.shape)]
    w[rng.rand(96) < 0.6, :] = 0  # 4 values per output channel (rank_rows); dead inputs: zero columns (transposed)
    dense.layers[0].set_weights([w, b])
    x = rng.rand(16, 12, 12, 3).astype(np.float32)
    return {"cnn_pruned_clustered_int8": convert(cnn, QuantizeConfig(mode="int8"), calibration=x),
            "cnn_pruned_clustered_f16": convert(cnn, QuantizeConfig(mode="float16")),
            "dense_dead_inputs_f32": convert(dense, QuantizeConfig(mode="none")),
            "dense_int8": convert(dense, QuantizeConfig(mode="int8"), calibration=rng.rand(16, 96).astype(np.float32))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, mnist, mlperf_dir) -> dict[str, tuple[bytes, object]]:
    """name -> (.tflite bytes, path of its .epk): MNIST int8, MLPerf Tiny int8 models, tiny synthetic models."""
    from edgepack.convert.tflite import convert
    from edgepack.data import Preprocess, load_dataset
    from edgepack.load import load_model
    from edgepack.recipe import QuantizeConfig

    m = load_model(mnist.model)
    cal = load_dataset(mnist.calib).model_input(Preprocess(scale=1 / 255), m.input_shape[1:])
    models = {"mnist_int8": convert(m, QuantizeConfig(mode="int8"), calibration=cal[:64]), **_tiny_models()}
    for f in sorted(mlperf_dir.glob("*.tflite")):
        models[f.stem] = f.read_bytes()
    out, d = {}, tmp_path_factory.mktemp("epk")
    for name, data in models.items():
        p = d / f"{name}.tflite.epk"
        p.write_bytes(encode(data))
        out[name] = (data, p)
    return out


@pytest.fixture(scope="module")
def c_tool(tmp_path_factory):
    gcc = _need("gcc")
    exe = tmp_path_factory.mktemp("c") / "epk_unpack"
    subprocess.run([gcc, *C_FLAGS, "-O2", "-o", str(exe), str(SRC / "c/epk_unpack.c"), str(SRC / "c/epk.c")],
                   check=True, capture_output=True, text=True)
    return [str(exe)]


@pytest.fixture(scope="module")
def java_tool(tmp_path_factory):
    javac, java = _need("javac"), _need("java")
    classes = tmp_path_factory.mktemp("java")
    subprocess.run([javac, "-Xlint:all", "-Werror", "--release", "17", "-d", str(classes),
                    str(SRC / "java/dev/edgepack/epk/EpkDecoder.java")], check=True, capture_output=True, text=True)
    return [java, "-cp", str(classes), "dev.edgepack.epk.EpkDecoder"]


def _run(tool: list[str], pkg, out) -> subprocess.CompletedProcess:
    return subprocess.run([*tool, str(pkg), str(out)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("which", ["c_tool", "java_tool"])
def test_decoder_restores_every_model_byte_exact(which, corpus, tmp_path, request):
    tool = request.getfixturevalue(which)
    assert len(corpus) >= 8
    if which == "java_tool":  # one JVM for the whole corpus
        args = [a for name, (_, pkg) in corpus.items() for a in (str(pkg), str(tmp_path / f"{name}.tflite"))]
        r = subprocess.run([*tool, "--each", *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    for name, (data, pkg) in corpus.items():
        out = tmp_path / f"{name}.tflite"
        if which == "c_tool":
            r = _run(tool, pkg, out)
            assert r.returncode == 0, (name, r.stderr)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest(), name


def _bad_files(good: bytes) -> dict[str, bytes]:
    """Truncations, bit flips and hostile headers of one good package."""
    import struct

    bad = {"empty": b"", "foreign": b"PK\x03\x04" + bytes(80), "v9": good[:3] + b"\x09" + good[4:]}
    for frac in (0.1, 0.5, 0.9, 0.999):
        bad[f"truncated_{frac}"] = good[: int(len(good) * frac)]
    rng = np.random.RandomState(0)
    for i in rng.choice(np.arange(4, len(good)), 12, replace=False):
        flipped = bytearray(good)
        flipped[int(i)] ^= 1 << int(rng.randint(8))
        bad[f"bitflip_{i}"] = bytes(flipped)
    huge = bytearray(good)
    struct.pack_into("<Q", huge, 4, 1 << 40)  # output length bomb
    bad["length_bomb"] = bytes(huge)
    stream = bytearray(good)
    struct.pack_into("<I", stream, 44 + 9 * 3 + 1, 1 << 30)  # a stream claims 2**30 bytes
    bad["stream_bomb"] = bytes(stream)
    return bad


def test_decoders_reject_the_same_bad_files(corpus, c_tool, java_tool, tmp_path):
    data, path = corpus["cnn_pruned_clustered_int8"]
    verdicts = {True: [], False: []}  # Python accepted (a flip in a byte no decoder reads) / refused
    for name, blob in _bad_files(path.read_bytes()).items():
        pkg, out = tmp_path / f"{name}.epk", tmp_path / f"{name}.tflite"
        pkg.write_bytes(blob)
        try:
            ok = decode(blob) == data
        except EdgepackError:
            ok = False
        verdicts[ok] += [str(pkg), str(out)]
        r = _run(c_tool, pkg, out)
        assert r.returncode == (0 if ok else 1), (name, r.stdout, r.stderr)
        if not ok:
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (name, r.stderr)
        assert out.exists() == ok and (not ok or out.read_bytes() == data)
    assert len(verdicts[False]) // 2 >= 20
    for ok, pairs in verdicts.items():  # one JVM per verdict
        if pairs:
            r = subprocess.run([*java_tool, "--each", *pairs], capture_output=True, text=True, timeout=120)
            assert r.returncode == (0 if ok else 1), (r.stdout, r.stderr)
            lines = (r.stdout if ok else r.stderr).strip().splitlines()
            assert len(lines) == len(pairs) // 2 and all(line.startswith("error: ") != ok for line in lines)


def test_c_decoder_builds_for_cortex_m4_without_heap(tmp_path):
    gcc = _need("arm-none-eabi-gcc")
    nm = _need("arm-none-eabi-nm")
    obj = tmp_path / "epk.o"
    subprocess.run([gcc, *C_FLAGS, "-Os", "-mcpu=cortex-m4", "-mthumb", "-c", str(SRC / "c/epk.c"), "-o", str(obj)],
                   check=True, capture_output=True, text=True)
    undefined = set(subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split())
    undefined -= {"U"}
    assert undefined <= {"memcpy", "memset", "memcmp", "__aeabi_uldivmod", "__aeabi_ldivmod", "__aeabi_memcpy",
                         "__aeabi_memset", "__aeabi_memclr"}, undefined
    main = tmp_path / "main.c"
    main.write_text('#include "epk.h"\nstatic uint8_t work[65536], chunk[256], pkg[64];\nvolatile unsigned s;\n'
                    "int main(void) { epk_decoder d; size_t n; int rc;\n"
                    "  if (epk_open(&d, pkg, sizeof pkg, work, sizeof work) != EPK_OK) return 1;\n"
                    "  while ((rc = epk_read(&d, chunk, sizeof chunk, &n)) == EPK_OK) s += chunk[0];\n"
                    "  return rc == EPK_DONE ? 0 : 2; }\n")
    elf = tmp_path / "fw.elf"
    subprocess.run([gcc, *C_FLAGS, "-Os", "-mcpu=cortex-m4", "-mthumb", "--specs=nosys.specs", f"-I{SRC / 'c'}",
                    str(main), str(SRC / "c/epk.c"), "-o", str(elf)], check=True, capture_output=True, text=True)
    symbols = {line.split()[-1] for line in subprocess.run([nm, str(elf)], capture_output=True, text=True,
                                                          check=True).stdout.splitlines() if line.strip()}
    assert not symbols & {"malloc", "_malloc_r", "calloc", "realloc", "free", "_sbrk"}


def test_decoder_sources_name_the_shipped_files():
    src = decoder_sources()
    assert {"c/epk.c", "c/epk.h", "c/epk_unpack.c", "java/dev/edgepack/epk/EpkDecoder.java"} <= set(src)
    assert b"epk_read" in src["c/epk.h"] and b"class EpkDecoder" in src["java/dev/edgepack/epk/EpkDecoder.java"]


def test_max_work_bounds_the_c_decoders_memory(corpus, c_tool, tmp_path):
    import re

    from edgepack.epk import work_size

    data = corpus["cnn_pruned_clustered_f16"][0]
    for budget in (None, 12 * 1024, 0):
        blob = encode(data, max_work=budget)
        assert budget is None or work_size(blob) <= budget
        pkg, out = tmp_path / "m.epk", tmp_path / "m.tflite"
        pkg.write_bytes(blob)
        r = _run(c_tool, pkg, out)
        assert r.returncode == 0 and out.read_bytes() == data, r.stderr
        assert int(re.search(r"work memory (\d+) bytes", r.stdout).group(1)) == work_size(blob)


_CHUNKS_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "epk.h"
/* decode argv[1] with chunks of 1, 3, 7, 64 and 4096 bytes; print the bytes of each decode and a checksum */
int main(int argc, char **argv) {
    static uint8_t in[1 << 21], work[1 << 20], out[4096];
    static const size_t caps[] = {1, 3, 7, 64, 4096};
    FILE *f = fopen(argv[1], "rb");
    size_t len = fread(in, 1, sizeof in, f), need, n, i;
    (void)argc;
    fclose(f);
    if (epk_work_size(in, len, &need) != EPK_OK || need > sizeof work) return 3;
    for (i = 0; i < 5; i++) {
        epk_decoder d;
        unsigned long long total = 0, sum = 0;
        int rc;
        if (epk_open(&d, in, len, work, sizeof work) != EPK_OK) return 4;
        while ((rc = epk_read(&d, out, caps[i], &n)) == EPK_OK) {
            size_t k;
            if (n > caps[i]) return 5;
            for (k = 0; k < n; k++) sum = sum * 31 + out[k];
            total += n;
        }
        if (rc != EPK_DONE) return 6;
        printf("%llu %llu\n", total, sum);
    }
    return 0;
}
"""


def test_c_decoder_output_is_the_same_in_any_chunk_size(corpus, tmp_path):
    gcc = _need("gcc")
    src = tmp_path / "chunks.c"
    src.write_text(_CHUNKS_C)
    exe = tmp_path / "chunks"
    subprocess.run([gcc, *C_FLAGS, "-O2", f"-I{SRC / 'c'}", str(src), str(SRC / "c/epk.c"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    for name in ("cnn_pruned_clustered_f16", "dense_dead_inputs_f32", "mnist_int8"):
        data, pkg = corpus[name]
        r = subprocess.run([str(exe), str(pkg)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (name, r.returncode)
        lines = r.stdout.split("\n")[:5]
        assert len(set(lines)) == 1 and int(lines[0].split()[0]) == len(data), (name, lines)


def test_corpus_exercises_every_transform_and_codec(corpus):
    import struct

    from edgepack.epk.limits import HEADER_SIZE, N_STREAMS

    seen = set()
    for _, pkg in corpus.values():
        blob = pkg.read_bytes()
        heads = [struct.unpack_from("<BII", blob, 44 + 9 * i) for i in range(N_STREAMS)]
        seen |= {("codec", c) for c, n, _ in heads if n}
        lzma_props = [blob[HEADER_SIZE + sum(h[2] for h in heads[:i])] for i, h in enumerate(heads) if h[0] == 3]
        seen |= {("lp", p // 9 % 5) for p in lzma_props}
        (n,) = struct.unpack_from("<I", blob, HEADER_SIZE)
        for i in range(n):
            _, _, dt, transform, transposed, _ = struct.unpack_from("<QIBBBI", blob, HEADER_SIZE + 4 + 19 * i)
            seen |= {("transform", transform), ("transposed", transposed), ("dtype", dt)}
    want = {("codec", 0), ("codec", 3), ("codec", 4), ("transform", 0), ("transform", 1), ("transform", 2),
            ("transposed", 1), ("dtype", 1), ("dtype", 2), ("dtype", 3)}
    assert want <= seen, want - seen
