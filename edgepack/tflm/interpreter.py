"""The TFLite-Micro host interpreter (``tflite-micro`` package) and a crash-proof probe.

The host build is 64-bit, so its arena figures are an upper bound of a 32-bit board's.
The host interpreter can abort or segfault on bad input; :func:`check_runs` and
:func:`arena_fits` probe in a forked child so a crash becomes an answer.

Example::

    tf = Tflm(model_bytes)                 # raises UnsupportedOpError naming a missing op
    y = tf.predict(x)                      # float in, float out (quantizes int I/O)
    check_runs(model_bytes, 1 << 20)       # the real error, or a clear one on a crash
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from typing import Callable, Optional

import numpy as np

from ..errors import EdgepackError, UnsupportedOpError, VerificationError
from ..fdcapture import capture_fd2
from ..runtime import dequantize_output, quantize_input

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


def _count(interp, details: str = "get_input_details") -> int:
    """How many input (or output) tensors the model has (the wheel has no counter: probe the details)."""
    n = 1
    while True:
        try:
            getattr(interp, details)(n)
        except (RuntimeError, ValueError, IndexError):
            return n
        n += 1


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
        with capture_fd2():  # an index past the last input prints to fd 2
            self.inputs = [_detail(self.interp.get_input_details(k)) for k in range(_count(self.interp))]
            self.outputs = [_detail(self.interp.get_output_details(k))
                            for k in range(_count(self.interp, "get_output_details"))]
        self.output = self.outputs[0]

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

    def invoke_raw(self, x: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Run one sample given in the input tensor's own dtype from a reset state (variable tensors,
        e.g. a fused LSTM's state, zeroed as after allocation); return the raw (first) output.

        ``x``: the sample, or a list of one array per input in the model's input tensor order."""
        return self.invoke_all(x)[0]

    def invoke_all(self, x: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        """As :meth:`invoke_raw`, returning every raw output in the model's output tensor order."""
        xs = [np.asarray(xk, dtype=self.inputs[k]["dtype"]).reshape(self.inputs[k]["shape"])
              for k, xk in enumerate(x if isinstance(x, list) else [x])]
        err = None
        with capture_fd2() as log:
            try:
                self.interp.reset()
                for k, xk in enumerate(xs):
                    self.interp.set_input(xk, k)
                self.interp.invoke()
            except (RuntimeError, ValueError) as e:
                err = e
        if err is not None:
            raise VerificationError(f"TFLM invoke failed: {_first_line(log.text()) or err}")
        return [np.array(self.interp.get_output(k), copy=True) for k in range(len(self.outputs))]

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
    _runtime()  # import the wheel before forking: importing it in the child of a process running TensorFlow segfaults
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
