"""The Android bundle's parts for a model with several outputs: manifest.json's per-output entries and the
README's section reading every output (the Interpreter API's ``runForMultipleInputsOutputs`` with one buffer
per output tensor). A single-output model gets nothing from here: its files stay as they were.

Output tensors are named after the model outputs they stand for (``build.outputs``, matched by signature
name: the converter does not keep the Keras order); ``build.output`` is the classification output, the
one labels.txt and the accuracy gate apply to.

Example::

    entries = output_entries(build)        # [{"model_output": "scores", "classification": True}, ...]
    text = outputs_section(build, "Mnist")  # "" for one output
"""

from __future__ import annotations

import numpy as np

from ..build import Build
from ..convert.flatbuffer import TensorInfo
from ..outputs import build_output_names as output_names

_BYTES = {"float32": 4, "int8": 1, "uint8": 1, "int16": 2, "float16": 2, "int32": 4}
_VIEW = {"float32": ("FloatArray", "asFloatBuffer()."), "int8": ("ByteArray", ""), "uint8": ("ByteArray", ""),
         "int16": ("ShortArray", "asShortBuffer()."), "int32": ("IntArray", "asIntBuffer().")}
_RAW = {"int8": "q[i].toInt()", "uint8": "(q[i].toInt() and 0xFF)", "int16": "q[i].toInt()", "int32": "q[i]"}


def output_entries(build: Build) -> list[dict]:
    """For the manifest of a several-output model: each output tensor's model output name and whether it is
    the classification output (labels.txt, the accuracy gate)."""
    return [{"model_output": name, "classification": k == build.output} for k, name in enumerate(output_names(build))]


def _dequantize(t: TensorInfo) -> str:
    if t.scale and t.dtype in _RAW:
        z = t.zero_point[0]
        return f"x = (q {'- ' + str(z) if z >= 0 else '+ ' + str(-z)}) * {t.scale[0]!r}"
    return "float as is"


def _fn(k: int, t: TensorInfo) -> str:
    arr, view = _VIEW.get(t.dtype, ("FloatArray", "asFloatBuffer()."))
    if t.scale and t.dtype in _RAW:
        z = -int(t.zero_point[0])
        body = f"FloatArray(q.size) {{ i -> ({_RAW[t.dtype]} {'+' if z >= 0 else '-'} {abs(z)}) * {float(t.scale[0])!r}f }}"
    else:
        body = "q"
    return (f"    fun output{k}(b: ByteBuffer): FloatArray {{\n"
            f"        val q = {arr}({int(np.prod(t.shape))}); b.rewind(); b.{view}get(q)\n"
            f"        return {body}\n    }}")


def outputs_section(build: Build, cls: str) -> str:
    """The README's section on every output of a several-output model ('' for one output)."""
    info = build.info
    outs = [info.tensors[i] for i in info.outputs]
    if len(outs) < 2:
        return ""
    names = output_names(build)
    rows = "\n".join(f"{k}. `{names[k]}` (tensor `{t.name}`): shape {t.shape}, {t.dtype}, {_dequantize(t)}"
                     + (" — the classification output (labels.txt, the accuracy gate)" if k == build.output else "")
                     for k, t in enumerate(outs))
    buffers = "\n".join(f"    val out{k} = ByteBuffer.allocateDirect({int(np.prod(t.shape)) * _BYTES.get(t.dtype, 4)})"
                        ".order(ByteOrder.nativeOrder())" for k, t in enumerate(outs))
    fns = "\n".join(_fn(k, t) for k, t in enumerate(outs))
    result = ", ".join(f'"{names[k]}" to {cls}Outputs.output{k}(out{k})' for k in range(len(outs)))
    return f"""## Every output

The model has {len(outs)} outputs, in the order of the interpreter's output tensors (the TFLite converter
orders them by its own rule, not in the Keras order: match them by name, as below):

{rows}

`predictAll` runs one inference and returns every output as floats, by model output name. `inputs` are the
input buffers as `predict` above fills them, in the same order:

```kotlin
object {cls}Outputs {{
{fns}
}}

fun predictAll(interpreter: Interpreter, inputs: Array<Any>): Map<String, FloatArray> {{
{buffers}
    interpreter.runForMultipleInputsOutputs(inputs, mapOf({", ".join(f"{k} to out{k}" for k in range(len(outs)))}))
    return mapOf({result})
}}
```
"""


def classification_name(build: Build, tensor_name: str) -> str:
    """The README's name of the output it describes: the tensor's, and for several outputs the model output's."""
    if len(build.info.outputs) < 2:
        return tensor_name
    return f"{output_names(build)[build.output]}` (tensor `{tensor_name}`, the classification output"


def compiled_note(build: Build) -> str:
    """Instead of the CompiledModel block for a several-output model."""
    return (f"This model has {len(build.info.outputs)} outputs. LiteRT's CompiledModel lists its output buffers in "
            "the model signature's order, which need not be the tensor order below: use the Interpreter API "
            "below, which reads each output by tensor index (`predict` reads the classification output, "
            "`predictAll` every output).")
