"""The Keras 3 reference worker: a separate process where ``import keras`` is Keras 3.

Run by :mod:`edgepack.load.reference` as ``python -I keras3_child.py`` with ``TF_USE_LEGACY_KERAS``
removed from the environment. It imports nothing from edgepack. It reads one JSON request per line
on stdin and answers one JSON line on stdout (Keras/TensorFlow chatter goes to stderr):

* ``{"op": "ping"}`` -> ``{"ok": true, "keras_version": "3.x"}``
* ``{"op": "builtins"}`` -> the class names Keras 3 ships (layers, initializers, ...)
* ``{"op": "run", "path": P, "inputs": NPZ, "out": NPZ, "layers": bool, "export": DIR|null}``:
  ``keras.saving.load_model(P, safe_mode=True, compile=False)``, outputs on the inputs ``x0..xn``
  written as ``y0..ym`` (and ``l<i>`` per top-level layer when ``layers``), optionally
  ``model.export(DIR)``.

Files reach this worker only after edgepack's safety scan accepted their config; Keras 3's own
safe mode is a second line of defence.
"""

import json
import os
import sys


def _protocol_stream():
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed by Keras/TF goes to stderr, not into the protocol
    return out


def _builtins():
    import inspect

    import keras

    names = set()
    for mod in (keras.layers, keras.initializers, keras.regularizers, keras.constraints, keras.losses,
                keras.metrics, keras.optimizers, keras.optimizers.schedules, keras.dtype_policies):
        names |= {n for n in dir(mod) if not n.startswith("_") and inspect.isclass(getattr(mod, n, None))}
    names |= {"Functional", "Sequential", "Model"}
    return sorted(names - {"Lambda"})


def _model(path, safe=True):
    import keras

    return keras.saving.load_model(path, safe_mode=safe, compile=False)


def _layer_model(model):
    import keras

    outs, names = [], []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError, RuntimeError):
            continue
        if isinstance(out, (list, tuple)):
            continue
        outs.append(out)
        names.append(layer.name)
    return keras.Model(model.inputs, outs), names


def _run(req):
    import numpy as np

    model = _model(req["path"], bool(req.get("safe", True)))
    with np.load(req["inputs"]) as z:
        xs = [z[f"x{i}"] for i in range(len(z.files))]
    feed = xs[0] if len(xs) == 1 else xs
    ys = model.predict(feed, verbose=0, batch_size=len(xs[0]))
    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    arrays = {f"y{i}": np.asarray(y) for i, y in enumerate(ys)}
    names = []
    if req.get("layers"):
        lm, names = _layer_model(model)
        ls = lm.predict(feed, verbose=0, batch_size=len(xs[0])) if names else []
        ls = list(ls) if isinstance(ls, (list, tuple)) else [ls]
        arrays.update({f"l{i}": np.asarray(v) for i, v in enumerate(ls)})
    np.savez(req["out"], **arrays)
    reply = {"ok": True, "outputs": len(ys), "layers": names}
    if req.get("export"):
        model.export(req["export"], verbose=False)
        reply["exported"] = req["export"]
    return reply


def main():
    out = _protocol_stream()
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "ping":
                import keras

                reply = {"ok": True, "keras_version": keras.__version__}
            elif op == "builtins":
                reply = {"ok": True, "names": _builtins()}
            elif op == "run":
                reply = _run(req)
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as e:  # one line back to the parent, never a dead worker
            first = (str(e).strip().splitlines() or [""])[0][:400]
            reply = {"ok": False, "error": f"{type(e).__name__}: {first}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
