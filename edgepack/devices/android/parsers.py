"""Pure text -> data parsers for what devices print (no I/O, no device).

* :func:`parse_benchmark_output` reads TFLite ``benchmark_model`` output: the
  ``count=...`` timing lines (``INFO: `` prefix optional, scientific notation
  allowed), the "Inference timings in us" line, old (``Peak memory footprint
  (MB): init= overall=``) and new (``Memory footprint delta ...`` and
  ``Overall peak memory footprint (MB) via periodic monitoring``) memory lines,
  and the per-op tables printed with ``--enable_op_profiling=true``.
* :func:`split_exit` recovers the exit status a legacy ADB shell hides, from the
  ``EXIT=<code>`` line that ``; echo EXIT=$?`` appends.
* :func:`parse_battery_samples` reads ``<uptime_s> <current_now> <voltage_now>``
  lines written by the on-device sampling loop.

Example::

    body, code = split_exit(shell_text)
    bench = parse_benchmark_output(body)
    bench.inference_avg_us, bench.median_us, bench.peak_mb
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

from ...errors import DeviceError

# numbers as printed, including nan/inf so that they are caught (not skipped) by _validate
_NUM = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[nN][aA][nN]|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
_PREFIX = re.compile(r"^(?:(?:INFO|WARNING|VERBOSE)\s*:\s*)+")
_KV = re.compile(rf"(\w+)=({_NUM})")
_TIMINGS = re.compile(r"(?:Average )?inference timings in us:\s*(.*)", re.I)
_TIMING_KV = re.compile(rf"([A-Za-z][A-Za-z ()]*?):\s*({_NUM})")
_MEM_NEW = re.compile(rf"Memory footprint delta from the start of the tool \(MB\):\s*init=({_NUM})\s+"
                      rf"overall=({_NUM})")
_MEM_OLD = re.compile(rf"Peak memory footprint \(MB\):\s*init=({_NUM})\s+overall=({_NUM})")
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*({_NUM})")
_ERROR = re.compile(r"^(?:ERROR|E\s*tflite|Failed|Error)\b.*", re.I)
_EXIT = re.compile(r"^EXIT=(\d+)\s*$")
MIB = 1024 * 1024


@dataclass
class OpRow:
    """One row of benchmark_model's op profiling summary (by node type)."""

    op: str
    count: int
    avg_ms: float
    percent: Optional[float]


@dataclass
class BenchmarkOutput:
    """What one benchmark_model run printed; None where the tool did not print it."""

    count: int = 0
    first_us: Optional[float] = None
    min_us: Optional[float] = None
    max_us: Optional[float] = None
    avg_us: Optional[float] = None
    std_us: Optional[float] = None
    p5_us: Optional[float] = None
    median_us: Optional[float] = None
    p95_us: Optional[float] = None
    init_us: Optional[float] = None
    first_inference_us: Optional[float] = None
    warmup_avg_us: Optional[float] = None
    inference_avg_us: Optional[float] = None
    mem_init_mb: Optional[float] = None
    mem_overall_mb: Optional[float] = None
    mem_format: str = ""  # "new", "old" or ""
    peak_mb: Optional[float] = None  # periodic monitoring (absolute process peak)
    ops: list[OpRow] = field(default_factory=list)

    @property
    def peak_bytes(self) -> Optional[int]:
        """Process peak memory in bytes: periodic peak, else the tool's overall figure."""
        mb = self.peak_mb if self.peak_mb is not None and self.peak_mb > 0 else self.mem_overall_mb
        return None if mb is None or mb < 0 else int(round(mb * MIB))


def _clean(line: str) -> str:
    return _PREFIX.sub("", line.strip())


def _float(text: str) -> float:
    return float(text)


def split_exit(text: str) -> tuple[str, int]:
    """Split shell output into (body, exit status) using its last ``EXIT=<n>`` line.

    A missing line means the shell ended before the command finished (the device
    disconnected or killed it): DeviceError.

    Example::

        split_exit("hello\\nEXIT=3\\n")  # ("hello\\n", 3)
    """
    lines = text.replace("\r\n", "\n").split("\n")
    for idx in range(len(lines) - 1, -1, -1):
        m = _EXIT.match(lines[idx].strip())
        if m:
            return "\n".join(lines[:idx]) + ("\n" if idx else ""), int(m.group(1))
    tail = " | ".join(ln for ln in lines if ln.strip())[-200:]
    raise DeviceError(f"the device shell ended without an EXIT= status (it disconnected or the "
                      f"command was killed); last output: {tail or '(none)'}; reconnect and retry")


def _apply_count_line(out: BenchmarkOutput, line: str) -> None:
    kv = {k: _float(v) for k, v in _KV.findall(line)}
    count = kv.get("count", 0)
    out.count = int(count) if math.isfinite(count) else -1  # -1: refused by _validate
    names = {"first": "first_us", "min": "min_us", "max": "max_us", "avg": "avg_us",
             "std": "std_us", "p5": "p5_us", "median": "median_us", "p95": "p95_us"}
    for key, attr in names.items():
        setattr(out, attr, kv.get(key))


def _apply_timings(out: BenchmarkOutput, rest: str) -> None:
    names = {"init": "init_us", "first inference": "first_inference_us",
             "warmup (avg)": "warmup_avg_us", "inference (avg)": "inference_avg_us",
             "warmup": "warmup_avg_us", "inference": "inference_avg_us"}  # 2nd row: old builds
    for key, value in _TIMING_KV.findall(rest):
        attr = names.get(key.strip().lower())
        if attr:
            setattr(out, attr, _float(value))


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse benchmark_model's stdout+stderr; DeviceError when it holds no timings.

    Example::

        b = parse_benchmark_output(open("tests/data/benchmark_new.txt").read())
        b.count, b.avg_us, b.peak_bytes
    """
    out = BenchmarkOutput()
    errors: list[str] = []
    seen_count = seen_summary = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = _clean(raw)
        if line.startswith("count="):
            _apply_count_line(out, line)
            seen_count = True
        elif (m := _TIMINGS.search(line)):
            _apply_timings(out, m.group(1))
            seen_summary = True
        elif (m := _MEM_NEW.search(line)):
            out.mem_init_mb, out.mem_overall_mb, out.mem_format = _float(m[1]), _float(m[2]), "new"
        elif (m := _MEM_OLD.search(line)):
            out.mem_init_mb, out.mem_overall_mb, out.mem_format = _float(m[1]), _float(m[2]), "old"
        elif (m := _MEM_PEAK.search(line)):
            out.peak_mb = _float(m[1])
        elif _ERROR.match(line):
            errors.append(line)
    if errors and not seen_summary:
        raise DeviceError(f"benchmark_model failed: {errors[0].rstrip('.')}; check the model and that the "
                          "binary matches the device ABI")
    if not seen_summary:
        state = "stopped after the warmup" if seen_count else "printed no timings"
        raise DeviceError(f"benchmark_model output is incomplete: it {state} and has no "
                          f"'Inference timings' line ({_first_lines(text)}); the run was cut short, "
                          "retry or raise --timeout")
    if out.inference_avg_us is None:
        raise DeviceError("benchmark_model's 'Inference timings' line has no inference average; "
                          "its output format is not recognised: report it with the output")
    out.ops = parse_op_profile(text)
    _validate(out)
    return out


_TIMES = ("first_us", "min_us", "max_us", "avg_us", "std_us", "p5_us", "median_us", "p95_us", "init_us",
          "first_inference_us", "warmup_avg_us", "inference_avg_us")


def _validate(out: BenchmarkOutput) -> None:
    """Refuse figures no real run prints: nan/inf anywhere, negative times, min > max."""
    bad = [f"{name}={value}" for name in _TIMES + ("mem_init_mb", "mem_overall_mb", "peak_mb")
           if (value := getattr(out, name)) is not None and not math.isfinite(value)]
    bad += [f"{name}={getattr(out, name)}" for name in _TIMES
            if getattr(out, name) is not None and getattr(out, name) < 0]
    bad += [f"{r.op} avg_ms={r.avg_ms}" for r in out.ops if not math.isfinite(r.avg_ms) or r.avg_ms < 0]
    if out.count < 0:
        bad.append(f"count={out.count}")
    if out.min_us is not None and out.max_us is not None and out.min_us > out.max_us:
        bad.append(f"min={out.min_us} > max={out.max_us}")
    if bad:
        raise DeviceError(f"benchmark_model printed impossible figures ({', '.join(bad[:4])}); the "
                          "binary or the device misbehaves: nothing was recorded, re-run it or use "
                          "another benchmark_model build")


def _first_lines(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "output: " + (" | ".join(lines[:3])[:200] if lines else "(empty)")


_SECTION = re.compile(r"^=+\s*(.+?)\s*=+$")
_REGULAR = "Operator-wise Profiling Info for Regular Benchmark Runs"


def _tables(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Split op-profiling output into (title, rows) tables, rows without the header."""
    tables: list[tuple[str, list[str]]] = []
    title, rows = None, []
    for line in lines:
        m = _SECTION.match(line)
        if m:
            if title is not None:
                tables.append((title, rows))
            title, rows = m.group(1), []
        elif title is not None:
            if not line or line.startswith("Timings") or line.startswith("Memory (bytes)"):
                tables.append((title, rows))
                title, rows = None, []
            elif not line.startswith("["):
                rows.append(line)
    if title is not None:
        tables.append((title, rows))
    return tables


def _summary_row(cells: list[str]) -> Optional[OpRow]:
    # [Node type] [count] [avg ms] [avg %] [cdf %] [mem KB] [times called]
    if len(cells) < 4:
        return None
    try:
        return OpRow(cells[0], int(cells[1]), float(cells[2]), float(cells[3].rstrip("%")))
    except ValueError:
        return None


def parse_op_profile(text: str) -> list[OpRow]:
    """Per-op-type rows of the regular runs' "Summary by node type" table ([] if absent).

    Rows that do not parse (a truncated table) are skipped, not guessed.
    """
    lines = [_clean(ln).replace("\t", " ").strip() for ln in text.replace("\r\n", "\n").split("\n")]
    start = next((i for i, ln in enumerate(lines) if ln.startswith(_REGULAR)), None)
    summaries = [rows for title, rows in _tables(lines[start or 0:])
                 if title.startswith("Summary by node type")]
    if not summaries:
        return []
    # With the "Regular Benchmark Runs" header: its first summary; older builds print
    # no headers, and the regular runs' summary is the last one.
    rows = summaries[0] if start is not None else summaries[-1]
    parsed = [_summary_row(r.split()) for r in rows]
    return [r for r in parsed if r is not None]


@dataclass
class BatterySamples:
    """Raw battery readings: uptime seconds, current_now and voltage_now as printed."""

    t: list[float]
    current: list[float]
    voltage: list[float]
    skipped: int = 0


def parse_battery_samples(text: str, where: str = "battery samples") -> BatterySamples:
    """Parse ``<uptime_s> <current_now> <voltage_now>`` lines; skip malformed ones.

    Fewer than two good samples is a DeviceError naming ``where``.

    Example::

        s = parse_battery_samples("100.01 -450000 3850000\\n100.06 -452000 3849000\\n")
        s.current  # [-450000.0, -452000.0]
    """
    out = BatterySamples([], [], [])
    for raw in text.replace("\r\n", "\n").split("\n"):
        parts = raw.split()
        if not parts:
            continue
        try:
            t, i, v = (float(p) for p in parts[:3]) if len(parts) == 3 else (None, None, None)
        except ValueError:
            t = None
        if t is None:
            out.skipped += 1
            continue
        out.t.append(t)
        out.current.append(i)
        out.voltage.append(v)
    if len(out.t) < 2:
        raise DeviceError(f"{where}: fewer than 2 readable samples ({out.skipped} malformed lines); "
                          "the device may lack /sys/class/power_supply/battery/current_now — "
                          "profile with --no-energy")
    return out
