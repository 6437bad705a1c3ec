"""Parsers of device output, on recorded outputs of the real tools (tests/data/devices/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgepack.devices.android.parsers import (
    MIB,
    parse_battery_samples,
    parse_benchmark_output,
    parse_op_profile,
    split_exit,
)
from edgepack.errors import DeviceError
from locations import DATA as TEST_DATA

DATA = TEST_DATA / "devices"


def text(name: str) -> str:
    return (DATA / name).read_text()


def count_line(name: str, which: int = -1) -> dict[str, float]:
    """The key=value pairs of a count= line, read independently of the parser under test."""
    lines = [ln for ln in text(name).splitlines() if re.sub(r"^INFO:\s*", "", ln).startswith("count=")]
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-+0-9.e]+)", lines[which])}


def test_new_format_info_prefix_scientific_and_memory_lines():
    b = parse_benchmark_output(text("bench_new_xnnpack.txt"))
    ref = count_line("bench_new_xnnpack.txt")
    assert b.count == ref["count"] == 50
    assert b.avg_us == pytest.approx(1.24027e6)  # "avg=1.24027e+06"
    assert (b.min_us, b.max_us, b.median_us, b.p95_us, b.p5_us) == (
        ref["min"], ref["max"], ref["median"], ref["p95"], ref["p5"])
    assert b.first_inference_us == 1357602 and b.init_us == 5579
    assert b.warmup_avg_us == pytest.approx(1.3576e6)
    assert b.mem_format == "new" and b.mem_init_mb == pytest.approx(6.36328)
    assert b.peak_mb == pytest.approx(112.5)
    assert b.peak_bytes == round(112.5 * MIB)  # periodic peak wins over the delta line


def test_old_format_peak_memory_line_and_no_percentiles():
    b = parse_benchmark_output(text("bench_old.txt"))
    assert b.count == 1000 and b.avg_us == pytest.approx(1039.66)
    assert b.median_us is None and b.p95_us is None  # old builds print no percentiles
    assert b.mem_format == "old" and b.mem_overall_mb == pytest.approx(4.55078)
    assert b.peak_mb is None and b.peak_bytes == round(4.55078 * MIB)


def test_the_timed_runs_count_line_is_used_not_the_warmup_one():
    b = parse_benchmark_output(text("bench_old.txt"))
    warm = count_line("bench_old.txt", 0)
    assert warm["count"] == 478 and b.count != warm["count"]


def test_op_profiling_summary_of_regular_runs_not_initialisation():
    b = parse_benchmark_output(text("bench_op_profiling.txt"))
    ops = {r.op: r for r in b.ops}
    assert "AllocateTensors" not in ops  # that table belongs to initialisation
    assert list(ops) == ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX", "FULLY_CONNECTED"]
    assert ops["CONV_2D"].count == 4 and ops["CONV_2D"].avg_ms == pytest.approx(1.446)
    assert sum(r.percent for r in b.ops) == pytest.approx(100, abs=0.01)
    # "Timings (microseconds): count=469 ..." inside the profile must not replace the count line
    assert b.count == 469 and b.avg_us == pytest.approx(2129.71)


def test_legacy_op_profile_without_section_headers():
    rows = parse_op_profile(text("bench_op_profiling_legacy.txt"))
    assert [r.op for r in rows] == ["DEPTHWISE_CONV_2D", "RESIZE_BILINEAR", "CONV_2D"]
    b = parse_benchmark_output(text("bench_op_profiling_legacy.txt"))
    assert b.inference_avg_us == 947350 and b.init_us == 253800  # "Average inference timings" line


def test_truncated_op_table_rows_are_skipped_not_guessed():
    src = text("bench_op_profiling.txt")
    cut = src[: src.index("SOFTMAX\t        1")] + "SOFTMAX\t  1\n"
    rows = parse_op_profile(cut)
    assert [r.op for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"]


@pytest.mark.parametrize("name, words", [
    ("bench_failed_open.txt", "Could not open '/data/local/tmp/missing.tflite'"),
    ("bench_truncated.txt", "stopped after the warmup"),
])
def test_malformed_outputs_raise_one_line_errors(name, words):
    with pytest.raises(DeviceError) as e:
        parse_benchmark_output(text(name))
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("garbage", ["", "\x00\x01binary junk", "Segmentation fault\n"])
def test_garbage_is_an_error(garbage):
    with pytest.raises(DeviceError, match="no timings|incomplete"):
        parse_benchmark_output(garbage)


def test_exit_status_recovered_from_echo():
    body, code = split_exit(text("shell_exit3.txt"))
    assert code == 3 and body == "hello\nworld\n"
    assert split_exit("EXIT=0\n") == ("", 0)
    assert split_exit("x\r\nEXIT=1\r\n") == ("x\n", 1)  # CRLF from pty-backed shells


def test_missing_exit_line_means_the_shell_died():
    with pytest.raises(DeviceError, match="without an EXIT= status"):
        split_exit(text("shell_no_exit.txt"))


def test_battery_samples_skip_malformed_lines():
    s = parse_battery_samples(text("battery_ua_negative.txt"))
    assert len(s.t) == 5 and s.skipped == 2
    assert s.current[0] == -152000 and s.voltage[-1] == 3850800


def test_battery_samples_need_two_good_lines():
    with pytest.raises(DeviceError, match="fewer than 2"):
        parse_battery_samples("1.0 \n2.0  \ncat: /sys/x: No such file\n", "idle battery samples")
