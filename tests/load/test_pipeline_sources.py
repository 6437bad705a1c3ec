"""Every source the pipeline takes: a Keras 3 export() SavedModel, a .tflite converted elsewhere,
a live model and numpy arrays (issue 10 points 3-5)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from compress_helpers import digits, mlp
from edgepack.convert.flatbuffer import read_tflite


def _digits_npz(tmp_path):
    tr, ev = digits()
    np.savez(tmp_path / "calib.npz", x=tr.x[:128])
    np.savez(tmp_path / "eval.npz", x=ev.x, y=ev.y)
    return tmp_path / "calib.npz", tmp_path / "eval.npz"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A Keras 3 CNN trained a little on digits and exported with model.export() (in a child: Keras 3)."""
    tmp = tmp_path_factory.mktemp("k3")
    tr, _ = digits()
    np.savez(tmp / "train.npz", x=tr.x, y=tr.y)
    code = textwrap.dedent(f"""
        import os; os.environ.pop("TF_USE_LEGACY_KERAS", None)
        import numpy as np, keras
        d = np.load("{tmp / 'train.npz'}")
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(d["x"], d["y"], epochs=6, verbose=0)
        m.export("{tmp / 'exported'}", verbose=False)
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, timeout=600)
    return tmp / "exported"


def test_keras3_export_savedmodel_packages_int8_and_refuses_steps(run_cli, exported, tmp_path):
    calib, ev = _digits_npz(tmp_path)
    out = tmp_path / "a"
    r = run_cli("package", exported, "--calibration", calib, "--eval", ev, "--out", out, "-q", "--json")
    assert r.exit_code == 0, r.err
    rep = json.loads(r.out)
    assert rep["source"]["kind"] == "saved_model"
    assert rep["verification"]["metric"] == "accuracy" and rep["verification"]["drop_pt"] <= 1.0
    assert rep["verification"]["float_accuracy_pct"] > 80
    info = read_tflite((out / "model.tflite").read_bytes())
    assert "CONV_2D" in info.op_names() and info.tensors[info.inputs[0]].dtype == "float32"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: [{type: prune_structured, ratio: 0.5}]\n")
    r = run_cli("package", exported, "--recipe", recipe, "--calibration", calib, "--out", tmp_path / "b")
    assert r.exit_code == 1 and "change a Keras model" in r.err and not (tmp_path / "b").exists()


def test_tflite_input_goes_straight_to_the_firmware_target(run_cli, mlperf_dir, tmp_path):
    out = tmp_path / "fw"
    r = run_cli("package", mlperf_dir / "kws_ref_model.tflite", "--target", "tflm", "--device", "nucleo-l4r5zi",
                "--out", out, "-q", "--json")
    assert r.exit_code == 0, r.err
    rep = json.loads(r.out)
    assert rep["source"]["kind"] == "tflite" and rep["quantize"]["mode"].startswith("as given")
    assert (out / "model_data.cc").is_file() and rep["firmware"]["parity"]["data"] == "random"
    r = run_cli("package", mlperf_dir / "kws_ref_model.tflite", "--quantize", "int8", "--out", tmp_path / "x")
    assert r.exit_code == 1 and "packaged as given" in r.err


def test_live_model_and_arrays_through_the_python_api(tmp_path):
    import edgepack
    import edgepack.targets  # noqa: F401 - the targets package never shadows the API's package()

    tr, ev = digits()
    rep = edgepack.package(edgepack.PackageRequest(model=mlp(softmax=True), out=tmp_path / "o",
                                                   calibration=tr.x[:100], eval=(ev.x, ev.y)))
    assert rep["source"]["format"] == "live" and rep["verification"]["metric"] == "accuracy"
    assert rep["provenance"]["inputs"]["eval"]["path"] == "(x, y) arrays"
    assert (tmp_path / "o" / "model.tflite").is_file()



def test_source_kinds_are_classes_the_job_reads_through_one_table(mnist, tmp_path):
    """Each kind of source is a class (what the converter converts, what is packaged as given), and the
    job's reading of each (inputs, outputs, float reference) is one entry of edgepack.inputs.KINDS."""
    from edgepack import load
    from edgepack.inputs import KINDS, float_reference, model_inputs, output_size

    kinds = {c.kind for c in (load.KerasSource, load.SavedModelSource, load.TfliteSource)}
    assert kinds == set(KINDS)
    keras_src = load.load_source(mnist.model)
    assert isinstance(keras_src, load.KerasSource) and keras_src.compressible
    assert keras_src.convertible() is keras_src.model and keras_src.given_tflite is None
    other = object()
    assert keras_src.convertible(other) is other  # the compressed model, when steps changed it
    tfl = tmp_path / "m.tflite"
    from edgepack.convert.tflite import convert
    from edgepack.quantize.config import QuantizeConfig

    tfl.write_bytes(convert(keras_src.model, QuantizeConfig(mode="none")))
    tfl_src = load.load_source(tfl)
    assert isinstance(tfl_src, load.TfliteSource) and not tfl_src.compressible
    assert tfl_src.convertible() is None and tfl_src.given_tflite == tfl.read_bytes()
    assert model_inputs(tfl_src)[0][1] == model_inputs(keras_src)[0][1]
    assert output_size(tfl_src) == output_size(keras_src) == 10
    assert float_reference(tfl_src, np.zeros([1] + model_inputs(keras_src)[0][1], np.float32)) is None
    assert tfl_src.report()["kind"] == "tflite" and keras_src.report()["kind"] == "keras"
