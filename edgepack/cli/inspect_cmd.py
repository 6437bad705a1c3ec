"""``edgepack inspect``: layers/ops, parameters, MACs, tensors and quantization."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--tensors", is_flag=True, help="List every tensor (not only inputs/outputs).")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom classes in Keras files.")
def inspect(path, as_json, tensors, unsafe):
    """Show what is inside a Keras model or a .tflite file.

    \b
    Example:
      edgepack inspect build/android/model.tflite --tensors
    """
    from ..inspect import inspect_path, render_text

    data = inspect_path(path, unsafe=unsafe)
    if as_json:
        echo_json(data)
    else:
        click.echo(render_text(data, tensors=tensors))
