"""Fuzz-style: truncated and bit-flipped .tflite, .h5, .keras (tf_keras) and .npz files.

Every mutant, run through the CLI in-process, either still works (exit 0) or is refused with
exit 1, exactly one ``error:`` line on stderr, no traceback and nothing written in --out.
Mutants come from a seeded RNG (same mutants every run). A crash inside a module another
engineer owns (the model loader, the .epk codec) is marked xfail with the file and the
exception, so it is routed rather than hidden; a crash anywhere else fails.
"""

from __future__ import annotations

import traceback
import zlib
from pathlib import Path

import numpy as np
import pytest

from refusal import assert_refused

N_MUTANTS = 24
FULL_PACKAGE = 3  # the first mutants of each model format also run the whole package job
# modules owned elsewhere (issue 12 routes their crashes): path fragments of the innermost frame
OWNED_ELSEWHERE: dict[str, str] = {}  # every crash is a failure now: no module is exempt


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict:
    """The unmutated files (bytes) and a good model/labels pair for the data mutants."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras
    from edgepack.recipe import QuantizeConfig

    d = tmp_path_factory.mktemp("orig")
    k = keras()
    m = k.Sequential([k.Input((6, 6, 1)), k.layers.Conv2D(2, 3, name="c"), k.layers.Flatten(),
                      k.layers.Dense(3, name="d")])
    rng = np.random.default_rng(0)
    m.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in m.get_weights()])  # same bytes each run
    m.save(d / "m.h5")
    m.save(d / "m.keras")
    _fix_zip_times(d / "m.keras")
    m.save(d / "deflated.keras")
    np.savez(d / "m.npz", x=rng.random((4, 6, 6, 1), dtype=np.float32), y=np.array([0, 1, 2, 1]))
    (d / "wrong_labels.txt").write_text("only\ntwo\n")  # stops `package` right after loading (3 outputs)
    out = {f: (d / f"m.{f}").read_bytes() for f in ("h5", "keras", "npz")}
    out["keras_deflated"] = _fix_zip_times(d / "deflated.keras", deflate=True)
    out["tflite"] = convert(m, QuantizeConfig(mode="none"))
    out["dir"] = d
    return out


def _fix_zip_times(path: Path, deflate: bool = False) -> bytes:
    """Same bytes every run: fixed member times and save date in a tf_keras .keras zip
    (``deflate``: every member compressed, as a zip tool re-packing the file would). Returns the bytes."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = [(i.filename, i.compress_type, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for name, kind, data in members:
            if name == "metadata.json":
                data = json.dumps({**json.loads(data), "date_saved": "2026-01-01@00:00:00"}).encode()
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data,
                       compress_type=zipfile.ZIP_DEFLATED if deflate else kind)
    return path.read_bytes()


def mutate(data: bytes, fmt: str, i: int) -> tuple[str, bytes]:
    """Mutant ``i`` of ``data``: a recipe string (for reports) and the bytes."""
    rng = np.random.default_rng(zlib.crc32(f"{fmt}:{i}".encode()))
    a = bytearray(data)
    keep = 8 if fmt == "tflite" else 0  # tflite: keep the TFL3 header so the body is what gets parsed
    kind = i % 3
    if kind == 0:
        n = int(rng.integers(keep + 1, len(a)))
        return f"truncate to {n} bytes", bytes(a[:n])
    if kind == 1:
        flips = [(int(rng.integers(keep, len(a))), int(rng.integers(0, 8))) for _ in range(int(rng.integers(1, 9)))]
        for p, b in flips:
            a[p] ^= 1 << b
        return f"flip bits {flips}", bytes(a)
    p = int(rng.integers(keep, len(a) - 4))
    word = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    a[p:p + 4] = word
    return f"overwrite 4 bytes at {p} with {word.hex()}", bytes(a)


def _owner(exc: BaseException) -> tuple[str, str]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/edgepack/" in f.filename]
    where = frames[-1].filename if frames else "?"
    for frag, who in OWNED_ELSEWHERE.items():
        if frag in where.replace("\\", "/"):
            return who, where
    return "", where


def _run(run_cli, recipe: str, *args) -> "object":
    """run_cli, turning an escaped exception into xfail (owned elsewhere) or a failure."""
    try:
        return run_cli(*args)
    except Exception as e:  # noqa: BLE001 - this is the check: nothing may escape the CLI
        who, where = _owner(e)
        last = traceback.format_exception_only(type(e), e)[-1].strip()[:300]
        msg = f"{' '.join(map(str, args[:1]))} on mutant ({recipe}) crashed in {where}: {last}"
        if who:
            pytest.xfail(f"owned by {who}: {msg}")
        pytest.fail(msg)


def _assert_clean(r, out: Path, recipe: str) -> None:
    """Worked (exit 0), or refused cleanly (tests/refusal.py: exit 1, one line, nothing in --out)."""
    if r.exit_code == 0:
        return
    try:
        assert_refused(r, out=out)
    except AssertionError as e:
        raise AssertionError(f"mutant ({recipe}): {e}") from None


@pytest.mark.parametrize("i", range(N_MUTANTS))
def test_tflite_mutants(run_cli, originals, tmp_path, i):
    recipe, data = mutate(originals["tflite"], "tflite", i)
    f = tmp_path / "m.tflite"
    f.write_bytes(data)
    _assert_clean(_run(run_cli, recipe, "inspect", f, "--tensors"), tmp_path / "none", recipe)
    _assert_clean(_run(run_cli, recipe, "inspect", f, "--json"), tmp_path / "none", recipe)
    out = tmp_path / "p.json"
    _assert_clean(_run(run_cli, recipe, "profile", f, "-q", "--device", "estimate:nucleo-l4r5zi", "--out", out),
                  out, recipe)


@pytest.mark.parametrize("fmt", ["h5", "keras", "keras_deflated"])
@pytest.mark.parametrize("i", range(N_MUTANTS))
def test_keras_file_mutants(run_cli, originals, tmp_path, fmt, i):
    recipe, data = mutate(originals[fmt], fmt, i)
    f = tmp_path / f"m.{fmt.split('_')[0]}"
    f.write_bytes(data)
    _assert_clean(_run(run_cli, recipe, "inspect", f), tmp_path / "none", recipe)
    out = tmp_path / "o"
    extra = [] if i < FULL_PACKAGE else ["--labels", originals["dir"] / "wrong_labels.txt"]
    r = _run(run_cli, recipe, "package", "-q", f, "--target", "android", "--quantize", "none", "--out", out, *extra)
    _assert_clean(r, out, recipe)
    if r.exit_code == 0:
        assert (out / "model.tflite").is_file()


@pytest.mark.parametrize("i", range(N_MUTANTS))
def test_npz_mutants(run_cli, originals, tmp_path, i):
    recipe, data = mutate(originals["npz"], "npz", i)
    f = tmp_path / "d.npz"
    f.write_bytes(data)
    out = tmp_path / "o"
    for opt in ("--eval",):
        r = _run(run_cli, recipe, "package", "-q", originals["dir"] / "m.h5", "--quantize", "none", opt, f,
                 "--labels", originals["dir"] / "wrong_labels.txt", "--out", out)
        _assert_clean(r, out, recipe)
        assert r.exit_code == 1  # a mutant that loads meets the labels check: nothing is ever written


def test_mutants_are_deterministic(originals):
    assert mutate(originals["h5"], "h5", 5) == mutate(originals["h5"], "h5", 5)
    assert mutate(originals["h5"], "h5", 5) != mutate(originals["h5"], "h5", 8)
    assert all(mutate(originals["tflite"], "tflite", i)[1][4:8] == b"TFL3" for i in range(N_MUTANTS))


@pytest.mark.parametrize("fmt", ["npy", "png", "jpeg"])
def test_more_data_file_mutants(tmp_path, fmt):
    """.npy files and images in a folder: every mutant loads or is a DataError (API level, fast)."""
    import io

    from PIL import Image

    from edgepack.data import load_dataset
    from edgepack.errors import DataError

    rng = np.random.default_rng(3)
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, rng.random((4, 6, 6, 1), dtype=np.float32))
    else:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(buf, fmt.upper())
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(N_MUTANTS):
        recipe, data = mutate(buf.getvalue(), fmt, i)
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        f = folder / f"a.{fmt}"
        f.write_bytes(data)
        try:
            load_dataset(f if fmt == "npy" else folder, image_size=None if fmt == "npy" else (6, 6, 1))
            outcomes["loaded"] += 1
        except DataError as e:
            assert "\n" not in str(e) and str(f) in str(e), (recipe, str(e))
            outcomes["refused"] += 1
    assert outcomes["refused"] >= N_MUTANTS // 3, outcomes  # at least every truncation is refused
