"""TFLite-Micro's op table and the ``MicroMutableOpResolver`` a model needs.

The tables follow tensorflow/lite/micro/micro_mutable_op_resolver.h (tflite-micro,
2025-2026): each builtin the resolver can register and the ``Add*`` method that
does it; custom ops TFLM ships are keyed by their custom code. Whether a model's ops
are all supported is a check: :func:`edgepack.verify.ops.check_tflm_ops`.

Example::

    info = read_tflite(data)
    add_method(info.ops[0])                       # 'AddConv2D' (None: TFLM lacks the op)
    text = model_ops_header(info, "g_model")      # model_ops.h
"""

from __future__ import annotations

from ..convert.flatbuffer import OpInfo, TfliteInfo

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


def add_method(op: OpInfo) -> str | None:
    """The MicroMutableOpResolver method that registers ``op``, or None if TFLM lacks it."""
    if op.custom_code is not None:
        return TFLM_CUSTOM.get(op.custom_code)
    return TFLM_BUILTINS.get(op.op)


def registrations(info: TfliteInfo) -> list[str]:
    """The sorted, distinct ``Add*`` calls for the model's ops (those TFLM has)."""
    return sorted({m for m in (add_method(op) for op in info.ops) if m is not None})


# The TFLM sources of the DECODE op (weights kept compressed in flash: edgepack.tflm.compress);
# no build flag, only these in the TFLM library (in tflite-micro trees since 2025).
DECODE_SOURCES = ("decode.cc", "decode_state.cc", "decode_state_lut.cc", "decode_state_prune.cc",
                  "decode_state_huffman.cc")
DECODE_NOTE = ("The model keeps weights compressed in flash: TFLM_DECODE (AddDecode) needs a TFLM library built with\n"
               " * tensorflow/lite/micro/kernels/" + ", ".join(DECODE_SOURCES) + "\n"
               " * (or package with the recipe's tflm: {compress: {encoding: off}}).")


def uses_decode(info: TfliteInfo) -> bool:
    """Whether the model has TFLM's DECODE op (weights decoded on the device)."""
    return any(op.custom_code == "TFLM_DECODE" for op in info.ops)


def model_ops_header(info: TfliteInfo, ident: str) -> str:
    """``model_ops.h``: a MicroMutableOpResolver sized to and registering exactly the model's ops."""
    calls = registrations(info)
    counts = info.op_counts()
    used = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
    ns = f"{ident}_ops"
    decode = f"\n * {DECODE_NOTE}" if uses_decode(info) else ""
    guard = f"EDGEPACK_{ident.upper()}_MODEL_OPS_H_"
    body = "\n".join(f"  if ((status = resolver.{c}()) != kTfLiteOk) return status;" for c in calls)
    return f"""/* Generated by edgepack; do not edit.
 * Ops used by {ident}: {used}{decode}
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
