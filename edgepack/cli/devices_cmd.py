"""``edgepack devices``: what can be profiled from here."""

from __future__ import annotations

import click

from .common import echo_json


@click.command("devices")
@click.option("--adb-tcp", "adb_tcp", multiple=True, metavar="HOST:PORT",
              help="Also probe a direct ADB address (adb tcpip) with a CNXN (repeatable).")
@click.option("--no-usb", is_flag=True, help="Without an adb server: do not scan USB for ADB devices.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout instead of a table.")
def devices(adb_tcp, no_usb, as_json):
    """List the host, ADB devices, serial ports, QEMU and device profiles to estimate.

    ADB devices come from the adb server (ADB_SERVER_SOCKET, else localhost:5037) with
    model, Android version and ABI; an unauthorized or offline one says what to do.
    The SPEC column is what `edgepack profile --device` takes.

    \b
    Example:
      edgepack devices --adb-tcp 192.168.1.7:5555
    """
    from ..devices.discover import discover

    entries = discover(adb_tcp=adb_tcp, usb=not no_usb)
    if as_json:
        echo_json([e.as_dict() for e in entries])
        return
    from rich.console import Console
    from rich.table import Table

    t = Table()
    for col in ("SPEC", "kind", "status", "description", "profiles"):
        t.add_column(col)
    fixes = []
    for e in entries:
        state, sep, fix = e.status.partition(": ")
        if sep and len(e.status) > 32:  # long "state: what to do" goes under the table, unwrapped
            fixes.append(f"{e.spec}: {e.status}")
        t.add_row(e.spec, e.kind, state if sep and len(e.status) > 32 else e.status, e.description,
                  ", ".join(e.profiles))
    console = Console(highlight=False, soft_wrap=True)
    console.print(t)
    for line in fixes:
        console.print(line)
