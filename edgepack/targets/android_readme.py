"""README.md of the Android bundle: Kotlin for LiteRT's CompiledModel API (Interpreter as the alternative),
the exact pre/post-processing the model needs, labels.txt, and MediaPipe Tasks when they fit. A model with
several inputs gets the Interpreter API's ``runForMultipleInputsOutputs`` feeding every input, with one
``input<k>`` helper per input (:func:`readme_several_inputs`); one with several outputs describes the
classification output (``build.output``) and gets a section reading every output (:mod:`.android_outputs`).

Every number in the Kotlin (mean, scale, quantization) comes from the recipe and the flatbuffer; the
tests read them back from the rendered text and compare them with manifest.json.

Example::

    text = readme(build, model_bytes)
"""

from __future__ import annotations

import re
from string import Template
from typing import Optional

import numpy as np

from ..convert.flatbuffer import TensorInfo
from ..paths import data_dir
from ..build import Build
from .android_metadata import input_names, preprocess_of
from .android_outputs import classification_name, compiled_note, outputs_section

_DTYPE_BYTES = {"float32": 4, "int8": 1, "uint8": 1, "int16": 2, "float16": 2, "int32": 4}
_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
# Kotlin array type, TensorBuffer write/read call (None: the Kotlin TensorBuffer API has none), ByteBuffer view
_KOTLIN = {"float32": ("FloatArray", "writeFloat", "readFloat", "asFloatBuffer()."),
           "int8": ("ByteArray", "writeInt8", "readInt8", ""), "uint8": ("ByteArray", "writeInt8", "readInt8", ""),
           "int16": ("ShortArray", None, None, "asShortBuffer()."),
           "int32": ("IntArray", "writeInt", "readInt", "asIntBuffer().")}


def _f(v: float) -> str:
    """A Kotlin Float literal."""
    return f"{float(v)!r}f"


def _signed(z: int) -> str:
    return f"+ {z}" if z >= 0 else f"- {-z}"


def class_name(model_name: str) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", model_name) if p]
    name = "".join(p[0].upper() + p[1:] for p in parts) or "Model"
    return name if name[0].isalpha() else "M" + name


def _quantized(t: TensorInfo) -> bool:
    return bool(t.scale) and t.dtype in _RANGE


def helper(build: Build, tin: TensorInfo, tout: TensorInfo, name: str) -> str:
    """The Kotlin object that turns raw values into the input array and the output array into floats."""
    pre = build.recipe.data.preprocess
    means = pre.mean if isinstance(pre.mean, list) else [pre.mean]
    lines = [f"/** {build.model_name}: x = (v - MEAN[channel]) * SCALE"
             + (", then quantized to the input's " + tin.dtype if _quantized(tin) else "")
             + "; outputs as floats. */", f"object {name}Io {{",
             f"    val MEAN = floatArrayOf({', '.join(_f(m) for m in means)})  // one per channel (last axis)",
             f"    const val SCALE = {_f(pre.scale)}"]
    if _quantized(tin):
        lines += [f"    const val IN_SCALE = {_f(tin.scale[0])}", f"    const val IN_ZERO_POINT = {tin.zero_point[0]}"]
    if _quantized(tout):
        lines += [f"    const val OUT_SCALE = {_f(tout.scale[0])}", f"    const val OUT_ZERO_POINT = {tout.zero_point[0]}"]
    arr_in, arr_out = _KOTLIN[tin.dtype][0], _KOTLIN[tout.dtype][0]
    x = "(raw[i] - MEAN[i % MEAN.size]) * SCALE"
    if _quantized(tin):
        lo, hi = _RANGE[tin.dtype]
        conv = ".toShort()" if tin.dtype == "int16" else ".toByte()"
        lines += ["", f"    fun input(raw: FloatArray): {arr_in} = {arr_in}(raw.size) {{ i ->",
                  f"        val x = {x}", f"        (Math.round(x / IN_SCALE) + IN_ZERO_POINT).coerceIn({lo}, {hi}){conv}",
                  "    }"]
    elif tin.dtype == "int32":  # token ids: passed as they are
        lines += ["", "    fun input(raw: FloatArray): IntArray = IntArray(raw.size) { i -> raw[i].toInt() }"]
    else:
        lines += ["", f"    fun input(raw: FloatArray): FloatArray = FloatArray(raw.size) {{ i -> {x} }}"]
    if _quantized(tout):
        q = {"int8": "q[i].toInt()", "uint8": "(q[i].toInt() and 0xFF)", "int16": "q[i].toInt()"}[tout.dtype]
        lines += ["", f"    fun output(q: {arr_out}): FloatArray = FloatArray(q.size) {{ i -> ({q} - OUT_ZERO_POINT) * OUT_SCALE }}"]
    else:
        lines += ["", "    fun output(y: FloatArray): FloatArray = y"]
    return "\n".join(lines + ["}"])


_COMPILED = Template("""```kotlin
import android.content.Context
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel

class ${cls}Runner(context: Context) : AutoCloseable {
    private val model = CompiledModel.create(context.assets, "model.tflite", CompiledModel.Options(Accelerator.CPU))
    private val inputs = model.createInputBuffers()
    private val outputs = model.createOutputBuffers()
$labels_field
    /** raw: $in_elems values in NHWC order; returns $out_elems float scores. */
    fun predict(raw: FloatArray): FloatArray {
        inputs[0].$write(${cls}Io.input(raw))
        model.run(inputs, outputs)
        return ${cls}Io.output(outputs[0].$read())
    }
$top_fn
    override fun close() {
        (inputs + outputs).forEach { it.close() }
        model.close()
    }
}
```""")

_LABELS_FIELD = '    val labels: List<String> = context.assets.open("labels.txt").bufferedReader().readLines()\n'
_TOP_FN = ('\n    /** The best label and its score. */\n    fun classify(raw: FloatArray): Pair<String, Float> {\n'
           '        val scores = predict(raw)\n        val best = scores.indices.maxByOrNull { scores[it] }!!\n'
           '        return labels[best] to scores[best]\n    }\n')


_STATE = """## State: reset before every inference

This model keeps state in $count variable tensors (the recurrent layers' output and cell state), and
the runtime carries it from one run to the next. edgepack packages it for independent inferences and
verified it that way: reset the variable tensors before each one, or the output depends on the previous
input. The Interpreter API below does (`interpreter.resetVariableTensors()`); LiteRT's CompiledModel API
has no reset call, so use the Interpreter API (or create a new CompiledModel per inference).

"""


def state_section(model: bytes) -> str:
    """The README's note on variable tensors (empty for a model without them)."""
    from ..convert.recurrent import variable_tensors

    names = variable_tensors(model)
    if not names:
        return ""
    return Template(_STATE).substitute(count=len(names))


def _compiled_block(build: Build, tin: TensorInfo, tout: TensorInfo, cls: str, stateful: bool = False) -> str:
    if stateful:
        return ("LiteRT 2.3.0's CompiledModel has no call to reset variable tensors, which this model needs "
                "before every inference (see above): use the Interpreter API below for this model.")
    write, read = _KOTLIN[tin.dtype][1], _KOTLIN[tout.dtype][2]
    if write is None or read is None:
        return ("LiteRT 2.3.0's Kotlin TensorBuffer writes and reads float, int32, int8 and boolean only, not "
                "int16: use the Interpreter API below for this model.")
    return _COMPILED.substitute(cls=cls, labels_field=_LABELS_FIELD if build.labels else "", write=write,
                                read=read, in_elems=int(np.prod(tin.shape)), out_elems=int(np.prod(tout.shape)),
                                top_fn=_TOP_FN if build.labels else "")


def _interpreter_io(tin: TensorInfo, tout: TensorInfo, cls: str, stateful: bool = False) -> tuple[str, str]:
    put = f"input.{_KOTLIN[tin.dtype][3]}put({cls}Io.input(raw))"
    if stateful:
        put += "\n    interpreter.resetVariableTensors()  // start from zero state: no state from the last input"
    arr = _KOTLIN[tout.dtype][0]
    get = (f"val out = {arr}({int(np.prod(tout.shape))})\n    output.{_KOTLIN[tout.dtype][3]}get(out)\n"
           f"    return {cls}Io.output(out)")
    return put, get


_MP_IMAGE = Template("""## MediaPipe Tasks: ImageClassifier

MediaPipe's ImageClassifier runs this model as packaged: it takes the normalization and labels from the
model's metadata ($in_dtype input: $feed). edgepack's tests run bundles like this one in MediaPipe's
Python ImageClassifier, the same C++ task graph as on Android. Guide: https://ai.google.dev/edge/mediapipe/solutions/vision/image_classifier/android

```kotlin
// app/build.gradle.kts: implementation("com.google.mediapipe:tasks-vision:latest.release")
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.vision.imageclassifier.ImageClassifier

val classifier = ImageClassifier.createFromOptions(context,
    ImageClassifier.ImageClassifierOptions.builder()
        .setBaseOptions(BaseOptions.builder().setModelAssetPath("model.tflite").build())
        .setMaxResults(3)
        .build())
val top = classifier.classify(BitmapImageBuilder(bitmap).build())
    .classificationResult().classifications()[0].categories()[0]  // top.categoryName(), top.score()
```
""")

_MP_AUDIO = Template("""## MediaPipe Tasks: AudioClassifier

MediaPipe's AudioClassifier runs this model as packaged: the metadata gives the sample rate ($rate Hz) and
labels; it feeds $samples-sample float windows of the waveform. edgepack's tests run bundles like this one
in MediaPipe's Python AudioClassifier, the same C++ task graph as on Android.

```kotlin
// app/build.gradle.kts: implementation("com.google.mediapipe:tasks-audio:latest.release")
import com.google.mediapipe.tasks.audio.audioclassifier.AudioClassifier
import com.google.mediapipe.tasks.components.containers.AudioData
import com.google.mediapipe.tasks.core.BaseOptions

val classifier = AudioClassifier.createFromOptions(context,
    AudioClassifier.AudioClassifierOptions.builder()
        .setBaseOptions(BaseOptions.builder().setModelAssetPath("model.tflite").build())
        .setMaxResults(3)
        .build())
val clip = AudioData.create(AudioData.AudioDataFormat.builder().setNumOfChannels(1)
    .setSampleRate(${rate}f).build(), samples.size)
clip.load(samples)  // FloatArray, -1..1
val top = classifier.classify(clip).classificationResults()[0].classifications()[0].categories()[0]
```
""")


def mediapipe_section(build: Build, support: Optional[dict], tin: TensorInfo) -> str:
    if support is None:
        return ("## MediaPipe Tasks\n\nNo MediaPipe task fits this model: its input is a plain tensor "
                f"{tin.shape} (ImageClassifier takes [1, H, W, 3 or 4] images, AudioClassifier a [1, samples] "
                "waveform it feeds as is; features such as MFCCs are neither).\n")
    if not support["usable"]:
        return (f"## MediaPipe Tasks\n\nMediaPipe's {support['task']} cannot run this model as packaged: "
                f"{support['why_not']}. LiteRT (above) runs it.\n")
    if support["task"] == "ImageClassifier":
        feed = ("MediaPipe feeds raw 0..255 pixels, which this input's quantization maps exactly"
                if tin.dtype == "uint8" else "MediaPipe normalizes 0..255 pixels with the metadata's mean/std")
        return _MP_IMAGE.substitute(in_dtype=tin.dtype, feed=feed)
    return _MP_AUDIO.substitute(rate=support["sample_rate"], samples=int(np.prod(tin.shape)))


def _raw_range(build: Build) -> str:
    if build.calibration is None or len(build.calibration) == 0:
        return ""
    pre = build.recipe.data.preprocess
    if pre.scale <= 0:
        return ""
    raw = np.asarray(build.calibration) / pre.scale + np.asarray(pre.mean, dtype=np.float64)
    return f"; seen there: {float(raw.min()):.4g} to {float(raw.max()):.4g}"


def readme(build: Build, model: bytes, support: Optional[dict]) -> str:
    """README.md text for the bundle; ``model`` is the shipped model.tflite, ``support`` the MediaPipe fit."""
    info = build.info
    if len(info.inputs) > 1:
        return readme_several_inputs(build, model) + outputs_section(build, class_name(build.model_name))
    tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[build.output]]
    pre = build.recipe.data.preprocess
    cls = class_name(build.model_name)
    state = state_section(model)
    put, get = _interpreter_io(tin, tout, cls, stateful=bool(state))
    exact = tin.dtype == "uint8" and _quantized(tin) and abs(tin.scale[0] - pre.scale) <= 1e-6 * pre.scale \
        and tin.zero_point[0] == (pre.mean[0] if isinstance(pre.mean, list) else pre.mean)
    quant_note = ""
    if _quantized(tin):
        quant_note = (f", then quantized: `q = round(x / {tin.scale[0]!r}) {_signed(tin.zero_point[0])}`, "
                      f"clamped to {_RANGE[tin.dtype][0]}..{_RANGE[tin.dtype][1]}")
        if exact:
            quant_note += " (so `q` is exactly the raw pixel `v`)"
    tmpl = Template((data_dir("templates") / "android" / "README.md.tmpl").read_text())
    several = len(info.outputs) > 1
    compiled = compiled_note(build) if several else _compiled_block(build, tin, tout, cls, stateful=bool(state))
    run = (f"interpreter.runForMultipleInputsOutputs(arrayOf<Any>(input.rewind()), mapOf({build.output} to output))"
           if several else "interpreter.run(input.rewind(), output)")
    return tmpl.substitute(
        name=build.model_name, size_bytes=len(model), mode=build.recipe.quantize.mode,
        epk_bytes=len(build.download_package) if build.download_package is not None else "n/a",
        labels_meta=", labels" if build.labels else "",
        labels_note=", `labels.txt` (one class per line, in output order)" if build.labels else "",
        labels_copy=" and `labels.txt`" if build.labels else "",
        in_name=tin.name, in_shape=tin.shape, in_dtype=tin.dtype, raw_range=_raw_range(build),
        mean_text=f"`{pre.mean}`", scale_text=f"`{pre.scale!r}`", quant_note=quant_note,
        out_name=classification_name(build, tout.name), out_shape=tout.shape, out_dtype=tout.dtype,
        out_note=(f" (dequantize: `x = (q {_signed(-tout.zero_point[0])}) * {tout.scale[0]!r}`)"
                  if _quantized(tout) else ""),
        labels_hint="; its name is that line of `labels.txt`" if build.labels else "",
        helper=helper(build, tin, tout, cls),
        compiled_block=compiled, state_section=state, run_call=run,
        in_bytes=int(np.prod(tin.shape)) * _DTYPE_BYTES.get(tin.dtype, 4),
        out_bytes=int(np.prod(tout.shape)) * _DTYPE_BYTES.get(tout.dtype, 4),
        put_input=put, get_output=get, mediapipe=mediapipe_section(build, support, tin)) + outputs_section(build, cls)


# --------------------------------------------------------------------------- several inputs

_SEVERAL = Template("""# $name for Android

Files: `model.tflite` ($size_bytes bytes, $mode, with TFLite Metadata: one tensor entry per input with its
normalization, tensor meaning, value ranges$labels_meta, provenance), `manifest.json` (tensors, quantization,
preprocessing per input, ops, accuracy, provenance)$labels_note, and `model.tflite.epk`, the same model
entropy-coded for over-the-air download ($epk_bytes bytes; restore the exact `model.tflite` with
`edgepack unpack model.tflite.epk model.tflite`).

## Add it to the app

`app/build.gradle.kts`:

```kotlin
dependencies { implementation("com.google.ai.edge.litert:litert:2.3.0") }
android { androidResources { noCompress += "tflite" } }
```

Copy `model.tflite`$labels_copy into `app/src/main/assets/`.

## What the model takes and gives

The model has $count inputs, in this order (the order of the interpreter's input tensors, which
`runForMultipleInputsOutputs` follows):

$inputs
Output `$out_name`: shape $out_shape, $out_dtype$out_note. The largest value is the prediction$labels_hint.

These numbers are in `manifest.json` and in the model's own metadata; the helper below applies them:

```kotlin
$helper
```

$state_section## Run it with the Interpreter API

`org.tensorflow.lite.Interpreter` feeds every input with `runForMultipleInputsOutputs` (inputs in the
order above; `interpreter.getInputIndex(name)` gives a tensor's position by name):

```kotlin
import android.content.Context
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import org.tensorflow.lite.Interpreter

fun loadInterpreter(context: Context): Interpreter {
    val fd = context.assets.openFd("model.tflite")
    val buffer = FileInputStream(fd.fileDescriptor).channel
        .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
    return Interpreter(buffer, Interpreter.Options().apply { setNumThreads(2) })
}

/** $raw_doc */
fun predict(interpreter: Interpreter, $params): FloatArray {
$buffers
    val output = ByteBuffer.allocateDirect($out_bytes).order(ByteOrder.nativeOrder())
$reset    interpreter.runForMultipleInputsOutputs(arrayOf<Any>($args), mapOf($out_index to output))
    output.rewind()
    $get_output
}
```

LiteRT's CompiledModel API also runs this model; its input buffers follow the model's signature, which
lists inputs by name: match them by name, not by the order above.

## MediaPipe Tasks

No MediaPipe task fits this model: MediaPipe's classifiers take one image or one waveform input.
""")


def _input_line(k: int, name: str, t: TensorInfo, pre) -> str:
    q = ""
    if _quantized(t):
        q = (f", then quantized: `q = round(x / {t.scale[0]!r}) {_signed(t.zero_point[0])}`, clamped to "
             f"{_RANGE[t.dtype][0]}..{_RANGE[t.dtype][1]}")
    return (f"{k}. `{name}` (tensor `{t.name}`): shape {t.shape}, {t.dtype}. Each raw value `v` becomes "
            f"`x = (v - mean) * scale` with mean `{pre.mean}`, scale `{pre.scale!r}`{q}.")


def _input_fn(k: int, name: str, t: TensorInfo, pre) -> list[str]:
    means = pre.mean if isinstance(pre.mean, list) else [pre.mean]
    arr = _KOTLIN[t.dtype][0]
    lines = ["", f"    // input {k}: {name}",
             f"    val MEAN_{k} = floatArrayOf({', '.join(_f(m) for m in means)})  // one per channel (last axis)",
             f"    const val SCALE_{k} = {_f(pre.scale)}"]
    x = f"(raw[i] - MEAN_{k}[i % MEAN_{k}.size]) * SCALE_{k}"
    if _quantized(t):
        lo, hi = _RANGE[t.dtype]
        conv = ".toShort()" if t.dtype == "int16" else ".toByte()"
        lines += [f"    const val IN_SCALE_{k} = {_f(t.scale[0])}", f"    const val IN_ZERO_POINT_{k} = {t.zero_point[0]}",
                  f"    fun input{k}(raw: FloatArray): {arr} = {arr}(raw.size) {{ i ->", f"        val x = {x}",
                  f"        (Math.round(x / IN_SCALE_{k}) + IN_ZERO_POINT_{k}).coerceIn({lo}, {hi}){conv}", "    }"]
    else:
        lines += [f"    fun input{k}(raw: FloatArray): FloatArray = FloatArray(raw.size) {{ i -> {x} }}"]
    return lines


def _helper(build: Build, ins: list[TensorInfo], names: list[str], tout: TensorInfo, cls: str) -> str:
    lines = [f"/** {build.model_name}: input k's x = (v - MEAN_k[channel]) * SCALE_k (then quantized for integer "
             "inputs); outputs as floats. */", f"object {cls}Io {{"]
    for k, t in enumerate(ins):
        lines += _input_fn(k, names[k], t, preprocess_of(build, k))
    lines.append("")
    if _quantized(tout):
        q = {"int8": "q[i].toInt()", "uint8": "(q[i].toInt() and 0xFF)", "int16": "q[i].toInt()"}[tout.dtype]
        lines += [f"    const val OUT_SCALE = {_f(tout.scale[0])}", f"    const val OUT_ZERO_POINT = {tout.zero_point[0]}",
                  f"    fun output(q: {_KOTLIN[tout.dtype][0]}): FloatArray = FloatArray(q.size) "
                  "{ i -> (" + q + " - OUT_ZERO_POINT) * OUT_SCALE }"]
    else:
        lines += ["    fun output(y: FloatArray): FloatArray = y"]
    return "\n".join(lines + ["}"])


def _ident(name: str, k: int) -> str:
    s = "".join(c if c.isalnum() else "_" for c in name)
    return s if s and s[0].isalpha() else f"raw{k}"


def readme_several_inputs(build: Build, model: bytes) -> str:
    """README.md text for a bundle whose model has several inputs (see module doc)."""
    info = build.info
    ins = [info.tensors[i] for i in info.inputs]
    tout = info.tensors[info.outputs[build.output]]  # the classification output
    names = input_names(build)
    cls = class_name(build.model_name)
    state = state_section(model)
    params = [_ident(n, k) for k, n in enumerate(names)]
    buffers = [f"    val in{k} = ByteBuffer.allocateDirect({int(np.prod(t.shape)) * _DTYPE_BYTES.get(t.dtype, 4)})"
               f".order(ByteOrder.nativeOrder())\n    in{k}.{_KOTLIN[t.dtype][3]}put({cls}Io.input{k}({params[k]}))"
               for k, t in enumerate(ins)]
    arr = _KOTLIN[tout.dtype][0]
    get = (f"val out = {arr}({int(np.prod(tout.shape))})\n    output.{_KOTLIN[tout.dtype][3]}get(out)\n"
           f"    return {cls}Io.output(out)")
    reset = ("    interpreter.resetVariableTensors()  // start from zero state: no state from the last input\n"
             if state else "")
    return _SEVERAL.substitute(
        name=build.model_name, size_bytes=len(model), mode=build.recipe.quantize.mode,
        epk_bytes=len(build.download_package) if build.download_package is not None else "n/a",
        labels_meta=", labels" if build.labels else "",
        labels_note=", `labels.txt` (one class per line, in output order)" if build.labels else "",
        labels_copy=" and `labels.txt`" if build.labels else "", count=len(ins),
        inputs="\n".join(_input_line(k, names[k], t, preprocess_of(build, k)) for k, t in enumerate(ins)) + "\n",
        out_name=classification_name(build, tout.name), out_shape=tout.shape, out_dtype=tout.dtype,
        out_note=(f" (dequantize: `x = (q {_signed(-tout.zero_point[0])}) * {tout.scale[0]!r}`)"
                  if _quantized(tout) else ""),
        labels_hint="; its name is that line of `labels.txt`" if build.labels else "",
        helper=_helper(build, ins, names, tout, cls), state_section=state,
        raw_doc="; ".join(f"{p}: input {k}'s {int(np.prod(t.shape))} raw values" for k, (p, t) in
                          enumerate(zip(params, ins))) + "; returns the float scores.",
        params=", ".join(f"{p}: FloatArray" for p in params), buffers="\n".join(buffers),
        out_bytes=int(np.prod(tout.shape)) * _DTYPE_BYTES.get(tout.dtype, 4), reset=reset,
        args=", ".join(f"in{k}.rewind()" for k in range(len(ins))), get_output=get, out_index=build.output)
