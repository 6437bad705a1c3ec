"""The search driver: Optuna proposes (ask/tell), Ray runs the trials, only the driver writes DIR.

Optuna's multi-objective sampler (TPE by default, NSGA-II on request) minimises
(objective, accuracy drop) with the accuracy budget as a constraint. The sampler is
re-seeded from (seed, trial number) before every ask, so a proposal is a function of the
seed and the results told so far: one worker gives the same trials run after run, and
``--resume`` continues exactly where an uninterrupted search would have gone. Trial 0 is
plain int8 (no steps), the reference every result is compared with. For ``--target tflm`` the
trials may also pick patch-based inference (recipe ``tflm.patches``, space ``patches``): always
for ``--objective ram``, else only when trial 0 is short of the board's RAM (then no other trial
starts before trial 0 ends; :func:`edgepack.search.space.patches_decision`).

Each trial is a Ray task (``max_retries=0``, ``max_calls=1``: a fresh worker process per
trial). A trial that raises, times out (``trial_timeout``, the task is cancelled), is
killed for memory or loses its node is recorded as failed and the search goes on; search.json
is rewritten atomically after every trial, so Ctrl-C leaves a valid one.

Example::

    data = run_search(SearchConfig(model=Path("model.h5"), out=Path("search"), calibration=Path("c.npz"),
                                   train=Path("train.npz"), eval=Path("eval.npz"), trials=8))
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import EdgepackError, UsageError
from ..fsutil import atomic_write_text, sha256_path
from .space import SearchSpace, default_space, patches_decision
from .store import SearchStore
from .trial import OBJECTIVE_KEYS, ROLES, TrialJob, pack_inputs, run_trial

OBJECTIVES = tuple(OBJECTIVE_KEYS)
#: Trial 0 is plain int8 (no steps), the reference; it is recorded but not part of the Optuna study.
BASELINE = 0


@dataclass
class SearchConfig:
    model: Path
    out: Path
    target: str = "android"
    device: Optional[str] = None  # tflm device profile
    calibration: Optional[Path] = None
    train: Optional[Path] = None
    eval: Optional[Path] = None
    labels: Optional[Path] = None
    recipe: Optional[Path] = None  # base recipe: data preprocessing, I/O types, quantize rules
    max_accuracy_drop: Optional[float] = 1.0  # None: no gate
    objective: str = "size"
    trials: int = 40
    seed: int = 0
    space: Optional[Path] = None
    epochs: int = 2  # fine-tune epochs per training step in the default space
    ray_address: Optional[str] = None
    workers: Optional[int] = None  # trials at once; default: the cluster's CPUs
    resume: bool = False
    force: bool = False
    trial_timeout: float = 1800.0
    latency_runs: int = 30
    package_best: bool = True
    fresh_worker: bool = True  # a new worker process per trial (isolation); False reuses workers (faster)
    enqueue: list[dict] = field(default_factory=list)  # Optuna params to try first (e.g. another search's trials)
    events: Callable[[str, dict], None] = lambda kind, info: None
    faults: dict[int, str] = field(default_factory=dict)  # tests: trial number -> TrialJob.fault


def _check(cfg: SearchConfig) -> None:
    if cfg.objective not in OBJECTIVES:
        raise UsageError(f"--objective {cfg.objective}: use one of {', '.join(OBJECTIVES)}")
    if cfg.target not in ("android", "tflm"):
        raise UsageError(f"--target {cfg.target}: edgepack search builds for android or tflm")
    if cfg.target == "tflm" and not cfg.device:
        raise UsageError("--target tflm needs --device PROFILE (the board whose flash and RAM bound the search)")
    if cfg.objective == "ram" and cfg.target != "tflm":
        raise UsageError("--objective ram needs --target tflm --device PROFILE (the tensor arena TFLM needs); "
                         "for android use --objective size or latency")
    if cfg.objective == "energy" and cfg.target != "tflm":
        raise UsageError("--objective energy needs --target tflm --device PROFILE (estimated from the board's "
                         "power figures); this host has no energy counter")
    if cfg.trials < 1:
        raise UsageError(f"--trials {cfg.trials}: at least 1 trial")
    for role in ROLES:
        p = getattr(cfg, role)
        if p is not None and not Path(p).exists():
            raise UsageError(f"{p}: no such file or folder (--{role})")
    if cfg.calibration is None:
        raise UsageError("--calibration DATA is needed: every trial quantizes to integers")
    out = Path(cfg.out)
    if out.exists() and not cfg.resume:
        if not cfg.force:
            raise UsageError(f"{out}: exists; pass --resume to continue its search, --force to start over, "
                             "or choose another --out")
        if not (out / "search.json").is_file():
            raise UsageError(f"{out}: exists and holds no search.json; --force replaces only a search folder")


def latency_device(cfg: SearchConfig) -> Optional[str]:
    """Where latency/energy come from: host LiteRT (measured) or the board's cost model (estimated)."""
    if cfg.objective not in ("latency", "energy"):
        return None
    return f"estimate:{cfg.device}" if cfg.target == "tflm" else "host"


def _base_recipe(cfg: SearchConfig) -> dict:
    from ..recipe import Recipe

    r = Recipe.from_yaml(cfg.recipe) if cfg.recipe else Recipe()
    if r.steps:
        raise UsageError(f"{cfg.recipe}: the base recipe of a search gives data/quantize/verify settings; "
                         "its steps come from the search space (remove 'steps' or put them in --space)")
    return r.model_dump(mode="json", exclude={"steps"})


def _space(cfg: SearchConfig) -> SearchSpace:
    if cfg.space is not None:
        space = SearchSpace.from_yaml(cfg.space)
        if cfg.train is None and (space.epochs or any(s in space.steps for s in ("distill", "qat"))):
            raise UsageError(f"{cfg.space}: fine-tuning (epochs > 0, distill, qat) needs --train DATA")
        if space.patches != "fixed" and cfg.target != "tflm":
            raise UsageError(f"{cfg.space}: patches: {space.patches} is for --target tflm (patch-based inference "
                             "shrinks TFLM's tensor arena); remove it or use --target tflm")
        return space
    from ..profiles import load_profile
    from ..load import load_model
    from ..passes.pruning.channels import kernels_multiple, target_kernels
    from ..targets import target_class

    core = load_profile(cfg.device).core if cfg.target == "tflm" else None
    multiple = kernels_multiple(target_kernels(target_class(cfg.target).kernels, core))
    return default_space(load_model(Path(cfg.model)), cfg.target, cfg.objective, cfg.train is not None,
                         channel_multiple=multiple, epochs=cfg.epochs)


def _header(cfg: SearchConfig, space: SearchSpace, base: dict) -> dict:
    inputs = {role: {"name": Path(getattr(cfg, role)).name, "sha256": sha256_path(getattr(cfg, role))}
              for role in ROLES if getattr(cfg, role) is not None}
    return {"tool": "edgepack search", "inputs": inputs, "target": cfg.target, "device": cfg.device,
            "objective": cfg.objective, "objective_key": OBJECTIVE_KEYS[cfg.objective],
            "latency_source": latency_device(cfg), "max_accuracy_drop": cfg.max_accuracy_drop, "seed": cfg.seed,
            "space": space.to_dict(), "base_recipe": base, "trials_budget": cfg.trials}


# -- Optuna ------------------------------------------------------------------
def _sampler(space: SearchSpace, seed: int, number: int, parallel: bool, n_trials: int):
    import optuna

    seed_n = (seed * 1_000_003 + number) % (2 ** 32)

    # Constraints come from Trial.set_constraint (the accuracy budget; see _constraint).
    if space.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed_n, population_size=max(4, min(20, n_trials // 2)))
    return optuna.samplers.TPESampler(seed=seed_n, n_startup_trials=max(2, min(10, n_trials // 3)),
                                      constant_liar=parallel)


def _new_study(store: SearchStore, enqueue: list[dict]):
    import optuna
    from optuna.distributions import json_to_distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(directions=["minimize", "minimize"])
    for rec in store.trials:  # --resume: the history, told again
        if rec["number"] == BASELINE:
            continue
        dists = {k: json_to_distribution(v) for k, v in rec.get("distributions", {}).items()}
        values = _values(rec, store.data["objective_key"])
        ft = optuna.trial.create_trial(params=rec.get("params", {}), distributions=dists, values=values,
                                       state=optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL)
        ft.set_constraint("accuracy", _constraint(rec, store.data["max_accuracy_drop"]))
        study.add_trial(ft)
    for params in enqueue[len(study.trials):]:
        study.enqueue_trial(params)
    return study


def _values(rec: dict, key: str) -> Optional[list[float]]:
    m = rec.get("metrics") or {}
    if rec.get("status") not in ("ok", "infeasible") or m.get(key) is None or m.get("drop_pt") is None:
        return None
    return [float(m[key]), float(m["drop_pt"])]


def _constraint(rec: dict, limit: Optional[float]) -> float:
    m = rec.get("metrics") or {}
    if rec.get("status") == "infeasible" and (m.get("drop_pt") is None or limit is None):
        return 1.0  # over the flash/RAM budget or an op the board lacks
    if limit is None or m.get("drop_pt") is None:
        return 0.0
    return float(m["drop_pt"]) - float(limit)


# -- Ray ---------------------------------------------------------------------
def _ray_init(cfg: SearchConfig):
    import ray

    own = not ray.is_initialized()
    if own:
        env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}}
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, log_to_driver=False, runtime_env=env)
        else:
            ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                     runtime_env=env)
    return ray, own


def _failure(e: BaseException) -> str:
    import ray.exceptions as rx

    if isinstance(e, rx.OutOfMemoryError):
        return f"ran out of memory (killed by Ray's memory monitor): {str(e).splitlines()[0]}"
    if isinstance(e, (rx.NodeDiedError,)):
        return f"its Ray node was lost: {str(e).splitlines()[0]}"
    if isinstance(e, (rx.WorkerCrashedError, rx.RayActorError, rx.LocalRayletDiedError)):
        return f"its worker process died (crash, kill or lost node): {type(e).__name__}"
    if isinstance(e, rx.TaskCancelledError):
        return "cancelled"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


class _Driver:
    def __init__(self, cfg: SearchConfig, store: SearchStore, space: SearchSpace, ray):
        self.cfg, self.store, self.space, self.ray = cfg, store, space, ray
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, min(cfg.workers or cpus, cfg.trials))
        self.cpus_per_trial = max(1, cpus // self.workers)
        self.study = _new_study(store, cfg.enqueue)
        self.ram_bytes = None
        if cfg.target == "tflm":
            from ..profiles import load_profile

            self.ram_bytes = load_profile(str(cfg.device)).ram_bytes
        self.pending: dict[Any, dict] = {}
        self.next_number = max([t["number"] for t in store.trials], default=BASELINE) + 1
        paths = {role: getattr(cfg, role) for role in ROLES}
        self.inputs_ref = ray.put(pack_inputs(paths))  # the only read of the user's files for the trials
        self.task = ray.remote(max_calls=1 if cfg.fresh_worker else 0, max_retries=0)(_trial_task).options(
            num_cpus=self.cpus_per_trial)

    def finished(self) -> int:
        return len(self.store.trials)

    def patches(self) -> Optional[dict]:
        """Whether trials search recipe tflm.patches (recorded in search.json as ``patches``); None while it
        waits for trial 0."""
        if self.store.data.get("patches") is None:
            base = next((t for t in self.store.trials if t["number"] == BASELINE), None)
            decision = patches_decision(self.space, self.cfg.objective, base, self.ram_bytes)
            if decision is not None:
                self.store.data["patches"] = decision
                self.store.save()
        return self.store.data.get("patches")

    def may_submit(self) -> bool:
        """A free worker and trials left; no trial but trial 0 while the patches decision waits for it."""
        if len(self.pending) >= self.workers or self.finished() + len(self.pending) >= self.cfg.trials:
            return False
        waiting = any(i["number"] == BASELINE for i in self.pending.values())
        return not (waiting and self.patches() is None)

    def submit(self) -> None:
        taken = {t["number"] for t in self.store.trials} | {i["number"] for i in self.pending.values()}
        if BASELINE in taken:
            number, self.next_number = self.next_number, self.next_number + 1
        else:
            number = BASELINE
        from ..recipe import Recipe

        if number == BASELINE:
            ot = None
            recipe = {**self.store.data["base_recipe"], "steps": []}
            recipe["quantize"] = {**recipe.get("quantize", {}), "mode": "int8"}
            limit = self.cfg.max_accuracy_drop
            recipe["verify"] = {**recipe.get("verify", {}), "step_metrics": False,
                                "max_accuracy_drop": "none" if limit is None else float(limit)}
        else:
            self.study.sampler = _sampler(self.space, self.cfg.seed, len(self.study.trials), self.workers > 1,
                                          self.cfg.trials)
            ot = self.study.ask()
            recipe = self.space.sample(ot, self.store.data["base_recipe"], self.cfg.max_accuracy_drop,
                                       patches=bool((self.patches() or {}).get("searched")))

        try:
            text = Recipe.from_dict(recipe, f"trial {number}").to_yaml()
        except EdgepackError as e:  # a proposal no recipe can express: failed without running
            self.pending[None] = {"number": number, "trial": ot, "recipe": recipe, "start": time.monotonic()}
            self.complete(None, {"status": "failed", "error": str(e), "error_type": type(e).__name__,
                                 "node_id": None})
            return
        atomic_write_text(self.cfg.out / "trials" / str(number) / "recipe.yaml", text)
        job = TrialJob(number=number, recipe=recipe, target=self.cfg.target,
                       target_options={"device": self.cfg.device} if self.cfg.device else {},
                       seed=self.cfg.seed, max_accuracy_drop=self.cfg.max_accuracy_drop,
                       latency_device=latency_device(self.cfg), latency_runs=self.cfg.latency_runs,
                       fault=self.cfg.faults.get(number))
        ref = self.task.remote(job, self.inputs_ref)
        self.pending[ref] = {"number": number, "trial": ot, "recipe": recipe, "start": time.monotonic()}
        self.cfg.events("trial_started", {"number": number, "recipe": recipe})

    def complete(self, ref, rec: dict) -> None:
        info = self.pending.pop(ref)
        ot = info["trial"]
        from optuna.distributions import distribution_to_json

        rec.setdefault("wall_s", round(time.monotonic() - info["start"], 2))
        rec.setdefault("node_id", None)  # a crashed or cancelled task reports no node
        report = rec.pop("report", None)
        rec.update(number=info["number"], recipe=info["recipe"], params=dict(ot.params) if ot else {},
                   distributions={k: distribution_to_json(d) for k, d in ot.distributions.items()} if ot else {},
                   recipe_file=f"trials/{info['number']}/recipe.yaml", command=self.command(info["number"]))
        if report is not None:
            import json

            atomic_write_text(self.cfg.out / "trials" / str(info["number"]) / "report.json",
                              json.dumps(report, indent=2, default=str) + "\n")
        if ot is not None:
            import optuna

            values = _values(rec, self.store.data["objective_key"])
            ot.set_constraint("accuracy", _constraint(rec, self.cfg.max_accuracy_drop))
            if values:
                self.study.tell(ot, values)
            else:
                self.study.tell(ot, state=optuna.trial.TrialState.FAIL)
        self.store.record(rec)
        self.cfg.events("trial_done", {"record": rec, "done": self.finished(), "total": self.cfg.trials,
                                       "best": self.store.data["best"]})

    def command(self, number: int) -> str:
        c = self.cfg
        parts = ["edgepack package", str(c.model), "--target", c.target]
        if c.device:
            parts += ["--device", c.device]
        parts += ["--recipe", str(c.out / "trials" / str(number) / "recipe.yaml")]
        for role in ("calibration", "train", "eval", "labels"):
            if getattr(c, role) is not None:
                parts += [f"--{role}", str(getattr(c, role))]
        return " ".join(parts + ["--seed", str(c.seed), "--out", f"trial{number}"])

    def run(self) -> None:
        ray = self.ray
        while self.finished() + len(self.pending) < self.cfg.trials or self.pending:
            while self.may_submit():
                self.submit()
            now = time.monotonic()
            wait = max(0.05, min(i["start"] + self.cfg.trial_timeout - now for i in self.pending.values()))
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=min(wait, 5.0))
            for ref in ready:
                try:
                    rec = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - RayError family: crash, OOM kill, lost node
                    rec = {"status": "failed", "error": _failure(e), "error_type": type(e).__name__}
                self.complete(ref, rec)
            now = time.monotonic()
            for ref, info in list(self.pending.items()):
                if now - info["start"] > self.cfg.trial_timeout:
                    ray.cancel(ref, force=True)
                    self.complete(ref, {"status": "failed", "error_type": "Timeout",
                                        "error": f"timed out after {self.cfg.trial_timeout:g} s (--trial-timeout)"})

    def abandon(self) -> None:
        for ref in list(self.pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self.pending.clear()


def _trial_task(job: TrialJob, inputs: dict) -> dict:
    import ray

    return run_trial(job, inputs, node_id=ray.get_runtime_context().get_node_id())


def _package_best(cfg: SearchConfig, store: SearchStore) -> None:
    from ..pipeline import PackageRequest, package
    from ..recipe import Recipe

    best = store.data["best"]
    if best is None:
        store.data["best_package"] = {"error": "no feasible trial: nothing within the accuracy budget"}
        return
    rec = next(t for t in store.trials if t["number"] == best["trial"])
    cfg.events("best_package", {"number": rec["number"]})
    try:
        report = package(PackageRequest(
            model=Path(cfg.model), out=cfg.out / "best", target=cfg.target,
            recipe=Recipe.from_dict(rec["recipe"], rec["recipe_file"]), calibration=cfg.calibration,
            eval=cfg.eval, train=cfg.train, labels=cfg.labels, seed=cfg.seed, force=True,
            target_options={"device": cfg.device} if cfg.device else {}))
    except EdgepackError as e:
        store.data["best_package"] = {"trial": rec["number"], "error": str(e)}
        return
    from ..report.schema import PackageReport

    rep = PackageReport.of(report, "the best trial's report")
    sha = rep.provenance.outputs["model.tflite"]
    store.data["best_package"] = {"trial": rec["number"], "folder": "best", "tflite_sha256": sha,
                                  "same_bytes_as_trial": sha == rec.get("tflite_sha256"),
                                  "size_bytes": rep.tflite.size_bytes, "download_bytes": rep.entropy.package_bytes,
                                  "drop_pt": rep.verification.drop_pt if rep.verification else None}


def write_html(out: Path, data: dict) -> None:
    from .report import render_search_html

    atomic_write_text(Path(out) / "report.html", render_search_html(data))


def _require() -> None:
    import importlib.util

    missing = [m for m in ("ray", "optuna") if importlib.util.find_spec(m) is None]
    if missing:
        raise EdgepackError(f"edgepack search needs {' and '.join(missing)}: pip install 'edgepack[search]'")


def run_search(cfg: SearchConfig) -> dict:
    """Run (or resume) a search; return the search.json data. Ctrl-C leaves a valid search.json."""
    cfg.out = Path(cfg.out)
    _check(cfg)
    _require()
    base = _base_recipe(cfg)
    space = _space(cfg)
    header = _header(cfg, space, base)
    if cfg.out.exists() and not cfg.resume and cfg.force:
        shutil.rmtree(cfg.out)
    if cfg.resume:
        store = SearchStore.resume(cfg.out, header)
    else:
        cfg.out.mkdir(parents=True)
        store = SearchStore.create(cfg.out, header)
    ray, own = _ray_init(cfg)
    started = time.monotonic()
    try:
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        driver = _Driver(cfg, store, space, ray)
        store.data["ray"] = {"address": cfg.ray_address or "local", "nodes": nodes, "workers": driver.workers,
                             "cpus_per_trial": driver.cpus_per_trial}
        store.save()
        cfg.events("start", {"done": driver.finished(), "total": cfg.trials, "workers": driver.workers,
                             "nodes": len(nodes), "space": space.to_dict()})
        try:
            driver.run()
        except KeyboardInterrupt:
            driver.abandon()
            store.data["state"] = "interrupted"
            store.save()
            write_html(cfg.out, store.data)
            raise
        store.data["search_wall_s"] = round(store.data.get("search_wall_s", 0) + time.monotonic() - started, 2)
    finally:
        if own:
            ray.shutdown()
    if cfg.package_best:
        _package_best(cfg, store)
    store.data["state"] = "done"
    store.save()
    write_html(cfg.out, store.data)
    cfg.events("done", {"best": store.data["best"]})
    return store.data
