"""One trial: an ordinary recipe run through :func:`edgepack.pipeline.package`, on whichever machine runs it.

A trial never reads the driver's files: the driver packs the model and data into bytes
(:func:`pack_inputs`), Ray's object store carries them, and :func:`run_trial` materialises
them in a temporary folder of its own, packages there, measures, deletes the folder and
returns plain values. TensorFlow keeps its default thread pools (as ``edgepack package`` does):
the thread count changes float rounding in fine-tunes, and a trial must give the bytes
``edgepack package --recipe trials/N/recipe.yaml`` gives on the same machine. The accuracy gate is applied here with the same function the
pipeline uses, after the build, so that an over-budget trial still reports its size and
drop (the sampler learns from it); its error message is the one ``edgepack package`` gives.

Example::

    inputs = pack_inputs({"model": Path("model.h5"), "calibration": Path("calib.npz")})
    rec = run_trial(TrialJob(number=0, recipe={"steps": []}, target="android"), inputs)
    rec["status"], rec["metrics"]["size_bytes"]
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

#: Input roles a trial may receive, as PackageRequest fields.
ROLES = ("model", "calibration", "train", "eval", "labels")
#: Metric names by objective (keys of a trial's ``metrics``).
OBJECTIVE_KEYS = {"size": "size_bytes", "download": "download_bytes", "latency": "latency_us",
                  "macs": "macs", "energy": "energy_mj", "ram": "arena_bytes"}


@dataclass
class TrialJob:
    """What a worker needs besides the input bytes; plain values only (it crosses processes)."""

    number: int
    recipe: dict
    target: str = "android"
    target_options: dict = field(default_factory=dict)
    seed: int = 0
    max_accuracy_drop: Optional[float] = 1.0  # None: no gate
    latency_device: Optional[str] = None  # "host" or "estimate:PROFILE"; None: not measured
    latency_runs: int = 30
    fault: Optional[str] = None  # tests only: "raise" | "exit" (a crashing worker) | "hang"


def pack_inputs(paths: dict[str, Optional[Path]]) -> dict[str, dict]:
    """Read each input file (or folder, as an uncompressed tar) into bytes, by role."""
    out = {}
    for role, p in paths.items():
        if p is None:
            continue
        p = Path(p)
        if p.is_dir():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for f in sorted(p.rglob("*")):
                    tar.add(f, arcname=str(f.relative_to(p)), recursive=False)
            out[role] = {"name": p.name, "kind": "dir", "data": buf.getvalue()}
        else:
            out[role] = {"name": p.name, "kind": "file", "data": p.read_bytes()}
    return out


def materialise(inputs: dict[str, dict], folder: Path) -> dict[str, Path]:
    """Write packed inputs under ``folder`` (one sub-folder per role, original names kept)."""
    paths = {}
    for role, blob in inputs.items():
        d = folder / role
        d.mkdir(parents=True)
        target = d / blob["name"]
        if blob["kind"] == "dir":
            target.mkdir()
            with tarfile.open(fileobj=io.BytesIO(blob["data"]), mode="r") as tar:
                tar.extractall(target, filter="data")
        else:
            target.write_bytes(blob["data"])
        paths[role] = target
    return paths


def _metrics(rep) -> dict[str, Any]:
    """The trial's figures from its typed report (edgepack.report.schema.PackageReport)."""
    t, v = rep.tflite, rep.verification
    m: dict[str, Any] = {"size_bytes": t.size_bytes, "download_bytes": rep.entropy.package_bytes,
                         "macs": t.macs, "params": t.params, "drop_pt": v.drop_pt if v else None,
                         "metric": v.metric if v else None}
    if v is not None and v.metric == "accuracy":
        m["float_accuracy_pct"], m["accuracy_pct"] = v.float_accuracy_pct, v.tflite_accuracy_pct
    fw = rep.firmware
    if fw is not None:
        m["flash_bytes"], m["ram_bytes"] = fw.budget.flash.needed, fw.budget.ram.needed
        m["arena_bytes"] = fw.arena_bytes
        m.update(patch_metrics(fw.model_extra.get("patches"), fw.arena_bytes))
    return m


def patch_metrics(p: Optional[dict], arena_bytes: int) -> dict[str, Any]:
    """A tflm trial's patch-based inference: the arena it ships and the one it would without patches
    (both recommended sizes, as ``arena_bytes``), and the tiling kept ("tried, not kept": the trial's report says why).

    Example: ``patch_metrics(rep.firmware.model_extra.get("patches"), 57_616)``
    -> ``{"patches": "6x1 patches of the first 4 ops (+16% MACs)", "arena_unpatched_bytes": 80_352}``."""
    if not p:
        return {"patches": "off"}
    kept = p.get("kept")
    without = p.get("baseline_recommended_arena", arena_bytes) if kept else arena_bytes
    label = f"{p['tiling']} (+{p['extra_macs_pct']:.3g}% MACs)" if kept else "tried, not kept"
    return {"patches": label, "arena_unpatched_bytes": without}


def _measure(folder: Path, job: TrialJob, metrics: dict) -> None:
    from ..devices.registry import profile
    from ..devices.result import Settings

    r = profile(folder, device=job.latency_device, settings=Settings(runs=job.latency_runs, warmup=3,
                                                                      threads=1))
    metrics["latency_us"] = None if r.latency.median_us is None else round(r.latency.median_us, 2)
    metrics["latency_source"] = f"{r.latency.source} ({job.latency_device})"
    if r.energy.per_inference_mj is not None:
        metrics["energy_mj"] = r.energy.per_inference_mj
        metrics["energy_source"] = f"{r.energy.source} ({job.latency_device})"


def _slim(report: dict, rep) -> dict:
    """The trial's report without worker-local paths (they mean nothing on the driver)."""
    prov = rep.provenance
    out = {k: v for k, v in report.items() if k not in ("files", "provenance")}
    out["provenance"] = {"seed": prov.seed, "versions": prov.versions, "outputs": prov.outputs,
                         "inputs_sha256": prov.inputs_sha256()}
    return out


def run_trial(job: TrialJob, inputs: dict[str, dict], node_id: str = "local") -> dict:
    """Run one trial; never raises for a bad trial: the record says ok / infeasible / failed."""
    from ..errors import BudgetError, EdgepackError, UnsupportedOpError, VerificationError

    start = time.monotonic()
    rec: dict[str, Any] = {"number": job.number, "node_id": node_id, "pid": os.getpid()}
    if job.fault == "exit":
        os._exit(3)  # a worker that dies mid-trial (tests)
    if job.fault == "hang":
        time.sleep(3600)  # a trial that never ends (tests: --trial-timeout)
    work = Path(tempfile.mkdtemp(prefix=f"edgepack-trial-{job.number}-"))
    rec["workdir"] = str(work)
    try:
        if job.fault == "raise":
            raise RuntimeError("injected fault")
        rec.update(_build(job, materialise(inputs, work / "in"), work))
    except (VerificationError, BudgetError, UnsupportedOpError) as e:
        rec.update(status="infeasible", error=str(e), error_type=type(e).__name__)
    except EdgepackError as e:
        rec.update(status="failed", error=str(e), error_type=type(e).__name__)
    except Exception as e:  # noqa: BLE001 - a trial that crashes is a failed trial, the search goes on
        rec.update(status="failed", error=f"{type(e).__name__}: {e}", error_type=type(e).__name__,
                   traceback=traceback.format_exc(limit=8))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rec["wall_s"] = round(time.monotonic() - start, 2)
    return rec


def _build(job: TrialJob, paths: dict[str, Path], work: Path) -> dict:
    from ..errors import VerificationError
    from ..pipeline import PackageRequest, package
    from ..recipe import Recipe
    from ..verify.accuracy import gate

    recipe = Recipe.from_dict(job.recipe, f"trial {job.number}")
    out = work / "out"
    report = package(PackageRequest(
        model=paths["model"], out=out, target=job.target, recipe=recipe,
        calibration=paths.get("calibration"), eval=paths.get("eval"), train=paths.get("train"),
        labels=paths.get("labels"), max_accuracy_drop="none", seed=job.seed, target_options=dict(job.target_options)))
    from ..report.schema import PackageReport

    rep = PackageReport.of(report, f"trial {job.number}'s report")
    metrics = _metrics(rep)
    res: dict[str, Any] = {"status": "ok", "metrics": metrics, "report": _slim(report, rep),
                           "tflite_sha256": rep.provenance.outputs["model.tflite"]}
    if rep.verification is not None:
        ver = rep.verification.model_dump(mode="json")
        try:  # the pipeline's own gate, on the figures this build measured
            slim = res["report"]  # what the driver stores: its verification carries the search's gate
            slim["verification"] = {**slim["verification"], "gate": gate(ver, job.max_accuracy_drop, rep.steps)}
        except VerificationError as e:
            res.update(status="infeasible", error=str(e), error_type="VerificationError")
    if job.latency_device:  # infeasible trials too: the sampler learns from their figures
        _measure(out, job, metrics)
    return res
