"""Op support and resolver generation, checked against the real TFLM build and real converters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgepack.convert.flatbuffer import layer_of, read_tflite
from edgepack.tflm.ops import TFLM_BUILTINS, TFLM_CUSTOM, model_ops_header
from edgepack.verify.ops import check_int8_only, check_tflm_ops, float_ops
from edgepack.errors import UnsupportedOpError
from locations import GOLDEN



def _tflm_registrations() -> set[str]:
    """Kernel registrations compiled into the tflite-micro host interpreter (its symbol names)."""
    import tflite_micro.python.tflite_micro as pkg

    so = next(Path(pkg.__path__[0]).glob("_runtime*.so")).read_bytes()
    return {m.decode() for m in re.findall(rb"Register_([A-Z0-9_]+)Ev", so)}


def test_every_builtin_in_the_table_has_a_tflm_kernel():
    regs = _tflm_registrations()
    assert set(TFLM_BUILTINS) <= regs, sorted(set(TFLM_BUILTINS) - regs)
    # and TFLM's builtin kernels are all in the table (extra registrations are custom/signal ops)
    custom_like = {r for r in regs if r not in TFLM_BUILTINS}
    assert {"CIRCULAR_BUFFER", "DETECTION_POSTPROCESS", "ETHOSU", "WINDOW"} <= custom_like
    assert len(set(TFLM_CUSTOM.values())) == len(TFLM_CUSTOM)
    assert all(m.startswith("Add") for m in [*TFLM_BUILTINS.values(), *TFLM_CUSTOM.values()])


@pytest.mark.parametrize("model, calls", [
    ("kws_ref_model.tflite", ["AddAveragePool2D", "AddConv2D", "AddDepthwiseConv2D", "AddFullyConnected",
                              "AddReshape", "AddSoftmax"]),
    ("pretrainedResnet_quant.tflite", ["AddAdd", "AddAveragePool2D", "AddConv2D", "AddFullyConnected",
                                       "AddReshape", "AddSoftmax"]),
    ("ad01_int8.tflite", ["AddFullyConnected"]),
])
def test_mlperf_models_need_exactly_their_ops(mlperf_dir, model, calls):
    info = read_tflite((mlperf_dir / model).read_bytes())
    got = check_tflm_ops(info)
    assert got == calls
    assert {TFLM_BUILTINS[o] for o in info.op_names()} == set(got)
    header = model_ops_header(info, "g_m")
    assert f"constexpr unsigned int kOpCount = {len(calls)};" in header
    assert re.findall(r"resolver\.(Add\w+)\(\)", header) == calls
    check_int8_only(info, "raspberry-pi-pico")  # all-int8 models pass the int8-only check


def test_golden_model_ops_header():
    info = read_tflite((GOLDEN / "tiny_int8.tflite").read_bytes())
    assert model_ops_header(info, "g_tiny") == (GOLDEN / "model_ops.h").read_text()


@pytest.fixture(scope="module")
def topk_tflite() -> bytes:
    from edgepack.fdcapture import capture_fd2
    from edgepack.keras_compat import keras, tf

    k, t = keras(), tf()
    inp = k.layers.Input((10,), name="x")
    h = k.layers.Dense(8, name="dense")(inp)
    values, _ = t.math.top_k(h, 3)
    model = k.Model(inp, k.layers.Dense(2, name="out")(values))
    with capture_fd2():
        return bytes(t.lite.TFLiteConverter.from_keras_model(model).convert())


def test_unsupported_builtin_names_op_and_layer(topk_tflite):
    info = read_tflite(topk_tflite)
    with pytest.raises(UnsupportedOpError) as e:
        check_tflm_ops(info)
    msg = str(e.value)
    assert "TOPK_V2" in msg and "tf.math.top_k" in msg and "op #1" in msg and "--target android" in msg


def test_tflm_host_interpreter_agrees_the_op_is_missing(topk_tflite):
    from edgepack.tflm import Tflm

    with pytest.raises(UnsupportedOpError, match="TOPK_V2"):
        Tflm(topk_tflite)


def test_flex_custom_op_is_named():
    from edgepack.fdcapture import capture_fd2
    from edgepack.keras_compat import tf

    t = tf()

    @t.function(input_signature=[t.TensorSpec([1, 4, 4], t.float32)])
    def det(x):
        return t.linalg.det(x) * 2.0

    conv = t.lite.TFLiteConverter.from_concrete_functions([det.get_concrete_function()], det)
    conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS, t.lite.OpsSet.SELECT_TF_OPS]
    with capture_fd2():
        data = bytes(conv.convert())
    with pytest.raises(UnsupportedOpError, match="custom op 'FlexMatrixDeterminant' .*Flex op"):
        check_tflm_ops(read_tflite(data))


def test_float_model_is_refused_for_int8_only_devices():
    from tflm_helpers import convert_tiny

    info = read_tflite(convert_tiny(mode="none"))
    assert len(float_ops(info)) == len(info.ops)  # float32 model: every op computes in float
    assert float_ops(read_tflite((GOLDEN / "tiny_int8.tflite").read_bytes())) == []
    with pytest.raises(UnsupportedOpError, match="'raspberry-pi-pico' runs int8 only.*CONV_2D.*layer 'conv'"):
        check_int8_only(info, "raspberry-pi-pico")
    # float I/O around an int8 body: the QUANTIZE at the input computes in float
    info = read_tflite(convert_tiny(mode="int8", io="float"))
    with pytest.raises(UnsupportedOpError, match="QUANTIZE"):
        check_int8_only(info, "raspberry-pi-pico")


def test_layer_of_reads_converter_tensor_names():
    assert layer_of("functional_1/activation/Relu;functional_1/conv2d/BiasAdd") == "activation"
    assert layer_of("model/tf.math.top_k/TopKV2") == "tf.math.top_k"
    assert layer_of("Identity") == "Identity"


def test_float16_weights_are_refused_with_the_layer_named():
    from tflm_helpers import convert_tiny

    info = read_tflite(convert_tiny(mode="float16"))
    with pytest.raises(UnsupportedOpError, match=r"cannot dequantize float16 weights \(DEQUANTIZE at op #\d+ \(layer"):
        check_tflm_ops(info)


def test_int8_exp_is_refused_for_tflm_whose_exp_is_float_only():
    """The converter quantizes EXP to int8; TFLM's exp.cc refuses it at Prepare, so the check names it first."""
    import numpy as np

    from edgepack.keras_compat import tf
    from edgepack.tflm.interpreter import Tflm

    t = tf()
    x = t.keras.Input((8,))
    y = t.keras.layers.Dense(4)(t.keras.layers.Lambda(lambda v: t.math.exp(v * 0.1))(x))
    model = t.keras.Model(x, y)
    conv = t.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [t.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.normal(size=(1, 8)).astype(np.float32)] for _ in range(8))
    data = bytes(conv.convert())
    info = read_tflite(data)
    assert any(op.op == "EXP" and info.tensors[op.inputs[0]].dtype == "int8" for op in info.ops)
    with pytest.raises(UnsupportedOpError, match=r"runs EXP in float32 only, but EXP at op #\d+ .* is int8"):
        check_tflm_ops(info)
    with pytest.raises(Exception):  # TFLM itself refuses it: the check is not stricter than the runtime
        Tflm(data).invoke_raw([np.zeros((1, 8), np.int8)])
