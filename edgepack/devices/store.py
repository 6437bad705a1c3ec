"""Writing profile results: a JSON file, or appended to a package's report.json (atomically).

Both write a temporary file beside the destination and rename it, so a failed
or interrupted run leaves the previous file (or nothing) behind.

Example::

    write_json(Path("host.json"), result.model_dump(mode="json"))
    append_profiles(Path("build/android"), [result])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..errors import DeviceError, UsageError
from ..fsutil import atomic_write_text, atomic_write_texts
from .result import ProfileResult


def check_out(path: Path) -> None:
    """Refuse an --out whose folder does not exist (before any profiling)."""
    if not Path(path).parent.is_dir():
        raise UsageError(f"--out {path}: folder {Path(path).parent} does not exist; create it first")


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON (no NaN/Infinity) to ``path`` through a temp file + rename."""
    path = Path(path)
    check_out(path)
    atomic_write_text(path, _strict_json(path, data))


def _strict_json(path: Path, data: Any) -> str:
    """The JSON text of ``data`` for ``path``; DeviceError when a figure is NaN or infinite."""
    from ..report import report_json

    try:
        return report_json(data)
    except ValueError as e:
        raise DeviceError(f"not writing {path}: a figure is NaN or infinite ({e}); nothing was written, "
                          "re-run the profile") from None


def read_report(report_dir: Path) -> dict:
    """The report.json of a package folder as data, validated as a package report (ReportError)."""
    from ..report.schema import report_data

    if not (Path(report_dir) / "report.json").is_file():
        raise UsageError(f"--append-report {report_dir}: no report.json there; pass a folder "
                         "written by `edgepack package`")
    return report_data(report_dir)  # one check, one error type, for every reader


def append_profiles(report_dir: Path, results: Iterable[ProfileResult]) -> Path:
    """Append results to ``report_dir/report.json``'s "profiles" list, with report.md/.html re-rendered;
    the three files are replaced together (a failed write, e.g. a full disk, changes none of them)."""
    from ..report import rendered

    data = read_report(report_dir)
    data.setdefault("profiles", []).extend(r.model_dump(mode="json") for r in results)
    report = Path(report_dir) / "report.json"
    atomic_write_texts({report: _strict_json(report, data), **rendered(Path(report_dir), data)})
    return report

