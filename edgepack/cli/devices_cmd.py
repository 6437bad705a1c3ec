"""``edgepack devices``: what can be profiled from here.

In a terminal the list is a table whose SPEC column is never cut (the other columns wrap);
piped or redirected, it is one tab-separated line per device (SPEC first), for ``cut -f1``.
"""

from __future__ import annotations

import click

from .common import echo_json

COLUMNS = ("SPEC", "kind", "status", "description", "profiles")
_MIN_OTHER = 36  # a terminal narrower than SPEC + this gets the plain lines


@click.command("devices")
@click.option("--adb-tcp", "adb_tcp", multiple=True, metavar="HOST:PORT",
              help="Also probe a direct ADB address (adb tcpip) with a CNXN (repeatable).")
@click.option("--no-usb", is_flag=True, help="Without an adb server: do not scan USB for ADB devices.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout instead of a table.")
def devices(adb_tcp, no_usb, as_json):
    """List the host, ADB devices, serial ports, QEMU and device profiles to estimate.

    ADB devices come from the adb server (ADB_SERVER_SOCKET, else localhost:5037) with
    model, Android version and ABI; an unauthorized or offline one says what to do.
    The SPEC column is what `edgepack profile --device` takes. Piped, each device is one
    tab-separated line: SPEC, kind, status, description, profiles.

    \b
    Example:
      edgepack devices --adb-tcp 192.168.1.7:5555
    """
    from rich.console import Console

    from ..devices.discover import discover

    entries = discover(adb_tcp=adb_tcp, usb=not no_usb)
    if as_json:
        echo_json([e.as_dict() for e in entries])
        return
    render(entries, Console(highlight=False, soft_wrap=True))


def plain_lines(entries) -> list[str]:
    """One tab-separated line per entry: SPEC, kind, status (with its fix), description, profiles."""
    return ["\t".join((e.spec, e.kind, e.status, e.description, ", ".join(e.profiles))) for e in entries]


def render(entries, console) -> None:
    """Print ``entries`` on ``console``: a table in a terminal wide enough, else plain lines.

    Example: ``render(discover(), Console(force_terminal=True, width=80))``.
    """
    spec_width = max((len(e.spec) for e in entries), default=4)
    if not console.is_terminal or console.width < spec_width + _MIN_OTHER:
        for line in plain_lines(entries):
            click.echo(line, file=console.file)
        return
    from rich.table import Table

    # A narrow terminal gets the profiles under the description instead of a fifth column.
    wide = console.width >= spec_width + 100
    t = Table()
    # SPEC is the value to copy into --device: a fixed width (its longest), never wrapped or cut; the
    # other columns fold (a word longer than its column breaks, it is not replaced by an ellipsis).
    t.add_column(COLUMNS[0], width=spec_width, no_wrap=True, overflow="ignore")
    t.add_column(COLUMNS[1], no_wrap=True, overflow="fold")
    for col in COLUMNS[2:] if wide else COLUMNS[2:4]:
        t.add_column(col, overflow="fold")
    fixes = []
    for e in entries:
        state, sep, fix = e.status.partition(": ")
        long = bool(sep) and len(e.status) > 32  # a long "state: what to do" goes under the table, unwrapped
        if long:
            fixes.append(f"{e.spec}: {e.status}")
        profiles = ", ".join(e.profiles)
        row = [e.spec, e.kind, state if long else e.status, e.description]
        if wide:
            row.append(profiles)
        elif profiles:
            row[-1] += f"\nprofiles: {profiles}"
        t.add_row(*row)
    console.print(t)
    for line in fixes:
        console.print(line)
