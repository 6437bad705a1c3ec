"""search.json: the durable record of a search, rewritten atomically after every trial.

A Ctrl-C or a crash of the driver leaves the last complete version; ``--resume`` reads it
back, checks it was made for the same inputs and settings, and continues.

Example::

    store = SearchStore.create(Path("search"), header)      # or SearchStore.resume(Path("search"), header)
    store.record(trial_record)                               # writes search/search.json atomically
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fsutil import atomic_write_text
from .pareto import best_trial, pareto_front

SCHEMA_VERSION = 1
FINISHED = ("ok", "infeasible", "failed")
#: Header fields a resumed search must share with the one in search.json.
SAME_FOR_RESUME = ("inputs", "target", "device", "objective", "max_accuracy_drop", "seed", "space", "base_recipe")


class SearchStore:
    def __init__(self, out: Path, data: dict[str, Any]):
        self.out = Path(out)
        self.data = data

    @property
    def path(self) -> Path:
        return self.out / "search.json"

    @classmethod
    def create(cls, out: Path, header: dict) -> "SearchStore":
        store = cls(out, {"schema_version": SCHEMA_VERSION, **header, "trials": [], "pareto_front": [],
                          "best": None, "state": "running"})
        store.save()
        return store

    @classmethod
    def resume(cls, out: Path, header: dict) -> "SearchStore":
        path = Path(out) / "search.json"
        if not path.is_file():
            raise UsageError(f"{path}: no search to resume; run without --resume to start one")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not a valid search.json ({e}); start a new search with another --out") from None
        if data.get("schema_version") != SCHEMA_VERSION:
            raise UsageError(f"{path}: schema version {data.get('schema_version')} is not {SCHEMA_VERSION}")
        for k in SAME_FOR_RESUME:
            if data.get(k) != header.get(k):
                raise UsageError(f"{path}: was made with a different {k} ({_short(data.get(k))} vs now "
                                 f"{_short(header.get(k))}); resume with the same inputs and options or use another --out")
        # Trials that were running when the driver stopped are dropped and asked again.
        data["trials"] = [t for t in data["trials"] if t.get("status") in FINISHED]
        data.update({k: v for k, v in header.items() if k not in SAME_FOR_RESUME})
        data["state"] = "running"
        store = cls(out, data)
        store.save()
        return store

    @property
    def trials(self) -> list[dict]:
        return self.data["trials"]

    def record(self, rec: dict) -> None:
        """Add or replace the record of trial ``rec['number']`` and save."""
        self.data["trials"] = sorted([t for t in self.trials if t["number"] != rec["number"]] + [rec],
                                     key=lambda t: t["number"])
        key = self.data["objective_key"]
        self.data["pareto_front"] = pareto_front(self.trials, key)
        best = best_trial(self.trials, key)
        self.data["best"] = None if best is None else {"trial": best["number"], "metrics": best["metrics"]}
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 80 else s[:77] + "..."
