"""The package report as a typed, versioned model: written once by the pipeline, read through :func:`load_report`.

report.json is the source of truth for report.md/report.html, ``profile --append-report``, the estimate
device, the search and the CLI's summary. Every reader uses these fields, never a key path into a dict, so
a renamed field fails here, with one error type, instead of silently in a reader no test walks. Sections
other units fill in (per-step records, the firmware checks, the per-op table) keep their own keys
(``extra="allow"``) under typed fields for what is read across units.

Example::

    rep = load_report(Path("build/android"))
    rep.tflite.size_bytes, rep.verification.drop_pt, rep.entropy.package_bytes
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ReportError, validation_message

#: Bumped when a field is renamed or changes meaning; older reports are refused with how to re-make them.
SCHEMA_VERSION = 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


class TfliteSection(_Section):
    size_bytes: int
    converter_bytes: int
    compacted: bool = False
    ops: list[str]
    params: int
    macs: int
    io: dict[str, list[str]]


class Gate(_Section):
    applied: bool
    limit_pt: Optional[float] = None
    on: Optional[str] = None
    reason: Optional[str] = None


class Verification(_Section):
    samples: int
    data: str
    metric: str
    drop_pt: Optional[float] = None
    float_accuracy_pct: Optional[float] = None
    tflite_accuracy_pct: Optional[float] = None
    gate: Optional[Gate] = None


class Entropy(_Section):
    tflite_bytes: int
    package_bytes: int
    ratio: float


class Provenance(_Section):
    recipe: dict[str, Any]
    seed: int
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, str]
    versions: dict[str, str]

    def inputs_sha256(self) -> dict[str, Any]:
        return {k: v.get("sha256") for k, v in self.inputs.items()}


class Memory(_Section):
    """Firmware flash/RAM budget lines: what is needed and of what it is made."""

    needed: int
    runtime_estimate: Optional[int] = None


class Budget(_Section):
    flash: Memory
    ram: Memory


class Arena(_Section):
    min_bytes: int
    recommended_bytes: int


class Firmware(_Section):
    device: Optional[str] = None
    arena: Arena
    budget: Budget

    @property
    def arena_bytes(self) -> int:
        """The arena the firmware reserves (the RAM budget's arena line, else the recommended size)."""
        return int(self.budget.ram.model_extra.get("arena", self.arena.recommended_bytes))


class PackageReport(_Section):
    """report.json of ``edgepack package`` (see the module doc)."""

    schema_version: int = SCHEMA_VERSION
    model: str
    source: dict[str, Any]
    target: str
    quantize: dict[str, Any]
    steps: list[dict[str, Any]] = Field(default_factory=list)
    tflite: TfliteSection
    verification: Optional[Verification] = None
    provenance: Provenance
    entropy: Entropy
    files: list[str] = Field(default_factory=list)
    firmware: Optional[Firmware] = None
    warnings: list[str] = Field(default_factory=list)
    profiles: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def of(cls, data: dict[str, Any], where: str = "report") -> "PackageReport":
        """Validate a report dict (ReportError naming the first wrong field)."""
        version = data.get("schema_version", SCHEMA_VERSION) if isinstance(data, dict) else None
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise ReportError(f"{where}: report schema {version} is newer than this edgepack's "
                              f"({SCHEMA_VERSION}); upgrade edgepack to read it")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ReportError(f"{where}: not an edgepack package report ({validation_message(e)}); "
                              "re-run 'edgepack package' to write it again") from None

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready dict report.json holds."""
        return self.model_dump(mode="json", exclude_none=True)


def report_data(folder: Path) -> dict[str, Any]:
    """The report.json of a package folder as data, validated (ReportError: missing, not JSON, wrong shape);
    for writers that add to it (``profile --append-report``) and re-render it."""
    path = Path(folder) / "report.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report; give a folder written by 'edgepack package'") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not a valid report ({e}); re-run 'edgepack package' to write it again") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not an edgepack report (a JSON object was expected); re-run 'edgepack package'")
    PackageReport.of(data, str(path))
    return data


def load_report(folder: Path) -> PackageReport:
    """The report.json of a package folder, validated and typed (ReportError as :func:`report_data`)."""
    return PackageReport.of(report_data(folder), str(Path(folder) / "report.json"))
