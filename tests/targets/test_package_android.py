"""End-to-end Android packaging with real conversions and real LiteRT runs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgepack.convert.flatbuffer import read_tflite
from edgepack.runtime import LiteRT


def _package(run_cli, mnist, out, *extra):
    return run_cli("package", mnist.model, "--target", "android", "--calibration", mnist.calib,
                   "--out", out, "-q", *extra)


def test_int8_bundle_is_complete_verified_and_runs(run_cli, mnist, tmp_path):
    out = tmp_path / "android"
    r = _package(run_cli, mnist, out, "--recipe", mnist.recipe, "--eval", mnist.eval, "--labels", mnist.labels)
    assert r.exit_code == 0, r.err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.tflite", "model.tflite.epk", "epk", "manifest.json", "labels.txt", "README.md", "report.json",
         "report.md", "report.html", "recipe.yaml"])
    assert (out / "epk" / "c" / "epk.c").is_file() and (out / "epk" / "java" / "dev" / "edgepack" / "epk" /
                                                       "EpkDecoder.java").is_file()
    man = json.loads((out / "manifest.json").read_text())
    rep = json.loads((out / "report.json").read_text())
    data = (out / "model.tflite").read_bytes()
    info = read_tflite(data)
    # manifest tensors are what the flatbuffer really holds
    tin = info.tensors[info.inputs[0]]
    assert man["inputs"][0]["dtype"] == tin.dtype == "int8"
    assert man["inputs"][0]["quantization"]["scale"] == pytest.approx(tin.scale[0])
    assert man["ops"] == info.op_names()
    assert man["size_bytes"] == len(data)
    assert rep["provenance"]["outputs"]["model.tflite"] == __import__("hashlib").sha256(data).hexdigest()
    # the reported accuracy is the one LiteRT really gives on the eval set
    ev = np.load(mnist.eval)
    x = ev["x"].astype(np.float32) / 255.0
    acc = 100 * np.mean(np.argmax(LiteRT(data).predict(x), -1) == ev["y"])
    assert rep["verification"]["tflite_accuracy_pct"] == pytest.approx(acc, abs=1e-6)
    assert rep["verification"]["drop_pt"] <= 1.0
    assert "Verification" in (out / "report.md").read_text()
    _check_readme(out, man, data, ev["x"][:20])
    assert man["mediapipe"]["usable"] is False  # 1-channel images: ImageClassifier takes 3 or 4 channels


def _kotlin_const(text: str, name: str) -> float:
    m = re.search(rf"const val {name} = (-?[0-9.eE+-]+)f?\n", text)
    assert m, f"{name} not in README"
    return float(m.group(1))


def _check_readme(out, man, data: bytes, raw: np.ndarray) -> None:
    """The README's Kotlin carries the manifest's numbers, and its formulas feed LiteRT what it expects."""
    text = (out / "README.md").read_text()
    assert "CompiledModel.create(context.assets, \"model.tflite\"" in text and "org.tensorflow.lite.Interpreter" in text
    assert 'context.assets.open("labels.txt")' in text
    pre, qin = man["preprocessing"], man["inputs"][0]["quantization"]
    qout = man["outputs"][0]["quantization"]
    mean = [float(v) for v in re.search(r"val MEAN = floatArrayOf\(([^)]*)\)", text).group(1).replace("f", "").split(",")]
    assert mean == [pytest.approx(m) for m in np.atleast_1d(pre["mean"])]
    assert _kotlin_const(text, "SCALE") == pytest.approx(pre["scale"])
    assert _kotlin_const(text, "IN_SCALE") == pytest.approx(qin["scale"])
    assert _kotlin_const(text, "IN_ZERO_POINT") == qin["zero_point"]
    assert _kotlin_const(text, "OUT_SCALE") == pytest.approx(qout["scale"])
    assert _kotlin_const(text, "OUT_ZERO_POINT") == qout["zero_point"]
    # the helper's arithmetic (float32, Math.round = floor(x + 0.5)) gives the bytes LiteRT's own path gives
    x = (raw.astype(np.float32) - np.float32(mean[0])) * np.float32(pre["scale"])
    q = np.clip(np.floor(x / np.float32(qin["scale"]) + 0.5) + qin["zero_point"], -128, 127).astype(np.int8)
    rt = LiteRT(data)
    from edgepack.runtime import quantize_input

    np.testing.assert_array_equal(q[..., None], quantize_input(x[..., None], rt.inputs[0]))
    # LiteRT's CompiledModel (the README's API; the same C++ runtime as the Kotlin one) on those bytes,
    # dequantized with the README's OUT_SCALE / OUT_ZERO_POINT, gives the Interpreter's scores
    from ai_edge_litert.compiled_model import CompiledModel

    cm = CompiledModel.from_buffer(data)
    ins, outs = cm.create_input_buffers(0), cm.create_output_buffers(0)
    n_out = int(np.prod(man["outputs"][0]["shape"]))
    for i in range(len(q)):
        ins[0].write(q[i : i + 1])
        cm.run_by_index(0, ins, outs)
        got = (outs[0].read(n_out, np.int8).astype(np.float32) - _kotlin_const(text, "OUT_ZERO_POINT")) \
            * np.float32(_kotlin_const(text, "OUT_SCALE"))
        np.testing.assert_allclose(got, rt.predict(x[i : i + 1, ..., None])[0], atol=1e-7)
    seen = re.search(r"seen there: (\S+) to (\S+)\)", text)
    assert float(seen.group(1)) == 0 and float(seen.group(2)) == 255  # the calibration's raw pixel range


@pytest.mark.parametrize("mode,dtype", [("dynamic", "float32"), ("float16", "float32"), ("int16x8", "float32")])
def test_quantization_modes_produce_runnable_models(run_cli, mnist, tmp_path, mode, dtype):
    out = tmp_path / mode
    r = _package(run_cli, mnist, out, "--quantize", mode, "--json")
    assert r.exit_code == 0, r.err
    rep = json.loads(r.out)
    data = (out / "model.tflite").read_bytes()
    info = read_tflite(data)
    assert info.tensors[info.inputs[0]].dtype == dtype
    # agreement measured on the calibration samples without labels
    assert rep["verification"]["metric"] in ("accuracy", "top1_disagreement")
    assert rep["verification"]["top1_agreement_pct"] > 95.0
    weights = {t.dtype for t in info.tensors if t.is_constant and len(t.shape) >= 2}
    expected = {"dynamic": "int8", "float16": "float16", "int16x8": "int8"}[mode]
    assert expected in weights


def test_same_inputs_same_bytes(run_cli, mnist, tmp_path):
    digests = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert _package(run_cli, mnist, out, "--quantize", "int8").exit_code == 0
        digests.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert digests[0] == digests[1]


def test_accuracy_budget_failure_writes_nothing(run_cli, mnist, tmp_path):
    # calibrating on near-black images makes int8 ranges far too small for real digits
    dark = tmp_path / "dark.npz"
    x = np.load(mnist.calib)["x"]
    np.savez(dark, x=(x // 50).astype(np.uint8))
    out = tmp_path / "out"
    r = run_cli("package", mnist.model, "--recipe", mnist.recipe, "--calibration", dark, "--eval", mnist.eval,
                "--max-accuracy-drop", "1.0", "--out", out, "-q")
    assert r.exit_code == 1
    assert "dropped" in r.err and "limit 1.00" in r.err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [dark]  # no staging folder left behind


def test_download_package_restores_exact_bytes(run_cli, mnist, tmp_path):
    out = tmp_path / "o"
    assert _package(run_cli, mnist, out, "--quantize", "int8").exit_code == 0
    epk = out / "model.tflite.epk"
    assert epk.stat().st_size < (out / "model.tflite").stat().st_size
    r = run_cli("unpack", epk, tmp_path / "restored.tflite")
    assert r.exit_code == 0, r.err
    assert (tmp_path / "restored.tflite").read_bytes() == (out / "model.tflite").read_bytes()
    man = json.loads((out / "manifest.json").read_text())
    assert man["download_package"]["bytes"] == epk.stat().st_size
