"""report.html is one self-contained page: rendered in a real headless Chromium, every plot
draws, nothing is fetched; `edgepack report DIR` re-renders it from report.json."""

from __future__ import annotations

import json
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory, mnist):
    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe

    out = tmp_path_factory.mktemp("rep") / "android"
    package(PackageRequest(model=mnist.model, out=out, recipe=Recipe.from_yaml(mnist.recipe),
                           calibration=mnist.calib, eval=mnist.eval, labels=mnist.labels))
    return out


def _browse(path, screenshot):
    pw = pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives Debian's chromium)")
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: apt-get install chromium")
    requests: list[str] = []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        figures = page.evaluate("""() => [...document.querySelectorAll('figure svg')].map(s => {
            const r = s.getBoundingClientRect();
            return {w: r.width, h: r.height, paths: s.querySelectorAll('path').length};})""")
        images = page.evaluate("() => [...document.images].map(i => i.complete && i.naturalWidth > 0)")
        tables = page.evaluate("() => document.querySelectorAll('table').length")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return requests, figures, images, tables


def test_report_html_renders_its_plots_and_fetches_nothing(package_dir, tmp_path):
    page = package_dir / "report.html"
    requests, figures, images, tables = _browse(page, tmp_path / "shot.png")
    assert requests == [page.as_uri()]  # the page itself, nothing else
    assert len(figures) >= 1 and all(f["w"] > 100 and f["h"] > 50 and f["paths"] > 10 for f in figures)
    assert all(images) and tables >= 4
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def test_report_cmd_rerenders_after_a_profile_is_appended(run_cli, package_dir, tmp_path):
    d = tmp_path / "pkg"
    shutil.copytree(package_dir, d)
    before = (d / "report.html").read_text()
    r = run_cli("profile", d, "--device", "host", "--runs", "5", "--append-report", d)
    assert r.exit_code == 0, r.err
    rep = json.loads((d / "report.json").read_text())
    assert len(rep["profiles"]) == 1
    html = (d / "report.html").read_text()
    assert html != before and "Profiles" in html and "latency per device" in html
    (d / "report.html").unlink()
    r = run_cli("report", d)
    assert r.exit_code == 0 and (d / "report.html").read_text() == html  # deterministic rendering
    assert "## Profiles" in (d / "report.md").read_text() and "```json" not in (d / "report.md").read_text()


def test_report_cmd_on_a_folder_without_report_is_one_line(run_cli, tmp_path):
    r = run_cli("report", tmp_path)
    assert r.exit_code == 1 and "no such report" in r.err and len(r.err.strip().splitlines()) == 1


def test_firmware_report_has_the_budget_bar(run_cli, mnist, tmp_path):
    out = tmp_path / "fw"
    r = run_cli("package", mnist.model, "--target", "tflm", "--device", "nucleo-l4r5zi", "--recipe", mnist.recipe,
                "--calibration", mnist.calib, "--out", out, "-q")
    assert r.exit_code == 0, r.err
    html = (out / "report.html").read_text()
    assert "memory budget" in html and "<svg" in html
    requests, figures, _, _ = _browse(out / "report.html", tmp_path / "fw.png")
    assert requests == [(out / "report.html").as_uri()] and len(figures) >= 2
