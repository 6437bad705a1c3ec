"""``edgepack unpack``: restore the exact .tflite from an entropy-coded download package."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("unpack")
@click.argument("package_file", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace OUT if it exists (never the package itself).")
def unpack(package_file, out, force):
    """Decode PACKAGE_FILE (.epk) into OUT (.tflite); the SHA-256 is checked.

    OUT's folder must exist; OUT is written whole or not at all.

    \b
    Example:
      edgepack unpack build/android/model.tflite.epk model.tflite
    """
    from ..epk import unpack as run

    n = run(package_file, out, force=force)
    click.echo(f"wrote {out} ({n:,} bytes, SHA-256 verified)")
