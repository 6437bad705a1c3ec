"""The device-side folder a run uses (/data/local/tmp/edgepack-XXXX): owner, PIDs, removal.

Each run's folder holds ``owner`` ("HOST PID" of the edgepack process on the computer)
and ``pids`` (the device-side shell, battery sampler and benchmark_model of the run).
Removal kills those PIDs with SIGKILL first and waits until they are gone, so nothing
of the run can write into the folder while ``rm -rf`` removes it (the old order
"signal, then rm" let the run's shell recreate a file mid-removal: the folder stayed).

Folders left behind by a dropped connection or a killed edgepack are stale; the next
connection removes them (:func:`stale`): those of this computer whose edgepack process
is gone, and any other whose run is no longer alive and that is older than an hour.

Example::

    rows = parse_listing(link.shell(LIST_COMMAND + "; echo EXIT=$?", 10))
    doomed = stale(rows)
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

REMOTE_ROOT = "/data/local/tmp"
PREFIX = "edgepack-"
FOREIGN_MAX_AGE_S = 3600.0
ACTIVE: set[str] = set()  # folders this process uses now (never stale)
_NAME = re.compile(r"^edgepack-[0-9a-f]{8}$")


def host_id() -> str:
    """This computer: its hostname and a digest of /etc/machine-id (hostnames repeat across hosts)."""
    import hashlib

    name = re.sub(r"[^\w.-]", "_", socket.gethostname())[:48] or "host"
    try:
        machine = Path("/etc/machine-id").read_bytes().strip()
    except OSError:
        machine = b""
    return f"{name}.{hashlib.sha256(machine).hexdigest()[:8]}" if machine else name


def new_folder() -> str:
    return f"{REMOTE_ROOT}/{PREFIX}{secrets.token_hex(4)}"


def create_command(folder: str) -> str:
    return f"mkdir -p {folder} && echo '{host_id()} {os.getpid()}' >{folder}/owner"


def _alive_test(var: str) -> str:
    """sh test: process $var exists and is not a zombie (a zombie cannot write anything)."""
    return (f"{{ s=$(cut -d' ' -f3 /proc/${var}/stat 2>/dev/null); [ -n \"$s\" ] && [ \"$s\" != Z ]; }}")


def remove_command(folder: str, wait_s: float = 5.0) -> str:
    """Kill the run's PIDs (SIGKILL), wait until none is alive, then remove the folder."""
    n = max(int(wait_s / 0.1), 1)
    pids = f"$(cat {folder}/pids 2>/dev/null)"
    return (f"for p in {pids}; do kill -9 $p 2>/dev/null; done; i=0; while [ $i -lt {n} ]; do a=0; "
            f"for p in {pids}; do {_alive_test('p')} && a=1; done; [ $a = 0 ] && break; "
            f"sleep 0.1; i=$((i+1)); done; rm -rf {folder} 2>/dev/null || {{ sleep 0.2; rm -rf {folder}; }}; "
            f"[ ! -e {folder} ]")


LIST_COMMAND = (
    f"now=$(date +%s); for d in {REMOTE_ROOT}/{PREFIX}*; do [ -d \"$d\" ] || continue; a=0; "
    f"for p in $(cat \"$d/pids\" 2>/dev/null); do {_alive_test('p')} && a=1; done; "
    "echo \"DIR ${d##*/} $a $((now - $(stat -c %Y \"$d\" 2>/dev/null || echo $now))) "
    "$(cat \"$d/owner\" 2>/dev/null)\"; done")


@dataclass
class Folder:
    name: str
    alive: bool  # a process of its run still runs on the device
    age_s: float
    owner_host: str
    owner_pid: int


def parse_listing(text: str) -> list[Folder]:
    """Rows printed by LIST_COMMAND (lines that do not parse are ignored)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] != "DIR" or not _NAME.match(parts[1]):
            continue
        try:
            pid = int(parts[5]) if len(parts) > 5 else 0
            out.append(Folder(parts[1], parts[2] == "1", float(parts[3]), parts[4] if len(parts) > 4 else "",
                              pid))
        except ValueError:
            continue
    return out


def _host_pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(folders: list[Folder]) -> list[Folder]:
    """The folders no run of edgepack uses any more (see the module docstring)."""
    out = []
    for f in folders:
        path = f"{REMOTE_ROOT}/{f.name}"
        if path in ACTIVE:
            continue
        if f.owner_host == host_id():
            if f.owner_pid == os.getpid() or not _host_pid_alive(f.owner_pid):
                out.append(f)
        elif not f.alive and f.age_s > FOREIGN_MAX_AGE_S:
            out.append(f)
    return out
