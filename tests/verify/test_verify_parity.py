"""TFLM parity counts output quantization steps for float outputs too (issue 14 point 3)."""

from __future__ import annotations

import json

import numpy as np

from edgepack.convert.flatbuffer import read_tflite
from edgepack.verify.parity import INT_PARITY_STEPS, output_step
from tflm_helpers import convert_tiny


def test_output_step_of_integer_dequantized_and_float_outputs():
    int8 = read_tflite(convert_tiny(io="int8"))
    assert output_step(int8) == int8.tensors[int8.outputs[0]].scale[0]
    dq = read_tflite(convert_tiny(io="float"))
    step = output_step(dq)
    assert dq.tensors[dq.outputs[0]].dtype == "float32" and step is not None and 0 < step < 0.01
    assert output_step(read_tflite(convert_tiny(mode="none"))) is None


def test_kws_with_generic_calibration_and_float_output_packages(run_cli, mlperf_dir, tmp_path):
    """Standard-normal calibration on the MLPerf KWS DS-CNN: one output step apart was refused as 'float'."""
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).standard_normal((64, 49, 10, 1)).astype(np.float32))
    r = run_cli("package", mlperf_dir / "kws_ref_model", "--target", "tflm", "--device", "nucleo-l4r5zi",
                "--calibration", tmp_path / "c.npz", "--out", tmp_path / "fw", "-q", "--json")
    assert r.exit_code == 0, r.err
    par = json.loads(r.out)["firmware"]["parity"]
    assert par["output_dtype"] == "float32" and par["output_step"] > 0
    assert par["max_step_diff"] == round(par["max_abs_diff"] / par["output_step"], 4) <= INT_PARITY_STEPS
    assert par["tolerance"] == f"{INT_PARITY_STEPS} output steps"
