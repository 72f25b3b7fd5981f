"""The course as pages: built offline, checked in headless Chromium.

The end-to-end test runs the course command on every notebook into ``build/`` (the same pages
``make course`` writes), then opens each page, its lecture flavour and the index in Chromium
from ``file://`` with background networking off: every plotly figure must have drawn SVG or
canvas content, every circuitsvis view rendered content, and there must be no console error,
exception or failed resource load. Screenshots go to ``build/screenshots/`` (a CI artifact).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter

from tools.browser import find_chromium
from tools.pages import WIDGET_VIEW, export_pages, make_offline, notebook_info

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _chromium_or_skip() -> str:
    try:
        return find_chromium()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def test_make_offline_removes_network_resources_and_keeps_the_rest():
    page = ('<head><script src="https://cdnjs.example/require.min.js"></script>'
            '<link rel="stylesheet" href="http://fonts.example/a.css">'
            '<script>var local = 1;</script></head>'
            '<a href="https://colab.example"><img alt="Open In Colab" src="https://x/b.svg"></a>')
    out = make_offline(page)
    assert "https://cdnjs" not in out and "fonts.example" not in out
    assert "var local = 1" in out
    assert '<a href="https://colab.example">Open In Colab</a>' in out


def test_notebook_info_reads_title_and_goals():
    nb = nbformat.read(ROOT / "notebooks" / "00_tour.ipynb", as_version=4)
    info = notebook_info(nb, "00_tour")
    assert info.title.startswith("00")
    assert len(info.goals) >= 3 and all(goal.strip() for goal in info.goals)


def test_lecture_flavour_hides_code_and_keeps_outputs(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# T\n\nProse stays."),
        nbformat.v4.new_code_cell("secret_code_line = 1", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="the output stays\n")]),
    ])
    page, lecture = export_pages(nb, tmp_path, "t")
    assert "secret_code_line" in page.read_text()
    text = lecture.read_text()
    assert "secret_code_line" not in text
    assert "Prose stays." in text and "the output stays" in text


def test_widget_outputs_become_a_note_and_nothing_is_fetched_from_unpkg(tmp_path):
    widget_view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# T"),
        nbformat.v4.new_code_cell("make_widget()", outputs=[nbformat.v4.new_output(
            "display_data", data={WIDGET_VIEW: widget_view, "text/plain": "VBox()"})]),
    ])
    # what nbclient stores after running a notebook that displayed a widget
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {}, "version_major": 2, "version_minor": 0}}
    before, _ = HTMLExporter().from_notebook_node(nb)
    assert "unpkg.com" in before  # nbconvert alone would fetch the widget renderer
    for path in export_pages(nb, tmp_path, "t"):
        text = path.read_text()
        assert "unpkg.com" not in text and WIDGET_VIEW not in text
        assert "interactive control" in text
    assert "widgets" in nb.metadata  # the caller's notebook is left as it was


@pytest.fixture(scope="module")
def built_pages():
    """Run the course command on every notebook into build/ (as ``make course`` does)."""
    _chromium_or_skip()
    from tools.course import main

    out = ROOT / "build"
    code = main(["--no-install", "--out", str(out), *map(str, NOTEBOOKS)])
    assert code == 0, "a notebook failed while building the pages (see the table above)"
    return out


def test_every_page_renders_offline_in_chromium(built_pages):
    from tools.browser import check_page

    shots = built_pages / "screenshots"
    if shots.exists():
        shutil.rmtree(shots)
    pages = [built_pages / "index.html"]
    for nb in NOTEBOOKS:
        pages += [built_pages / f"{nb.stem}.html", built_pages / "lecture" / f"{nb.stem}.html"]
    reports = []
    for page in pages:
        name = page.stem if page.parent == built_pages else f"lecture-{page.stem}"
        reports.append(check_page(page, shots / f"{name}.png"))
    summary = "\n".join(r.summary() for r in reports)
    print(summary)
    assert all(r.ok for r in reports), summary
    for report in reports:
        assert report.screenshot is not None and report.screenshot.stat().st_size > 10_000
    # the notebooks do draw figures and views, so the checks above were not vacuous
    assert sum(r.plots for r in reports) >= 2 * len(NOTEBOOKS)
    assert sum(r.views for r in reports) >= 2
