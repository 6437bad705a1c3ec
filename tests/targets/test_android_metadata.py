"""TFLite Metadata in the Android model.tflite: read back with the schema module, field by field."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from edgepack.targets import metadata as md
from edgepack.runtime import LiteRT


def _raw_outputs(data: bytes, x: np.ndarray) -> list[bytes]:
    rt = LiteRT(data)
    return [b"".join(o.tobytes() for o in rt.invoke_one(x[i : i + 1])) for i in range(len(x))]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, mnist):
    """The MNIST example packaged int8 with labels (float I/O: the default)."""
    import sys

    from edgepack.cli import main

    out = tmp_path_factory.mktemp("meta") / "android"
    argv = ["edgepack", "package", str(mnist.model), "--target", "android", "--recipe", str(mnist.recipe),
            "--calibration", str(mnist.calib), "--labels", str(mnist.labels), "--out", str(out), "-q"]
    old, sys.argv = sys.argv, argv
    try:
        main()
    except SystemExit as e:
        assert not e.code
    finally:
        sys.argv = old
    return out


def test_metadata_fields_read_back(bundle, mnist):
    data = (bundle / "model.tflite").read_bytes()
    meta = md.read_metadata(data)
    man = json.loads((bundle / "manifest.json").read_text())
    recipe_sha = hashlib.sha256((bundle / "recipe.yaml").read_bytes()).hexdigest()
    rep = json.loads((bundle / "report.json").read_text())
    assert meta["name"] == "model"
    assert recipe_sha in meta["description"] and "edgepack" in meta["description"]
    assert rep["provenance"]["inputs"]["model"]["sha256"] in meta["description"]
    assert meta["version"].endswith(recipe_sha[:12]) and meta["author"].startswith("edgepack")
    assert meta["minParserVersion"] == man["tflite_metadata"]["min_parser_version"] == "1.0.0"
    assert meta["license"] is None and meta["associatedFiles"] is None
    (sg,) = meta["subgraphMetadata"]
    assert sg["name"] == "model" and sg["customMetadata"] is None and sg["inputProcessUnits"] is None
    (tin,), (tout,) = sg["inputTensorMetadata"], sg["outputTensorMetadata"]
    min_, mout = man["inputs"][0], man["outputs"][0]
    assert tin["description"].startswith(f"Tensor {min_['name']}: {min_['shape']} {min_['dtype']}.")
    assert f"round(x / {min_['quantization']['scale']!r}) - 128" in tin["description"]
    assert f"x = (q + 128) * {mout['quantization']['scale']!r}" in tout["description"]
    assert (mout["quantization"]["zero_point"], min_["quantization"]["zero_point"]) == (-128, -128)
    # image content: 28x28 grayscale
    fb = md._schema()
    assert tin["name"] == "image"
    assert tin["content"]["contentPropertiesType"] == fb.ContentProperties.ImageProperties
    assert tin["content"]["contentProperties"]["colorSpace"] == fb.ColorSpaceType.GRAYSCALE
    assert tin["content"]["contentProperties"]["defaultSize"] == {"width": 28, "height": 28}
    # normalization = the recipe's preprocessing: x = (v - mean) * scale  ->  (v - mean) / std
    pre = man["preprocessing"]
    (unit,) = tin["processUnits"]
    assert unit["optionsType"] == fb.ProcessUnitOptions.NormalizationOptions
    assert unit["options"]["mean"] == [pytest.approx(pre["mean"])]
    assert unit["options"]["std"] == [pytest.approx(1 / pre["scale"], rel=1e-6)]
    # stats: observed on the calibration samples (preprocessed), per channel
    x = np.load(mnist.calib)["x"][:64].astype(np.float32)
    assert tin["stats"]["min"] == [pytest.approx((x.min() - pre["mean"]) * pre["scale"])]
    assert tin["stats"]["max"] == [pytest.approx((x.max() - pre["mean"]) * pre["scale"])]
    assert 0.0 <= tout["stats"]["min"][0] <= tout["stats"]["max"][0] <= 1.0  # softmax scores
    # labels: TENSOR_AXIS_LABELS on the output, packed into the file's zip
    assert tout["name"] == "scores"
    (f,) = tout["associatedFiles"]
    assert f["name"] == "labels.txt" and f["type"] == fb.AssociatedFileType.TENSOR_AXIS_LABELS
    assert md.associated_files(data) == {"labels.txt": (bundle / "labels.txt").read_bytes()}


def test_container_layout_is_what_parsers_expect(bundle):
    data = (bundle / "model.tflite").read_bytes()
    from tensorflow.lite.python import schema_py_generated as tfl

    model = tfl.Model.GetRootAsModel(data, 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"TFLITE_METADATA") == 1
    entry = model.Metadata(names.index(b"TFLITE_METADATA"))
    raw = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert raw[4:8] == b"M001"
    assert data[4:8] == b"TFL3"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (info,) = zf.infolist()
    assert info.compress_type == zipfile.ZIP_STORED  # MediaPipe rejects compressed members
    assert info.date_time == md.ZIP_DATE
    # offsets count from the start of the file (the zip follows the flatbuffer)
    assert data[info.header_offset : info.header_offset + 4] == b"PK\x03\x04"
    assert info.header_offset > len(raw)


def test_embed_keeps_outputs_byte_identical(mlperf_dir):
    src = (mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes()
    doc = md.ModelDoc(name="resnet8", description="d", version="1",
                      inputs=[md.TensorDoc("image", content="image", color_space="RGB", image_size=(32, 32),
                                           mean=(0.0,), std=(1.0,), min=(0.0,), max=(255.0,))],
                      outputs=[md.TensorDoc("scores", labels_file="labels.txt")],
                      files={"labels.txt": b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"})
    out = md.embed(src, doc)
    x = np.random.default_rng(0).uniform(-128, 127, (20, 32, 32, 3)).astype(np.float32)
    assert _raw_outputs(out, x) == _raw_outputs(src, x)
    assert md.embed(src, doc) == out  # deterministic
    again = md.embed(out, doc)  # replaces the entry instead of adding one
    assert md.read_metadata(again) == md.read_metadata(out)


def test_min_parser_version_follows_the_members_used():
    fb = md._schema()
    audio = md.ModelDoc(name="a", inputs=[md.TensorDoc("audio", content="audio", sample_rate=16000)],
                        outputs=[md.TensorDoc("scores")])
    raw = md.metadata_buffer(audio)
    meta = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(raw, 0))
    assert meta.minParserVersion == b"1.3.0"
    assert meta.subgraphMetadata[0].inputTensorMetadata[0].content.contentProperties.sampleRate == 16000
    meta.subgraphMetadata[0].customMetadata = []
    assert md.min_parser_version(meta) == "1.5.0"


def test_metadata_must_match_the_model(mlperf_dir):
    src = (mlperf_dir / "pretrainedResnet_quant.tflite").read_bytes()
    with pytest.raises(md.MetadataError, match="1 output tensor"):
        md.embed(src, md.ModelDoc(name="x", inputs=[md.TensorDoc("a")], outputs=[]))
    with pytest.raises(md.MetadataError, match="labels.txt"):
        md.embed(src, md.ModelDoc(name="x", inputs=[md.TensorDoc("a")],
                                  outputs=[md.TensorDoc("b", labels_file="labels.txt")]))


def test_vendored_schema_is_mediapipes():
    """The vendored flatc module is byte-for-byte the one MediaPipe ships (below our header)."""
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("mediapipe")  # located, not imported
    if spec is None:
        pytest.skip("mediapipe not installed")
    theirs = Path(spec.submodule_search_locations[0]) / "tasks/metadata/metadata_schema_py_generated.py"
    ours = Path(md.__file__).with_name("metadata_schema_py_generated.py").read_text()
    assert ours.split("# EDGEPACK-VENDORED-HEADER-END\n", 1)[1] == theirs.read_text()


def test_input_kind_must_fit_the_model(run_cli, mnist, tmp_path):
    r = run_cli("package", mnist.model, "--target", "android", "--quantize", "float16", "--input-kind", "audio",
                "--sample-rate", "16000", "--out", tmp_path / "o", "-q")
    assert r.exit_code == 2  # a usage error: the option does not fit this model
    assert "input kind audio needs a [1, samples] input" in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def _build(in_shape, in_dtype, in_q=None, out_dtype="float32", scale=1.0, mean=0.0, **options):
    from edgepack.convert.flatbuffer import TensorInfo, TfliteInfo
    from edgepack.targets import Build
    from edgepack.recipe import Recipe

    tin = TensorInfo(0, "in", list(in_shape), in_dtype, [in_q[0]] if in_q else [], [in_q[1]] if in_q else [], 0,
                     False, 0)
    tout = TensorInfo(1, "out", [1, 10], out_dtype, [1 / 256] if out_dtype != "float32" else [],
                      [0] if out_dtype != "float32" else [], 0, False, 0)
    recipe = Recipe.from_dict({"data": {"preprocess": {"scale": scale, "mean": mean}}})
    return Build(tflite=b"", info=TfliteInfo([tin, tout], [], [0], [1], 0), recipe=recipe, model_name="m",
                 options=options)


@pytest.mark.parametrize("case,why", [
    (dict(in_shape=[1, 32, 32, 3], in_dtype="float32"), None),
    (dict(in_shape=[1, 32, 32, 3], in_dtype="uint8", in_q=(1.0, 0), out_dtype="uint8"), None),
    (dict(in_shape=[1, 32, 32, 3], in_dtype="uint8", in_q=(1 / 255, 0), out_dtype="uint8", scale=1 / 255), None),
    (dict(in_shape=[1, 32, 32, 3], in_dtype="uint8", in_q=(0.9, 3), out_dtype="uint8"), "span 0..255"),
    (dict(in_shape=[1, 32, 32, 3], in_dtype="uint8", in_q=(1 / 127.5, 128), out_dtype="uint8", scale=1 / 127.5,
          mean=127.5), "non-integer mean"),
    (dict(in_shape=[1, 32, 32, 3], in_dtype="int8", in_q=(1.0, -128), out_dtype="int8"), "--io uint8"),
    (dict(in_shape=[1, 32, 32, 3], in_dtype="float32", mean=[1.0, 2.0, 3.0]), "per-channel means"),
    (dict(in_shape=[1, 28, 28, 1], in_dtype="float32"), "3 or 4"),
])
def test_mediapipe_image_classifier_fit(case, why):
    from edgepack.targets.android_metadata import mediapipe_support

    got = mediapipe_support(_build(**case))
    assert got["task"] == "ImageClassifier"
    assert got["usable"] is (why is None)
    assert (got["why_not"] is None) if why is None else (why in got["why_not"])


def test_mediapipe_fit_for_audio_and_features():
    from edgepack.targets.android_metadata import mediapipe_support

    ok = mediapipe_support(_build([1, 16000], "float32", input_kind="audio", sample_rate=16000))
    assert ok["task"] == "AudioClassifier" and ok["usable"] and ok["sample_rate"] == 16000
    scaled = mediapipe_support(_build([1, 16000], "float32", scale=0.5, input_kind="audio", sample_rate=16000))
    assert not scaled["usable"] and "scale 1, mean 0" in scaled["why_not"]
    # MLPerf Tiny KWS: 49x10 MFCC features shaped like a 1-channel image: no task fits
    assert mediapipe_support(_build([1, 49, 10, 1], "int8", in_q=(0.5, 0), input_kind="tensor")) is None
