"""Models with several outputs, end to end: the classification output (the Keras model's first, or
``--output NAME``) is what labels, --eval's y and the accuracy gate apply to; converted outputs are matched
to Keras outputs by signature name (the converter does not keep the Keras order); TFLM parity compares
every output; TFLite Metadata / manifest / README / model_config.h / the harness cover every output.

The model (tests/multi_output_model.py): an 8x8 image in; ``quadrant`` (4 classes), ``level`` (regression)
and ``flag`` (2 classes) out, trained a few epochs on synthetic data.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from locations import TESTS
from multi_output_model import OUTPUTS, build_three_output, write_data
from refusal import assert_refused
from tflm_helpers import TFLM_ROOT, needs_tree


def _untrained(k):
    image = k.Input((8, 8, 1), name="image")
    h = k.layers.Dense(8, activation="relu")(k.layers.Flatten()(image))
    heads = [k.layers.Dense(4, activation="softmax", name="quadrant")(h), k.layers.Dense(1, name="level")(h),
             k.layers.Dense(2, activation="softmax", name="flag")(h)]
    return k.Model(image, heads, name="three_output")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> dict[str, Path]:
    from edgepack.keras_compat import keras, set_seed

    set_seed(0)
    folder = tmp_path_factory.mktemp("untrained")
    _untrained(keras()).save(folder / "three.h5")
    return {"model": folder / "three.h5", **write_data(folder)}


# --------------------------------------------------------------------------- choosing and matching outputs

def test_converted_outputs_are_matched_by_signature_name_not_position():
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras, set_seed
    from edgepack.outputs import choose, output_names
    from edgepack.quantize.config import QuantizeConfig
    from edgepack.runtime import LiteRT

    set_seed(0)
    model = _untrained(keras())
    data = convert(model, QuantizeConfig(mode="none"))
    names = output_names(data)
    assert sorted(names) == sorted(OUTPUTS) and names != list(OUTPUTS)  # the converter reordered them
    x = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    ref = model(x, training=False)
    rt = LiteRT(data)
    for k, name in enumerate(OUTPUTS):
        choice = choose(OUTPUTS, name)
        assert choice.index == k
        got = rt.predict(x, output=choice.position(names))
        assert np.allclose(got, np.asarray(ref[k]), atol=1e-5), name
    assert choose(OUTPUTS, None).chosen == "quadrant"  # default: the Keras model's first output


def test_an_unknown_output_name_is_refused_in_one_line(untrained, tmp_path, run_cli):
    r = run_cli("package", untrained["model"], "--out", tmp_path / "o", "--output", "flg",
                "--calibration", untrained["calib"], "--quantize", "int8")
    line = assert_refused(r, out=tmp_path / "o", match="output 'flg'")
    assert "its outputs: quadrant, level, flag" in line


def test_eval_labels_are_checked_against_the_chosen_output(untrained, tmp_path, run_cli):
    # quadrant labels (0..3) for the 2-class flag output: refused before anything is converted
    r = run_cli("package", untrained["model"], "--out", tmp_path / "o", "--output", "flag",
                "--eval", untrained["eval_quadrant"], "--recipe", untrained["recipe"])
    assert_refused(r, out=tmp_path / "o", match="outside the model's 2 classes (0..1): 2, 3")


def test_compression_steps_and_quantize_auto_are_refused_for_several_outputs(untrained, tmp_path):
    from edgepack.errors import RecipeError
    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe

    recipe = Recipe.from_dict({"steps": [{"type": "prune_magnitude", "sparsity": 0.5}]}, "test")
    with pytest.raises(RecipeError, match="take single-output models, and this one has 3 outputs"):
        package(PackageRequest(model=untrained["model"], out=tmp_path / "o", recipe=recipe,
                               calibration=untrained["calib"]))
    with pytest.raises(RecipeError, match="--quantize auto takes single-output models"):
        package(PackageRequest(model=untrained["model"], out=tmp_path / "o", quantize="auto",
                               calibration=untrained["calib"]))
    assert not (tmp_path / "o").exists()


def test_a_tflite_with_several_outputs_keeps_output_0_unless_output_names_a_signature_output(untrained, tmp_path):
    from edgepack.convert.tflite import convert
    from edgepack.keras_compat import keras
    from edgepack.outputs import output_names
    from edgepack.pipeline import PackageRequest, package
    from edgepack.quantize.config import QuantizeConfig

    data = convert(keras().models.load_model(untrained["model"]), QuantizeConfig(mode="none"))
    (tmp_path / "three.tflite").write_bytes(data)
    names = output_names(data)
    for wanted, eval_data in ((None, "eval_quadrant"), ("flag", "eval_flag")):
        out = tmp_path / (wanted or "default")
        rep = package(PackageRequest(model=tmp_path / "three.tflite", out=out, recipe_path=untrained["recipe"],
                                     eval=untrained[eval_data], output=wanted))
        chosen = wanted or names[0]  # a .tflite's default: its output 0
        assert rep["verification"]["output"] == chosen and rep["verification"]["outputs"] == names
        manifest = json.loads((out / "manifest.json").read_text())
        assert [e["model_output"] for e in manifest["outputs"] if e["classification"]] == [chosen]
    from edgepack.recipe import Recipe  # the recipe's data.output picks it too, and the bundle's recipe keeps it

    recipe = Recipe.from_dict({"data": {"preprocess": {"scale": 1 / 255}, "output": "flag"}}, "test")
    rep = package(PackageRequest(model=tmp_path / "three.tflite", out=tmp_path / "r", recipe=recipe,
                                 eval=untrained["eval_flag"]))
    assert rep["verification"]["output"] == "flag" and "output: flag" in (tmp_path / "r" / "recipe.yaml").read_text()


# --------------------------------------------------------------------------- end to end, trained

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    from edgepack.keras_compat import keras

    folder = tmp_path_factory.mktemp("three_output")
    model, _ = build_three_output(keras())
    model.save(folder / "three.h5")
    (folder / "quadrant.txt").write_text("top-left\ntop-right\nbottom-left\nbottom-right\n")
    (folder / "flag.txt").write_text("plain\nbright\n")
    return {"model": folder / "three.h5", **write_data(folder), "labels_quadrant": folder / "quadrant.txt",
            "labels_flag": folder / "flag.txt"}


def _cli(run_cli, d: dict, out: Path, target: str, output: str | None):
    args = ["package", d["model"], "--target", target, "--out", out, "--quantize", "int8", "--io", "int8",
            "--recipe", d["recipe"], "--calibration", d["calib"], "--eval", d[f"eval_{output or 'quadrant'}"],
            "--labels", d[f"labels_{output or 'quadrant'}"]]
    args += ["--output", output] if output else []
    args += ["--device", "nucleo-l4r5zi"] if target == "tflm" else []
    r = run_cli(*args)
    assert r.exit_code == 0, r.err
    return r, json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_android_int8_gates_the_chosen_output_with_metadata_for_every_output(trained, tmp_path, run_cli):
    from edgepack.targets.metadata import read_metadata

    for output, classes in ((None, 4), ("flag", 2)):
        out = tmp_path / (output or "default")
        r, rep = _cli(run_cli, trained, out, "android", output)
        ver, chosen = rep["verification"], output or "quadrant"
        assert ver["output"] == chosen and ver["outputs"] == list(OUTPUTS) and ver["samples"] == 500
        assert ver["float_accuracy_pct"] >= 90 and ver["drop_pt"] <= 1.0, ver
        assert f"accuracy (output {chosen}): float" in r.out
        manifest = json.loads((out / "manifest.json").read_text())
        entries = {e["model_output"]: e for e in manifest["outputs"]}
        assert sorted(entries) == sorted(OUTPUTS) and [e["classification"] for e in entries.values()].count(True) == 1
        assert entries[chosen]["classification"] and entries[chosen]["shape"] == [1, classes]
        meta = read_metadata((out / "model.tflite").read_bytes())["subgraphMetadata"][0]["outputTensorMetadata"]
        assert [m["name"] for m in meta] == [e["model_output"] for e in manifest["outputs"]]  # tensor order
        labelled = [m["name"] for m in meta if m.get("associatedFiles")]
        assert labelled == [chosen]
        readme = (out / "README.md").read_text()
        k = [e["model_output"] for e in manifest["outputs"]].index(chosen)
        assert f"mapOf({k} to output)" in readme and "fun predictAll(" in readme
        assert "mapOf(0 to out0, 1 to out1, 2 to out2)" in readme


@pytest.mark.slow
def test_tflm_int8_parity_on_every_output_and_the_chosen_output_in_the_firmware(trained, tmp_path, run_cli):
    from edgepack.convert.flatbuffer import read_tflite
    from edgepack.tflm import Tflm, harness_expectation

    out = tmp_path / "t"
    _, rep = _cli(run_cli, trained, out, "tflm", "flag")
    assert rep["verification"]["output"] == "flag" and rep["verification"]["drop_pt"] <= 1.0
    parity = rep["firmware"]["parity"]
    assert len(parity["outputs"]) == 3 and parity["max_step_diff"] <= 2
    assert parity["max_step_diff"] == max(o["max_step_diff"] for o in parity["outputs"])
    config = (out / "model_config.h").read_text()
    model = (out / "model.tflite").read_bytes()
    from edgepack.outputs import output_names

    names = [config.split(f'#define EP_OUTPUT{k}_MODEL_OUTPUT "')[1].split('"')[0] for k in range(3)]
    assert sorted(names) == sorted(OUTPUTS)
    assert f"#define EP_CLASS_OUTPUT {names.index('flag')}u" in config and "#define EP_OUTPUTS_ELEMENTS 7u" in config
    assert output_names(model) in (names, [read_tflite(model).tensors[i].name for i in read_tflite(model).outputs])
    exp = harness_expectation(model)
    micro = Tflm(model)
    assert exp["out_bytes"] == 7 == sum(int(np.prod(d["shape"])) for d in micro.outputs)
    assert rep["firmware"]["example"]["top_class"] in (0, 1)  # a class of the 2-class flag output


@pytest.mark.slow
@needs_tree
def test_qemu_reports_the_crc_of_every_output_as_the_host_tflm_does(trained, tmp_path, run_cli):
    from edgepack.devices.registry import open_device
    from edgepack.devices.result import Settings

    _cli(run_cli, trained, tmp_path / "t", "tflm", "flag")
    with open_device("qemu:mps2-an386", tflm_root=TFLM_ROOT, profile="nucleo-l4r5zi") as dev:
        res = dev.profile(tmp_path / "t" / "model.tflite", Settings(runs=1, warmup=0))  # output CRC checked
    assert any("matches the TFLM host interpreter" in n for n in res.notes)


_KERAS3_BUILD = """
import sys
sys.path.insert(0, sys.argv[2])
import keras
from multi_output_model import build_three_output
build_three_output(keras)[0].save(sys.argv[1])
"""


@pytest.mark.slow
def test_a_keras3_three_output_model_gates_the_chosen_output(tmp_path, run_cli):
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # Keras 3 in the child
    path = tmp_path / "three.keras"
    subprocess.run([sys.executable, "-c", _KERAS3_BUILD, str(path), str(TESTS)], env=env,
                   check=True, timeout=900, capture_output=True)
    d = {"model": path, **write_data(tmp_path)}
    r = run_cli("package", path, "--out", tmp_path / "k3", "--quantize", "int8", "--recipe", d["recipe"],
                "--calibration", d["calib"], "--eval", d["eval_flag"], "--output", "flag")
    assert r.exit_code == 0, r.err
    rep = json.loads((tmp_path / "k3" / "report.json").read_text())
    assert rep["source"]["framework"] == "keras3" and rep["verification"]["output"] == "flag"
    assert rep["verification"]["float_accuracy_pct"] >= 90 and rep["verification"]["drop_pt"] <= 1.0
