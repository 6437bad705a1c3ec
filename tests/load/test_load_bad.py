"""Hostile and broken tf_keras files: no module imported, no Lambda built, compile configs ignored.

Each payload touches a sentinel file when it runs; every refusal asserts the sentinel is absent, and a
control shows tf_keras itself would have run it."""

from __future__ import annotations

import json
import uuid
import zipfile

import numpy as np
import pytest

from edgepack.keras_compat import keras
from refusal import assert_refused




def rewrite_zip_config(src, dst, edit):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(members["config.json"])
    members["config.json"] = json.dumps(edit(cfg)).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return dst


@pytest.fixture
def sentinel_module(tmp_path, monkeypatch):
    """(module name, sentinel path): importing the module creates the sentinel."""
    name = f"edgepack_payload_{uuid.uuid4().hex[:8]}"
    flag = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(flag)!r}, 'w').close()\n"
                                         "from tf_keras.layers import Dense\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, flag


def _dense_keras(path):
    k = keras()
    k.Sequential([k.Input((4,)), k.layers.Dense(2, name="d")]).save(path)
    return path


def test_compiled_tf_keras_keras_with_custom_loss_loads(run_cli, tmp_path):
    """The compile config is never deserialised: even a custom loss there does not block packaging."""
    k = keras()
    m = k.Sequential([k.Input((4,)), k.layers.Dense(2)])
    m.compile(loss=k.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=k.optimizers.Adam(),
              metrics=[k.metrics.SparseCategoricalAccuracy()])
    m.save(tmp_path / "c.keras")

    def custom_loss(cfg):
        cfg["compile_config"]["loss"] = {"module": "mypkg.losses", "class_name": "MyLoss", "config": {},
                                         "registered_name": "mypkg>MyLoss"}
        return cfg

    f = rewrite_zip_config(tmp_path / "c.keras", tmp_path / "c2.keras", custom_loss)
    for p in (tmp_path / "c.keras", f):
        r = run_cli("package", p, "--quantize", "dynamic", "--out", tmp_path / f"o_{p.stem}", "-q")
        assert r.exit_code == 0, r.err


def test_module_key_is_never_imported(run_cli, tmp_path, sentinel_module):
    name, flag = sentinel_module
    src = _dense_keras(tmp_path / "m.keras")

    def foreign(cfg):
        cfg["module"] = name  # top level: tf_keras imports it to find the model class
        return cfg

    f = rewrite_zip_config(src, tmp_path / "evil.keras", foreign)
    nested = rewrite_zip_config(src, tmp_path / "evil2.keras",
                                lambda c: {**c, "config": {**c["config"], "layers": [
                                    *c["config"]["layers"][:-1], {**c["config"]["layers"][-1], "module": name}]}})
    assert_refused(run_cli("package", nested, "--quantize", "dynamic", "--out", tmp_path / "o"),
                   out=tmp_path / "o", match=["'d'", name])
    assert_refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"),
                   out=tmp_path / "o", match=["evil.keras", name])
    assert_refused(run_cli("inspect", f), match=[name])
    assert not flag.exists() and not (tmp_path / "o").exists()
    with pytest.raises(Exception):  # control: tf_keras on its own imports the module (then fails to find the class)
        keras().models.load_model(f, compile=False)
    assert flag.exists()


def test_nested_module_in_input_type_spec_refused(run_cli, tmp_path, sentinel_module):
    name, flag = sentinel_module
    src = _dense_keras(tmp_path / "m.keras")

    def nested(cfg):
        cfg["config"]["layers"][0]["config"]["type_spec"] = {
            "class_name": "__typespec__", "spec_name": "TensorSpec", "module": name, "registered_name": None,
            "config": {"shape": [None, 4], "dtype": "float32", "name": None}}
        return cfg

    f = rewrite_zip_config(src, tmp_path / "spec.keras", nested)
    assert_refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"),
                   out=tmp_path / "o", match=["type spec", name])
    assert not flag.exists()


def test_functional_named_lambda_refused(run_cli, tmp_path):
    src = _dense_keras(tmp_path / "m.keras")

    def disguised(cfg):
        cfg["config"]["layers"].append({
            "module": "keras.layers", "class_name": "Functional", "registered_name": "Lambda",
            "config": {"name": "sneaky", "function": {"module": "os", "class_name": "function", "config": "system",
                                                      "registered_name": "system"}, "arguments": {}}})
        return cfg

    f = rewrite_zip_config(src, tmp_path / "fn.keras", disguised)
    assert_refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"),
                   out=tmp_path / "o", match=["sneaky"])


def test_savedmodel_metadata_inside_saved_model_pb_is_scanned(run_cli, tmp_path):
    """tf_keras rebuilds layers from saved_model.pb's user_object.metadata when keras_metadata.pb is absent."""
    from edgepack.keras_compat import tf

    tf()
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    k = keras()
    flag = tmp_path / "lambda_ran"
    inp = k.Input((4,))
    out = k.layers.Dense(2)(k.layers.Lambda(lambda t, p=str(flag): t * float(open(p, "a").close() is None),
                                            name="payload")(inp))
    sm_dir = tmp_path / "sm"
    k.Model(inp, out).save(sm_dir, save_format="tf")
    meta = saved_metadata_pb2.SavedMetadata()
    meta.ParseFromString((sm_dir / "keras_metadata.pb").read_bytes())
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((sm_dir / "saved_model.pb").read_bytes())
    for node in meta.nodes:
        sm.meta_graphs[0].object_graph_def.nodes[node.node_id].user_object.metadata = node.metadata
    (sm_dir / "saved_model.pb").write_bytes(sm.SerializeToString())
    (sm_dir / "keras_metadata.pb").unlink()
    flag.unlink()
    for cmd in (("package", sm_dir, "--quantize", "dynamic", "--out", tmp_path / "o"), ("inspect", sm_dir)):
        assert_refused(run_cli(*cmd), match=["payload", "Lambda", "--unsafe"])
    assert not flag.exists()
    k.models.load_model(sm_dir, compile=False, safe_mode=False)  # control: tf_keras runs the Lambda
    assert flag.exists()


@pytest.mark.parametrize("case", ["truncated", "list", "no_config", "bad_json"])
def test_broken_keras_zip_is_one_line(run_cli, tmp_path, case):
    src = _dense_keras(tmp_path / "m.keras")
    f = tmp_path / f"{case}.keras"
    if case == "truncated":
        f.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    else:
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("metadata.json", '{"keras_version": "2.21.0"}')
            if case == "list":
                z.writestr("config.json", "[1, 2, 3]")
            elif case == "bad_json":
                z.writestr("config.json", '{"class_name": ')
    r = run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o")
    assert_refused(r, out=tmp_path / "o", match=f.name)
    assert not (tmp_path / "o").exists()


def test_dangling_node_reference_refused_instead_of_hanging(run_cli, tmp_path):
    """tf_keras' graph rebuild loops forever on a reference to a node that does not exist."""
    k = keras()
    i = k.Input((4,))
    k.Model(i, k.layers.Dense(2, name="d")(i)).save(tmp_path / "m.keras")

    def dangling(cfg):
        cfg["config"]["layers"][-1]["inbound_nodes"] = [[["d", 0, 0, {}]]]
        return cfg

    f = rewrite_zip_config(tmp_path / "m.keras", tmp_path / "loop.keras", dangling)
    assert_refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"),
                   out=tmp_path / "o", match=["cycle"])


def test_h5_model_config_list_is_one_line(run_cli, tmp_path):
    import h5py

    f = tmp_path / "m.h5"
    k = keras()
    k.Sequential([k.Input((3,)), k.layers.Dense(2)]).save(f)
    with h5py.File(f, "r+") as h:
        h.attrs["model_config"] = json.dumps([1, 2])
    assert_refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"),
                   out=tmp_path / "o", match=["m.h5", "JSON list"])
    np.testing.assert_equal(f.exists(), True)


def test_config_json_bomb_refused_before_inflating(run_cli, tmp_path):
    f = tmp_path / "bomb.keras"
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", '{"keras_version": "2.21.0"}')
        z.writestr("config.json", b" " * (65 << 20))
    assert f.stat().st_size < 1 << 20
    assert_refused(run_cli("package", f, "--quantize", "dynamic", "--out", tmp_path / "o"),
                   out=tmp_path / "o", match=["config.json", "limit"])


def test_fuzzed_tf_keras_files_raise_only_model_load_errors(tmp_path):
    """Truncated and bit-flipped .keras/.h5 files: a ModelLoadError (one line), never another exception."""
    from edgepack.errors import ModelLoadError
    from edgepack.load import load_model

    k = keras()
    m = k.Sequential([k.Input((6,)), k.layers.Dense(4, activation="relu"), k.layers.BatchNormalization(),
                      k.layers.Dense(2)])
    rng = np.random.default_rng(0)
    for suffix in (".keras", ".h5"):
        good = tmp_path / f"good{suffix}"
        m.save(good)
        data = good.read_bytes()
        for i in range(12):
            bad = bytearray(data)
            if i < 4:
                bad = bad[: int(len(bad) * (i + 1) / 5)]
            else:
                for pos in rng.integers(0, len(bad), size=8):
                    bad[pos] ^= 1 << int(rng.integers(0, 8))
            f = tmp_path / f"fuzz{i}{suffix}"
            f.write_bytes(bytes(bad))
            try:
                load_model(f)
            except ModelLoadError as e:
                assert "\n" not in str(e)
