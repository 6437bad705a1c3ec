"""``edgepack devices`` as a user sees it: piped (plain lines) and in an 80-column terminal (a table).

Either way every SPEC (what ``--device`` takes) must appear whole on one line: the phones here are
real listings, an ADB emulator probed with ``--adb-tcp`` (``adb-tcp:127.0.0.1:PORT``) and, when
Debian's adb is installed, the same emulator attached to a real adb server (``adb:127.0.0.1:PORT``).
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emulators.adb_device import AdbEmulator
from locations import ROOT

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


@pytest.fixture(scope="module")
def adb_server(tmp_path_factory):
    """A real adb server (Debian's adb) on a free port, or None when adb is not installed."""
    if not shutil.which("adb"):
        yield None
        return
    from emulators.adb_server import AdbServerProcess

    server = AdbServerProcess(tmp_path_factory.mktemp("adb-home")).start()
    yield server
    server.stop()


@pytest.fixture
def listing(tmp_path, monkeypatch, adb_server):
    """A listing with long SPECs: (env for a subprocess, the emulator's address, the SPECs it must show)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="80")
    for k in ("ANDROID_SERIAL", "ANDROID_ADB_SERVER_PORT", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(k, None)
    socket_spec = adb_server.socket_spec if adb_server else "tcp:127.0.0.1:9"  # 9: no server, hermetic
    env["ADB_SERVER_SOCKET"] = socket_spec
    monkeypatch.setenv("ADB_SERVER_SOCKET", socket_spec)
    with AdbEmulator(tmp_path / "phone", model="Pixel 7") as emu:
        specs = [f"adb-tcp:{emu.serial}"]
        if adb_server:
            adb_server.attach(emu, expect="unauthorized")  # the emulator trusts no key: listed with its fix
            specs.append(f"adb:{emu.serial}")
        try:
            yield env, emu.serial, specs
        finally:
            if adb_server:
                adb_server.detach_all()


def _specs_from_json(env, addr) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "edgepack", "devices", "--no-usb", "--json", "--adb-tcp", addr],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    return [e["spec"] for e in json.loads(r.stdout)]


def _assert_every_spec_whole(text: str, specs: list[str]) -> None:
    assert "…" not in text and "..." not in text, text
    lines = text.splitlines()
    for spec in specs:
        assert any(re.search(rf"(^|[\s│|]){re.escape(spec)}($|[\s│|])", line) for line in lines), (spec, text)


def test_piped_listing_is_one_plain_line_per_device_with_the_spec_whole(listing):
    env, addr, long_specs = listing
    specs = _specs_from_json(env, addr)
    assert set(long_specs) <= set(specs) and "host" in specs
    r = subprocess.run([sys.executable, "-m", "edgepack", "devices", "--no-usb", "--adb-tcp", addr],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == specs  # SPEC first, one line each, nothing else
    assert all(len(line.split("\t")) == 5 for line in lines)
    assert "\x1b[" not in r.stdout and "┃" not in r.stdout and "│" not in r.stdout
    if f"adb:{addr}" in specs:  # the fix for an unauthorized phone stays on its line
        assert f"adb:{addr}\tadb\tunauthorized: unlock the phone and tap Allow" in r.stdout


def _run_in_pty(args: list[str], env: dict, cols: int) -> str:
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError("edgepack devices printed nothing for 120 s")
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    os.close(master)
    return ANSI.sub("", b"".join(chunks).decode().replace("\r\n", "\n"))


def test_an_80_column_terminal_gets_a_table_with_every_spec_whole(listing):
    env, addr, long_specs = listing
    specs = _specs_from_json(env, addr)
    text = _run_in_pty([sys.executable, "-m", "edgepack", "devices", "--no-usb", "--adb-tcp", addr], env, 80)
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table), text
    assert sum(line.startswith("│ ") and not line.startswith("│  ") for line in table) == len(specs)
    _assert_every_spec_whole("\n".join(table), specs)


@pytest.mark.parametrize("width", [80, 100, 132, 200])
def test_render_keeps_spec_whole_at_any_terminal_width(listing, width):
    from rich.console import Console

    from edgepack.cli.devices_cmd import render
    from edgepack.devices.discover import discover

    env, addr, long_specs = listing
    entries = discover(adb_tcp=[addr], usb=False)
    specs = [e.spec for e in entries]
    assert set(long_specs) <= set(specs)
    buf = io.StringIO()
    render(entries, Console(file=buf, force_terminal=True, width=width, highlight=False, soft_wrap=True,
                            color_system=None))
    text = buf.getvalue()
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= width for line in table)
    _assert_every_spec_whole("\n".join(table), specs)
    rows: list[list[str]] = []  # nothing lost: each row's description cell, unfolded, is the whole description
    for line in table:
        if line.startswith("│"):
            cells = [c.strip() for c in line.split("│")[1:-1]]
            if cells[0]:
                rows.append(cells)
            else:
                rows[-1] = [a + b for a, b in zip(rows[-1], cells)]
    assert [r[0] for r in rows] == specs
    for e, r in zip(entries, rows):
        assert re.sub(r"\s", "", e.description) in re.sub(r"\s", "", r[3])


def test_a_terminal_too_narrow_for_the_spec_gets_plain_lines(listing):
    from rich.console import Console

    from edgepack.cli.devices_cmd import render
    from edgepack.devices.discover import discover

    env, addr, long_specs = listing
    entries = discover(adb_tcp=[addr], usb=False)
    buf = io.StringIO()
    render(entries, Console(file=buf, force_terminal=True, width=40, color_system=None))
    assert [line.split("\t")[0] for line in buf.getvalue().splitlines()] == [e.spec for e in entries]


def test_through_the_entry_point_with_rich_told_it_is_an_80_column_terminal(run_cli, listing, monkeypatch):
    env, addr, long_specs = listing
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat stdout as a terminal (it is pytest's capture)
    r = run_cli("devices", "--no-usb", "--adb-tcp", addr)
    assert r.exit_code == 0, r.err
    text = ANSI.sub("", r.out)
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table), text
    _assert_every_spec_whole("\n".join(table), long_specs + ["host", "qemu:mps2-an386"])
