"""Android target: model.tflite (with TFLite Metadata), manifest.json, labels.txt, README.md with Kotlin code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..convert.flatbuffer import TensorInfo
from ..build import Build
from ..epk import VERSION as EPK_VERSION, decoder_sources
from ..verify import TargetSpec
from .base import Target


def _tensor_entry(t: TensorInfo) -> dict:
    d = {"name": t.name, "shape": t.shape, "dtype": t.dtype}
    if t.scale:
        d["quantization"] = {"scale": t.scale[0], "zero_point": t.zero_point[0]}
    return d


def manifest(build: Build, model: bytes) -> dict:
    """manifest.json of the bundle; ``model`` is the shipped model.tflite (with TFLite Metadata)."""
    from .android_metadata import input_entries, input_kind, mediapipe_support, recipe_sha256
    from .metadata import read_metadata

    info = build.info
    meta = read_metadata(model) or {}
    pre = build.recipe.data.preprocess
    ins = [_tensor_entry(info.tensors[i]) for i in info.inputs]
    if len(ins) > 1:  # several inputs: each its own model input name and preprocessing
        ins = [{**e, **extra} for e, extra in zip(ins, input_entries(build))]
    outs = [_tensor_entry(info.tensors[i]) for i in info.outputs]
    if len(outs) > 1:  # several outputs: each its model output name; labels and the gate on the classification one
        from .android_outputs import output_entries

        outs = [{**e, **extra} for e, extra in zip(outs, output_entries(build))]
    return {
        "format": "edgepack-android/1",
        "model": "model.tflite",
        "size_bytes": len(model),
        "inputs": ins,
        "outputs": outs,
        "preprocessing": {"formula": "x = (v - mean) * scale", "scale": pre.scale, "mean": pre.mean,
                          "then": "quantize with the input's scale/zero_point" if "quantization" in ins[0]
                          else "feed x as float32"},
        "labels": "labels.txt" if build.labels else None,
        "tflite_metadata": {"schema": "TFLite Metadata (metadata_schema.fbs)", "min_parser_version":
                            meta.get("minParserVersion"), "input_kind": input_kind(build),
                            "associated_files": ["labels.txt"] if build.labels else [],
                            "recipe_sha256": recipe_sha256(build)},
        "mediapipe": mediapipe_support(build),
        "download_package": {"file": "model.tflite.epk", "format": f"edgepack-epk/{EPK_VERSION}",
                             "decoders": {"c": "epk/c/epk.h, epk/c/epk.c (C99, no heap)",
                                          "java": "epk/java/dev/edgepack/epk/EpkDecoder.java (JDK 17)"},
                             "bytes": len(build.download_package) if build.download_package is not None else None,
                             "restore": "edgepack unpack model.tflite.epk model.tflite (exact bytes, SHA-256 checked)"},
        "ops": build.info.op_names(),
        "quantization": build.recipe.quantize.model_dump(),
        "verification": build.report.get("verification"),
        "provenance": build.report.get("provenance"),
        **_state_entry(model),
    }


def _state_entry(model: bytes) -> dict:
    """``stateful`` for a model with variable tensors (a fused LSTM's state); nothing otherwise."""
    from ..convert.recurrent import variable_tensors

    names = variable_tensors(model)
    if not names:
        return {}
    return {"stateful": {"variable_tensors": names,
                         "reset": "reset the variable tensors before every independent inference: "
                                  "Interpreter.resetVariableTensors() (CompiledModel has no reset: use the "
                                  "Interpreter API, see README.md); edgepack verified the model from a reset state"}}


class AndroidTarget(Target):
    """Writes what an Android app needs to load and feed the model.

    model.tflite carries TFLite Metadata (edgepack.targets.android_metadata), so MediaPipe Tasks, the
    LiteRT support libraries and Android Studio read its normalization, labels and tensor meaning.
    Options: ``input_kind`` (image, audio, tensor; default: image for [1,H,W,1|3] inputs) and
    ``sample_rate`` (Hz, for audio).
    """

    name = "android"
    option_names = frozenset({"input_kind", "sample_rate"})

    def spec(self, options: dict[str, Any]) -> TargetSpec:
        return TargetSpec(name=self.name, checks=("litert_loads",))

    def finalize_model(self, build: Build) -> bytes:
        from .android_metadata import model_doc
        from .metadata import embed, read_metadata

        if read_metadata(build.tflite) is not None:  # already finalized
            return build.tflite
        out = embed(build.tflite, model_doc(build))
        _check_same_model(build.tflite, out, build.calibration)
        return out

    def write(self, build: Build, out: Path) -> list[str]:
        from .android_metadata import mediapipe_support
        from .android_readme import readme
        from .metadata import read_metadata

        model = build.tflite
        if read_metadata(model) is None:  # written outside the pipeline: finalize here
            model = self.finalize_model(build)
        (out / "model.tflite").write_bytes(model)
        files = ["model.tflite", "manifest.json", "README.md"]
        if build.download_package is not None:
            (out / "model.tflite.epk").write_bytes(build.download_package)
            files.append("model.tflite.epk")
            for rel, data in decoder_sources().items():  # the app/firmware decodes the download itself
                (out / "epk" / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / "epk" / rel).write_bytes(data)
                files.append(f"epk/{rel}")
        if build.labels:
            (out / "labels.txt").write_text("\n".join(build.labels) + "\n")
            files.append("labels.txt")
        (out / "manifest.json").write_text(json.dumps(manifest(build, model), indent=2, sort_keys=True) + "\n")
        (out / "README.md").write_text(readme(build, model, mediapipe_support(build)))
        return files


def _check_same_model(before: bytes, after: bytes, calibration) -> None:
    """The model with metadata loads in LiteRT and computes what the verified model computed (one sample):
    the bundle's model.tflite is the model every check ran on, never a broken rewrite of it."""
    import numpy as np

    from ..errors import ConversionError, LiteRTLoadError
    from ..runtime import LiteRT

    try:
        rt = LiteRT(after)
        if calibration is not None and len(calibration):
            x = calibration[:1]
            ref = LiteRT(before)
            if any(not np.array_equal(ref.predict(x, output=k), rt.predict(x, output=k)) for k in range(len(rt.outputs))):
                raise ConversionError("writing TFLite Metadata changed the model's outputs; nothing written: "
                                      "report this model to edgepack")
    except LiteRTLoadError as e:
        raise ConversionError(f"the model with TFLite Metadata does not load ({e}); nothing written: "
                              "report this model to edgepack") from e
