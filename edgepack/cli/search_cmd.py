"""``edgepack search``: the smallest/fastest recipe within an accuracy budget, trials on Ray."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json, verbosity_options

_path = click.Path(path_type=Path)
OBJECTIVES = ["size", "download", "latency", "macs", "energy", "ram"]


class _Bar:
    """A rich progress bar on stderr: trials done / total and the best so far."""

    def __init__(self, quiet: bool):
        self.quiet, self.progress, self.task = quiet, None, None

    def __enter__(self) -> "_Bar":
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.description}"), console=Console(stderr=True))
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def event(self, kind: str, info: dict) -> None:
        if self.progress is None:
            return
        if kind == "start":
            self.task = self.progress.add_task(f"{info['workers']} worker(s) on {info['nodes']} node(s)",
                                               total=info["total"], completed=info["done"])
        elif kind == "trial_done" and self.task is not None:
            rec, best = info["record"], info["best"]
            desc = f"last: #{rec['number']} {rec['status']}"
            if best:
                key = next(k for k in ("size_bytes", "download_bytes", "macs", "latency_us", "energy_mj")
                           if k in best["metrics"] and best["metrics"][k] is not None)
                desc += f" | best: #{best['trial']} {key} {best['metrics'][key]:,}"
            self.progress.update(self.task, completed=info["done"], description=desc)
        elif kind == "best_package" and self.task is not None:
            self.progress.update(self.task, description=f"packaging best (trial {info['number']}) into best/")


@click.command("search")
@click.argument("model", type=_path)
@click.option("--target", "-t", default="android", show_default=True, type=click.Choice(["android", "tflm"]))
@click.option("--device", help="tflm: device profile whose flash/RAM bound the search (latency/energy estimated).")
@click.option("--calibration", type=_path, required=True, help="Calibration samples: .npz (x), .npy or image folder.")
@click.option("--train", type=_path, help="Training data for the fine-tunes (.npz with x and y).")
@click.option("--eval", "eval_data", type=_path, help="Evaluation data with labels (.npz with x and y).")
@click.option("--labels", type=_path, help="Class names, one per line.")
@click.option("--recipe", type=_path, help="Base recipe: data preprocessing, I/O types, quantize rules (no steps).")
@click.option("--max-accuracy-drop", type=float, default=1.0, show_default=True,
              help="Accuracy budget in points: trials that lose more are infeasible.")
@click.option("--objective", type=click.Choice(OBJECTIVES), default="size", show_default=True,
              help="What to minimise: .tflite bytes, download (entropy-coded) bytes, latency, MACs, energy or RAM "
                   "(tflm: the tensor arena; trials then also try --patches auto).")
@click.option("--trials", type=int, default=40, show_default=True, help="Trials in all (trial 0 is plain int8).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--space", type=_path, help="Search space YAML (default: derived from the model and target).")
@click.option("--epochs", type=int, default=2, show_default=True, help="Fine-tune epochs per step (default space).")
@click.option("--ray-address", help="HOST:PORT of a Ray cluster (default: a local Ray with one worker per core).")
@click.option("--workers", type=int, help="Trials at once (default: the cluster's CPUs).")
@click.option("--trial-timeout", type=float, default=1800.0, show_default=True, help="Seconds before a trial fails.")
@click.option("--resume", is_flag=True, help="Continue the search in --out from its search.json.")
@click.option("--force", is_flag=True, help="Start over in an --out that holds an earlier search.")
@click.option("--out", "-o", type=_path, required=True, help="Search folder: search.json, trials/, best/, report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print search.json on stdout.")
@verbosity_options
def search(model, target, device, calibration, train, eval_data, labels, recipe, max_accuracy_drop, objective,
           trials, seed, space, epochs, ray_address, workers, trial_timeout, resume, force, out, as_json,
           verbose, quiet):
    """Search compression recipes for MODEL: Pareto front of (objective, accuracy drop) and the best package.

    \b
    Example:
      edgepack search examples/mnist/model.h5 --target android --recipe examples/mnist/recipe.yaml \\
        --calibration calibration_data/mnist/calib.npz --train calibration_data/mnist/train.npz \\
        --eval calibration_data/mnist/eval.npz --objective size --trials 8 --out build/search
    """
    from ..search.engine import SearchConfig, run_search

    with _Bar(quiet) as bar:
        data = run_search(SearchConfig(
            model=model, out=out, target=target, device=device, calibration=calibration, train=train,
            eval=eval_data, labels=labels, recipe=recipe, max_accuracy_drop=max_accuracy_drop, objective=objective,
            trials=trials, seed=seed, space=space, epochs=epochs, ray_address=ray_address, workers=workers,
            trial_timeout=trial_timeout, resume=resume, force=force, events=bar.event))
    if as_json:
        echo_json(data)
        return
    key = data["objective_key"]
    counts = {s: sum(t["status"] == s for t in data["trials"]) for s in ("ok", "infeasible", "failed")}
    click.echo(f"wrote {out}/ (search.json, trials/, report.html{', best/' if (data.get('best_package') or {}).get('folder') else ''})")
    click.echo(f"{len(data['trials'])} trials: {counts['ok']} feasible, {counts['infeasible']} over budget, "
               f"{counts['failed']} failed; Pareto front: trials {data['pareto_front']}")
    best = data.get("best")
    base = next((t for t in data["trials"] if t["number"] == 0 and t.get("metrics")), None)
    if best is None:
        click.echo("no trial met the accuracy budget")
        return
    m = best["metrics"]
    ratio = f" ({base['metrics'][key] / m[key]:.2f}x vs plain int8)" if base and base["metrics"].get(key) else ""
    click.echo(f"best: trial {best['trial']}: {key} {m[key]:,}{ratio}, drop {m['drop_pt']:.2f} pt")
    bp = data.get("best_package") or {}
    if bp.get("error"):
        click.echo(f"best/ not written: {bp['error']}", err=True)
