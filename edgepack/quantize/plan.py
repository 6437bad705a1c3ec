"""Per-op precision plans applied with ai-edge-quantizer (AEQ), and the ops a plan can address.

A plan is {op output tensor name: "int8" | "int16x8" | "float"}; the user's recipe rules
(:class:`edgepack.quantize.config.QuantRule`) come after it and win. AEQ matches its rules
against an op's output tensor names joined and ended by ";".

Example::

    pq = PlanQuantizer(float_tflite, calibration)
    mixed = pq.quantize({"model/fc1/MatMul;model/fc1/Relu": "int16x8"})
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from typing import Sequence

import numpy as np

from ..convert.flatbuffer import inline_buffers, read_tflite
from ..errors import ConversionError, RecipeError
from ..samples import Inputs
from .config import QuantRule

_ACT = {"int8": {"num_bits": 8, "symmetric": False}, "int16x8": {"num_bits": 16, "symmetric": True}}


def _op_config(precision: str, per_channel: bool) -> dict:
    return {"activation_tensor_config": {**_ACT[precision], "granularity": "TENSORWISE", "dtype": "INT"},
            "weight_tensor_config": {"num_bits": 8, "symmetric": True, "dtype": "INT",
                                     "granularity": "CHANNELWISE" if per_channel else "TENSORWISE"},
            "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
            "min_weight_elements": 0}


def plan_recipe(plan: dict[str, str], default: str = "int8", per_channel: bool = True,
                rules: Sequence[QuantRule] = (), io: str = "float") -> list[dict]:
    """An ai-edge-quantizer recipe (list of rules, later rules win) for a per-op plan, then the
    user's rules (which win over the plan). ``io`` "float" keeps the model's inputs and outputs
    float (AEQ's INPUT/OUTPUT pseudo-ops left unquantized: QUANTIZE/DEQUANTIZE at the ends,
    like the TFLite converter's float I/O); otherwise they take the default precision's type.

    Example::

        plan_recipe({"model/fc1/MatMul": "int16x8", "StatefulPartitionedCall:0": "float"})
    """
    def rule(regex: str, precision: str, op: str = "*") -> dict:
        if precision == "float":
            return {"regex": regex, "operation": op, "algorithm_key": "no_quantize"}
        return {"regex": regex, "operation": op, "algorithm_key": "min_max_uniform_quantize",
                "op_config": _op_config(precision, per_channel)}

    out = [rule(".*", default)]
    # ai-edge-quantizer matches rules against the op's output names joined and ended by ";"
    out += [rule("^" + re.escape(name) + ";", p) for name, p in sorted(plan.items()) if p != default]
    out += [rule(r.match or ".*", r.precision, r.op or "*") for r in rules]
    if io == "float":
        out += [rule(".*", "float", "INPUT"), rule(".*", "float", "OUTPUT")]
    return out


@contextlib.contextmanager
def _quiet():
    """ai-edge-quantizer prints sizes and progress bars; the library never prints."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _signature_samples(calibration, names: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """Calibration samples keyed by the signature's input names (a several-input model's by its input names)."""
    if not isinstance(calibration, Inputs):
        if len(names) != 1:
            raise ConversionError(f"the model's signature has {len(names)} inputs but the calibration data one; "
                                  "give one array per input")
        return [{names[0]: calibration[i : i + 1].astype(np.float32)} for i in range(len(calibration))]
    if sorted(names) != sorted(calibration.names):
        raise ConversionError(f"per-op quantization feeds inputs by name: the converted signature takes "
                              f"{', '.join(sorted(names))}, the data has {', '.join(calibration.names)}; "
                              "use quantize mode int8")
    return [{n: a[i : i + 1].astype(np.float32) for n, a in zip(calibration.names, calibration.arrays)}
            for i in range(len(calibration))]


class PlanQuantizer:
    """Calibrates a float .tflite once, then quantizes it with any per-op plan.

    Example::

        pq = PlanQuantizer(float_tflite, calibration)
        int8 = pq.quantize({})
        mixed = pq.quantize({"model/fc1/MatMul;model/fc1/Relu": "int16x8"})
    """

    def __init__(self, float_tflite: bytes, calibration: np.ndarray, per_channel: bool = True,
                 rules: Sequence[QuantRule] = (), io: str = "float"):
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer

        self.float_tflite, self.per_channel, self.rules = bytes(float_tflite), per_channel, tuple(rules)
        self.io = io
        sigs = Interpreter(model_content=self.float_tflite).get_signature_list()
        if len(sigs) != 1:
            raise ConversionError(f"mixed precision needs a model with one signature, found {len(sigs)}")
        self.signature, spec = next(iter(sigs.items()))
        samples = _signature_samples(calibration, spec["inputs"])
        qt = quantizer.Quantizer(self.float_tflite, plan_recipe({}, per_channel=per_channel))
        with _quiet():
            self.qsv = qt.calibrate({self.signature: samples})

    def quantize(self, plan: dict[str, str], default: str = "int8") -> bytes:
        from ai_edge_quantizer import quantizer

        qt = quantizer.Quantizer(self.float_tflite, plan_recipe(plan, default, self.per_channel, self.rules, self.io))
        try:
            with _quiet():
                data = bytes(qt.quantize(copy.deepcopy(self.qsv)).quantized_model)
        except (ValueError, RuntimeError, KeyError) as e:
            raise ConversionError(f"ai-edge-quantizer could not apply the precision plan ({str(e).splitlines()[0]})") from e
        return inline_buffers(data)  # big models come with their weights after the flatbuffer


def quantize_plan(float_tflite: bytes, plan: dict[str, str], calibration: np.ndarray, per_channel: bool = True,
                  rules: Sequence[QuantRule] = (), default: str = "int8", io: str = "float") -> bytes:
    """Quantize a float .tflite with a per-op precision plan and the user's rules."""
    check_rules_match(float_tflite, rules)
    return PlanQuantizer(float_tflite, calibration, per_channel, rules, io).quantize(plan, default)


def op_units(float_tflite: bytes, layer_names: list[str]) -> list[dict]:
    """The ops a plan can address: output tensor name, op type and the Keras layer it comes from."""

    info = read_tflite(float_tflite)
    units = []
    for op in info.ops:
        if not op.outputs or op.op in ("QUANTIZE", "DEQUANTIZE"):
            continue
        # Weights name the layer best (a fused conv+bn+relu output is named after all three).
        names = [info.tensors[i].name for i in op.inputs if i >= 0 and info.tensors[i].is_constant]
        names.append(info.tensors[op.outputs[0]].name)
        layer = next((p for n in names for part in n.split(";") for p in part.split("/") if p in layer_names), None)
        units.append({"node": info.tensors[op.outputs[0]].name, "op": op.op, "layer": layer or f"op{op.index}"})
    return units




def check_rules_match(float_tflite: bytes, rules: Sequence[QuantRule]) -> None:
    """Every rule must select at least one op: a rule that matches nothing is a mistake, not a no-op."""
    if not rules:
        return
    info = read_tflite(float_tflite)
    ops = [(op.op, ";".join(info.tensors[i].name for i in op.outputs if i >= 0) + ";") for op in info.ops]
    for i, r in enumerate(rules):
        if not any((r.op in (None, "*", kind)) and (r.match is None or re.search(r.match, names))
                   for kind, names in ops):
            raise RecipeError(f"quantize.rules[{i}] ({r.model_dump(exclude_none=True)}) matches no op of the model; "
                              "see the op output names with 'edgepack inspect MODEL.tflite --tensors'")
