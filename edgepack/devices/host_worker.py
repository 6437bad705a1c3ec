"""Child process of the host device: time a .tflite in LiteRT (XNNPACK) and print JSON.

Run as ``python -m edgepack.devices.host_worker RUNS WARMUP THREADS`` with the
model bytes on stdin. Running in a fresh process keeps the memory figures free
of the parent's allocations: the peak RSS counter is reset (``clear_refs``)
after imports, so the reported peak is what loading and running the model
added. Imports no TensorFlow.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from typing import Optional

import numpy as np


def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def reference_input(detail: dict) -> tuple[np.ndarray, str]:
    """The input fed to the model and its name.

    Integer inputs get the board harness pattern (byte[i] = (i*31+7) & 0xFF), so
    the output checksum is comparable with a board's; float inputs get a
    seeded standard normal sample (raw pattern bytes would be NaN/denormal floats).
    """
    from ..tflm.protocol import input_pattern_array

    shape, dtype = tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        return input_pattern_array(shape, dtype), "harness pattern (i*31+7)&0xFF"
    rng = np.random.default_rng(0)
    return rng.standard_normal(shape).astype(dtype), "standard normal, seed 0"


def measure(model: bytes, runs: int, warmup: int, threads: int) -> dict:
    """Init time, first run, warmup, timed runs and peak RSS growth, as a dict."""
    from ai_edge_litert.interpreter import Interpreter

    reset = _reset_peak()
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter_ns()
    interp = Interpreter(model_content=model, num_threads=threads)
    interp.allocate_tensors()
    init_ns = time.perf_counter_ns() - t0
    inputs = interp.get_input_details()
    names = []
    for d in inputs:
        x, name = reference_input(d)
        interp.set_tensor(d["index"], x)
        names.append(name)
    t0 = time.perf_counter_ns()
    interp.invoke()
    first_ns = time.perf_counter_ns() - t0
    for _ in range(warmup):
        interp.invoke()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        interp.invoke()
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    out = b"".join(interp.get_tensor(o["index"]).tobytes() for o in interp.get_output_details())
    hwm = _status_kb("VmHWM")
    peak = (hwm - rss0) * 1024 if (reset and hwm is not None and rss0 is not None) else None
    return {"init_us": init_ns / 1e3, "first_us": first_ns / 1e3, "samples_us": samples,
            "peak_bytes": peak, "crc32": f"{zlib.crc32(out) & 0xFFFFFFFF:08x}",
            "input": "; ".join(sorted(set(names)))}


def main(argv: list[str]) -> int:
    runs, warmup, threads = (int(a) for a in argv[:3])
    model = sys.stdin.buffer.read()
    try:
        result = measure(model, runs, warmup, threads)
    except (ValueError, RuntimeError) as e:
        print(json.dumps({"error": str(e).strip().splitlines()[0] if str(e).strip() else repr(e)}))
        return 3
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
