"""The package job: load -> passes in recipe order -> convert -> verify -> target -> report.

Example::

    from edgepack.pipeline import PackageRequest, package
    report = package(PackageRequest(model=Path("examples/mnist/model.h5"), out=Path("build/android"),
                                    calibration=Path("calibration_data/mnist/calib.npz")))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from . import __version__
from .data import check_labels
from .errors import DataError, RecipeError, UsageError
from .fsutil import check_out_dir, read_text, sha256_bytes, staged_dir
from .passes.base import Context, Labeled
from .recipe import Recipe


@dataclass
class PackageRequest:
    """One package job. ``model``: a path (.keras/.h5/SavedModel folder/.tflite) or a live tf_keras or
    Keras 3 model; ``calibration``/``eval``/``train``: a path, a numpy array of samples or an (x, y) pair."""

    model: Any
    out: Path
    target: str = "android"
    recipe: Optional[Recipe] = None
    recipe_path: Optional[Path] = None
    quantize: Optional[str] = None  # overrides recipe.quantize.mode
    io: Optional[str] = None  # overrides recipe.quantize.io
    calibration: Optional[Path] = None
    eval: Optional[Path] = None
    train: Optional[Path] = None
    labels: Optional[Path] = None
    max_accuracy_drop: Optional[float | str] = None  # points, or "none" (no gate); None: the recipe's
    output: Optional[str] = None  # the classification output by model output name (overrides recipe data.output)
    seed: int = 0
    compact: bool = False  # short tensor names, no signature defs/metadata (edgepack.convert.compact)
    force: bool = False
    unsafe: bool = False
    target_options: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str, int, int], None] = lambda label, done, total: None
    log: Callable[[str], None] = lambda msg: None


def resolve_recipe(req: PackageRequest) -> Recipe:
    """The recipe file (or defaults) with command-line overrides applied and re-validated."""
    if req.recipe is not None:
        recipe = req.recipe
    elif req.recipe_path is not None:
        recipe = Recipe.from_yaml(req.recipe_path)
    else:
        recipe = Recipe()
    raw = recipe.model_dump(mode="json")
    raw["steps"] = [{"type": s.type, **s.params()} for s in recipe.steps]
    if req.quantize is not None:
        raw["quantize"]["mode"] = req.quantize
        if req.quantize not in ("int8", "int16x8", "auto"):
            raw["quantize"]["io"] = "float"
    if req.io is not None:
        raw["quantize"]["io"] = req.io
    if req.max_accuracy_drop is not None:
        raw["verify"]["max_accuracy_drop"] = req.max_accuracy_drop
    if req.output is not None:
        raw["data"]["output"] = req.output
    return Recipe.from_dict(raw, str(req.recipe_path or "options"))


def _labelled(data: Any, recipe: Recipe, inputs, limit: Optional[int], what: str) -> Optional[Labeled]:
    """Preprocessed model input (and labels) from a path, an array or an (x, y) pair; ``inputs``:
    the model's (name, shape) pairs."""
    from .data import model_inputs
    from .inputs import dataset

    shape = inputs[0][1]
    ds = dataset(data, limit, tuple(shape) if len(shape) == 3 else None, what, [n for n, _ in inputs])
    if ds is None:
        return None
    return Labeled(x=model_inputs(ds, recipe.data, inputs), y=ds.y)


def _read_labels(path: Optional[Path], n_out: int) -> Optional[list[str]]:
    if path is None:
        return None
    if not Path(path).is_file():
        raise DataError(f"{path}: no such labels file; give a text file with one class name per line")
    labels = [ln.strip() for ln in read_text(path, "labels file").splitlines() if ln.strip()]
    if len(labels) != n_out:
        raise DataError(f"{path}: {len(labels)} labels but the model has {n_out} outputs; give one per output")
    return labels


def _check_needs(passes, recipe: Recipe, ctx: Context, converts: bool = True) -> None:
    for p in passes:
        for what in sorted(p.needs):
            p.require(ctx, what)
    if converts and recipe.quantize.needs_calibration and ctx.calibration is None:
        raise RecipeError(f"quantization mode '{recipe.quantize.mode}' needs calibration data; "
                          "pass --calibration DATA (.npz with x, .npy or an image folder)")


def _provenance(req: PackageRequest, recipe: Recipe, tflite: bytes, src=None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"edgepack": __version__}
    for pkg in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "absent"
    from .inputs import fingerprint

    inputs = {"model": fingerprint(req.model, src)}
    for name in ("calibration", "eval", "train", "labels"):
        p = getattr(req, name)
        if p is not None:
            inputs[name] = fingerprint(p)
    return {"recipe": recipe.model_dump(mode="json") | {"steps": [{"type": s.type, **s.params()} for s in recipe.steps]},
            "seed": req.seed, "inputs": inputs, "outputs": {"model.tflite": sha256_bytes(tflite)},
            "versions": versions}


def _step_record(model, ctx: Context, name: str, measure: bool) -> dict:
    """Params, MACs and accuracy after a step; with ``measure`` also float .tflite size,
    entropy-coded size and host LiteRT latency (a measurement: varies run to run)."""
    from .keras_stats import model_summary

    s = model_summary(model)
    rec: dict[str, Any] = {"step": name, "params": s["params"], "macs": s["macs"]}
    if ctx.eval is not None and ctx.eval.y is not None:
        from .passes.training import evaluate_accuracy

        rec["keras_accuracy_pct"] = round(evaluate_accuracy(model, ctx.eval), 4)
    if measure:
        from .convert.tflite import convert
        from .epk import encode
        from .errors import ConversionError
        from .recipe import QuantizeConfig
        from .runtime import LiteRT

        try:
            data = convert(model, QuantizeConfig(mode="none"))
        except ConversionError as e:
            rec["metrics_skipped"] = str(e)
            return rec
        rec.update(float_tflite_bytes=len(data), entropy_coded_bytes=len(encode(data)),
                   host_latency_us=round(LiteRT(data).median_latency_us(), 1))
    return rec


def compress(model, steps, ctx: Context, quant, measure: bool = False) -> tuple[Any, Optional[dict]]:
    """Apply the recipe's steps in order, one report record per step (none without steps).

    Compress steps change a copy of the model; a quantize step (mixed_precision) returns the
    per-op precision plan the converter applies. Returns (model, plan or None).
    """
    if not steps:
        return model, None
    from .keras_compat import keras

    ctx.records.append(_step_record(model, ctx, "input", measure))
    copy = keras().models.clone_model(model)  # passes work on a copy: the float model stays the reference
    copy.set_weights(model.get_weights())
    model, plan = copy, None
    for p in steps:
        ctx.records.append({})
        ctx.log(f"step {p.name}")
        if p.stage == "quantize":
            plan = p.plan(model, ctx, quant)
        else:
            model = p.apply(model, ctx)
        ctx.records[-1] = {**_step_record(model, ctx, p.name, measure), **ctx.records[-1]}
    return model, plan


def _convert(src, model, quant, target, ctx: Context, plan: Optional[dict],
             compact: bool) -> tuple[bytes, bytes]:
    """The quantize/convert stage: (TFLite bytes, the converter's bytes before --compact).

    A .tflite source is packaged as given; a SavedModel converts from its serving signature."""
    if src.given_tflite is not None:
        tflite = bytes(src.given_tflite)
    else:
        from .quantize.apply import quantize_model

        tflite = quantize_model(src.convertible(model), quant, ctx.calibration,
                                plan=plan, dense_per_channel=target.dense_per_channel)
        if target.tflm:
            from .tflm.prepare import select_v2

            tflite = select_v2(tflite)  # SELECT (tf.where on one shape) as the SELECT_V2 TFLM has
    converted = tflite
    if compact:
        from .convert.compact import compact as compact_model

        tflite = compact_model(tflite)
    return tflite, converted


def _verify_accuracy(tflite: bytes, verify_set: Labeled, float_pred, data: str, recipe: Recipe,
                     steps: list[dict], target: str = "android", output: int = 0) -> dict:
    """The verification section; ``output``: the classification output's tensor index."""
    from .errors import LiteRTLoadError
    from .verify.accuracy import compare, gate, tflite_accuracy, tflm_accuracy

    if float_pred is None:  # a .tflite input: nothing to compare with, only its own accuracy
        ver = {"samples": len(verify_set.x), "data": data, "metric": "accuracy_only",
               "gate": {"applied": False, "reason": "no float model to compare with: the input is a .tflite"}}
        if verify_set.y is not None:
            try:
                ver["tflite_accuracy_pct"] = round(tflite_accuracy(tflite, verify_set.x, verify_set.y, output), 4)
                ver["runtime"] = "litert"
            except LiteRTLoadError as e:
                if target != "tflm":
                    from .verify.parity import for_android

                    raise for_android(e) from None
                ver["tflite_accuracy_pct"] = round(tflm_accuracy(tflite, verify_set.x, verify_set.y, output), 4)
                ver["runtime"] = "tflm (LiteRT cannot load this model)"
        return ver
    ver = compare(None, tflite, verify_set.x, verify_set.y, float_pred=float_pred, output=output)
    ver["data"] = data
    ver["gate"] = gate(ver, recipe.verify.limit(), steps)
    return ver


def _convert_verified(src, model, recipe: Recipe, target, ctx: Context, plan: Optional[dict], compact: bool,
                      verify_set: Optional[Labeled], float_pred, choice) -> tuple[bytes, bytes, Optional[dict],
                                                                                  Optional[dict], Optional[dict]]:
    """Convert and gate: (tflite, converter bytes, verification, plan, quantize.auto section).

    ``quantize: {mode: auto}``: plain int8 first; when the gate refuses it, the cheapest per-op plan
    within the limit (edgepack.quantize.auto), converted and gated again."""
    from .errors import VerificationError

    quant = recipe.quantize.resolved()
    tflite, converted = _convert(src, model, quant, target, ctx, plan, compact)
    if verify_set is None:
        return tflite, converted, None, plan, None
    data = "eval" if ctx.eval is not None else "calibration"
    auto = recipe.quantize.mode == "auto" and not plan and src.compressible
    from .outputs import output_names

    out = choice.position(output_names(converted))  # by name in the converter's bytes (before --compact)
    try:
        ver = _verify_accuracy(tflite, verify_set, float_pred, data, recipe, ctx.records, target.name, out)
    except VerificationError as e:
        if not auto:
            raise
        from .quantize.auto import wider_plan

        plan, section = wider_plan(model, ctx, quant, recipe.verify.limit(), str(e))
        tflite, converted = _convert(src, model, quant, target, ctx, plan, compact)
        ver = _verify_accuracy(tflite, verify_set, float_pred, data, recipe, ctx.records, output=out)
        return tflite, converted, ver, plan, section
    if auto:
        from .quantize.auto import int8_section

        return tflite, converted, ver, plan, int8_section(ver.get("drop_pt"))
    return tflite, converted, ver, plan, None


def _layers(src, model, converted: bytes, recipe: Recipe, target, ctx: Context,
            plan: Optional[dict]) -> tuple[list[dict], Optional[str]]:
    """The per-layer table (names from the converter's own tensors, before --compact) and,
    when it has no error figures, why."""
    from .convert.flatbuffer import read_tflite
    from .quantize.debug import layer_errors
    from .verify.layers import layer_table

    errors, why = None, None
    if plan:
        why = "per-op error figures are not measured for a mixed-precision plan"
    elif src.given_tflite is not None:
        why = "per-op error figures need the float model: the input is a .tflite"
    else:
        errors, why = layer_errors(src.convertible(model), recipe.quantize,
                                   ctx.calibration, target.dense_per_channel)
    return layer_table(read_tflite(converted), errors), why


def _warnings(report: dict, ctx: Context, log) -> None:
    warnings = list(ctx.warnings)
    caveat = report.get("verification", {}).get("agreement_caveat")
    if caveat:
        warnings.append(f"top-1 agreement on the {report['verification']['data']} samples cannot mean anything "
                        f"({caveat}); the gate used the relative output error instead: pass --eval with labels")
    if warnings:
        report["warnings"] = warnings
        for w in warnings[len(ctx.warnings):]:
            log(f"warning: {w}")


def _tflite_section(tflite: bytes, converted: bytes, compact: bool, info) -> dict:
    return {"size_bytes": len(tflite), "converter_bytes": len(converted), "compacted": compact,
            "ops": info.op_names(), "params": info.params(), "macs": info.macs(),
            "io": {"inputs": [info.tensors[i].dtype for i in info.inputs],
                   "outputs": [info.tensors[i].dtype for i in info.outputs]}}


def package(req: PackageRequest) -> dict:
    """Run the whole job; return the report (also written as report.json/.md/.html in ``req.out``)."""
    from .build import Build
    from .convert.flatbuffer import read_tflite
    from .epk import encode
    from .inputs import check_steps, float_reference, is_path, model_inputs, output_choice, output_size, source_name
    from .outputs import check_several, output_names
    from .keras_compat import set_seed
    from .load import load_source
    from .costmodel.estimate import keras_latency_ms
    from .passes.pruning.channels import kernels_multiple, target_kernels
    from .targets import target_class
    from .report import REPORT_FILES, write_report
    from .report.schema import SCHEMA_VERSION, PackageReport
    from .verify import run_checks

    paths = [p for p in (req.model, req.calibration, req.eval, req.train, req.labels, req.recipe_path) if is_path(p)]
    check_out_dir(req.out, req.force, paths)
    recipe = resolve_recipe(req)
    target = target_class(req.target)()
    unknown = set(req.target_options) - set(target.option_names)
    if unknown:
        raise UsageError(f"target '{req.target}' does not take {', '.join(f'{o}=' for o in sorted(unknown))}; its options: {', '.join(f'{o}=' for o in sorted(target.option_names)) or 'none'}")
    spec = target.spec(req.target_options)
    steps = recipe.build_passes(str(req.recipe_path or "recipe"))
    set_seed(req.seed)
    req.progress("load model", 0, 1)
    src = load_source(req.model, unsafe=req.unsafe)
    check_steps(src, steps, req.quantize is not None or req.io is not None or bool(recipe.quantize.rules))
    choice = output_choice(src, recipe.data.output)
    check_several(choice, steps, recipe.quantize.mode)
    model = src.model
    req.progress("load model", 1, 1)
    shape = model_inputs(src)
    calib = _labelled(req.calibration, recipe, shape, recipe.data.calibration_limit, "calibration")
    ctx = Context(seed=req.seed, calibration=None if calib is None else calib.x,
                  train=_labelled(req.train, recipe, shape, None, "train"),
                  eval=_labelled(req.eval, recipe, shape, None, "eval"),
                  progress=req.progress, log=req.log, teacher=model, max_accuracy_drop=recipe.verify.limit(),
                  channel_multiple=kernels_multiple(target_kernels(target.kernels, spec.profile and spec.profile.core)),
                  latency_ms=keras_latency_ms(spec.profile))
    n_out = output_size(src, choice)
    check_labels(n_out, [(req.calibration, calib), (req.train, ctx.train), (req.eval, ctx.eval)])
    _check_needs(steps, recipe, ctx, converts=src.given_tflite is None)
    for p in steps:
        p.preflight(model)
    labels = _read_labels(req.labels, n_out)
    verify_set = ctx.eval or calib
    float_pred = float_reference(src, verify_set.x, choice) if verify_set is not None else None
    compressed, plan = compress(model, steps, ctx, recipe.quantize, measure=recipe.verify.step_metrics)
    if target.tflm:
        from .tflm.prepare import prepare_source

        src, compressed = prepare_source(src, compressed, ctx.warn)  # batch 1, GELU's tanh form: when TFLM lacks an op
    req.progress("convert and verify", 0, 1)
    tflite, converted, verification, plan, auto = _convert_verified(src, compressed, recipe, target, ctx, plan,
                                                                    req.compact, verify_set, float_pred, choice)
    req.progress("convert and verify", 1, 1)
    info = read_tflite(tflite)
    name, stem = source_name(req.model, src)
    quant = recipe.quantize.model_dump() if src.given_tflite is None else {"mode": "as given (.tflite input)"}
    if auto is not None:
        quant["auto"] = auto
    report: dict[str, Any] = {"model": name, "source": src.report(), "target": req.target, "quantize": quant,
                              "steps": ctx.records, "tflite": _tflite_section(tflite, converted, req.compact, info)}
    outputs = output_names(converted)
    if verification is not None:
        report["verification"] = verification
        if choice.several:  # which output the figures and the gate are on
            verification.update(output=choice.chosen, outputs=list(choice.names))
    if recipe.verify.layer_errors:
        report["layers"], why = _layers(src, compressed, converted, recipe, target, ctx, plan)
        if why:
            report["layer_errors_note"] = why
    built = recipe.model_copy(update={"quantize": recipe.quantize.resolved()})  # what the model is: auto -> int8
    build = Build(tflite=tflite, info=info, recipe=built, model_name=stem, float_model=model,
                  calibration=ctx.calibration, labels=labels, report=report, options=dict(req.target_options),
                  outputs=outputs, output=choice.position(outputs))
    build.checks = run_checks(build, spec)
    skipped = (build.checks.get("tflm_parity") or {}).get("skipped")
    if skipped:
        ctx.warn(skipped)
    report["provenance"] = _provenance(req, recipe, tflite, src)
    build.tflite = target.finalize_model(build)  # e.g. TFLite Metadata for Android: outputs unchanged
    report["tflite"]["size_bytes"] = len(build.tflite)
    report["provenance"]["outputs"]["model.tflite"] = sha256_bytes(build.tflite)
    build.download_package = encode(build.tflite)
    report["entropy"] = {"tflite_bytes": len(build.tflite), "package_bytes": len(build.download_package),
                         "ratio": round(len(build.tflite) / len(build.download_package), 2)}
    _warnings(report, ctx, req.log)
    with staged_dir(req.out, force=req.force) as tmp:
        files = target.write(build, tmp)
        (tmp / "recipe.yaml").write_text(recipe.to_yaml())
        report["files"] = sorted(set(files) | {"recipe.yaml", *REPORT_FILES})
        report["schema_version"] = SCHEMA_VERSION
        PackageReport.of(report, "the package report")  # every report written validates
        write_report(tmp, report)
    return report
