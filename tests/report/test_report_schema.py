"""report.json as a typed, versioned model: every report the pipeline writes validates; one error type."""

import json

import pytest

from edgepack.errors import ReportError
from edgepack.report.schema import SCHEMA_VERSION, PackageReport, load_report
from locations import ROOT


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, mnist):
    from edgepack.pipeline import PackageRequest, package

    out = tmp_path_factory.mktemp("schema") / "android"
    package(PackageRequest(model=mnist.model, out=out, recipe_path=mnist.recipe, calibration=mnist.calib,
                           eval=mnist.eval, labels=mnist.labels))
    return out


def test_the_written_report_loads_with_its_fields(packaged):
    rep = load_report(packaged)
    raw = json.loads((packaged / "report.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == rep.schema_version
    assert rep.tflite.size_bytes == (packaged / "model.tflite").stat().st_size
    assert rep.verification.metric == "accuracy" and rep.verification.gate.applied
    assert rep.provenance.outputs["model.tflite"] and rep.entropy.package_bytes > 0
    assert set(rep.files) <= {p.relative_to(packaged).as_posix() for p in packaged.rglob("*")}


def test_an_older_report_without_a_version_loads(packaged):
    raw = json.loads((packaged / "report.json").read_text())
    raw.pop("schema_version")
    assert PackageReport.of(raw).schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("text, words", [
    (None, "no such report"),
    ("{not json", "not a valid report"),
    ("[1, 2]", "a JSON object was expected"),
    ('{"model": "m"}', "not an edgepack package report"),
])
def test_bad_reports_are_one_error_type_naming_the_fix(tmp_path, text, words):
    if text is not None:
        (tmp_path / "report.json").write_text(text)
    with pytest.raises(ReportError, match=words) as e:
        load_report(tmp_path)
    assert "\n" not in str(e.value) and "edgepack package" in str(e.value)


def test_a_newer_schema_is_refused_saying_to_upgrade(packaged):
    raw = json.loads((packaged / "report.json").read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ReportError, match="upgrade edgepack"):
        PackageReport.of(raw)


def test_no_key_path_reads_of_the_report_outside_the_report_module():
    """Readers in other units use PackageReport's fields, not report["..."]["..."]."""
    import re
    from pathlib import Path

    root = ROOT / "edgepack"
    readers = ["search/trial.py", "search/engine.py", "cli/package_cmd.py", "devices/estimate.py",
               "devices/artifact.py", "devices/store.py"]
    pattern = re.compile(r"\breport\[\"(tflite|verification|entropy|provenance|firmware|files|quantize|steps)\"\]")
    hits = [f"{r}:{i}" for r in readers for i, line in enumerate((root / r).read_text().splitlines(), 1)
            if pattern.search(line)]
    assert not hits, hits
