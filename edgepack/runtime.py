"""Running .tflite models in LiteRT (ai-edge-litert); tflite-runtime is an optional fallback.

Handles integer I/O: float inputs are quantized with the input tensor's scale
and zero point, integer outputs dequantized, so callers always see float. Every
inference starts from a reset state: models with variable tensors (a fused LSTM's
state) would otherwise carry the previous input's state into the next one.

Example::

    r = LiteRT(model_bytes)
    y = r.predict(x)           # x: float32 batch, y: float32 batch
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import EdgepackError, LiteRTLoadError
from .samples import Inputs, for_tensors


def interpreter_class():
    """Return LiteRT's Interpreter class (or tflite-runtime's, if LiteRT is absent)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore

        return Interpreter
    except ImportError as e:
        raise EdgepackError("no TFLite runtime: pip install ai-edge-litert") from e


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zp = detail["quantization"]
    if scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zp = detail["quantization"]
    if scale == 0:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)


class LiteRT:
    """A LiteRT interpreter over model bytes that predicts float batches."""

    def __init__(self, model: bytes, num_threads: Optional[int] = 1):
        from .fdcapture import capture_fd2

        cls = interpreter_class()
        try:
            with capture_fd2():  # "Created TensorFlow Lite XNNPACK delegate" chatter
                self.interp = cls(model_content=model, num_threads=num_threads)
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise LiteRTLoadError(f"LiteRT cannot load the model: {str(e).splitlines()[0]}") from e
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()

    def invoke_one(self, x: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        """Run one sample (batch axis included) from a reset state and return raw outputs.

        ``x``: the sample, or a list of one array per input in the model's input tensor order."""
        xs = x if isinstance(x, list) else [x]
        for k, xk in enumerate(xs):
            d = self.inputs[k]
            if list(d["shape"]) != list(xk.shape):
                self.interp.resize_tensor_input(d["index"], list(xk.shape))
                self.interp.allocate_tensors()
                self.inputs = self.interp.get_input_details()
        for k, xk in enumerate(xs):
            self.interp.set_tensor(self.inputs[k]["index"], quantize_input(xk, self.inputs[k]))
        self.interp.reset_all_variables()  # no-op without variable tensors
        self.interp.invoke()
        return [self.interp.get_tensor(o["index"]) for o in self.outputs]

    def predict(self, x: "np.ndarray | Inputs", output: int = 0) -> np.ndarray:
        """Float outputs for a float batch (an :class:`~edgepack.samples.Inputs` for several inputs),
        one sample at a time."""
        names, shapes = [d["name"] for d in self.inputs], [list(d["shape"]) for d in self.inputs]
        outs = [dequantize_output(self.invoke_one(for_tensors(x[i : i + 1], names, shapes))[output],
                                  self.outputs[output]) for i in range(len(x))]
        return np.concatenate(outs, axis=0)

    def median_latency_us(self, runs: int = 20, warmup: int = 3) -> float:
        """Median wall time of one invoke on zero inputs (every input), in-process (quick step metrics)."""
        import time

        for d in self.inputs:
            self.interp.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
        for _ in range(warmup):
            self.interp.invoke()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.interp.invoke()
            times.append(time.perf_counter() - t0)
        return float(np.median(times) * 1e6)
