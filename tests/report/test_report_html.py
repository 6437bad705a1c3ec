"""report.html is one self-contained page: rendered in a real headless Chromium, every plot
draws, nothing is fetched; `edgepack report DIR` re-renders it from report.json."""

from __future__ import annotations

import json
import re
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
        _assert_laid_out(page.evaluate(LAYOUT_JS), path)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return requests, figures, images, tables


# In the page: each figure's text groups (matplotlib draws glyphs as paths inside <g id="text_N">) against
# the box of their <svg>, and every field's rendered text (table cells, captions, headings, warnings).
LAYOUT_JS = """() => {
  const figures = [...document.querySelectorAll('figure svg')].map(svg => {
    const box = svg.getBoundingClientRect();
    const texts = [...svg.querySelectorAll('g[id^="text_"]')].map(g => {
      const r = g.getBoundingClientRect();
      return {id: g.id, w: r.width, h: r.height, left: r.left - box.left, right: box.right - r.right,
              top: r.top - box.top, bottom: box.bottom - r.bottom};
    });
    return {label: svg.closest('figure').getAttribute('aria-label'), w: box.width, h: box.height, texts};
  });
  const fields = [...document.querySelectorAll('td, th, figcaption, h1, h2, p')].map(
    e => ({tag: e.tagName, text: e.innerText, row: (e.closest('tr') || e).innerText}));
  return {figures, fields};
}"""
BAD_FIELD = re.compile(r"^\s*$|(^|\W)(None|null|undefined|NaN|nan)(\W|$)|=;|=\s*$|\{|\}")


def _assert_laid_out(layout: dict, path) -> None:
    """Every figure's text lies inside its svg (nothing clipped); no field is empty, "None" or "key=;"."""
    assert layout["figures"], f"{path}: no figure"
    for fig in layout["figures"]:
        assert fig["texts"], f"{fig['label']}: no text in the figure"
        drawn = [t for t in fig["texts"] if t["w"] > 0 and t["h"] > 0]
        outside = [t for t in drawn if min(t["left"], t["right"], t["top"], t["bottom"]) < -0.5]
        assert not outside, f"{path}: text outside the '{fig['label']}' figure ({fig['w']}x{fig['h']}): {outside}"
    bad = [(f["tag"], f["text"], f["row"]) for f in layout["fields"] if BAD_FIELD.search(f["text"])]
    assert not bad, f"{path}: empty or unrendered fields: {bad}"


def test_report_html_renders_its_plots_and_fetches_nothing(package_dir, tmp_path):
    page = package_dir / "report.html"
    requests, figures, images, tables = _browse(page, tmp_path / "shot.png")
    assert requests == [page.as_uri()]  # the page itself, nothing else
    assert len(figures) >= 1 and all(f["w"] > 100 and f["h"] > 50 and f["paths"] > 10 for f in figures)
    assert all(images) and tables >= 4
    assert (tmp_path / "shot.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def gate_off_dir(tmp_path_factory, mnist):
    """A package built with the accuracy gate turned off (--max-accuracy-drop none), per-layer errors measured."""
    from edgepack.pipeline import PackageRequest, package
    from edgepack.recipe import Recipe

    out = tmp_path_factory.mktemp("rep") / "gate_off"
    package(PackageRequest(model=mnist.model, out=out, recipe=Recipe.from_yaml(mnist.recipe), max_accuracy_drop="none",
                           calibration=mnist.calib, eval=mnist.eval, labels=mnist.labels))
    return out


def test_gate_off_report_says_so_in_words_and_draws_every_figure_whole(gate_off_dir, tmp_path):
    rep = json.loads((gate_off_dir / "report.json").read_text())
    gate = rep["verification"]["gate"]
    assert gate["applied"] is False and gate["limit_pt"] is None
    assert any(r.get("rmse_steps") is not None for r in rep["layers"])  # the quantization-error panel is drawn
    html = (gate_off_dir / "report.html").read_text()
    assert "off: turned off (max_accuracy_drop: none)" in html and "limit_pt=" not in html and "=;" not in html
    requests, figures, _, _ = _browse(gate_off_dir / "report.html", tmp_path / "off.png")
    assert len(figures) >= 1 and requests == [(gate_off_dir / "report.html").as_uri()]
    assert "- Accuracy gate: turned off (max_accuracy_drop: none)" in (gate_off_dir / "report.md").read_text()


def test_the_layout_check_sees_clipped_text_and_empty_fields(tmp_path):
    """The browser check can fail: a title drawn past its svg's edge, and a field rendered empty or "None"."""
    from edgepack.report.html import render_html

    page = render_html({"model": "m", "target": "android", "quantize": {"mode": "int8"},
                        "tflite": {"size_bytes": 10, "ops": ["CONV_2D"]},
                        "layers": [{"index": 0, "op": "CONV_2D", "macs": 10, "rmse_steps": 0.2}]})
    clipped = re.sub(r'viewBox="0 0 ([\d.]+) ([\d.]+)"',
                     lambda m: f'viewBox="0 0 {float(m.group(1)) / 2:g} {m.group(2)}"', page, count=1)
    (tmp_path / "clipped.html").write_text(clipped)  # the same drawing in half its box
    with pytest.raises(AssertionError, match="text outside"):
        _browse(tmp_path / "clipped.html", tmp_path / "c.png")
    (tmp_path / "empty.html").write_text(page.replace("</tbody>", "<tr><td>x</td><td>None</td></tr></tbody>", 1))
    with pytest.raises(AssertionError, match="empty or unrendered fields"):
        _browse(tmp_path / "empty.html", tmp_path / "e.png")


def test_figures_fit_with_many_long_op_names(package_dir, tmp_path):
    """A deeper model than the example (18 ops, long names, MACs over many orders of magnitude): the error
    panel's title still fits its box (its one-line title ran past the svg's right edge here)."""
    from edgepack.report.html import render_html

    rep = json.loads((package_dir / "report.json").read_text())
    ops = ["DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "ADD", "SOFTMAX"] * 3
    rep["layers"] = [{"index": i, "op": op, "layer": f"block{i}", "macs": 10 ** i, "rmse_steps": 0.2 + i / 100}
                     for i, op in enumerate(ops)]
    (tmp_path / "deep.html").write_text(render_html(rep))
    _browse(tmp_path / "deep.html", tmp_path / "deep.png")


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
    _browse(d / "report.html", tmp_path / "profiled.png")  # the latency figure drawn whole, every field filled
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
