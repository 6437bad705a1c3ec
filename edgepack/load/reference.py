"""Proof that a translation is equivalent: Keras 3 itself runs the original on the same samples.

One worker process (:mod:`edgepack.load.keras3_child`, a clean environment without
``TF_USE_LEGACY_KERAS``) serves every load of this process; results are cached by file hash.
:func:`compare` gives the max abs output difference and, above the tolerance, the first top-level
layer whose own output diverges.

Example::

    xs = samples(tf_model)
    ref = Keras3Worker.shared().run(Path("m.keras"), xs)
    report = compare(tf_model, xs, ref.outputs, "m.keras")
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ModelLoadError

N_SAMPLES = 8
RTOL = 1e-4  # of the output scale (max |reference|, at least 1)
TIMEOUT_S = 600.0
_CHILD = Path(__file__).with_name("keras3_child.py")


@dataclass
class Reference:
    outputs: list[np.ndarray]
    layer_names: list[str] = field(default_factory=list)
    layer_outputs: list[np.ndarray] = field(default_factory=list)
    exported: Optional[str] = None


def samples(model, n: int = N_SAMPLES, seed: int = 0) -> list[np.ndarray]:
    """Deterministic inputs for ``model`` (tf_keras): N(0,1) floats, in-range token ids for integer
    inputs (below the smallest Embedding vocabulary), unknown dimensions set to 8."""
    rng = np.random.default_rng(seed)
    vocab = [int(l.input_dim) for l in _leaves(model) if type(l).__name__ == "Embedding"]
    out = []
    for t in model.inputs:
        shape = [n] + [8 if d is None else int(d) for d in t.shape[1:]]
        dtype = t.dtype.as_numpy_dtype
        if np.issubdtype(dtype, np.integer):
            out.append(rng.integers(0, max(1, min(vocab or [2])), size=shape).astype(dtype))
        else:
            out.append(rng.normal(size=shape).astype(np.float32))
    return out


def _leaves(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _leaves(layer)
        else:
            yield layer


class Keras3Worker:
    """A long-lived Keras 3 process, started on first use and stopped at exit."""

    _shared: Optional["Keras3Worker"] = None
    _shared_lock = threading.Lock()

    def __init__(self):
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.Lock()
        self._cache: dict[tuple, Reference] = {}
        self._builtins: Optional[frozenset] = None
        self._stderr = tempfile.TemporaryFile()

    @classmethod
    def shared(cls) -> "Keras3Worker":
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
                atexit.register(cls._shared.close)
            return cls._shared

    def _start(self) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   TF_ENABLE_ONEDNN_OPTS=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "0"))
        return subprocess.Popen([sys.executable, "-I", str(_CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=self._stderr, env=env, text=True, bufsize=1)

    def _last_stderr(self) -> str:
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "no message"

    def request(self, req: dict, source: str, timeout: float = TIMEOUT_S) -> dict:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc, ready = self._proc, False
            try:
                proc.stdin.write(json.dumps(req) + "\n")
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], timeout)
                line = proc.stdout.readline() if ready else ""
            except (BrokenPipeError, OSError):
                line = ""
            if not line:
                proc.kill()
                proc.wait()
                self._proc = None
                why = f"timed out after {timeout:.0f} s" if not ready else f"exited ({self._last_stderr()})"
                raise ModelLoadError(f"{source}: the Keras 3 reference process {why}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise ModelLoadError(f"{source}: Keras 3 itself cannot load the file ({reply.get('error')}); "
                                 "re-save it with Keras 3's model.save()")
        return reply

    def builtins(self) -> frozenset:
        """Class names Keras 3 ships (asked once)."""
        if self._builtins is None:
            self._builtins = frozenset(self.request({"op": "builtins"}, "Keras 3")["names"])
        return self._builtins

    def run(self, path: Path, xs: list[np.ndarray], layers: bool = False, export: Optional[Path] = None,
            digest: str = "", safe: bool = True) -> Reference:
        """Keras 3's outputs of the model file ``path`` on ``xs`` (cached by ``digest`` when given)."""
        key = (digest or str(path), hashlib.sha256(b"".join(x.tobytes() for x in xs)).hexdigest(), layers, safe)
        if export is None and digest and key in self._cache:
            return self._cache[key]
        with tempfile.TemporaryDirectory(prefix="edgepack-k3-") as tmp:
            inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            np.savez(inp, **{f"x{i}": x for i, x in enumerate(xs)})
            reply = self.request({"op": "run", "path": str(Path(path).resolve()), "inputs": str(inp),
                                  "out": str(out), "layers": layers, "safe": safe,
                                  "export": None if export is None else str(export)}, str(path))
            with np.load(out) as z:
                ref = Reference([z[f"y{i}"] for i in range(reply["outputs"])], list(reply.get("layers", [])),
                                [z[f"l{i}"] for i in range(len(reply.get("layers", [])))], reply.get("exported"))
        if export is None and digest:
            self._cache[key] = ref
        return ref

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()


def _predict(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    ys = model(xs[0] if len(xs) == 1 else xs, training=False)
    ys = ys if isinstance(ys, (list, tuple)) else [ys]
    return [np.asarray(y) for y in ys]


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """(max abs difference, output scale) over paired outputs."""
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return float("inf"), 1.0
    diff = max((float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0)
               for x, y in zip(a, b))
    scale = max([1.0] + [float(np.max(np.abs(y))) for y in b if y.size])
    return diff, scale


def layer_outputs(model, names: list[str], xs: list[np.ndarray]) -> list[np.ndarray]:
    """tf_keras outputs of the named top-level layers on ``xs``."""
    from ..keras_compat import keras

    sub = keras().Model(model.inputs, [model.get_layer(n).output for n in names])
    return _predict(sub, xs)


def first_divergent(model, xs, ref: Reference) -> Optional[tuple[str, float]]:
    """The first top-level layer whose tf_keras output differs from Keras 3's beyond the tolerance."""
    if not ref.layer_names:
        return None
    try:
        mine = layer_outputs(model, ref.layer_names, xs)
    except (ValueError, KeyError, AttributeError):
        return None
    for name, a, b in zip(ref.layer_names, mine, ref.layer_outputs):
        diff, scale = max_diff([a], [b])
        if diff > RTOL * scale:
            return name, diff
    return None


def compare(model, xs: list[np.ndarray], ref: list[np.ndarray]) -> dict[str, Any]:
    """The translation report: max abs difference of ``model`` vs the reference outputs."""
    diff, scale = max_diff(_predict(model, xs), ref)
    return {"max_abs_diff": diff, "output_scale": scale, "tolerance": RTOL * scale, "samples": int(len(xs[0])),
            "ok": diff <= RTOL * scale}
