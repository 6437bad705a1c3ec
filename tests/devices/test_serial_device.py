"""The serial board profiler against a board emulator on a real pty / TCP socket.

The emulator runs the model in the TFLM host interpreter and speaks harness
protocol v1; the profiler checks line checksums, run order, model size and the
output CRC against its own TFLM reference run.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgepack.tflm import protocol as hp
from edgepack.devices.registry import open_device
from edgepack.devices.result import Settings
from edgepack.errors import DeviceError, UsageError
from emulators.serial_board import SerialBoardEmulator
from locations import MLPERF

KWS = MLPERF / "kws_ref_model.tflite"


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory) -> Path:
    """A tiny conv + dense classifier, full-integer int8 (I/O int8)."""
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.recipe import QuantizeConfig

    set_seed(0)
    k = keras()
    model = k.Sequential([k.layers.Input((12, 12, 1)), k.layers.Conv2D(4, 3, activation="relu"),
                          k.layers.MaxPooling2D(), k.layers.Flatten(), k.layers.Dense(5)])
    x = np.random.default_rng(0).random((16, 12, 12, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("serial") / "tiny.tflite"
    path.write_bytes(convert(model, QuantizeConfig(mode="int8", io="int8"), calibration=x))
    return path


def _profile_yaml(tmp_path: Path, active_mw: float, clock_hz: int) -> Path:
    path = tmp_path / "test-board.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: test-board
        board: Test board
        mcu: TEST
        core: cortex-m4
        fpu: sp
        clock_hz: {clock_hz}
        flash_bytes: 2097152
        ram_bytes: 655360
        int8_only: false
        runtime_flash_bytes: 100000
        runtime_ram_bytes: 20000
        power: {{active_mw: {active_mw}, idle_mw: 1.0}}
        sources:
          clock_hz: [test]
          flash_bytes: [test]
          ram_bytes: [test]
          runtime_flash_bytes: [test]
          runtime_ram_bytes: [test]
          power.active_mw: [test]
          power.idle_mw: [test]
        """))
    return path


def test_profile_over_pty_reports_cycles_arena_and_checked_crc(tiny_int8, tmp_path):
    clock = 64_000_000
    prof = _profile_yaml(tmp_path, active_mw=33.0, clock_hz=clock)
    with SerialBoardEmulator(tiny_int8.read_bytes(), clock_hz=clock, name="tiny") as board:
        with open_device(f"serial:{board.port}", profile=str(prof)) as dev:
            r = dev.profile(tiny_int8, Settings(runs=7, warmup=2))
            again = dev.profile(tiny_int8, Settings(runs=3, warmup=0))  # the port stays usable
    assert r.device.kind == "serial" and r.device.name == "tiny" and r.device.profile == "test-board"
    assert r.latency.source == "measured" and r.latency.n == 7 and again.latency.n == 3
    assert board.sessions == 2
    assert r.latency.median_us == pytest.approx(r.latency.cycles * 1e6 / clock)
    assert r.memory.arena_bytes == board.arena_used > 0
    # The CRC the board sent equals an independent TFLM run on the protocol's input pattern.
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(tiny_int8.read_bytes())
    det = interp.get_input_details(0)
    interp.set_input(hp.input_pattern_array(det["shape"], det["dtype"]), 0)
    interp.invoke()
    assert r.output_checksum == hp.crc32_hex(interp.get_output(0))
    assert r.energy.source == "estimated"
    assert r.energy.per_inference_mj == pytest.approx(33.0 * r.latency.median_us / 1e6)
    assert r.artifact.size_bytes == tiny_int8.stat().st_size


def test_tcp_socket_transport_and_boot_noise(tiny_int8):
    with SerialBoardEmulator(tiny_int8.read_bytes(), transport="tcp", fault="noise") as board:
        assert board.port.startswith("socket://127.0.0.1:")
        with open_device(f"serial:{board.port}") as dev:
            r = dev.profile(tiny_int8, Settings(runs=4, warmup=1))
    assert r.latency.n == 4 and r.energy.source == "not_available"
    assert "--profile" in r.energy.method


def test_real_mlperf_kws_model():
    with SerialBoardEmulator(KWS.read_bytes(), clock_hz=120_000_000, name="kws") as board:
        with open_device(f"serial:{board.port}") as dev:
            r = dev.profile(KWS, Settings(runs=3, warmup=1))
    assert r.memory.arena_bytes == board.arena_used and r.latency.cycles > 0
    assert any("matches the TFLM host interpreter" in n for n in r.notes)


@pytest.mark.parametrize("fault, message", [
    ("bad_checksum", "checksum mismatch"),
    ("err", "reported error 3: AllocateTensors"),
    ("stall", "no RUN/RESULT/DONE line within"),
    ("garbage", "no HELLO within"),
    ("wrong_crc", "differs from the TFLM host interpreter"),
    ("drop_run", "run 2 arrived, expected run 1"),
    ("disconnect", "disconnected"),
    ("wrong_model", "flash the firmware packaged from this model"),
])
def test_board_faults_are_clear_device_errors(tiny_int8, fault, message):
    with SerialBoardEmulator(tiny_int8.read_bytes(), fault=fault) as board:
        dev = open_device(f"serial:{board.port}", timeout=1.0, handshake_timeout=1.0)
        with pytest.raises(DeviceError, match=message):
            dev.profile(tiny_int8, Settings(runs=3, warmup=0))
        dev.close()


def test_crc_check_can_be_turned_off(tiny_int8):
    with SerialBoardEmulator(tiny_int8.read_bytes(), fault="wrong_crc") as board:
        with open_device(f"serial:{board.port}", check_output=False) as dev:
            r = dev.profile(tiny_int8, Settings(runs=2, warmup=0))
    assert r.output_checksum and not any("matches" in n for n in r.notes)


def test_missing_port_and_unknown_option():
    with pytest.raises(DeviceError, match="cannot open serial port /nonexistent/tty"):
        with open_device("serial:/nonexistent/tty") as dev:
            dev.profile(KWS, Settings(runs=1, warmup=0))
    with pytest.raises(UsageError, match="does not take threads_per_core=; its options: baud="):
        open_device("serial:/dev/null", threads_per_core=2)


@pytest.mark.parametrize("fault, message", [
    ("flood_result", "sent EP RESULT after its RESULT"),
    ("extra_runs", r"run 3 arrived, expected RESULT \(of 3 requested\)"),
])
def test_a_board_that_keeps_sending_valid_lines_is_stopped(tiny_int8, fault, message):
    """Issue 12: valid lines forever (RESULT again and again, runs past the request) end the session."""
    import time

    with SerialBoardEmulator(tiny_int8.read_bytes(), fault=fault) as board:
        dev = open_device(f"serial:{board.port}", timeout=5.0, handshake_timeout=2.0)
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=message):
            dev.profile(tiny_int8, Settings(runs=3, warmup=0))
        dev.close()
    assert time.monotonic() - t0 < 5.0 * (3 + 0 + 2)  # well inside the session deadline


def test_the_whole_session_has_a_deadline_even_when_each_line_is_on_time(tiny_int8):
    """Every RUN line comes 0.3 s after the last (inside --timeout 1), but 10 runs need 3 s:
    a session deadline of 1 s stops it, naming the deadline and how far the board got."""
    import time

    with SerialBoardEmulator(tiny_int8.read_bytes(), fault="slow") as board:
        dev = open_device(f"serial:{board.port}", timeout=1.0, handshake_timeout=2.0, session_timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=r"the session did not end within 1 s \([0-9] of 10 runs"):
            dev.profile(tiny_int8, Settings(runs=10, warmup=0))
        elapsed = time.monotonic() - t0
        dev.close()
    assert elapsed < 2.9  # the board alone would take 3 s


def test_the_default_session_deadline_follows_timeout_runs_and_warmup(tiny_int8):
    from edgepack.devices.mcu.serial import session_deadline_s

    assert session_deadline_s(5.0, 10, 2) == 5.0 * 14
    with SerialBoardEmulator(tiny_int8.read_bytes(), fault="slow") as board:  # slow but within the default
        with open_device(f"serial:{board.port}", timeout=1.0, handshake_timeout=2.0) as dev:
            r = dev.profile(tiny_int8, Settings(runs=2, warmup=0))
    assert r.latency.n == 2
