"""One check for "refused cleanly": the shape every bad-input test expects of edgepack.

A refusal is: exit code 1 (2 for usage errors, pass ``code=2``), exactly one line on stderr starting
with ``error: `` (besides ``warning: `` lines the run printed before it), no ``Traceback`` on stderr or stdout, and nothing written to the output: ``--out``
does not exist and no staging folder (``.NAME.*`` beside it) is left behind, or, when the output
existed before the run, it is byte-for-byte what it was (take a :func:`snapshot` first).

Used by the bad-input, hostile-input, fuzz and load tests and by the integration matrix.

Example::

    from refusal import assert_refused, snapshot

    r = run_cli("package", "nope.h5", "--out", tmp_path / "o")          # the run_cli fixture's CliResult
    line = assert_refused(r, out=tmp_path / "o", match="no such model")

    before = snapshot(out)                                               # an --out that already exists
    r = subprocess.run(["edgepack", "package", ..., "--out", out, "--force"], capture_output=True, text=True)
    assert_refused(r, out=before, match=["No space left", str(out)])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union


@dataclass(frozen=True)
class Snapshot:
    """Every file (relative path -> bytes) and folder under ``path`` at one moment; see :func:`snapshot`."""

    path: Path
    files: dict
    dirs: frozenset

    def now(self) -> "Snapshot":
        return snapshot(self.path)


def snapshot(path: Union[str, Path]) -> Snapshot:
    """The state of ``path`` (a file, a folder or nothing) to compare after a refused run."""
    path = Path(path)
    if path.is_file() or path.is_symlink() and not path.is_dir():
        return Snapshot(path, {Path("."): path.read_bytes() if path.exists() else b"<dangling>"}, frozenset())
    if not path.exists():
        return Snapshot(path, {}, frozenset())
    items = sorted(path.rglob("*"))
    return Snapshot(path, {p.relative_to(path): p.read_bytes() for p in items if p.is_file()},
                    frozenset(p.relative_to(path) for p in items if p.is_dir()) | {Path(".")})


Match = Union[str, "re.Pattern[str]", Iterable[Union[str, "re.Pattern[str]"]]]


def _streams(result: Any) -> tuple[int, str, str]:
    if hasattr(result, "exit_code"):  # tests/cli_result.py CliResult (click's Result has these too)
        code, out, err = result.exit_code, result.out if hasattr(result, "out") else result.stdout, \
            result.err if hasattr(result, "err") else result.stderr
    else:  # subprocess.CompletedProcess
        code, out, err = result.returncode, result.stdout, result.stderr
    dec = (lambda s: s.decode("utf-8", "replace") if isinstance(s, bytes) else (s or ""))
    return code, dec(out), dec(err)


def assert_refused(result: Any, *, out: Optional[Union[str, Path, Snapshot]] = None,
                   match: Optional[Match] = None, code: Union[int, Iterable[int]] = 1) -> str:
    """Assert ``result`` is a clean refusal; return its one stderr line (``error: ...``).

    result: a CliResult (``.exit_code``, ``.out``, ``.err``, from the ``run_cli`` fixture) or a
        ``subprocess.CompletedProcess`` (text or bytes).
    out: the ``--out`` path, which must not exist (nor a ``.NAME.*`` staging folder beside it), or a
        :func:`snapshot` of an output that existed before the run, which must be unchanged.
    match: a substring, a compiled regex, or a list of them: each must be found in the error line.
    code: the expected exit code (1; 2 for usage errors), or a collection of accepted codes.
    """
    rc, stdout, stderr = _streams(result)
    codes = {code} if isinstance(code, int) else set(code)
    assert rc in codes, f"exit code {rc}, expected {sorted(codes)}; stderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr and "Traceback" not in stdout, f"a traceback:\n{stderr[-3000:]}"
    # Warnings the run printed before it was refused (e.g. one-shot pruning without --train) are theirs;
    # the refusal itself is one line.
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr[-3000:]}"
    line = lines[0]
    assert line.startswith("error: "), f"the line does not start with 'error: ': {line!r}"
    if match is not None:
        wanted = [match] if isinstance(match, (str, re.Pattern)) else list(match)
        for m in wanted:
            found = m.search(line) if isinstance(m, re.Pattern) else m in line
            assert found, f"{m if isinstance(m, str) else m.pattern!r} not in the error line: {line!r}"
    if out is None:
        return line
    if isinstance(out, Snapshot):
        now = out.now()
        assert now == out, f"{out.path} changed by a refused run: " + _diff(out, now)
        out = out.path
    else:
        out = Path(out)
        assert not out.exists() and not out.is_symlink(), f"{out} written by a refused run"
    staged = sorted(p.name for p in out.parent.glob(f".{out.name}.*")) if out.parent.is_dir() else []
    assert not staged, f"staging left beside {out}: {staged}"
    return line


def _diff(before: Snapshot, after: Snapshot) -> str:
    added = sorted(map(str, (set(after.files) | set(after.dirs)) - (set(before.files) | set(before.dirs))))
    gone = sorted(map(str, (set(before.files) | set(before.dirs)) - (set(after.files) | set(after.dirs))))
    changed = sorted(str(p) for p in set(before.files) & set(after.files) if before.files[p] != after.files[p])
    return f"added {added}, removed {gone}, changed {changed}"
