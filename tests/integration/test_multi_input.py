"""Models with several inputs, end to end: data files with one array per input (by input name or
x0, x1, ...), calibration by name, the accuracy gate, LiteRT and TFLM on every input, TFLite
Metadata / manifest / README per input, model_config.h and the harness for every input.

The model (tests/multi_input_model.py): an 8x8 image branch and a 3-value metadata vector,
Concatenate, Dense, trained a few epochs on synthetic data that needs both inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from locations import TESTS
from multi_input_model import build_two_input, two_input_data, write_data

from edgepack.data import DataSpec, load_dataset, model_inputs
from edgepack.errors import DataError
from edgepack.samples import Inputs, for_tensors, tensor_order

NAMES = ["image", "meta"]
SHAPES = [("image", (8, 8, 1)), ("meta", (3,))]


# --------------------------------------------------------------------------- data files, no TensorFlow

def test_arrays_by_input_name_and_by_position(tmp_path):
    xi, xm, y = two_input_data(10, 0)
    np.savez(tmp_path / "named.npz", meta=xm, image=xi, y=y)
    np.savez(tmp_path / "positional.npz", x0=xi, x1=xm, y=y)
    a = load_dataset(tmp_path / "named.npz", inputs=NAMES)
    b = load_dataset(tmp_path / "positional.npz", inputs=NAMES)
    for ds in (a, b):
        assert isinstance(ds.x, Inputs) and ds.x.names == tuple(NAMES) and len(ds) == 10
        assert np.array_equal(ds.x.arrays[0], xi) and np.array_equal(ds.x.arrays[1], xm)
        assert np.array_equal(ds.y, y)
    spec = DataSpec.model_validate({"inputs": {"image": {"scale": 1 / 255}}})
    x = model_inputs(a, spec, SHAPES)
    assert x.arrays[0].max() <= 1.0 and np.allclose(x.arrays[1], xm)  # the image scaled, meta as is


def test_a_single_input_file_still_reads_x(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3), np.float32), y=np.arange(4))
    ds = load_dataset(tmp_path / "d.npz", inputs=["only"])
    assert isinstance(ds.x, np.ndarray) and ds.x.shape == (4, 3)


def test_a_missing_input_array_names_the_input_and_the_keys(tmp_path):
    xi, xm, _ = two_input_data(4, 0)
    np.savez(tmp_path / "d.npz", image=xi, x=xm)
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "d.npz", inputs=NAMES)
    msg = str(e.value)
    assert "\n" not in msg and "model input 'meta' (input 1" in msg and "meta=... or x1=..." in msg


def test_a_misshaped_input_array_names_the_input(tmp_path):
    xi, _, _ = two_input_data(4, 0)
    np.savez(tmp_path / "d.npz", image=xi, meta=np.zeros((4, 5), np.float32))
    ds = load_dataset(tmp_path / "d.npz", inputs=NAMES)
    with pytest.raises(DataError, match=r"input 'meta': samples have shape \(5,\), the model expects \(3,\)"):
        model_inputs(ds, DataSpec(), SHAPES)
    np.savez(tmp_path / "n.npz", image=xi, meta=np.zeros((3, 3), np.float32))
    with pytest.raises(DataError, match="input 'meta' has 3 samples but input 'image' has 4"):
        load_dataset(tmp_path / "n.npz", inputs=NAMES)


def test_recipe_preprocessing_for_an_unknown_input_is_refused(tmp_path):
    xi, xm, _ = two_input_data(4, 0)
    np.savez(tmp_path / "d.npz", image=xi, meta=xm)
    spec = DataSpec.model_validate({"inputs": {"imgae": {"scale": 1 / 255}}})
    with pytest.raises(DataError, match="data.inputs names imgae, not an input of the model"):
        model_inputs(load_dataset(tmp_path / "d.npz", inputs=NAMES), spec, SHAPES)


def test_converted_tensors_are_matched_by_name_not_position():
    x = Inputs((np.zeros((2, 8, 8, 1)), np.ones((2, 3))), ("image", "meta"))
    # the int8 converter put 'meta' first: the arrays follow the tensor names
    parts = for_tensors(x[:1], ["serving_default_meta:0", "serving_default_image:0"], [[1, 3], [1, 8, 8, 1]])
    assert parts[0].shape == (1, 3) and parts[1].shape == (1, 8, 8, 1)
    # shortened names (--compact): by shape
    assert tensor_order(("image", "meta"), ["a", "b"], [[3], [8, 8, 1]], [[8, 8, 1], [3]]) == [1, 0]


# --------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def two_input(tmp_path_factory) -> dict[str, Path]:
    from edgepack.keras_compat import keras

    folder = tmp_path_factory.mktemp("two_input")
    model, _ = build_two_input(keras())
    model.save(folder / "two_input.h5")
    return {"model": folder / "two_input.h5", **write_data(folder)}


def _package(d: dict, out: Path, target: str, **extra):
    from edgepack.pipeline import PackageRequest, package

    opts = {"device": "nucleo-l4r5zi"} if target == "tflm" else {}
    return package(PackageRequest(model=d["model"], out=out, target=target, recipe_path=d["recipe"], quantize="int8",
                                  io="int8", calibration=d["calib"], eval=d["eval"], target_options=opts, **extra))


@pytest.mark.slow
def test_android_int8_within_a_point_with_metadata_for_every_input(two_input, tmp_path):
    from edgepack.targets.metadata import read_metadata

    rep = _package(two_input, tmp_path / "a", "android")
    ver = rep["verification"]
    assert ver["metric"] == "accuracy" and ver["samples"] == 600
    assert ver["float_accuracy_pct"] >= 80 and ver["drop_pt"] <= 1.0  # learnable, and int8 keeps it
    model = (tmp_path / "a" / "model.tflite").read_bytes()
    meta = read_metadata(model)["subgraphMetadata"][0]["inputTensorMetadata"]
    by_name = {m["name"]: m for m in meta}
    assert sorted(by_name) == NAMES
    assert by_name["image"]["processUnits"][0]["options"]["std"] == [pytest.approx(255.0)]
    assert by_name["meta"]["processUnits"][0]["options"]["std"] == [1.0]
    assert by_name["image"]["stats"]["max"][0] <= 1.0 < by_name["meta"]["stats"]["max"][0]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    entries = {e["model_input"]: e for e in manifest["inputs"]}
    assert entries["image"]["preprocessing"]["scale"] == pytest.approx(1 / 255)
    assert entries["meta"]["preprocessing"]["scale"] == 1.0
    readme = (tmp_path / "a" / "README.md").read_text()
    assert "runForMultipleInputsOutputs" in readme and "fun input0(" in readme and "fun input1(" in readme
    for k, e in enumerate(manifest["inputs"]):  # the README's constants are the tensors' own
        assert f"IN_SCALE_{k} = {float(e['quantization']['scale'])!r}f" in readme
        assert f"IN_ZERO_POINT_{k} = {e['quantization']['zero_point']}" in readme


@pytest.mark.slow
def test_tflm_bundle_parity_and_config_for_every_input(two_input, tmp_path):
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.tflm import harness_expectation

    rep = _package(two_input, tmp_path / "t", "tflm")
    assert rep["verification"]["drop_pt"] <= 1.0
    parity = rep["firmware"]["parity"]
    assert parity["samples"] == 32 and parity["data"] == "calibration" and parity["max_step_diff"] <= 1
    config = (tmp_path / "t" / "model_config.h").read_text()
    assert "#define EP_INPUT_COUNT 2u" in config and "#define EP_INPUTS_ELEMENTS 67u" in config
    assert '#define EP_INPUT0_MODEL_INPUT "meta"' in config or '#define EP_INPUT0_MODEL_INPUT "image"' in config
    for k in (0, 1):
        assert f"EP_INPUT{k}_SCALE" in config and f"ep_input{k}_quantize" in config
    model = (tmp_path / "t" / "model.tflite").read_bytes()
    info = read_tflite(model)
    exp = harness_expectation(model)
    assert exp["in_bytes"] == sum(int(np.prod(info.tensors[i].shape)) for i in info.inputs) == 67
    example = (tmp_path / "t" / "examples" / "inference" / "example_input.h").read_text()
    assert "#define EP_EXAMPLE_INPUT_LEN 67u" in example


@pytest.mark.slow
def test_mixed_precision_plans_feed_every_input(two_input, tmp_path):
    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe

    recipe = Recipe.from_dict({"data": {"inputs": {"image": {"scale": 1 / 255}}},
                               "quantize": {"mode": "int8", "rules": [{"op": "SOFTMAX", "precision": "int16x8"}]}},
                              "test")
    rep = package(PackageRequest(model=two_input["model"], out=tmp_path / "m", recipe=recipe,
                                 calibration=two_input["calib"], eval=two_input["eval"]))
    assert rep["verification"]["drop_pt"] <= 1.0 and "DEQUANTIZE" in rep["tflite"]["ops"]


TFLM_ROOT = os.environ.get("EDGEPACK_TFLM_ROOT")


@pytest.mark.slow
@pytest.mark.skipif(not (TFLM_ROOT and shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="set EDGEPACK_TFLM_ROOT to a TFLM tree and install gcc-arm-none-eabi and qemu-system-arm")
def test_qemu_runs_the_two_input_model_as_the_host_tflm_does(two_input, tmp_path):
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    _package(two_input, tmp_path / "t", "tflm")
    with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile="nucleo-l4r5zi") as dev:
        res = dev.profile(tmp_path / "t" / "model.tflite", Settings(runs=1, warmup=0))  # output CRC checked
    assert any("matches the TFLM host interpreter" in n for n in res.notes)
    assert res.latency.instructions > 1000


_KERAS3_BUILD = """
import sys
sys.path.insert(0, sys.argv[2])
import keras
from multi_input_model import build_two_input
build_two_input(keras)[0].save(sys.argv[1])
"""


@pytest.mark.slow
def test_a_keras3_two_input_model_packages_int8_within_a_point(tmp_path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # Keras 3 in the child
    path = tmp_path / "two_input.keras"
    subprocess.run([sys.executable, "-c", _KERAS3_BUILD, str(path), str(TESTS)], env=env,
                   check=True, timeout=900, capture_output=True)
    d = {"model": path, **write_data(tmp_path)}
    rep = _package(d, tmp_path / "k3", "android")
    assert rep["source"]["framework"] == "keras3" and rep["source"]["translation"]["ok"]
    assert rep["verification"]["float_accuracy_pct"] >= 80 and rep["verification"]["drop_pt"] <= 1.0
