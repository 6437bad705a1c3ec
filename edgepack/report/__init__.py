"""Reports: report.json is the source of truth; report.md and report.html are rendered from it.

Example::

    write_report(Path("build/android"), report)      # a staging folder: json, md, html
    rerender(Path("build/android"))                  # after `profile --append-report`
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_texts
from .html import render_html
from .markdown import render_markdown

REPORT_FILES = ("report.json", "report.md", "report.html")


def write_report(folder: Path, report: dict[str, Any]) -> None:
    """Write report.json, report.md and report.html into ``folder`` (a staging folder)."""
    (folder / "report.json").write_text(report_json(report))
    for path, text in rendered(folder, report).items():
        path.write_text(text)


def report_json(report: dict[str, Any]) -> str:
    """The text of report.json (strict JSON: a NaN or infinite figure raises ValueError)."""
    return json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n"


def rerender(folder: Path) -> list[str]:
    """Render report.md and report.html again from ``folder``/report.json; return the files written."""
    from .schema import report_data

    atomic_write_texts(rendered(Path(folder), report_data(folder)))  # ReportError: missing, not JSON, not a report
    return ["report.md", "report.html"]


def rendered(folder: Path, report: dict) -> dict[Path, str]:
    """report.md and report.html of ``report``, by path in ``folder`` (nothing written)."""
    return {folder / "report.md": render_markdown(report) + "\n", folder / "report.html": render_html(report)}


__all__ = ["REPORT_FILES", "render_html", "render_markdown", "rendered", "report_json", "rerender", "write_report"]
