"""The TFLite-Micro host interpreter (``tflite-micro`` package): run, arena size, parity.

The host build is 64-bit, so its arena figures are an upper bound of a 32-bit
board's. TFLM's RecordingMicroAllocator total misses some Prepare-time buffers
(tflite-micro #2738), so the smallest arena is found by bisection on real
allocations instead, and a stated margin is added for the board.

Example::

    tf = Tflm(model_bytes)                 # raises UnsupportedOpError naming a missing op
    y = tf.predict(x)                      # float in, float out (quantizes int I/O)
    arena = find_arena(model_bytes)        # ArenaSize(min_bytes=..., recommended_bytes=...)
    p = parity(model_bytes, x)             # Parity(max_abs_diff=..., bit_exact=True, ...)
"""

from __future__ import annotations

import math
import os
import pickle
import re
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np

from .fdcapture import capture_fd2
from .errors import EdgepackError, UnsupportedOpError, VerificationError
from .runtime import dequantize_output, quantize_input

ARENA_ALIGN = 16
MARGIN_FRACTION = 0.10  # optimized kernels (CMSIS-NN, ESP-NN) request scratch the reference kernels do not
MARGIN_MIN_BYTES = 1024
# The host interpreter crashes (SIGSEGV) on arenas below ~464 B, too small for its own
# allocator objects; never probe below this floor.
MIN_ARENA_BYTES = 1024
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")
_CUSTOM_OP = re.compile(r"Didn't find op for custom opcode '([^']+)'")
_ARENA_MESSAGES = ("Failed to allocate", "Failed to resize buffer", "missing:", "Too many buffers",
                   "Unable to allocate")
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:  # pragma: no cover - a dependency of edgepack
        raise EdgepackError("the TFLM host interpreter is missing: pip install tflite-micro") from e
    return runtime


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _detail(d: dict) -> dict:
    """TFLM tensor details in LiteRT's shape (dtype, shape, quantization=(scale, zp))."""
    q = d.get("quantization_parameters") or {}
    scales, zps = q.get("scales", []), q.get("zero_points", [])
    scale = float(scales[0]) if len(scales) else 0.0
    zp = int(zps[0]) if len(zps) else 0
    return {"dtype": np.dtype(d["dtype"]), "shape": [int(v) for v in d["shape"]], "quantization": (scale, zp)}


class ArenaTooSmall(VerificationError):
    """The tensor arena given to TFLM cannot hold the model's tensors."""


class Tflm:
    """One TFLM host interpreter over model bytes with a fixed arena."""

    def __init__(self, model: bytes, arena_size: Optional[int] = None):
        if arena_size is not None and arena_size < MIN_ARENA_BYTES:
            raise ArenaTooSmall(f"TFLM arena of {arena_size} bytes is too small: the host interpreter needs at "
                                f"least {MIN_ARENA_BYTES} bytes")
        rt = _runtime()
        err = None
        with capture_fd2() as log:
            try:
                self.interp = rt.Interpreter.from_bytes(bytes(model), arena_size=arena_size)
            except (RuntimeError, ValueError) as e:
                err = e
        if err is not None:
            self._raise(err, log.text(), arena_size)
        self.arena_size = arena_size
        self.input = _detail(self.interp.get_input_details(0))
        self.output = _detail(self.interp.get_output_details(0))

    @staticmethod
    def _raise(err: Exception, stderr: str, arena_size: Optional[int]) -> None:
        m = _MISSING_OP.search(stderr) or _CUSTOM_OP.search(stderr)
        if m:
            raise UnsupportedOpError(f"TFLM has no kernel for op '{m.group(1)}'; change the layer that "
                                     "produces it or package for --target android") from None
        if any(k in stderr for k in _ARENA_MESSAGES):
            raise ArenaTooSmall(f"TFLM arena of {arena_size} bytes is too small: {_first_line(stderr)}")
        detail = _first_line(stderr) or str(err)
        raise UnsupportedOpError(f"TFLM cannot prepare the model: {detail}; check op types with "
                                 "'edgepack inspect' (TFLM supports fewer dtype combinations than LiteRT)") from None

    def invoke_raw(self, x: np.ndarray) -> np.ndarray:
        """Run one sample given in the input tensor's own dtype; return the raw output."""
        x = np.asarray(x, dtype=self.input["dtype"]).reshape(self.input["shape"])
        err = None
        with capture_fd2() as log:
            try:
                self.interp.set_input(x, 0)
                self.interp.invoke()
            except (RuntimeError, ValueError) as e:
                err = e
        if err is not None:
            raise VerificationError(f"TFLM invoke failed: {_first_line(log.text()) or err}")
        return np.array(self.interp.get_output(0), copy=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float outputs for a float batch (int I/O quantized/dequantized), one sample at a time."""
        outs = [dequantize_output(self.invoke_raw(quantize_input(x[i : i + 1], self.input)), self.output)
                for i in range(x.shape[0])]
        return np.concatenate(outs, axis=0)

    def recorded_arena(self) -> int:
        """TFLM's own 'Arena allocation total' (call after an invoke); misses some buffers."""
        with capture_fd2() as log:
            self.interp.print_allocations()
        m = _TOTAL.search(log.text())
        if not m:
            raise EdgepackError("TFLM did not report its arena allocation; update tflite-micro")
        return int(m.group(1))


def _in_child(fn: Callable[[], None]) -> tuple[str, object]:
    """Run ``fn`` in a forked child: ("ok", None), ("error", exception) or ("crash", signal).

    The host TFLM interpreter can abort or segfault (e.g. after "All temp buffers
    must be freed"); a child keeps such a crash from taking edgepack down with it.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - non-POSIX hosts run in-process
        try:
            fn()
            return "ok", None
        except EdgepackError as e:
            return "error", e
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            import faulthandler

            os.close(rfd)
            faulthandler.disable()  # a crash here is an answer, not a bug report
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            fn()
        except EdgepackError as e:
            code = 1
            with os.fdopen(wfd, "wb") as fh:
                fh.write(pickle.dumps(e))
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        payload = fh.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "crash", os.WTERMSIG(status)
    if os.WEXITSTATUS(status) == 0:
        return "ok", None
    return "error", pickle.loads(payload) if payload else VerificationError("TFLM probe failed")


def _full_run(model: bytes, size: Optional[int]) -> None:
    interp = Tflm(model, arena_size=size)
    interp.invoke_raw(np.zeros(interp.input["shape"], interp.input["dtype"]))


def check_runs(model: bytes, size: Optional[int]) -> None:
    """Raise the real error (missing op, dtype, arena) or a clear one if host TFLM crashes."""
    status, detail = _in_child(lambda: _full_run(model, size))
    if status == "error":
        raise detail  # type: ignore[misc]
    if status == "crash":
        raise VerificationError(
            f"the TFLM host interpreter crashed (signal {detail}) running this model with a {size} byte arena; "
            "nothing written: inspect its ops with 'edgepack inspect' and report the model to edgepack")


def arena_fits(model: bytes, size: int) -> bool:
    """Whether TFLM allocates the model in ``size`` bytes, probed in a forked child.

    A crash of the host interpreter counts as "does not fit".
    """
    if size < MIN_ARENA_BYTES:
        return False
    return _in_child(lambda: Tflm(model, arena_size=size))[0] == "ok"


@dataclass
class ArenaSize:
    """Arena figures in bytes; ``recommended_bytes`` is what the firmware is built with."""

    min_bytes: int  # smallest arena that allocates and runs on the 64-bit host (bisection)
    recorded_bytes: int  # TFLM's RecordingMicroAllocator total at a generous arena
    margin_bytes: int
    recommended_bytes: int
    note: str = ("host build is 64-bit: an upper bound of a 32-bit board's need; margin covers scratch "
                 "buffers of optimized kernels (CMSIS-NN) and Prepare-time buffers TFLM's recorded total "
                 "misses (tflite-micro #2738)")

    def as_dict(self) -> dict:
        return asdict(self)


def _align(n: int) -> int:
    return (n + ARENA_ALIGN - 1) // ARENA_ALIGN * ARENA_ALIGN


def find_arena(model: bytes, margin_fraction: float = MARGIN_FRACTION, limit: int = 16 << 20) -> ArenaSize:
    """Bisect the smallest working arena (to 16 bytes), check it runs, add the margin."""
    check_runs(model, limit)  # the real error (missing op, dtype) or a crash, before bisecting
    hi = _align(max(4096, len(model) * 2))
    while not arena_fits(model, hi):
        if hi >= limit:
            raise VerificationError(f"TFLM could not allocate the model even with a {limit} byte arena")
        hi = min(hi * 2, limit)
    lo = MIN_ARENA_BYTES - ARENA_ALIGN  # lo is never probed (treated as not fitting), hi always fits
    while hi - lo > ARENA_ALIGN:
        mid = _align((lo + hi) // 2)
        if mid >= hi:
            break
        if arena_fits(model, mid):
            hi = mid
        else:
            lo = mid
    interp = Tflm(model, arena_size=hi)
    interp.invoke_raw(np.zeros(interp.input["shape"], interp.input["dtype"]))  # a real run, not only Prepare
    recorded = Tflm(model, arena_size=hi * 2)
    recorded.invoke_raw(np.zeros(recorded.input["shape"], recorded.input["dtype"]))
    margin = _align(max(MARGIN_MIN_BYTES, int(math.ceil(hi * margin_fraction))))
    return ArenaSize(min_bytes=hi, recorded_bytes=recorded.recorded_arena(), margin_bytes=margin,
                     recommended_bytes=hi + margin)


@dataclass
class Parity:
    """TFLM host vs LiteRT on the same quantized inputs."""

    samples: int
    max_abs_diff: float  # in dequantized (float) output units
    max_raw_diff: float  # in the output tensor's own units (int8 steps for int8 outputs)
    bit_exact: bool
    output_dtype: str
    mismatch_pct: float = 0.0  # share of output values that differ at all

    def as_dict(self) -> dict:
        return asdict(self)


def _reference_litert(model: bytes):
    """LiteRT with TFLite's reference kernels (no XNNPACK), the arithmetic TFLM also follows."""
    from .runtime import interpreter_class

    cls = interpreter_class()
    try:
        from ai_edge_litert.interpreter import OpResolverType

        kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF}
    except ImportError:  # tflite-runtime fallback: default kernels
        kwargs = {}
    with capture_fd2():
        interp = cls(model_content=model, num_threads=1, **kwargs)
        interp.allocate_tensors()
    return interp


def parity(model: bytes, x: np.ndarray, arena_size: Optional[int] = None) -> Parity:
    """Run each float sample of ``x`` in TFLM (host) and LiteRT (reference kernels) and compare.

    Both sides get the same quantized input. Integer models are usually bit-exact;
    rounding in a requantization can differ by one step (seen in FULLY_CONNECTED),
    which a following SOFTMAX may widen: read ``max_raw_diff``.
    """
    if x is None or len(x) == 0:
        raise VerificationError("TFLM parity needs calibration samples; pass --calibration DATA")
    micro = Tflm(model, arena_size=arena_size)
    lite = _reference_litert(model)
    d_in, d_out = lite.get_input_details()[0], lite.get_output_details()[0]
    raw_diff, diff, exact, mismatched, total = 0.0, 0.0, True, 0, 0
    for i in range(x.shape[0]):
        xi = quantize_input(x[i : i + 1], d_in)
        a = micro.invoke_raw(xi)
        lite.set_tensor(d_in["index"], xi.reshape(d_in["shape"]))
        lite.invoke()
        b = lite.get_tensor(d_out["index"])
        exact &= bool(a.dtype == b.dtype and np.array_equal(a, b))
        mismatched += int(np.count_nonzero(a != b))
        total += int(a.size)
        raw_diff = max(raw_diff, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
        fa, fb = dequantize_output(a, micro.output), dequantize_output(b, d_out)
        diff = max(diff, float(np.max(np.abs(fa.astype(np.float64) - fb.astype(np.float64)))))
    return Parity(samples=int(x.shape[0]), max_abs_diff=diff, max_raw_diff=raw_diff, bit_exact=exact,
                  output_dtype=str(micro.output["dtype"]), mismatch_pct=round(100.0 * mismatched / max(total, 1), 4))


def harness_expectation(model: bytes, arena_size: Optional[int] = None) -> dict:
    """What a correct board harness reports for this model: the crc32 of the raw output
    for the protocol's input fill pattern, and the I/O byte counts.

    Example: ``harness_expectation(data)["crc32"]`` -> ``'1c291ca3'``.
    """
    from .devices.harness_protocol import crc32_hex, input_pattern_array

    interp = Tflm(model, arena_size=arena_size)
    x = input_pattern_array(interp.input["shape"], interp.input["dtype"])
    y = interp.invoke_raw(x)
    return {"crc32": crc32_hex(y), "in_bytes": int(x.nbytes), "out_bytes": int(y.nbytes), "output": y}
