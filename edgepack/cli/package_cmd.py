"""``edgepack package``: compress, convert, verify and package a model for a target."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Progress, echo_json, verbosity_options

QUANT_MODES = ["none", "dynamic", "float16", "int8", "int16x8", "auto"]
_path = click.Path(path_type=Path)


class AccuracyLimit(click.ParamType):
    """Points (a non-negative number) or 'none'."""

    name = "PT|none"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) or value == "none":
            return value
        try:
            pt = float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number of points nor 'none'", param, ctx)
        if pt < 0:
            self.fail(f"{value!r}: the limit cannot be negative", param, ctx)
        return pt


@click.command("package")
@click.argument("model", type=_path)
@click.option("--target", "-t", default="android", show_default=True, help="android or tflm.")
@click.option("--out", "-o", type=_path, required=True, help="Output folder (built aside, renamed at the end).")
@click.option("--quantize", type=click.Choice(QUANT_MODES), help="Quantization mode (overrides the recipe); auto: int8 when it meets the "
              "accuracy limit, else the cheapest per-op int8/int16x8/float plan that does.")
@click.option("--io", "io_type", type=click.Choice(["float", "int8", "uint8", "int16"]),
              help="Input/output dtype for full-integer modes (default float).")
@click.option("--recipe", type=_path, help="Recipe YAML: steps, quantize, data, verify.")
@click.option("--calibration", type=_path, help="Calibration samples: .npz (x), .npy or image folder. A model with "
              "several inputs: an .npz with one array per input, named after the input or x0, x1, ... in input order.")
@click.option("--eval", "eval_data", type=_path, help="Evaluation data: .npz with x (one array per input for several "
              "inputs, as --calibration) and integer labels y for the model's output.")
@click.option("--train", type=_path, help="Training data for fine-tuning steps: .npz with x and y.")
@click.option("--labels", type=_path, help="Class names, one per line (written as labels.txt), for the classification output.")
@click.option("--output", "output_name", metavar="NAME",
              help="A model with several outputs: the classification output (Keras output name) that labels, --eval's y "
                   "and the accuracy gate apply to (recipe data.output). Default: the Keras model's first output (a "
                   ".tflite's or SavedModel's output 0). Every output is packaged and checked for TFLM parity.")
@click.option("--max-accuracy-drop", type=AccuracyLimit(),
              help="Fail (nothing written) if accuracy drops more (points; default 1.0; 'none' turns the gate off).")
@click.option("--device", metavar="PROFILE",
              help="tflm: the device profile to package for (a name from `edgepack devices` or device_profiles/; "
                   "not a device spec as in `edgepack profile --device`).")
@click.option("--array-name", help="tflm: C identifier of the model array.")
@click.option("--patches", type=click.Choice(["auto", "off"]),
              help="tflm: run the first high-resolution stage patch by patch when the arena shrinks (recipe tflm.patches).")
@click.option("--input-kind", type=click.Choice(["image", "audio", "tensor"]),
              help="android: what the input is, for TFLite Metadata (default: image for [1,H,W,1|3] inputs).")
@click.option("--sample-rate", type=click.IntRange(min=1), help="android: audio sample rate in Hz (--input-kind audio).")
@click.option("--compact", is_flag=True,
              help="Shorter flatbuffer: short tensor names, no signature defs/metadata (4-byte aligned weights).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom classes (runs code from the file).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@verbosity_options
def package(model, target, out, quantize, io_type, recipe, calibration, eval_data, train, labels, output_name,
            max_accuracy_drop, device, array_name, patches, input_kind, sample_rate, compact, seed, force, unsafe, as_json, verbose, quiet):
    """Package MODEL (tf_keras .keras/.h5 or SavedModel folder) for a target.

    \b
    Example:
      edgepack package examples/mnist/model.h5 --target android --quantize int8 \\
        --calibration calibration_data/mnist/calib.npz \\
        --eval calibration_data/mnist/eval.npz --out build/android
    """
    from ..pipeline import PackageRequest, package as run

    options = {k: v for k, v in {"device": device, "array_name": array_name, "patches": patches, "input_kind": input_kind,
                                 "sample_rate": sample_rate}.items() if v is not None}
    check_target_flags(target, options)
    with Progress(quiet, verbose) as prog:
        report = run(PackageRequest(
            model=model, out=out, target=target, recipe_path=recipe, quantize=quantize, io=io_type,
            calibration=calibration, eval=eval_data, train=train, labels=labels,
            max_accuracy_drop=max_accuracy_drop, output=output_name, seed=seed, compact=compact, force=force, unsafe=unsafe,
            target_options=options, progress=prog.update, log=prog.log))
    if as_json:
        echo_json(report)
        return
    from ..report.schema import PackageReport

    rep = PackageReport.of(report)
    t, v = rep.tflite, rep.verification
    click.echo(f"wrote {out}/ ({', '.join(rep.files)})")
    click.echo(f"model.tflite: {t.size_bytes:,} bytes, {rep.quantize['mode']}, ops: {', '.join(t.ops)}")
    auto = rep.quantize.get("auto")
    if auto:
        wide = ", ".join(f"{w['layer']} {w['precision']}" for w in auto["kept_wide"]) or "none"
        click.echo(f"quantize auto: {auto['chosen']} (ops kept wide: {wide})")
    on = f" (output {v.model_extra['output']})" if v is not None and "output" in v.model_extra else ""
    if v is not None and v.metric == "accuracy":
        click.echo(f"accuracy{on}: float {v.float_accuracy_pct:.2f}%, packaged {v.tflite_accuracy_pct:.2f}% "
                   f"(drop {v.drop_pt:.2f} pt on {v.samples} samples)")
    elif v is not None and "top1_agreement_pct" in v.model_extra:  # absent for a .tflite input (no float model)
        x = v.model_extra
        click.echo(f"agreement with float{on}: {x['top1_agreement_pct']:.2f}% top-1, max |err| {x['max_abs_error']:.4g}")


# target option -> (the flag that sets it, what it is)
FLAGS = {"device": ("--device", "the device profile to package for"),
         "array_name": ("--array-name", "the C identifier of the model array"),
         "patches": ("--patches", "patch-based inference of the first stage"),
         "input_kind": ("--input-kind", "the input kind for TFLite Metadata"),
         "sample_rate": ("--sample-rate", "the audio sample rate for TFLite Metadata")}


def check_target_flags(target: str, options: dict) -> None:
    """Refuse a flag the target does not take, naming the flag and the target(s) it is for.

    Example: ``check_target_flags("android", {"device": "nucleo-l4r5zi"})`` raises UsageError
    "--device (the device profile to package for) is for --target tflm; target 'android' does not take it".
    """
    from ..errors import UsageError
    from ..targets import TARGETS, target_class

    taken = target_class(target).option_names
    for opt in sorted(set(options) - set(taken)):
        flag, what = FLAGS.get(opt, (f"--{opt.replace('_', '-')}", "an option"))
        takers = " or ".join(f"--target {n}" for n in sorted(TARGETS) if opt in target_class(n).option_names)
        raise UsageError(f"{flag} ({what}) is for {takers or 'no target'}; target '{target}' does not take it")
