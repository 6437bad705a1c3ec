"""--compact: a smaller flatbuffer with bit-identical outputs in LiteRT and TFLM."""

from __future__ import annotations

import json

import numpy as np

from edgepack.convert.compact import compact
from edgepack.convert.flatbuffer import read_tflite
from edgepack.runtime import LiteRT
from edgepack.tflm import Tflm


def test_compact_package_is_smaller_and_computes_the_same(run_cli, mnist, tmp_path):
    out = tmp_path / "fw"
    r = run_cli("package", mnist.model, "--target", "tflm", "--device", "nucleo-l4r5zi", "--recipe", mnist.recipe,
                "--calibration", mnist.calib, "--compact", "--out", out, "-q")
    assert r.exit_code == 0, r.err
    rep = json.loads((out / "report.json").read_text())
    small = (out / "model.tflite").read_bytes()
    assert rep["tflite"]["compacted"] and rep["tflite"]["size_bytes"] == len(small)
    assert rep["tflite"]["converter_bytes"] > len(small)
    assert all(";" not in t.name for t in read_tflite(small).tensors)
    # the C array carries the compacted model
    assert f"{len(small)}" in (out / "model_data.cc").read_text()


def test_compact_outputs_are_bit_identical(mnist):
    from edgepack.convert.tflite import convert
    from edgepack.load import load_model
    from edgepack.recipe import QuantizeConfig

    x = np.load(mnist.calib)["x"][:64].astype(np.float32) / 255.0  # (64, 28, 28, 1) pixels -> 0..1
    big = convert(load_model(mnist.model), QuantizeConfig(mode="int8", io="int8"), x)
    small = compact(big)
    assert len(small) < len(big)
    assert np.array_equal(LiteRT(big).predict(x[:16]), LiteRT(small).predict(x[:16]))
    assert np.array_equal(Tflm(big, arena_size=200_000).predict(x[:16]), Tflm(small, arena_size=200_000).predict(x[:16]))
    assert compact(small) == small  # idempotent
