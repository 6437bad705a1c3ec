"""What is inside a Keras model or a .tflite file, as a dict (and as text).

Example::

    data = inspect_path(Path("build/android/model.tflite"))
    data["macs"], data["ops"]
"""

from __future__ import annotations

from pathlib import Path

from .errors import ModelLoadError


def inspect_path(path: Path, unsafe: bool = False) -> dict:
    path = Path(path)
    if path.is_dir() and (path / "model.tflite").is_file():
        path = path / "model.tflite"
    if path.suffix.lower() == ".tflite":
        from .convert.flatbuffer import read_tflite

        if not path.is_file():
            raise ModelLoadError(f"{path}: no such .tflite file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read the file ({e.strerror or e})") from None
        return {"kind": "tflite", "path": str(path), **read_tflite(data, str(path)).as_dict()}
    from .keras_stats import model_summary
    from .load import load_model

    return {"kind": "keras", "path": str(path), **model_summary(load_model(path, unsafe=unsafe))}


def _quant(t: dict) -> str:
    q = t.get("quantization")
    if not q:
        return "-"
    if isinstance(q["scale"], list):
        return f"per-channel axis {q['axis']} ({len(q['scale'])} scales)"
    return f"scale {q['scale']:.6g} zp {q['zero_point']}"


def render_text(data: dict, tensors: bool = False) -> str:
    lines = [f"{data['path']} ({data['kind']})", f"parameters: {data['params']:,}   MACs: {data['macs']:,}"]
    if data["kind"] == "keras":
        lines.append(f"input {data['input_shape']} -> output {data['output_shape']}")
        lines.append(f"{'layer':24} {'type':22} {'output':20} {'params':>9} {'MACs':>11}")
        for r in data["layers"]:
            lines.append(f"{r['name'][:24]:24} {r['type'][:22]:22} {str(r['output_shape'])[:20]:20} "
                         f"{r['params']:>9,} {r['macs']:>11,}")
        return "\n".join(lines)
    lines.append(f"size: {data['size_bytes']:,} bytes")
    for kind in ("inputs", "outputs"):
        for t in data[kind]:
            lines.append(f"{kind[:-1]:6} {t['name']} {t['shape']} {t['dtype']} {_quant(t)}")
    lines.append("ops: " + ", ".join(f"{k} x{v}" for k, v in data["op_counts"].items()))
    lines.append(f"{'#':>3} {'op':22} {'MACs':>11}")
    for o in data["ops"]:
        lines.append(f"{o['index']:>3} {o['op'][:22]:22} {o['macs']:>11,}")
    if tensors:
        lines.append(f"{'#':>4} {'tensor':40} {'shape':18} {'dtype':8} {'bytes':>8} quantization")
        for t in data["tensors"]:
            lines.append(f"{t['index']:>4} {t['name'][:40]:40} {str(t['shape'])[:18]:18} {t['dtype']:8} "
                         f"{t['bytes']:>8,} {_quant(t)}")
    return "\n".join(lines)
