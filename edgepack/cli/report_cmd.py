"""``edgepack report DIR``: render report.md and report.html again from DIR/report.json."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
def report(folder: Path) -> None:
    """Re-render FOLDER/report.md and FOLDER/report.html from FOLDER/report.json.

    \b
    Example (after adding a profile to a package's report):
      edgepack profile build/android --device host --append-report build/android
      edgepack report build/android
    """
    from ..report import rerender

    for name in rerender(folder):
        click.echo(str(folder / name))
