"""Emulated TFLite ``benchmark_model`` for the ADB device emulator.

Pushed to the emulated device like the real binary (a shebang line naming the
test's Python is prepended by ``install_benchmark_model``). It runs the model
for real in LiteRT and prints what the real tool prints: ``INFO: `` prefixed
parameter lines, ``count=...`` lines for warmup and timed runs (the real
tool's rules: at least N runs and at least --min_secs seconds), the
"Inference timings in us" line in %g notation, the memory lines (measured RSS)
and, with --enable_op_profiling=true, the run-order and by-node-type tables
(with XNNPACK the whole graph is one delegate node, as in the real tool).
While it runs it holds a marker in /dev/.load, which the emulator's battery
reads as load.
"""

import os
import sys
import time

import numpy as np


def log(msg=""):
    print(f"INFO: {msg}" if msg else "", flush=True)


def flags(argv):
    out = {}
    for a in argv:
        k, _, v = a.lstrip("-").partition("=")
        out[k] = v
    return out


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def stats_line(t):
    a = np.asarray(t, dtype=np.float64)
    p5, med, p95 = (int(np.percentile(a, q)) for q in (5, 50, 95))
    return (f"count={a.size} first={int(a[0])} curr={int(a[-1])} min={int(a.min())} max={int(a.max())} "
            f"avg={a.mean():g} std={int(a.std())} p5={p5} median={med} p95={p95}")


def loop(interp, min_runs, min_secs, max_secs=150.0):
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_secs:
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e6)
        if time.perf_counter() - start > max_secs:
            break
    return times


def op_tables(avg_us, xnnpack):
    if not xnnpack:
        return
    ms = avg_us / 1e3
    head = "\t             [node type]\t          [first]\t         [avg ms]\t             [%]\t          [cdf%]\t          [mem KB]\t      [times called]\t            [Name]"
    row = f"\t   TfLiteXNNPackDelegate\t{ms:17.3f}\t{ms:17.3f}\t{100:15.3f}%\t{100:15.3f}%\t{0:18.3f}\t{1:17d}\t[edgepack_emu]:0"
    log("Operator-wise Profiling Info for Regular Benchmark Runs:")
    for title in ("Run Order", "Top by Computation Time"):
        log(f"============================== {title} ==============================")
        log(head)
        log(row)
        log()
    log("============================== Summary by node type ==============================")
    log("\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]")
    log(f"\t   TfLiteXNNPackDelegate\t        1\t{ms:10.3f}\t{100:10.3f}%\t{100:10.3f}%\t{0:10.3f}\t        1")
    log()


def main(argv):
    f = flags(argv)
    graph, threads = f.get("graph", ""), int(f.get("num_threads", "-1"))
    runs, warmup = int(f.get("num_runs", "50")), int(f.get("warmup_runs", "1"))
    xnnpack = f.get("use_xnnpack", "true").lower() in ("1", "true")
    log("STARTING!")
    log("Log parameter values verbosely: [0]")
    log(f"Min num runs: [{runs}]")
    log(f"Num threads: [{threads}]")
    log(f"Graph: [{graph}]")
    log(f"Use xnnpack: [{int(xnnpack)}]")
    if not os.path.isfile(graph):
        print(f"ERROR: Could not open '{graph}'.", flush=True)
        print("ERROR: Benchmarking failed.", flush=True)
        return 1
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    rss0 = status_mb("VmRSS")
    t0 = time.perf_counter()
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_path=graph, num_threads=max(threads, 1), experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    init_us = (time.perf_counter() - t0) * 1e6
    init_mb = status_mb("VmRSS") - rss0
    log(f"Loaded model {graph}")
    if xnnpack:
        log("Created TensorFlow Lite XNNPACK delegate for CPU.")
    log(f"The input model file size (MB): {os.path.getsize(graph) / 1e6:g}")
    log(f"Initialized session in {init_us / 1e3:g}ms.")
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        if np.issubdtype(d["dtype"], np.integer):
            info = np.iinfo(d["dtype"])
            x = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(d["dtype"])
        else:
            x = rng.standard_normal(d["shape"]).astype(d["dtype"])
        interp.set_tensor(d["index"], x)
    load_dir = os.path.join(os.environ.get("EDGEPACK_EMU_ROOT", "/nonexistent"), "dev", ".load")
    marker = os.path.join(load_dir, str(os.getpid()))
    if os.path.isdir(load_dir):
        open(marker, "w").close()
    try:
        log(f"Running benchmark for at least {warmup} iterations and at least "
            f"{f.get('warmup_min_secs', '0.5')} seconds but terminate if exceeding 150 seconds.")
        w = loop(interp, max(warmup, 1), float(f.get("warmup_min_secs", "0.5")))
        log(stats_line(w))
        log()
        log(f"Running benchmark for at least {runs} iterations and at least "
            f"{f.get('min_secs', '1')} seconds but terminate if exceeding 150 seconds.")
        t = loop(interp, runs, float(f.get("min_secs", "1")))
        log(stats_line(t))
        log()
        report(f, t, w, init_us, init_mb, rss0, xnnpack)
    finally:
        # The load ends with the process, as on a phone: the report lines above are part of
        # the run, and the caller exits at once (no interpreter teardown) after this.
        if os.path.exists(marker):
            os.remove(marker)
    return 0


def report(f, t, w, init_us, init_mb, rss0, xnnpack):
    avg = float(np.mean(t))
    log(f"Inference timings in us: Init: {int(init_us)}, First inference: {int(w[0])}, "
        f"Warmup (avg): {float(np.mean(w)):g}, Inference (avg): {avg:g}")
    log("Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE "
        "to the actual memory footprint of the model at runtime. Take the information at your discretion.")
    log(f"Memory footprint delta from the start of the tool (MB): init={init_mb:g} "
        f"overall={status_mb('VmHWM') - rss0:g}")
    if f.get("report_peak_memory_footprint", "false").lower() in ("1", "true"):
        log(f"Overall peak memory footprint (MB) via periodic monitoring: {status_mb('VmHWM'):g}")
    if f.get("enable_op_profiling", "false").lower() in ("1", "true"):
        op_tables(avg, xnnpack)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # a native tool exits in microseconds; Python's teardown would not
