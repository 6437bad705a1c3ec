"""Weights kept compressed for TFLM's DECODE op (issue 25): LUT / prune / Huffman, each decoded in
the host TFLM interpreter and compared bit for bit with the plain model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgepack.convert.flatbuffer import read_tflite
from edgepack.errors import RecipeError
from edgepack.recipe import Recipe
from edgepack.tflm.compress import DECODE_CODE_BYTES, CompressOptions, check_bit_exact, compress_model, read_model
from locations import TESTS
from shared_values import X, cnn as _cnn, snap as _snap

@pytest.fixture(scope="module")
def clustered() -> bytes:
    return _cnn(16)


@pytest.fixture(scope="module")
def pruned() -> bytes:
    return _cnn(16, zeros=0.6, seed=1)


def _rows(result) -> dict[str, dict]:
    return {t.op + ":" + str(t.tensor): t for t in result.tensors}


def test_lut_shrinks_the_model_and_decodes_bit_exactly(clustered):
    r = compress_model(clustered, CompressOptions(encoding="lut"))
    assert r.compressed and len(r.tflite) / len(clustered) < 1
    lut = [t for t in r.tensors if t.encoding == "lut"]
    assert lut and all(t.bits == 4 and t.bytes_after < t.bytes_before and t.file_delta < 0 for t in lut)
    fc = next(t for t in r.tensors if t.op == "FULLY_CONNECTED")
    assert fc.encoding == "lut" and not fc.per_channel  # per tensor: the tflm target's dense weights
    info = read_tflite(r.tflite)
    assert "TFLM_DECODE" in [op.custom_code for op in info.ops]
    assert check_bit_exact(clustered, r.tflite, X)["bit_exact"]
    assert compress_model(clustered, CompressOptions(encoding="lut")).tflite == r.tflite  # same bytes each run


def test_per_channel_dense_weights_get_one_table_per_channel():
    data = _cnn(16, dense_per_channel=True)  # the android default
    r = compress_model(data, CompressOptions(encoding="lut"))
    fc = next(t for t in r.tensors if t.op == "FULLY_CONNECTED")
    assert fc.encoding == "lut" and fc.per_channel
    assert check_bit_exact(data, r.tflite, X)["bit_exact"]


def test_a_tensor_that_would_grow_stays_plain(clustered):
    r = compress_model(clustered, CompressOptions(encoding="lut"))
    dw = next(t for t in r.tensors if t.op == "DEPTHWISE_CONV_2D")  # 9 weights per channel, 8 channels
    assert dw.encoding == "plain" and "grow" in dw.reason and dw.bytes_after == dw.bytes_before
    c1 = next(t for t in r.tensors if t.op == "CONV_2D" and t.bytes_before == 72)  # 8 x 3x3x1
    assert c1.encoding == "plain"


def test_off_gives_the_input_bytes(clustered):
    r = compress_model(clustered, CompressOptions(encoding="off"))
    assert r.tflite == clustered and not r.compressed and r.tensors == []


def test_forced_width_and_too_narrow_a_width(clustered):
    wide = compress_model(clustered, CompressOptions(encoding="lut", lut_bits=5))
    assert {t.bits for t in wide.tensors if t.encoding == "lut"} == {5}
    assert check_bit_exact(clustered, wide.tflite, X[:4])["bit_exact"]
    narrow = compress_model(clustered, CompressOptions(encoding="lut", lut_bits=2))
    assert narrow.tflite == clustered
    assert all(t.encoding == "plain" for t in narrow.tensors)
    assert any("more than lut_bits 2" in t.reason for t in narrow.tensors)


def test_prune_encoding_costs_the_nonzeros_and_decodes_bit_exactly(pruned):
    r = compress_model(pruned, CompressOptions(encoding="prune"))
    rows = [t for t in r.tensors if t.encoding == "prune"]
    assert rows and r.compressed
    for t in rows:  # bitmask (1 bit per weight) + header + the kept values
        assert t.bytes_after < t.bytes_before * (1 / 8 + 0.45) + 16
    assert check_bit_exact(pruned, r.tflite, X)["bit_exact"]


def test_huffman_encoding_decodes_bit_exactly(pruned, clustered):
    for model in (pruned, clustered):
        r = compress_model(model, CompressOptions(encoding="huffman"))
        assert any(t.encoding == "huffman" for t in r.tensors) and r.compressed
        assert check_bit_exact(model, r.tflite, X)["bit_exact"]


def test_auto_takes_per_tensor_the_smallest_encoding(pruned):
    auto = _rows(compress_model(pruned, CompressOptions(code_bytes=0)))
    for enc in ("lut", "prune", "huffman"):
        for key, row in _rows(compress_model(pruned, CompressOptions(encoding=enc))).items():
            if row.encoding != "plain":
                assert auto[key].bytes_after <= row.bytes_after, (key, enc)
    r = compress_model(pruned, CompressOptions(code_bytes=0))
    assert len({t.encoding for t in r.tensors} - {"plain"}) >= 1
    assert check_bit_exact(pruned, r.tflite, X)["bit_exact"]


def test_auto_weighs_the_decode_kernels_code(clustered):
    """A small model saving less flash than the DECODE kernel costs stays plain under auto."""
    free = compress_model(clustered, CompressOptions(code_bytes=0))
    saved = len(clustered) - len(free.tflite)
    assert saved > 0
    r = compress_model(clustered, CompressOptions(code_bytes=saved + 1))
    assert r.tflite == clustered and "less than the DECODE kernel" in r.report()["dropped"]
    assert compress_model(clustered, CompressOptions(code_bytes=saved - 1)).tflite == free.tflite
    forced = compress_model(clustered, CompressOptions(encoding="lut", code_bytes=saved + 1))
    assert forced.compressed  # an explicit encoding is applied whatever the kernel costs


def test_unclustered_weights_stay_plain_bytes():
    data = _cnn(256)
    assert compress_model(data, CompressOptions(code_bytes=0)).tflite == data


def test_recipe_knob_is_validated():
    r = Recipe.from_dict({"tflm": {"compress": {"encoding": "lut", "lut_bits": 4}}})
    assert r.tflm.compress.lut_bits == 4 and "lut_bits: 4" in r.to_yaml()
    assert "compress" not in Recipe().to_yaml() and "tflm" not in Recipe().to_yaml()  # unset: the recipe file reads as before
    for bad in ({"encoding": "zip"}, {"lut_bits": 9}, {"bits": 4}):
        with pytest.raises(RecipeError, match="compress"):
            Recipe.from_dict({"tflm": {"compress": bad}})


# --------------------------------------------------------------------------- MLPerf KWS (.tflite input)

def snapped_kws(path: Path, levels: int = 16) -> bytes:
    """The MLPerf KWS .tflite with each weight channel's int8 values snapped to ``levels`` values
    (what a 16-cluster model gives), rebuilt with the operator codes fixed."""
    from tflite_micro.tensorflow.lite.micro.compression.compress import _apply_flatbuffer_alignment

    from edgepack.tflm.compress import _candidates

    model = read_model(path.read_bytes())
    for t, _, axis in _candidates(model):
        w = t.array.astype(np.float32)
        slices = [w] if axis is None else list(np.moveaxis(w, axis, 0))
        snapped = [_snap(s, levels) for s in slices]
        out = snapped[0] if axis is None else np.moveaxis(np.stack(snapped), 0, axis)
        t.array = np.clip(np.round(out), -127, 127).astype(np.int8)
    return bytes(_apply_flatbuffer_alignment(model.build()))


def test_operator_codes_survive_the_wheels_editor(mlperf_dir):
    """Wheel bug 1: KWS keeps its operator codes in deprecated_builtin_code only."""
    data = (mlperf_dir / "kws_ref_model.tflite").read_bytes()
    rebuilt = snapped_kws(mlperf_dir / "kws_ref_model.tflite")
    assert read_tflite(rebuilt).op_names() == read_tflite(data).op_names()


def test_kws_tflite_input_compresses_losslessly(mlperf_dir):
    plain = snapped_kws(mlperf_dir / "kws_ref_model.tflite")
    r = compress_model(plain, CompressOptions(code_bytes=0))
    assert r.compressed and len(r.tflite) / len(plain) < 1
    conv = [t for t in r.tensors if t.op == "CONV_2D"]  # 64 weights per channel, 16 values: 4-bit LUT
    assert all(t.encoding == "lut" and t.bits == 4 for t in conv)
    saved = sum(t.bytes_before - t.bytes_after for t in r.tensors)
    assert len(plain) - len(r.tflite) >= 0.8 * saved  # the flatbuffer overhead stays small
    dw = [t for t in r.tensors if t.op == "DEPTHWISE_CONV_2D"]
    assert dw and all(t.per_channel for t in dw)  # axis 3
    x = np.random.default_rng(0).standard_normal((8, 49, 10, 1)).astype(np.float32)
    assert check_bit_exact(plain, r.tflite, x)["bit_exact"]


# --------------------------------------------------------------------------- packaged for tflm

def _array_bytes(source: str) -> bytes:
    body = source[source.index("{") + 1 : source.index("};")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def package_clustered(out: Path, model, encoding: str = "lut", sparsity: float = 0.0) -> dict:
    """``model`` (the digits CNN) clustered to 16 values (no fine-tune; pruned one-shot to
    ``sparsity`` first when given), packaged for tflm."""
    from edgepack.pipeline import PackageRequest, package

    import sys

    sys.path.insert(0, str(TESTS))
    from compress_helpers import digits

    tr, _ = digits()
    prune = [{"type": "prune_magnitude", "sparsity": sparsity}] if sparsity else []
    recipe = Recipe.from_dict({"steps": [*prune, {"type": "cluster", "clusters": 16}],
                               "quantize": {"mode": "int8", "io": "int8"},
                               "verify": {"max_accuracy_drop": "none", "step_metrics": False, "layer_errors": False},
                               "tflm": {"compress": {"encoding": encoding}}})
    return package(PackageRequest(model=model, out=out, target="tflm", recipe=recipe,
                                  calibration=tr.x[:64], target_options={"device": "nucleo-l4r5zi"}))


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    import sys

    sys.path.insert(0, str(TESTS))
    from compress_helpers import cnn

    root, model = tmp_path_factory.mktemp("compress_pkg"), cnn(epochs=2)
    return {enc: (root / enc, package_clustered(root / enc, model, enc)) for enc in ("lut", "off")}


@pytest.mark.slow
def test_packaged_clustered_cnn_ships_the_compressed_model(packaged):
    (auto, rep), (off, rep_off) = packaged["lut"], packaged["off"]
    model = (auto / "model.tflite").read_bytes()
    plain = (off / "model.tflite").read_bytes()
    assert _array_bytes((auto / "model_data.cc").read_text()) == model  # the bundle's file is the C array
    assert len(model) / len(plain) < 1
    comp = rep["firmware"]["compression"]
    assert comp["plain_bytes"] == len(plain) and comp["compressed_bytes"] == len(model)
    assert any(t["encoding"] == "lut" and t["bits"] == 4 for t in comp["tensors"])
    assert comp["bit_exact"]["bit_exact"] and rep["firmware"]["parity"]["compressed_vs_plain"]["bit_exact"]
    assert "resolver.AddDecode()" in (auto / "model_ops.h").read_text()
    assert "AddDecode" not in (off / "model_ops.h").read_text()
    # the arena holds the decoded weights: measured on the compressed model
    assert rep["firmware"]["arena"]["min_bytes"] == comp["arena_bytes"]["compressed"]
    assert comp["arena_bytes"]["plain"] == rep_off["firmware"]["arena"]["min_bytes"]
    assert rep["firmware"]["budget"]["flash"]["model"] == len(model)
    # bit-exact: the host TFLM outputs of the shipped model equal the plain one's
    assert check_bit_exact(plain, model, _digits_x())["bit_exact"]
    assert rep["firmware"]["harness"]["expected_crc32"] == rep_off["firmware"]["harness"]["expected_crc32"]


@pytest.mark.slow
def test_layouts_build_the_decode_sources(packaged):
    (auto, _), (off, _) = packaged["lut"], packaged["off"]
    assert "set(EDGEPACK_MODEL_USES_DECODE ON)" in (auto / "CMakeLists.txt").read_text()  # auto: the lut package
    assert "set(EDGEPACK_MODEL_USES_DECODE OFF)" in (off / "CMakeLists.txt").read_text()
    kconfig = (auto / "zephyr/Kconfig").read_text()
    assert re.search(r"_TFLM_DECODE\n\tbool .*\n\tdefault y", kconfig)
    assert "decode_state_huffman.cc" in (auto / "zephyr/CMakeLists.txt").read_text()
    readme = (auto / "README.md").read_text()
    assert "## Weights compressed in flash (TFLM DECODE)" in readme and "| lut | 4 |" in readme
    assert "TFLM DECODE" not in (off / "README.md").read_text()
    assert "kernels/decode.cc" in (auto / "model_ops.h").read_text()


@pytest.mark.slow
def test_knob_off_gives_the_plain_bytes(packaged):
    off, rep_off = packaged["off"]
    assert rep_off["firmware"]["compression"]["tensors"] == []
    assert rep_off["firmware"]["op_registrations"] == sorted(rep_off["firmware"]["op_registrations"])
    assert rep_off["tflite"]["size_bytes"] == rep_off["tflite"]["converter_bytes"]  # as converted, untouched


def _digits_x() -> np.ndarray:
    import sys

    sys.path.insert(0, str(TESTS))
    from compress_helpers import digits

    return digits()[1].x[:16]


def _with_values(data: bytes, fill) -> bytes:
    """``data`` with its largest conv kernel's int8 values replaced by ``fill(shape)``."""
    from tflite_micro.tensorflow.lite.micro.compression.compress import _apply_flatbuffer_alignment

    from edgepack.tflm.compress import _candidates

    model = read_model(data)
    t = max((t for t, op, _ in _candidates(model) if op == "CONV_2D"), key=lambda t: t.array.size)
    t.array = fill(t.array.shape).astype(np.int8)
    return bytes(_apply_flatbuffer_alignment(model.build()))


def test_huffman_long_codes_use_sub_tables_and_single_symbols_cost_no_bits(clustered):
    from edgepack.tflm.compress_codecs import _canonical, _code_lengths

    fib = [1, 1]
    while len(fib) < 16:
        fib.append(fib[-1] + fib[-2])

    def skewed(shape):  # Fibonacci counts: Huffman codes up to 15 bits, past the 8-bit lookups
        n = int(np.prod(shape))
        vals = np.repeat(np.arange(-8, 8), fib)[:n]
        vals = np.concatenate([vals, np.full(n - vals.size, 7)]) if vals.size < n else vals
        return np.random.default_rng(0).permutation(vals).reshape(shape)

    longest = max(ln for _, ln in _canonical(_code_lengths(dict(zip(*np.unique(skewed((2304,)),
                                                                            return_counts=True))))).values())
    assert longest > 8
    for fill in (skewed, lambda shape: np.full(shape, 3)):
        plain = _with_values(clustered, fill)
        r = compress_model(plain, CompressOptions(encoding="huffman"))
        assert any(t.encoding == "huffman" and t.bytes_before == 2304 for t in r.tensors)
        assert check_bit_exact(plain, r.tflite, X)["bit_exact"]


def test_a_model_not_proven_bit_exact_ships_plain(clustered, monkeypatch):
    import edgepack.tflm.compress as comp
    from edgepack.errors import VerificationError
    from edgepack.recipe import CompressConfig

    cfg = CompressConfig(encoding="lut")
    ok = comp.compress_for_firmware(clustered, cfg, X[:4])
    assert ok.tflite != clustered and ok.bit_exact["bit_exact"] and ok.arena.min_bytes > 0

    def differs(*a, **k):
        raise VerificationError("the TFLM-compressed model differs from the plain one on sample 0")

    monkeypatch.setattr(comp, "check_bit_exact", differs)
    fc = comp.compress_for_firmware(clustered, cfg, X[:4])
    assert fc.tflite == clustered and fc.arena is None
    assert "differs" in fc.report()["dropped"] and all(t["encoding"] == "plain" for t in fc.report()["tensors"])


def _firmware_build(data: bytes, recipe: dict):
    from edgepack.build import Build
    from edgepack.targets.firmware import FirmwareTarget

    build = Build(tflite=data, info=read_tflite(data), recipe=Recipe.from_dict(recipe), model_name="c",
                  calibration=X, options={"device": "nucleo-l4r5zi"})
    FirmwareTarget().check(build)
    return build


def test_finalize_keeps_plain_bytes_unless_clustered_or_asked(clustered):
    from edgepack.targets.firmware import FirmwareTarget

    t = FirmwareTarget()
    off = {"tflm": {"offline_plan": False}}  # the memory plan is tests/tflm/test_memplan.py's
    plain = _firmware_build(clustered, off)  # no steps, compress unset (a .tflite input): bytes as before
    assert t.finalize_model(plain) == clustered and plain.checks["compression"]["tensors"] == []
    after_cluster = _firmware_build(clustered, {"steps": [{"type": "cluster", "clusters": 16}], **off})
    saved = len(clustered) - len(t.finalize_model(after_cluster))  # unset after cluster: auto
    assert saved > DECODE_CODE_BYTES and "AddDecode" in after_cluster.checks["tflm_ops"]
    after_cluster = _firmware_build(clustered, {"steps": [{"type": "cluster", "clusters": 16}],
                                                "tflm": {"offline_plan": False,
                                                         "compress": {"decode_code_bytes": saved + 1}}})
    assert t.finalize_model(after_cluster) == clustered  # auto: saves less than the DECODE kernel's code
    assert "DECODE kernel" in after_cluster.checks["compression"]["dropped"]
    from edgepack.targets.firmware import advice_for

    assert any(a.startswith("weights kept plain int8 in flash") for a in advice_for(after_cluster))
    asked = _firmware_build(clustered, {"tflm": {"compress": {"decode_code_bytes": 0}, "offline_plan": False}})
    out = t.finalize_model(asked)
    assert len(out) < len(clustered) and asked.tflite == out and asked.info.ops != plain.info.ops
    assert "AddDecode" in asked.checks["tflm_ops"] and asked.checks["budget"]["flash"]["model"] == len(out)
    assert asked.checks["tflm_parity"]["compressed_vs_plain"]["bit_exact"]


def test_report_markdown_lists_each_compressed_tensor(clustered):
    from edgepack.report.markdown import render_markdown
    from edgepack.targets.firmware import FirmwareTarget

    t = FirmwareTarget()
    build = _firmware_build(clustered, {"tflm": {"compress": {"decode_code_bytes": 0}, "offline_plan": False}})
    t.finalize_model(build)
    fw = t.plan(build).report()
    md = render_markdown({"model": "c", "target": "tflm", "firmware": fw})
    comp = fw["compression"]
    assert "### Weights in flash (TFLM DECODE)" in md
    assert f"{comp['plain_bytes']:,} B plain int8 -> {comp['compressed_bytes']:,} B (DECODE op)" in md
    rows = [ln for ln in md.splitlines() if re.search(r"\| (lut|prune|huffman|plain) \|", ln)]
    assert len(rows) == len(comp["tensors"])
    lut = next(r for r in comp["tensors"] if r["encoding"] == "lut")
    assert any(f"| lut | {lut['bits']} |" in r and f"| {lut['bytes_before']:,} | {lut['bytes_after']:,} |" in r
               for r in rows)
    plain = render_markdown({"model": "c", "target": "tflm", "firmware": {**fw, "compression": None}})
    assert "TFLM DECODE" not in plain


def test_budget_names_compression_when_flash_is_short():
    from edgepack.profiles import load_profile
    from edgepack.verify.budget import check_budget

    p = load_profile("nucleo-l4r5zi")
    flash = check_budget(p.flash_bytes, p, 1024, "m", raise_over=False)["over"]
    assert "does not fit" in flash and "flash" in flash and "tflm.compress" in flash and "cluster" in flash
    ram = check_budget(1024, p, p.ram_bytes, "m", raise_over=False)["over"]
    assert "RAM" in ram and "encoding: off" in ram and "tflm.compress" not in ram
