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
from .data import check_labels, load_dataset
from .errors import DataError, RecipeError, UsageError
from .fsutil import check_out_dir, read_text, sha256_bytes, sha256_path, staged_dir
from .passes.base import Context, Labeled
from .recipe import Recipe


@dataclass
class PackageRequest:
    model: Path
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
        if req.quantize not in ("int8", "int16x8"):
            raw["quantize"]["io"] = "float"
    if req.io is not None:
        raw["quantize"]["io"] = req.io
    if req.max_accuracy_drop is not None:
        raw["verify"]["max_accuracy_drop"] = req.max_accuracy_drop
    return Recipe.from_dict(raw, str(req.recipe_path or "options"))


def _labelled(path: Optional[Path], recipe: Recipe, shape, limit: Optional[int] = None) -> Optional[Labeled]:
    if path is None:
        return None
    ds = load_dataset(path, limit=limit, image_size=tuple(shape) if len(shape) == 3 else None)
    return Labeled(x=ds.model_input(recipe.data.preprocess, shape), y=ds.y)


def _read_labels(path: Optional[Path], n_out: int) -> Optional[list[str]]:
    if path is None:
        return None
    if not Path(path).is_file():
        raise DataError(f"{path}: no such labels file; give a text file with one class name per line")
    labels = [ln.strip() for ln in read_text(path, "labels file").splitlines() if ln.strip()]
    if len(labels) != n_out:
        raise DataError(f"{path}: {len(labels)} labels but the model has {n_out} outputs; give one per output")
    return labels


def _check_needs(passes, recipe: Recipe, ctx: Context) -> None:
    for p in passes:
        for what in sorted(p.needs):
            p.require(ctx, what)
    if recipe.quantize.needs_calibration and ctx.calibration is None:
        raise RecipeError(f"quantization mode '{recipe.quantize.mode}' needs calibration data; "
                          "pass --calibration DATA (.npz with x, .npy or an image folder)")


def _provenance(req: PackageRequest, recipe: Recipe, tflite: bytes) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"edgepack": __version__}
    for pkg in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "absent"
    inputs = {"model": {"path": str(req.model), "sha256": sha256_path(req.model)}}
    for name in ("calibration", "eval", "train", "labels"):
        p = getattr(req, name)
        if p is not None:
            inputs[name] = {"path": str(p), "sha256": sha256_path(p)}
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


def _convert(model, recipe: Recipe, target, ctx: Context, plan: Optional[dict], compact: bool) -> tuple[bytes, bytes]:
    """The quantize/convert stage: (TFLite bytes, the converter's bytes before --compact)."""
    from .quantize.apply import quantize_model

    tflite = quantize_model(model, recipe.quantize, ctx.calibration, plan=plan,
                            dense_per_channel=target.dense_per_channel)
    converted = tflite
    if compact:
        from .convert.compact import compact as compact_model

        tflite = compact_model(tflite)
    return tflite, converted


def _verify_accuracy(float_model, tflite: bytes, verify_set: Labeled, float_pred, data: str, recipe: Recipe,
                     steps: list[dict]) -> dict:
    from .verify.accuracy import compare, gate

    ver = compare(float_model, tflite, verify_set.x, verify_set.y, float_pred=float_pred)
    ver["data"] = data
    ver["gate"] = gate(ver, recipe.verify.limit(), steps)
    return ver


def _layers(model, converted: bytes, recipe: Recipe, target, ctx: Context, plan: Optional[dict]) -> list[dict]:
    """The per-layer table (names from the converter's own tensors, before --compact)."""
    from .convert.flatbuffer import read_tflite
    from .quantize.debug import layer_errors
    from .verify.layers import layer_table

    errors = None if plan else layer_errors(model, recipe.quantize, ctx.calibration, target.dense_per_channel)
    return layer_table(read_tflite(converted), errors)


def package(req: PackageRequest) -> dict:
    """Run the whole job; return the report (also written as report.json/.md in ``req.out``)."""
    from .build import Build
    from .convert.flatbuffer import read_tflite
    from .keras_compat import set_seed
    from .errors import ModelLoadError
    from .load import load_source
    from .package import target_class
    from .report import REPORT_FILES, write_report
    from .verify import run_checks
    from .verify.accuracy import keras_predict

    check_out_dir(req.out, req.force, [req.model, req.calibration, req.eval, req.train, req.labels, req.recipe_path])
    recipe = resolve_recipe(req)
    target = target_class(req.target)()
    unknown = set(req.target_options) - set(target.option_names)
    if unknown:
        raise UsageError(f"target '{req.target}' does not take option(s) {', '.join(sorted(unknown))}")
    spec = target.spec(req.target_options)
    steps = recipe.build_passes(str(req.recipe_path or "recipe"))
    set_seed(req.seed)
    req.progress("load model", 0, 1)
    source = load_source(req.model, unsafe=req.unsafe)
    if not source.compressible:
        raise ModelLoadError(f"{req.model}: {source.reason}; this pipeline packages Keras models only")
    model = source.model
    req.progress("load model", 1, 1)
    shape = [int(d) for d in model.input_shape[1:]]
    calib = _labelled(req.calibration, recipe, shape, recipe.data.calibration_limit)
    ctx = Context(seed=req.seed, calibration=None if calib is None else calib.x,
                  train=_labelled(req.train, recipe, shape), eval=_labelled(req.eval, recipe, shape),
                  progress=req.progress, log=req.log, teacher=model,
                  max_accuracy_drop=recipe.verify.limit())
    check_labels(int(np.prod(model.output_shape[1:])),
                 [(req.calibration, calib), (req.train, ctx.train), (req.eval, ctx.eval)])
    _check_needs(steps, recipe, ctx)
    for p in steps:
        p.preflight(model)
    labels = _read_labels(req.labels, int(np.prod(model.output_shape[1:])))
    float_model = model
    verify_set = ctx.eval or calib
    float_pred = keras_predict(float_model, verify_set.x) if verify_set is not None else None
    compressed, plan = compress(model, steps, ctx, recipe.quantize, measure=recipe.verify.step_metrics)
    req.progress("convert", 0, 1)
    tflite, converted = _convert(compressed, recipe, target, ctx, plan, req.compact)
    req.progress("convert", 1, 1)
    info = read_tflite(tflite)
    report: dict[str, Any] = {"model": req.model.name, "source": source.report(), "target": req.target,
                              "quantize": recipe.quantize.model_dump(), "steps": ctx.records,
                              "tflite": {"size_bytes": len(tflite), "converter_bytes": len(converted),
                                         "compacted": req.compact, "ops": info.op_names(),
                                         "params": info.params(), "macs": info.macs(),
                                         "io": {"inputs": [info.tensors[i].dtype for i in info.inputs],
                                                "outputs": [info.tensors[i].dtype for i in info.outputs]}}}
    if verify_set is not None:
        req.progress("verify", 0, 1)
        report["verification"] = _verify_accuracy(float_model, tflite, verify_set, float_pred,
                                                  "eval" if ctx.eval is not None else "calibration", recipe, ctx.records)
        req.progress("verify", 1, 1)
    if recipe.verify.layer_errors:
        report["layers"] = _layers(compressed, converted, recipe, target, ctx, plan)
    build = Build(tflite=tflite, info=info, recipe=recipe, model_name=req.model.stem, float_model=float_model,
                  calibration=ctx.calibration, labels=labels, report=report, options=dict(req.target_options))
    build.checks = run_checks(build, spec)
    report["provenance"] = _provenance(req, recipe, tflite)
    build.tflite = target.finalize_model(build)  # e.g. TFLite Metadata for Android: outputs unchanged
    report["tflite"]["size_bytes"] = len(build.tflite)
    report["provenance"]["outputs"]["model.tflite"] = sha256_bytes(build.tflite)
    from .epk import encode

    build.download_package = encode(build.tflite)
    report["entropy"] = {"tflite_bytes": len(build.tflite), "package_bytes": len(build.download_package),
                         "ratio": round(len(build.tflite) / len(build.download_package), 2)}
    warnings = list(ctx.warnings)
    caveat = report.get("verification", {}).get("agreement_caveat")
    if caveat:
        warnings.append(f"top-1 agreement on the {report['verification']['data']} samples cannot mean anything "
                        f"({caveat}); the gate used the relative output error instead: pass --eval with labels")
    if warnings:
        report["warnings"] = warnings
        for w in warnings[len(ctx.warnings):]:
            req.log(f"warning: {w}")
    with staged_dir(req.out, force=req.force) as tmp:
        files = target.write(build, tmp)
        (tmp / "recipe.yaml").write_text(recipe.to_yaml())
        report["files"] = sorted(set(files) | {"recipe.yaml", *REPORT_FILES})
        write_report(tmp, report)
    return report
