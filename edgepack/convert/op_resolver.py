"""TFLite ops -> TFLM ``MicroMutableOpResolver`` registrations, and the op checks firmware needs.

The tables follow tensorflow/lite/micro/micro_mutable_op_resolver.h (tflite-micro,
2025-2026): each builtin the resolver can register and the ``Add*`` method that
does it; custom ops TFLM ships are keyed by their custom code.

Example::

    info = read_tflite(data)
    check_tflm_ops(info)                  # UnsupportedOpError naming op, index and layer
    check_int8_only(info, "raspberry-pi-pico")
    text = model_ops_header(info, "g_model")   # model_ops.h
"""

from __future__ import annotations

from .flatbuffer import OpInfo, TfliteInfo
from ..errors import UnsupportedOpError

TFLM_BUILTINS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "ELU": "AddElu", "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill",
    "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish", "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D",
    "MIRROR_PAD": "AddMirrorPad", "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable", "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv",
    "TRANSPOSE": "AddTranspose", "UNPACK": "AddUnpack",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

TFLM_CUSTOM: dict[str, str] = {
    "CIRCULAR_BUFFER": "AddCircularBuffer", "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "ethos-u": "AddEthosU", "TFLM_DECODE": "AddDecode", "SignalDelay": "AddDelay", "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale", "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog", "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction", "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft", "SignalOverlapAdd": "AddOverlapAdd", "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft", "SignalStacker": "AddStacker", "SignalWindow": "AddWindow",
}

# Ops that carry no arithmetic of their own: float tensors through them still mean float work elsewhere.
_FLOAT_TYPES = ("float32", "float16", "float64")


def layer_of(tensor_name: str) -> str:
    """The Keras layer a converter tensor name points at: 'model/conv2d/Relu;...' -> 'conv2d'."""
    first = tensor_name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    if len(parts) >= 2:
        return parts[1]
    return parts[0] if parts else tensor_name


def _where(info: TfliteInfo, op: OpInfo) -> str:
    if not op.outputs or op.outputs[0] < 0:
        return f"op #{op.index}"
    name = info.tensors[op.outputs[0]].name.split(";")[0]
    if "/" in name:
        return f"op #{op.index} (layer '{layer_of(name)}', tensor '{name}')"
    feeds = [info.tensors[i].name for i in op.inputs if i >= 0 and "/" in info.tensors[i].name]
    after = f", right after layer '{layer_of(feeds[0])}'" if feeds else ""
    return f"op #{op.index} (output tensor '{name}'{after})"


def add_method(op: OpInfo) -> str | None:
    """The MicroMutableOpResolver method that registers ``op``, or None if TFLM lacks it."""
    if op.custom_code is not None:
        return TFLM_CUSTOM.get(op.custom_code)
    return TFLM_BUILTINS.get(op.op)


def check_tflm_ops(info: TfliteInfo) -> list[str]:
    """The sorted, distinct ``Add*`` calls the model needs; UnsupportedOpError for the first op TFLM lacks."""
    calls: set[str] = set()
    for op in info.ops:
        m = add_method(op)
        if m is None:
            kind = (f"custom op '{op.custom_code}'" + (" (a TensorFlow Flex op)" if op.custom_code.startswith("Flex")
                                                       else "")) if op.custom_code is not None else f"op {op.op}"
            raise UnsupportedOpError(
                f"TFLite-Micro has no kernel for {kind} at {_where(info, op)}; replace that layer with "
                "TFLM-supported ops (see edgepack.convert.op_resolver.TFLM_BUILTINS) or use --target android")
        _check_dtypes(info, op)
        calls.add(m)
    return sorted(calls)


def _check_dtypes(info: TfliteInfo, op: OpInfo) -> None:
    """Type combinations TFLM's kernels reject at Prepare, named before the interpreter is built."""
    ins = [info.tensors[i].dtype for i in op.inputs if i >= 0]
    if op.op == "DEQUANTIZE" and ins and ins[0] == "float16":
        raise UnsupportedOpError(
            f"TFLite-Micro cannot dequantize float16 weights ({op.op} at {_where(info, op)}); "
            "package with --quantize int8 (or none) for --target tflm")


def float_ops(info: TfliteInfo) -> list[OpInfo]:
    """Ops that read or write a float tensor (they run float arithmetic on the core)."""
    out = []
    for op in info.ops:
        idx = [i for i in op.inputs + op.outputs if i >= 0]
        if any(info.tensors[i].dtype in _FLOAT_TYPES for i in idx):
            out.append(op)
    return out


def check_int8_only(info: TfliteInfo, device: str) -> None:
    """UnsupportedOpError when a model for an int8-only device has float ops (names the first)."""
    bad = float_ops(info)
    if bad:
        op = bad[0]
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise UnsupportedOpError(
            f"device '{device}' runs int8 only, but {op.op} at {_where(info, op)}{more} computes in float; "
            "package with --quantize int8 and integer I/O (recipe quantize: {mode: int8, io: int8})")


def model_ops_header(info: TfliteInfo, ident: str) -> str:
    """``model_ops.h``: a MicroMutableOpResolver sized to and registering exactly the model's ops."""
    calls = check_tflm_ops(info)
    counts = info.op_counts()
    used = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
    ns = f"{ident}_ops"
    guard = f"EDGEPACK_{ident.upper()}_MODEL_OPS_H_"
    body = "\n".join(f"  if ((status = resolver.{c}()) != kTfLiteOk) return status;" for c in calls)
    return f"""/* Generated by edgepack; do not edit.
 * Ops used by {ident}: {used}
 */
#ifndef {guard}
#define {guard}

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace {ns} {{

/* Distinct op registrations the model needs. */
constexpr unsigned int kOpCount = {len(calls)};
using OpResolver = tflite::MicroMutableOpResolver<kOpCount>;

/* Registers exactly the ops the model uses; returns the first failure. */
inline TfLiteStatus RegisterOps(OpResolver& resolver) {{
  TfLiteStatus status = kTfLiteOk;
{body}
  return status;
}}

}}  /* namespace {ns} */

#endif  /* {guard} */
"""
