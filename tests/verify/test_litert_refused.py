"""A .tflite that LiteRT refuses but TFLM runs (1-D bias tensors with quantized_dimension 3, as in TFLM's own
person_detect.tflite): it packages for --target tflm (accuracy and arena on TFLM, a warning that LiteRT cannot
load it, parity not checked); --target android refuses it in one line naming --target tflm."""

import json
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from refusal import assert_refused
from locations import GOLDEN

TINY = GOLDEN / "tiny_int8.tflite"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from edgepack.convert.flatbuffer import tflite_schema

    S = tflite_schema()

    d = tmp_path_factory.mktemp("qd3")
    m = S.ModelT.InitFromObj(S.Model.GetRootAsModel(TINY.read_bytes(), 0))
    changed = 0
    for t in m.subgraphs[0].tensors:  # per-channel 1-D bias: valid axis 0, LiteRT rejects 3, TFLM ignores it
        q = t.quantization
        if t.type == S.TensorType.INT32 and len(t.shape) == 1 and q is not None and q.scale is not None \
                and len(q.scale) > 1:
            q.quantizedDimension, changed = 3, changed + 1
    assert changed
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    (d / "qd3.tflite").write_bytes(bytes(b.Output()))
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.random((40, 8, 8, 1), dtype=np.float32), y=rng.integers(0, 3, 40))
    return d


def test_litert_really_refuses_it(files):
    from edgepack.errors import LiteRTLoadError
    from edgepack.runtime import LiteRT

    with pytest.raises(LiteRTLoadError, match="quantized_dimension"):
        LiteRT((files / "qd3.tflite").read_bytes())


def test_packages_for_tflm_with_accuracy_on_tflm_and_a_warning(run_cli, files, tmp_path):
    out = tmp_path / "fw"
    r = run_cli("package", files / "qd3.tflite", "--target", "tflm", "--device", "nucleo-l4r5zi",
                "--calibration", files / "data.npz", "--eval", files / "data.npz", "--out", out)
    assert r.exit_code == 0, r.err
    rep = json.loads((out / "report.json").read_text())
    assert rep["verification"]["runtime"].startswith("tflm") and 0 <= rep["verification"]["tflite_accuracy_pct"] <= 100
    assert "LiteRT cannot load" in rep["firmware"]["parity"]["skipped"]
    assert any("LiteRT cannot load" in w for w in rep["warnings"]) and "LiteRT cannot load" in r.err
    assert (out / "model.tflite").read_bytes() == (files / "qd3.tflite").read_bytes()
    assert rep["firmware"]["arena"]["min_bytes"] > 0


def test_android_refuses_it_in_one_line_naming_tflm(run_cli, files, tmp_path):
    r = run_cli("package", files / "qd3.tflite", "--calibration", files / "data.npz", "--out", tmp_path / "a")
    assert_refused(r, out=tmp_path / "a", match=["LiteRT cannot load", "--target tflm"])
