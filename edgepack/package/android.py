"""Android target: model.tflite, manifest.json, labels.txt, README.md with Kotlin code."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

import numpy as np

from ..convert.flatbuffer import TensorInfo
from ..paths import data_dir
from ..build import Build
from .base import Target

_DTYPE_BYTES = {"float32": 4, "int8": 1, "uint8": 1, "int16": 2, "float16": 2, "int32": 4}


def _tensor_entry(t: TensorInfo) -> dict:
    d = {"name": t.name, "shape": t.shape, "dtype": t.dtype}
    if t.scale:
        d["quantization"] = {"scale": t.scale[0], "zero_point": t.zero_point[0]}
    return d


def _signed(z: int) -> str:
    return f"+ {z}" if z >= 0 else f"- {-z}"


def _put(t: TensorInfo) -> str:
    if t.dtype == "float32":
        return "        input.putFloat(x)"
    s, z = t.scale[0], t.zero_point[0]
    lo, hi = (-128, 127) if t.dtype == "int8" else (0, 255) if t.dtype == "uint8" else (-32768, 32767)
    q = f"(Math.round(x / {s!r}f) {_signed(z)}).coerceIn({lo}, {hi})"
    if t.dtype == "int16":
        return f"        input.putShort({q}.toShort())"
    return f"        input.put({q}.toByte())"


def _get(t: TensorInfo) -> str:
    if t.dtype == "float32":
        return "output.getFloat()"
    s, z = t.scale[0], t.zero_point[0]
    raw = {"int8": "output.get().toInt()", "uint8": "(output.get().toInt() and 0xFF)",
           "int16": "output.getShort().toInt()"}[t.dtype]
    return f"({raw} {_signed(-z)}) * {s!r}f"


def manifest(build: Build) -> dict:
    info = build.info
    pre = build.recipe.data.preprocess
    ins = [_tensor_entry(info.tensors[i]) for i in info.inputs]
    return {
        "format": "edgepack-android/1",
        "model": "model.tflite",
        "size_bytes": len(build.tflite),
        "inputs": ins,
        "outputs": [_tensor_entry(info.tensors[i]) for i in info.outputs],
        "preprocessing": {"formula": "x = (v - mean) * scale", "scale": pre.scale, "mean": pre.mean,
                          "then": "quantize with the input's scale/zero_point" if "quantization" in ins[0]
                          else "feed x as float32"},
        "labels": "labels.txt" if build.labels else None,
        "download_package": {"file": "model.tflite.epk", "format": "edgepack-epk/1",
                             "bytes": build.report.get("entropy", {}).get("package_bytes"),
                             "restore": "edgepack unpack model.tflite.epk model.tflite (exact bytes, SHA-256 checked)"},
        "ops": build.info.op_names(),
        "quantization": build.recipe.quantize.model_dump(),
        "verification": build.report.get("verification"),
        "provenance": build.report.get("provenance"),
    }


def readme(build: Build) -> str:
    info = build.info
    tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    pre = build.recipe.data.preprocess
    n_in, n_out = int(np.prod(tin.shape)), int(np.prod(tout.shape))
    mean = pre.mean if isinstance(pre.mean, (int, float)) else pre.mean[0]
    tmpl = Template((data_dir("targets") / "android" / "README.md.tmpl").read_text())
    return tmpl.substitute(
        name=build.model_name, size_bytes=len(build.tflite),
        epk_bytes=len(build.download_package) if build.download_package is not None else "n/a", mode=build.recipe.quantize.mode,
        labels_note=", `labels.txt` (one class per line, in output order)" if build.labels else "",
        labels_copy=" and `labels.txt`" if build.labels else "",
        in_name=tin.name, in_shape=tin.shape, in_dtype=tin.dtype, in_elems=n_in, in_layout="NHWC",
        in_bytes=n_in * _DTYPE_BYTES.get(tin.dtype, 4), mean=float(mean), scale=float(pre.scale),
        quant_note=(f", then quantize: `q = round(x / {tin.scale[0]!r}) {_signed(tin.zero_point[0])}`"
                    if tin.scale and tin.dtype != "float32" else ""),
        put_input=_put(tin), out_name=tout.name, out_shape=tout.shape, out_dtype=tout.dtype,
        out_bytes=n_out * _DTYPE_BYTES.get(tout.dtype, 4), out_elems=n_out, get_output=_get(tout),
        out_note=(f" (dequantize: `(q {_signed(-tout.zero_point[0])}) * {tout.scale[0]!r}`)"
                  if tout.scale and tout.dtype != "float32" else ""),
        labels_hint="; its name is that line of labels.txt" if build.labels else "")


class AndroidTarget(Target):
    """Writes what an Android app needs to load and feed the model."""

    name = "android"
    option_names = frozenset()

    def write(self, build: Build, out: Path) -> list[str]:
        (out / "model.tflite").write_bytes(build.tflite)
        files = ["model.tflite", "manifest.json", "README.md"]
        if build.download_package is not None:
            (out / "model.tflite.epk").write_bytes(build.download_package)
            files.append("model.tflite.epk")
        if build.labels:
            (out / "labels.txt").write_text("\n".join(build.labels) + "\n")
            files.append("labels.txt")
        (out / "manifest.json").write_text(json.dumps(manifest(build), indent=2, sort_keys=True) + "\n")
        (out / "README.md").write_text(readme(build))
        return files
