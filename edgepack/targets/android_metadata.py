"""What the Android target writes into model.tflite's TFLite Metadata, and whether MediaPipe Tasks take it.

The recipe's preprocessing ``x = (v - mean) * scale`` becomes NormalizationOptions ``(v - mean) / std``
with ``std = 1 / scale``. Content: an image for 4-D inputs with 1 or 3 channels (RGB / GRAYSCALE), audio
when the user says so (``input_kind="audio"`` with ``sample_rate``), a feature tensor otherwise
(``input_kind="tensor"`` forces that, e.g. for MFCC features shaped like a 1-channel image). Stats are the
min/max observed on up to 64 calibration samples (inputs as preprocessed, outputs as LiteRT computes them),
to 6 significant digits.
Labels go into the classification output's metadata as labels.txt (TENSOR_AXIS_LABELS); a model with several
outputs gets one entry per output, named after the model output (:mod:`.android_outputs`). Provenance: edgepack version,
recipe SHA-256 (of the bundle's recipe.yaml) and the source model's SHA-256.

Example::

    doc = model_doc(build)                      # a metadata.ModelDoc
    support = mediapipe_support(build)          # {"task": "ImageClassifier", "usable": True, ...}
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import __version__
from ..errors import UsageError
from ..fsutil import sha256_bytes
from ..build import Build
from ..samples import for_tensors, tensor_input_name
from ..outputs import build_output_names as output_names
from .metadata import ModelDoc, TensorDoc

INPUT_KINDS = ("image", "audio", "tensor")
STATS_SAMPLES = 64


def input_kind(build: Build) -> str:
    """image, audio or tensor: the user's ``input_kind`` option, else image for [1,H,W,1|3] inputs."""
    kind = build.options.get("input_kind")
    t = build.info.tensors[build.info.inputs[0]]
    if kind is None:
        return "image" if len(t.shape) == 4 and t.shape[0] == 1 and t.shape[3] in (1, 3) else "tensor"
    if kind not in INPUT_KINDS:
        raise UsageError(f"android: input kind '{kind}' is not one of {', '.join(INPUT_KINDS)}")
    if kind == "image" and not (len(t.shape) == 4 and t.shape[3] in (1, 3)):
        raise UsageError(f"android: input kind image needs a [1, H, W, 1 or 3] input, the model takes {t.shape}")
    if kind == "audio":
        if len(t.shape) > 3:
            raise UsageError(f"android: input kind audio needs a [1, samples] input, the model takes {t.shape}")
        if not build.options.get("sample_rate"):
            raise UsageError("android: input kind audio needs the sample rate: add --sample-rate HZ")
    return kind


def input_names(build: Build) -> list[str]:
    """The model input each converted input tensor stands for, in tensor order (``serving_default_meta:0``
    -> ``meta``)."""
    return [tensor_input_name(build.info.tensors[i].name) for i in build.info.inputs]


def preprocess_of(build: Build, k: int):
    """The recipe's preprocessing of input tensor ``k`` (``data.inputs`` by name, else ``data.preprocess``)."""
    if len(build.info.inputs) == 1:
        return build.recipe.data.preprocess
    return build.recipe.data.for_input(input_names(build)[k])


def input_entries(build: Build) -> list[dict]:
    """For the manifest of a several-input model: each input tensor's model input name and preprocessing."""
    return [{"model_input": n, "preprocessing": {"formula": "x = (v - mean) * scale", "scale": preprocess_of(build, k).scale,
                                                  "mean": preprocess_of(build, k).mean}}
            for k, n in enumerate(input_names(build))]


def normalization(build: Build, k: int = 0) -> Optional[tuple[list[float], list[float]]]:
    """(mean, std) for NormalizationOptions from input ``k``'s preprocessing (None when scale is 0)."""
    pre = preprocess_of(build, k)
    if pre.scale <= 0:
        return None
    mean = [float(m) for m in (pre.mean if isinstance(pre.mean, list) else [pre.mean])]
    return mean, [float(1.0 / pre.scale)] * len(mean)


def recipe_sha256(build: Build) -> str:
    """SHA-256 of the recipe exactly as the bundle's recipe.yaml holds it."""
    return sha256_bytes(build.recipe.to_yaml().encode())


def _range(x: np.ndarray, per_channel: bool) -> tuple[list[float], list[float]]:
    """(min, max), per channel or overall, to 6 significant digits (kernels may differ in the last bits)."""
    flat = x.reshape(-1, x.shape[-1]) if per_channel else x.reshape(-1, 1)
    return _sig6(flat.min(axis=0)), _sig6(flat.max(axis=0))


def _sig6(values) -> list[float]:
    return [float(f"{float(v):.6g}") for v in values]


def _stats(build: Build, kind: str) -> tuple[list[Optional[tuple]], list[Optional[tuple]]]:
    """([(min, max) of each input], [(min, max) of each output]) on calibration samples, or Nones.

    Inputs in tensor order; input 0 per channel when it is an image."""
    n_in, n_out = len(build.info.inputs), len(build.info.outputs)
    if build.calibration is None or len(build.calibration) == 0:
        return [None] * n_in, [None] * n_out
    from ..runtime import LiteRT

    x = build.calibration[:STATS_SAMPLES].astype(np.float32)
    rt = LiteRT(build.tflite)
    outs = [_range(rt.predict(x, output=k), False) for k in range(n_out)]
    names = [build.info.tensors[i].name for i in build.info.inputs]
    shapes = [build.info.tensors[i].shape for i in build.info.inputs]
    parts = for_tensors(x, names, shapes)
    return [_range(p, k == 0 and kind == "image") for k, p in enumerate(parts)], outs


def _plus(z: int) -> str:
    return f"+ {z}" if z >= 0 else f"- {-z}"


def _quant_text(t) -> str:
    return f", quantized q = round(x / {t.scale[0]!r}) {_plus(t.zero_point[0])}" if t.scale else ""


def model_doc(build: Build) -> ModelDoc:
    """The TFLite Metadata of the Android model.tflite (see module doc)."""
    info = build.info
    kind = input_kind(build)
    in_stats, out_stats = _stats(build, kind)
    several = len(info.inputs) > 1
    recipe_hash = recipe_sha256(build)
    src = ((build.report.get("provenance") or {}).get("inputs") or {}).get("model", {}).get("sha256")
    inputs = []
    for i, idx in enumerate(info.inputs):
        t, pre, norm = info.tensors[idx], preprocess_of(build, i), normalization(build, i)
        if several:  # one tensor metadata per input, named after the model input
            name = input_names(build)[i]
        else:
            name = {"image": "image", "audio": "audio"}.get(kind, "input")
        extra: dict[str, Any] = {}
        if i == 0 and kind == "image":
            extra = {"content": "image", "color_space": "RGB" if t.shape[3] == 3 else "GRAYSCALE",
                     "image_size": (t.shape[2], t.shape[1])}
        elif i == 0 and kind == "audio":
            extra = {"content": "audio", "sample_rate": int(build.options["sample_rate"]),
                     "channels": int(t.shape[2]) if len(t.shape) == 3 else 1}
        stats = in_stats[i]
        inputs.append(TensorDoc(
            name=name, description=(f"Tensor {t.name}: {t.shape} {t.dtype}. Raw value v -> x = (v - {pre.mean}) * "
                                    f"{pre.scale!r}{_quant_text(t)}."),
            mean=norm[0] if norm else None, std=norm[1] if norm else None,
            min=stats[0] if stats else None, max=stats[1] if stats else None, **extra))
    outputs = []
    names = output_names(build) if len(info.outputs) > 1 else []
    for k, idx in enumerate(info.outputs):
        t = info.tensors[idx]
        labelled = k == build.output and bool(build.labels)  # labels on the classification output only
        deq = f", dequantized x = (q {_plus(-t.zero_point[0])}) * {t.scale[0]!r}" if t.scale else ""
        outputs.append(TensorDoc(
            name=names[k] if names else ("scores" if labelled else "output"),
            description=f"Tensor {t.name}: {t.shape} {t.dtype}{deq}." + (" One score per label." if labelled else ""),
            min=out_stats[k][0] if out_stats[k] else None, max=out_stats[k][1] if out_stats[k] else None,
            labels_file="labels.txt" if labelled else None))
    files = {"labels.txt": ("\n".join(build.labels) + "\n").encode()} if build.labels else {}
    desc = (f"{build.model_name}, {build.recipe.quantize.mode} (I/O {build.recipe.quantize.io}), packaged by "
            f"edgepack {__version__}. Recipe SHA-256 {recipe_hash}" + (f"; source model SHA-256 {src}" if src else "")
            + ".")
    return ModelDoc(name=build.model_name, description=desc, version=f"edgepack {__version__} recipe {recipe_hash[:12]}",
                    author=f"edgepack {__version__}", inputs=inputs, outputs=outputs, files=files)


def _image_classifier(build: Build) -> dict:
    info, pre = build.info, build.recipe.data.preprocess
    t = info.tensors[info.inputs[0]]
    outs = {info.tensors[i].dtype for i in info.outputs}
    means = pre.mean if isinstance(pre.mean, list) else [pre.mean]
    why = None
    if len(info.inputs) != 1 or len(t.shape) != 4 or t.shape[0] != 1 or t.shape[3] not in (3, 4):
        why = f"it takes one [1, H, W, 3 or 4] image; this input is {t.shape}"
    elif t.dtype not in ("uint8", "float32"):
        why = f"the input is {t.dtype}; MediaPipe takes uint8 or float32 images: package with --io uint8 (or float)"
    elif not (outs <= {"float32"} or outs <= {"uint8"}):
        why = f"outputs are {', '.join(sorted(outs))}; MediaPipe takes float32 or uint8 scores"
    elif len(set(means)) > 1:
        why = "per-channel means: MediaPipe's image preprocessing normalizes all channels alike"
    elif t.dtype == "uint8" and not (abs(t.scale[0] - pre.scale) <= 1e-6 * pre.scale and t.zero_point[0] == means[0]):
        fix = ("package with --io float (a uint8 zero point cannot be the non-integer mean)"
               if float(means[0]) != round(float(means[0])) else
               "calibrate with images that span 0..255, or package with --io float")
        why = (f"MediaPipe feeds raw 0..255 pixels to a uint8 input, but this one is quantized with scale "
               f"{t.scale[0]!r}, zero point {t.zero_point[0]} (raw pixels would be scale {pre.scale!r}, zero point "
               f"{means[0]}): {fix}")
    return {"task": "ImageClassifier", "usable": why is None, "why_not": why,
            "input": t.dtype, "labels": bool(build.labels)}


def _audio_classifier(build: Build) -> dict:
    info, pre = build.info, build.recipe.data.preprocess
    t = info.tensors[info.inputs[0]]
    outs = {info.tensors[i].dtype for i in info.outputs}
    why = None
    if len(t.shape) > 2:
        why = f"MediaPipe takes a [1, samples] waveform; this input is {t.shape}"
    elif t.dtype not in ("float32", "float16"):
        why = f"the input is {t.dtype}; MediaPipe feeds float waveforms: package with --io float"
    elif not (outs <= {"float32"} or outs <= {"uint8"}):
        why = f"outputs are {', '.join(sorted(outs))}; MediaPipe takes float32 or uint8 scores"
    elif pre.scale != 1.0 or any(m != 0 for m in (pre.mean if isinstance(pre.mean, list) else [pre.mean])):
        why = "MediaPipe feeds the waveform as is; the recipe's preprocessing must be scale 1, mean 0"
    return {"task": "AudioClassifier", "usable": why is None, "why_not": why, "input": t.dtype,
            "labels": bool(build.labels), "sample_rate": int(build.options["sample_rate"])}


def mediapipe_support(build: Build) -> Optional[dict]:
    """Whether MediaPipe's ImageClassifier / AudioClassifier runs this model as packaged (and why not).

    None for plain tensor inputs: no MediaPipe task fits them (e.g. MFCC features: AudioClassifier
    computes nothing, it feeds a raw waveform; ImageClassifier needs 3 or 4 channels).
    """
    kind = input_kind(build)
    if kind != "tensor" and len(build.info.outputs) > 1:
        return {"task": "ImageClassifier" if kind == "image" else "AudioClassifier", "usable": False,
                "why_not": f"the model has {len(build.info.outputs)} outputs; MediaPipe's classifiers read every "
                           "output as a classification head, and only one of these is", "input":
                build.info.tensors[build.info.inputs[0]].dtype, "labels": bool(build.labels)}
    if kind == "image":
        return _image_classifier(build)
    if kind == "audio":
        return _audio_classifier(build)
    return None
