"""Hostile and careless input (issue 12): nothing deleted, one clear line, nothing half-written.

Fixtures are generated here (a 3-class tf_keras model on 8x8x1 input, a few samples).
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgepack.data import Preprocess, load_dataset
from edgepack.errors import DataError
from refusal import assert_refused, snapshot


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model (.h5), its .tflite, and labelled data (.npz) in one folder."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras
    from edgepack.recipe import QuantizeConfig

    d = tmp_path_factory.mktemp("tiny")
    k = keras()
    m = k.Sequential([k.Input((8, 8, 1)), k.layers.Conv2D(2, 3, name="c"), k.layers.Flatten(),
                      k.layers.Dense(3, name="d")])
    m.save(d / "model.h5")
    (d / "model.tflite").write_bytes(convert(m, QuantizeConfig(mode="none")))
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.random((6, 8, 8, 1), dtype=np.float32), y=np.array([0, 1, 2, 1, 0, 2]))
    return d


# -- 1. data loss: --out must never hold an input ------------------------------------------

@pytest.mark.parametrize("where", ["model_folder", "ancestor", "model_file", "data_folder", "symlink"])
def test_out_holding_an_input_is_refused_before_any_work(run_cli, tmp_path, tiny, where):
    import shutil

    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    shutil.copy(tiny / "model.h5", proj / "model.h5")
    shutil.copy(tiny / "data.npz", proj / "data" / "calib.npz")
    out = {"model_folder": proj, "ancestor": tmp_path, "model_file": proj / "model.h5",
           "data_folder": proj / "data", "symlink": tmp_path / "link"}[where]
    if where == "symlink":
        out.symlink_to(proj, target_is_directory=True)
    before, out_before = snapshot(tmp_path), snapshot(out)
    r = run_cli("package", "-q", proj / "model.h5", "--quantize", "none", "--calibration", proj / "data" / "calib.npz",
                "--out", out, "--force")
    line = assert_refused(r, out=out_before, match=["--out", "input"])
    assert "--force would delete it" in line or "inside" in line
    assert snapshot(tmp_path) == before  # nothing deleted, nothing written


def test_out_inside_a_savedmodel_folder_is_refused(run_cli, tmp_path):
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"\x08\x01")
    assert_refused(run_cli("package", "-q", sm, "--quantize", "none", "--out", sm / "build", "--force"),
                   out=sm / "build", match="lies inside the input folder")
    assert sorted(p.name for p in sm.iterdir()) == ["saved_model.pb"]


def test_out_holding_the_recipe_or_labels_is_refused(run_cli, tmp_path, tiny):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "recipe.yaml").write_text("quantize:\n  mode: none\n")
    (cfg / "labels.txt").write_text("a\nb\nc\n")
    for opt, name in (("--recipe", "recipe.yaml"), ("--labels", "labels.txt")):
        before = snapshot(cfg)
        r = run_cli("package", "-q", tiny / "model.h5", opt, cfg / name, "--quantize", "none", "--out", cfg, "--force")
        assert_refused(r, out=before, match=str(cfg / name))
    assert sorted(p.name for p in cfg.iterdir()) == ["labels.txt", "recipe.yaml"]


def test_profile_out_never_overwrites_its_input(run_cli, tmp_path, tiny):
    import shutil

    model = tmp_path / "m.tflite"
    shutil.copy(tiny / "model.tflite", model)
    data = model.read_bytes()
    assert_refused(run_cli("profile", model, "-q", "--device", "estimate:nucleo-l4r5zi", "--out", model),
                   match="overwrite the input")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copy(tiny / "model.tflite", pkg / "model.tflite")
    assert_refused(run_cli("profile", pkg, "-q", "--device", "estimate:nucleo-l4r5zi", "--out", pkg / "model.tflite"),
                   match="is a file of the input")
    assert_refused(run_cli("profile", model, "-q", "--device", "estimate:nucleo-l4r5zi", "--out", tmp_path),
                   match="is a folder")
    assert model.read_bytes() == data and (pkg / "model.tflite").read_bytes() == data
    # a new file beside the package's model is fine
    r = run_cli("profile", pkg, "-q", "--device", "estimate:nucleo-l4r5zi", "--out", pkg / "est.json")
    assert r.exit_code == 0, r.err
    assert (pkg / "est.json").is_file()


def test_profile_append_report_never_overwrites_its_input(run_cli, tmp_path, tiny):
    rep = tmp_path / "rep"
    rep.mkdir()
    assert run_cli("package", tiny / "model.tflite", "--out", tmp_path / "pkg", "-q").exit_code == 0
    (rep / "report.json").write_text((tmp_path / "pkg" / "report.json").read_text())  # a real package report
    model = rep / "report.md"  # a model file that happens to carry the report's name
    model.write_bytes((tiny / "model.tflite").read_bytes())
    before = snapshot(rep)
    r = run_cli("profile", model, "-q", "--device", "estimate:nucleo-l4r5zi", "--append-report", rep)
    assert_refused(r, out=before, match=["--append-report", "overwrite the input"])
    assert model.read_bytes() == (tiny / "model.tflite").read_bytes()


def test_force_through_a_symlinked_out_drops_the_link_not_its_target(tmp_path):
    from edgepack.fsutil import staged_dir

    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious.txt").write_text("keep")
    link = tmp_path / "out"
    link.symlink_to(target, target_is_directory=True)
    with staged_dir(link, force=True) as tmp:
        (tmp / "model.tflite").write_bytes(b"new")
    assert not link.is_symlink() and (link / "model.tflite").read_bytes() == b"new"
    assert (target / "precious.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]


# -- 2. writes that fail: read-only file system, full disk ----------------------------------

@pytest.fixture
def mounted(tmp_path):
    """mount(options) -> a tmpfs folder mounted with those options (as root).

    As a non-root user a read-only folder is a chmod 0555 folder instead (root ignores the
    mode, hence the real read-only mount); a full disk needs the mount and is skipped.
    """
    mounts, locked = [], []

    def mount(options: str) -> Path:
        d = tmp_path / f"mnt{len(mounts) + len(locked)}"
        d.mkdir()
        if os.geteuid() != 0:
            if "ro" not in options.split(","):
                pytest.skip("a full disk needs a tiny tmpfs mount, which needs root")
            d.chmod(0o555)
            locked.append(d)
            return d
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"mount -t tmpfs not permitted here: {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield mount
    for d in mounts:
        subprocess.run(["umount", str(d)], check=False)
    for d in locked:
        d.chmod(0o755)


READ_ONLY = "Read-only file system" if os.geteuid() == 0 else "Permission denied"


def test_read_only_out_is_one_line(run_cli, tiny, mounted):
    ro = mounted("ro,size=64k")
    r = run_cli("package", "-q", tiny / "model.h5", "--quantize", "none", "--out", ro / "o", "-q")
    assert_refused(r, out=ro / "o", match=[str(ro / "o"), READ_ONLY])
    assert list(ro.iterdir()) == []


def test_read_only_profile_out_is_one_line(run_cli, tiny, mounted):
    ro = mounted("ro,size=64k")
    r = run_cli("profile", tiny / "model.tflite", "-q", "--device", "estimate:nucleo-l4r5zi", "--out", ro / "p.json")
    assert_refused(r, out=ro / "p.json", match=[str(ro / "p.json"), READ_ONLY])


def test_full_disk_leaves_nothing_half_written(run_cli, tiny, mounted):
    full = mounted("size=12k")  # 3 pages: the package does not fit
    (full / "keep.txt").write_text("mine")
    r = run_cli("package", "-q", tiny / "model.h5", "--quantize", "none", "--labels", _labels(tiny), "--out",
                full / "o", "-q")
    assert_refused(r, out=full / "o", match=[str(full / "o"), "No space left on device"])
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]  # staging folder removed


def test_full_disk_with_force_keeps_the_previous_output(run_cli, tiny, mounted):
    full = mounted("size=12k")
    (full / "o").mkdir()
    (full / "o" / "old.txt").write_text("previous build")
    before = snapshot(full / "o")
    r = run_cli("package", "-q", tiny / "model.h5", "--quantize", "none", "--out", full / "o", "--force", "-q")
    assert_refused(r, out=before, match="No space left on device")
    assert sorted(p.name for p in full.iterdir()) == ["o"]
    assert (full / "o" / "old.txt").read_text() == "previous build"


def _labels(tiny: Path) -> Path:
    p = tiny / "labels.txt"
    p.write_text("a\nb\nc\n")
    return p


# -- 3. caps before reading; complex data; preprocess against the model ---------------------

def _npy_with_header(path: Path, shape, dtype="<f4") -> None:
    from numpy.lib import format as npf

    with open(path, "wb") as fp:
        npf.write_array_header_1_0(fp, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
        fp.write(b"\0" * 64)


def test_npy_header_declaring_29_gib_is_refused_from_the_header(tmp_path):
    f = tmp_path / "huge.npy"
    _npy_with_header(f, (1 << 20, 96, 80, 1))  # 29.3 GiB of float32 declared, 64 bytes held
    assert f.stat().st_size < 200
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(f)


def test_sparse_29_gib_npy_is_refused_by_the_cap_and_its_head_read_with_a_limit(tmp_path):
    f = tmp_path / "sparse.npy"
    _npy_with_header(f, (1 << 20, 96, 80, 1))
    with open(f, "r+b") as fp:  # a real 29 GiB file, sparse: the header and the size agree
        fp.truncate(128 + (1 << 20) * 96 * 80 * 4)
    with pytest.raises(DataError, match="32,212,254,720 bytes, more than the 2,147,483,648-byte data cap"):
        load_dataset(f)
    assert load_dataset(f, limit=3).x.shape == (3, 96, 80, 1)  # only the used samples are read


def test_data_cap_refuses_before_reading_and_can_be_raised(tmp_path, monkeypatch):
    f = tmp_path / "x.npy"
    np.save(f, np.zeros((50, 8, 8, 1), np.float32))  # 12,800 bytes
    monkeypatch.setenv("EDGEPACK_MAX_DATA_BYTES", "10K")
    with pytest.raises(DataError, match=r"12,800 bytes, more than the 10,240-byte data cap.*EDGEPACK_MAX_DATA_BYTES"):
        load_dataset(f)
    assert len(load_dataset(f, limit=20)) == 20  # only the used samples count (read through mmap)
    monkeypatch.setenv("EDGEPACK_MAX_DATA_BYTES", "1M")
    assert len(load_dataset(f)) == 50
    monkeypatch.setenv("EDGEPACK_MAX_DATA_BYTES", "lots")
    from edgepack.errors import UsageError

    with pytest.raises(UsageError, match="EDGEPACK_MAX_DATA_BYTES"):
        load_dataset(f)


def test_npz_member_declaring_a_huge_array_is_refused_from_the_header(tmp_path):
    member = tmp_path / "x.npy"
    _npy_with_header(member, (1 << 20, 96, 80, 1))
    f = tmp_path / "huge.npz"
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(member, "x.npy")
    with pytest.raises(DataError, match="declares .* but its member holds 192 bytes"):
        load_dataset(f)


def test_npz_zip_bomb_is_refused_by_the_cap(tmp_path, monkeypatch):
    f = tmp_path / "bomb.npz"
    np.savez_compressed(f, x=np.zeros((4000, 8, 8, 1), np.float32))  # 1 MB of zeros, a few KB on disk
    assert f.stat().st_size < 20_000
    monkeypatch.setenv("EDGEPACK_MAX_DATA_BYTES", "100K")
    with pytest.raises(DataError, match="1,024,000 bytes, more than the 102,400-byte data cap"):
        load_dataset(f)


def test_huge_image_is_refused_by_its_header(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "a.png")
    Image.new("L", (12000, 12000)).save(folder / "b.png")  # ~140 KB on disk, 144 megapixels
    with pytest.raises(DataError, match=r"b.png: image (is 12000x12000|too large)"):
        load_dataset(folder, image_size=(8, 8, 1))


def test_image_pixel_cap_can_be_raised(tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("L", (40, 40)).save(folder / "a.png")
    monkeypatch.setenv("EDGEPACK_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match="1,600 pixels.*EDGEPACK_MAX_IMAGE_PIXELS"):
        load_dataset(folder, image_size=(8, 8, 1))
    monkeypatch.setenv("EDGEPACK_MAX_IMAGE_PIXELS", "2000")
    assert load_dataset(folder, image_size=(8, 8, 1)).x.shape == (1, 8, 8)


def test_images_of_different_sizes_without_resize_are_one_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "a.png")
    Image.new("L", (9, 8)).save(folder / "b.png")
    with pytest.raises(DataError, match="b.png: image shape"):
        load_dataset(folder)


@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_complex_data_is_refused(tmp_path, fmt):
    x = (np.ones((3, 4)) + 1j).astype(np.complex64)
    f = tmp_path / f"c.{fmt}"
    np.savez(f, x=x) if fmt == "npz" else np.save(f, x)
    with pytest.raises(DataError, match="complex-valued"):
        load_dataset(f)


def test_three_value_mean_for_a_one_channel_model(run_cli, tmp_path, tiny):
    rec = tmp_path / "r.yaml"
    rec.write_text("quantize:\n  mode: none\ndata:\n  preprocess:\n    mean: [0.5, 0.5, 0.5]\n")
    r = run_cli("package", "-q", tiny / "model.h5", "--recipe", rec, "--calibration", tiny / "data.npz",
                "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=["data.preprocess.mean has 3 values", "1 channel"])
    assert not (tmp_path / "o").exists()
    ds = load_dataset(tiny / "data.npz")
    assert ds.model_input(Preprocess(mean=[0.5]), (8, 8, 1)).shape == (6, 8, 8, 1)
    with pytest.raises(DataError, match="has 0 values"):
        ds.model_input(Preprocess(mean=[]), (8, 8, 1))


def test_three_value_scale_is_one_recipe_line(run_cli, tmp_path, tiny):
    rec = tmp_path / "r.yaml"
    rec.write_text("quantize:\n  mode: none\ndata:\n  preprocess:\n    scale: [1, 2, 3]\n")
    r = run_cli("package", "-q", tiny / "model.h5", "--recipe", rec, "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match="scale", code=(1, 2))
    assert r.exit_code in (1, 2) and not (tmp_path / "o").exists()


# -- 4. labels that do not fit the model ------------------------------------------------------

@pytest.mark.parametrize("labels,words", [
    ([50, 51, 59, 0, 1, 2], ["3 of 6 labels", "3 classes (0..2)", "50, 51, 59"]),
    ([0, -1, 2, 1, 0, 2], ["1 of 6 labels", "-1"]),
])
@pytest.mark.parametrize("opt", ["--eval", "--calibration", "--train"])
def test_labels_outside_the_models_classes_are_refused(run_cli, tmp_path, tiny, labels, words, opt):
    f = tmp_path / "bad.npz"
    np.savez(f, x=np.random.default_rng(1).random((6, 8, 8, 1), dtype=np.float32), y=np.array(labels))
    r = run_cli("package", "-q", tiny / "model.h5", "--quantize", "none", opt, f, "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=[str(f), *words])
    assert not (tmp_path / "o").exists()


def test_non_integer_labels_name_the_values(tmp_path):
    f = tmp_path / "float_y.npz"
    np.savez(f, x=np.zeros((3, 8, 8, 1), np.float32), y=np.array([0.5, 1.0, 2.25]))
    with pytest.raises(DataError, match=r"float_y.npz: labels y have dtype float64 \(values 0.5, 1, 2.25\)"):
        load_dataset(f)


def test_one_hot_labels_are_named(tmp_path):
    f = tmp_path / "onehot.npz"
    np.savez(f, x=np.zeros((3, 8, 8, 1), np.float32), y=np.eye(3, dtype=np.int64))
    with pytest.raises(DataError, match=r"one-hot.*argmax"):
        load_dataset(f)


# -- 5. a valid TFL3 header with a random body --------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_tflite_header_with_random_body_is_one_line(run_cli, tmp_path, seed):
    body = np.random.default_rng(seed).integers(0, 256, 600, dtype=np.uint8).tobytes()
    f = tmp_path / "rand.tflite"
    f.write_bytes(body[:4] + b"TFL3" + body[8:])
    assert_refused(run_cli("inspect", f), match=[str(f), "corrupt TFLite flatbuffer"])
    assert_refused(run_cli("profile", f, "-q", "--device", "estimate:nucleo-l4r5zi", "--out", tmp_path / "p.json"),
                   out=tmp_path / "p.json", match=[str(f), "corrupt TFLite flatbuffer"])
    assert not (tmp_path / "p.json").exists()


def test_tflite_absurd_vector_length_is_bounded(tiny):
    """A subgraph claiming 2^31 tensors fails at once (no loop over the claimed count)."""
    import struct

    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.errors import ModelLoadError

    data = bytearray((tiny / "model.tflite").read_bytes())
    info = read_tflite(bytes(data))
    n = len(info.tensors)
    # find the tensors vector: a uint32 length n followed by n uoffsets, then patch the length
    hits = [i for i in range(0, len(data) - 4, 4) if struct.unpack_from("<I", data, i)[0] == n]
    patched = 0
    for i in hits:
        trial = bytearray(data)
        struct.pack_into("<I", trial, i, 1 << 31)
        try:
            read_tflite(bytes(trial), "m")
        except ModelLoadError as e:
            if "claims 2,147,483,648 entries" in str(e):
                patched += 1
    assert patched >= 1


@pytest.mark.parametrize("opt", ["--labels", "--recipe"])
def test_binary_labels_or_recipe_file_is_one_line(run_cli, tmp_path, tiny, opt):
    f = tmp_path / ("labels.txt" if opt == "--labels" else "recipe.yaml")
    f.write_bytes(b"\x91\xfe\x00binary" * 20)
    r = run_cli("package", "-q", tiny / "model.h5", "--quantize", "none", opt, f, "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=str(f))
    assert not (tmp_path / "o").exists()


def test_out_that_is_or_holds_the_current_folder_is_refused(run_cli, tmp_path, tiny, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    for out in (".", "..", str(tmp_path)):
        r = run_cli("package", "-q", tiny / "model.h5", "--quantize", "none", "--out", out, "--force")
        assert_refused(r, match=["the current folder", "--force would delete it"])
    assert (work / "notes.txt").read_text() == "mine"


def test_an_error_about_a_path_with_a_newline_stays_one_line(run_cli, tmp_path):
    bad = tmp_path / "evil\nname=pwned.h5"
    r = run_cli("package", bad, "--out", tmp_path / "o", "-q")
    assert r.exit_code == 1 and len(r.err.strip().splitlines()) == 1 and "\\n" in r.err
