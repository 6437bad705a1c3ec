"""Options and helpers shared by commands: verbosity, progress on stderr, JSON out."""

from __future__ import annotations

import json
from typing import Any

import click


def verbosity_options(f):
    f = click.option("-v", "--verbose", count=True, help="More log lines on stderr.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="No progress or logs on stderr.")(f)
    return f


class Progress:
    """A rich progress display on stderr, fed by (label, done, total) callbacks; erased when the run fails."""

    def __init__(self, quiet: bool, verbose: int):
        self.quiet, self.verbose = quiet, verbose
        self._progress = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> "Progress":
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            self._progress = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self._progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._progress is not None:
            if exc_type is not None:  # a failed run: the bar goes, so its error is the one line on stderr
                self._progress.live.transient = True
            self._progress.stop()

    def update(self, label: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        if label not in self._tasks:
            self._tasks[label] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[label], completed=done, total=total)

    def log(self, msg: str) -> None:
        """Progress notes with -v; warnings always (they are also in the report), unless -q."""
        if not self.quiet and (self.verbose or msg.startswith("warning: ")):
            click.echo(msg, err=True)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
