"""The ``edgepack`` command: a thin layer over the Python API.

Commands live one per module; COMMANDS is the explicit list of them, imported
when the group is built. Heavy libraries (TensorFlow) are imported only inside
command bodies, so ``edgepack --help`` is fast.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import EdgepackError

COMMANDS: list[str] = [
    "edgepack.cli.package_cmd:package",
    "edgepack.cli.inspect_cmd:inspect",
    "edgepack.cli.unpack_cmd:unpack",
    "edgepack.cli.profile_cmd:profile",
    "edgepack.cli.devices_cmd:devices",
    "edgepack.cli.report_cmd:report",
    "edgepack.cli.search_cmd:search",
]


class _Group(click.Group):
    def list_commands(self, ctx):
        return sorted(self._load())

    def get_command(self, ctx, name):
        return self._load().get(name)

    def _load(self) -> dict[str, click.Command]:
        if not hasattr(self, "_cmds"):
            self._cmds = {}
            from ..registry import import_entry

            for ref in COMMANDS:
                cmd = import_entry(ref)
                self._cmds[cmd.name] = cmd
        return self._cmds


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgepack")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Compress, convert, verify and profile Keras models for phones and microcontrollers.

    \b
    Example:
      edgepack package examples/mnist/model.h5 --target android \\
        --calibration calibration_data/mnist/calib.npz --out build/android
    """
    ctx.obj = {"debug": debug}


def main() -> None:
    """Console entry point: EdgepackError -> one line on stderr, exit 1 (usage 2)."""
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except EdgepackError as e:
        if debug:
            raise
        # One line whatever the message holds (a path with a newline must not start a second line).
        click.echo("error: " + str(e).replace("\r", "\\r").replace("\n", "\\n"), err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
