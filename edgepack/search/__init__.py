"""The recipe search (``edgepack search``): trials on Ray, proposals from Optuna, a Pareto front.

Modules: :mod:`.space` (what may be tried), :mod:`.trial` (one trial = one ordinary recipe run
through :func:`edgepack.pipeline.package` on a Ray worker), :mod:`.engine` (the driver: Optuna
ask/tell, Ray tasks, faults), :mod:`.pareto`, :mod:`.store` (search.json), :mod:`.report`
(report.html).

Example::

    from edgepack.search.engine import SearchConfig, run_search
    result = run_search(SearchConfig(model=Path("model.h5"), out=Path("search"), target="android",
                                     calibration=Path("calib.npz"), train=Path("train.npz"),
                                     eval=Path("eval.npz"), objective="size", trials=8))
    result["best"]["metrics"]["size_bytes"]
"""
