"""The harness line protocol helper: round trips, checksum rejection, fill pattern, crc."""

import zlib

import numpy as np
import pytest

from edgepack.tflm import protocol as hp
from edgepack.errors import DeviceError


def test_encode_parse_round_trip_all_kinds():
    lines = [
        hp.encode("HELLO", v=1, model="g_model", bytes=1234, arena=8192, clock_hz=120000000, **{"in": 784, "out": 10}),
        hp.encode("RUN", i=3, cycles=120000, us=1000),
        hp.encode("RESULT", arena_used=7000, crc32="0badf00d", out_bytes=10),
        hp.encode("ERR", code=2, msg="AllocateTensors failed"),
        hp.encode("DONE", status=0),
    ]
    msgs = [hp.parse(line + "\r\n") for line in lines]
    assert [m.kind for m in msgs] == ["HELLO", "RUN", "RESULT", "ERR", "DONE"]
    assert msgs[0].int("clock_hz") == 120000000 and msgs[0].text("model") == "g_model"
    assert msgs[1].int("cycles") == 120000
    assert msgs[3].fields["msg"] == "AllocateTensors_failed"
    assert msgs[3].text("msg") == "AllocateTensors failed"


def test_checksum_is_xor_between_ep_and_star():
    line = hp.encode("DONE", status=0)
    body, hh = line.split("*")
    x = 0
    for ch in body.encode():
        x ^= ch
    assert int(hh, 16) == x


@pytest.mark.parametrize("bad", [
    "EP RUN i=0 cycles=10 us=1*00",          # wrong checksum
    "XX RUN i=0*11",                          # no EP
    "EP RUN i=0 cycles=10 us=1",              # no checksum
    "EP RUN i=0 cycles=10 us=1*ZZ",           # not hex
])
def test_bad_lines_rejected(bad):
    with pytest.raises(DeviceError):
        hp.parse(bad)


def test_single_flipped_byte_is_caught():
    line = hp.encode("RUN", i=0, cycles=1200, us=10)
    corrupted = line.replace("1200", "1201")
    with pytest.raises(DeviceError, match="checksum"):
        hp.parse(corrupted)


def test_missing_required_key_and_unknown_kind():
    body = "EP RUN i=0 cycles=5"
    with pytest.raises(DeviceError, match="lacks us"):
        hp.parse(f"{body}*{hp.checksum(body):02X}")
    body = "EP NOPE a=1"
    with pytest.raises(DeviceError, match="unknown harness line kind"):
        hp.parse(f"{body}*{hp.checksum(body):02X}")


def test_run_command_round_trip():
    assert hp.parse_run_command(hp.run_command(10, 2)) == (10, 2)
    with pytest.raises(DeviceError):
        hp.parse_run_command(b"R ten 2\n")


def test_input_pattern_matches_formula_and_dtype_view():
    n = 600
    pat = hp.input_pattern(n)
    assert all(int(pat[i]) == (i * 31 + 7) & 0xFF for i in range(n))
    x = hp.input_pattern_array((1, 5, 5, 3), np.int8)
    assert x.tobytes() == pat[:75].tobytes()
    f = hp.input_pattern_array((2, 4), np.float32)
    assert f.dtype == np.float32 and f.tobytes() == hp.input_pattern(32).tobytes()


def test_crc32_of_array_and_bytes_agree_with_zlib():
    y = np.arange(-5, 5, dtype=np.int8)
    assert hp.crc32_hex(y) == f"{zlib.crc32(y.tobytes()):08x}"
    assert hp.crc32_hex(y.tobytes()) == hp.crc32_hex(y)
    assert hp.crc_matches(hp.crc32_hex(y).upper(), hp.crc32_hex(y))
    assert hp.latency_us(120_000, 120_000_000) == pytest.approx(1000.0)
