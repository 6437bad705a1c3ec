"""TFLM host interpreter: arena bisection, parity with LiteRT, harness expectations (all real runs)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from edgepack.tflm.protocol import input_pattern_array
from edgepack.errors import VerificationError
from edgepack.tflm import ARENA_ALIGN, ArenaTooSmall, Tflm, arena_fits, find_arena, harness_expectation, parity
from locations import GOLDEN


@pytest.mark.parametrize("name", ["kws_ref_model.tflite", "ad01_int8.tflite", "pretrainedResnet_quant.tflite"])
def test_arena_bisection_finds_the_smallest_working_arena(mlperf_dir, name):
    data = (mlperf_dir / name).read_bytes()
    a = find_arena(data)
    assert arena_fits(data, a.min_bytes) and not arena_fits(data, a.min_bytes - ARENA_ALIGN)  # 16 B less fails
    Tflm(data, arena_size=a.min_bytes).invoke_raw(np.zeros(Tflm(data).input["shape"], np.int8))
    assert a.min_bytes % ARENA_ALIGN == 0
    assert a.recorded_bytes <= a.min_bytes  # TFLM's own figure never exceeds what really works
    assert a.recommended_bytes == a.min_bytes + a.margin_bytes >= a.min_bytes * 1.1
    assert "64-bit" in a.note and "#2738" in a.note


def test_recorded_total_misses_prepare_buffers_on_the_autoencoder(mlperf_dir):
    """tflite-micro #2738: the recorded total is below the smallest arena that works."""
    a = find_arena((mlperf_dir / "ad01_int8.tflite").read_bytes())
    assert a.recorded_bytes < a.min_bytes
    assert not arena_fits((mlperf_dir / "ad01_int8.tflite").read_bytes(), a.recorded_bytes)


def test_too_small_arena_is_a_clear_error(tiny):
    with pytest.raises(VerificationError, match="arena of 256 bytes is too small"):
        Tflm(tiny, arena_size=256)


def test_int8_parity_is_bit_exact_on_calibration_like_inputs(tiny):
    from tflm_helpers import calib

    p = parity(tiny, calib(16))
    assert p.bit_exact and p.max_raw_diff == 0 and p.samples == 16 and p.output_dtype == "int8"


def test_parity_reports_real_rounding_differences(mlperf_dir):
    """ResNet-8's FULLY_CONNECTED rounds one step differently in TFLM and LiteRT on some inputs."""
    data = (mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes()
    t = Tflm(data)
    scale, zp = t.input["quantization"]
    rng = np.random.default_rng(0)
    q = np.concatenate([rng.integers(-128, 127, size=(1, 32, 32, 3), dtype=np.int8) for _ in range(6)])
    p = parity(data, ((q.astype(np.float32) - zp) * scale))
    assert not p.bit_exact and 0 < p.max_raw_diff <= 2
    assert p.max_abs_diff == pytest.approx(p.max_raw_diff / 256, rel=1e-6)  # softmax output scale 1/256


def test_float_parity_and_predict_agree_with_litert():
    from edgepack.runtime import LiteRT
    from tflm_helpers import calib, convert_tiny

    data = convert_tiny(mode="none")
    x = calib(8)
    p = parity(data, x)
    assert p.output_dtype == "float32" and p.max_abs_diff < 1e-5
    np.testing.assert_allclose(Tflm(data).predict(x), LiteRT(data).predict(x), atol=1e-5)


def test_harness_expectation_matches_an_independent_litert_run(tiny):
    from edgepack.tflm.parity import _reference_litert

    exp = harness_expectation(tiny)
    lite = _reference_litert(tiny)
    d_in, d_out = lite.get_input_details()[0], lite.get_output_details()[0]
    x = input_pattern_array(d_in["shape"], d_in["dtype"])
    lite.set_tensor(d_in["index"], x)
    lite.invoke()
    y = lite.get_tensor(d_out["index"])
    assert exp["crc32"] == f"{zlib.crc32(y.tobytes()):08x}"
    assert exp["in_bytes"] == 64 and exp["out_bytes"] == y.nbytes == 3


def test_arena_below_minimum_is_a_clear_error_for_the_tiny_model(tiny):
    a = find_arena(tiny)
    assert a.recorded_bytes < a.min_bytes  # #2738 again, on a 2.6 KB model
    assert not arena_fits(tiny, a.min_bytes - ARENA_ALIGN)
    with pytest.raises(ArenaTooSmall, match="arena of 2048 bytes is too small: Failed to"):
        Tflm(tiny, arena_size=2048)
    assert Tflm(tiny, arena_size=a.min_bytes).invoke_raw(np.zeros((1, 8, 8, 1), np.int8)).shape == (1, 3)


def test_probe_survives_sizes_that_crash_the_host_interpreter(tiny):
    """Below ~464 B the host TFLM segfaults; the forked probe reports 'no' and we live on."""
    import os

    pid = os.fork()
    if pid == 0:  # prove the crash is real, in a child
        import faulthandler

        faulthandler.disable()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        from tflite_micro.python.tflite_micro import runtime

        try:
            runtime.Interpreter.from_bytes(tiny, arena_size=300)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert not arena_fits(tiny, 300) and arena_fits(tiny, 1 << 20)


def test_a_crash_in_host_tflm_is_an_error_not_a_dead_process(tiny, monkeypatch):
    import os

    import edgepack.tflm.interpreter as tflm

    assert tflm._in_child(os.abort)[0] == "crash"  # a real SIGABRT in a real child
    monkeypatch.setattr(tflm, "_full_run", lambda model, size: os.abort())
    with pytest.raises(VerificationError, match="crashed"):
        tflm.check_runs(tiny, 4096)


def test_child_probe_returns_the_real_error_type(tiny):
    import edgepack.tflm.interpreter as tflm

    status, err = tflm._in_child(lambda: tflm.Tflm(tiny, arena_size=600))
    assert status == "error" and isinstance(err, ArenaTooSmall)
