"""The course as pages: built offline, checked in headless Chromium.

The unit tests build pages, lecture pages, slide decks and the index from small notebooks made
here. The end-to-end test runs the course command on ``00_tour`` and two tiny generated
notebooks into a temporary directory (never ``build/``, where ``make course`` keeps the full
pages; ``INTERP_PAGES_ALL=1`` builds every course notebook instead), then opens each page, its
lecture flavour, its slide deck and the index in Chromium from ``file://`` with background
networking off: every plotly figure must have drawn SVG or canvas content, every circuitsvis
view rendered content (on a deck, on the slide that shows it), no slide may run past its
bottom, and there must be no console error, exception or failed resource load. Screenshots go
to ``build/screenshots/`` (a CI artifact).
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import tools.pages
from interp_lib.notebook import SETUP_CELL, colab_badge
from tools.browser import find_chromium
from tools.pages import (
    LECTURE_CSS,
    WIDGET_VIEW,
    RevealAssets,
    RevealNotFoundError,
    export_pages,
    export_slides,
    make_offline,
    markdown_inline,
    notebook_info,
    reveal_assets,
    slide_deck,
    write_index,
)

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "notebooks" / "00_tour.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"
REMOTE = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)\s*=\s*[\"']https?://", re.I)


def _chromium_or_skip() -> str:
    try:
        return find_chromium()
    except FileNotFoundError as err:
        pytest.skip(str(err))


def _reveal_or_skip() -> RevealAssets:
    try:
        return reveal_assets()
    except RevealNotFoundError as err:
        pytest.skip(str(err))


#: Stand-in reveal.js for tests that only look at the HTML (no browser).
FAKE_REVEAL = RevealAssets(Path("fake"), "0", "window.Reveal = {fake: 1};", ".reveal{}",
                           ".theme{}")


def _figure(name: str) -> dict:
    """A display_data output as plotly's notebook renderer writes one."""
    return new_output("display_data", data={
        PLOTLY: {"data": [], "layout": {}},
        "text/html": f'<div id="{name}" class="plotly-graph-div"></div>'})


def _notebook() -> nbformat.NotebookNode:
    """A small executed course notebook: title with badge and goals, the setup cell, a section
    with an exercise and a cell drawing two figures, a section that opens with a table."""
    badge = colab_badge("notebooks/98_t.ipynb")
    return new_notebook(cells=[
        new_markdown_cell(f"{badge}\n\n# 98 · A title with `code_span`\n\n**What you will learn**"
                          "\n- how `run_with_cache` keeps *every* activation;\n"
                          "- what snake_case_words look like.\n\nIntroduction prose."),
        new_code_cell(SETUP_CELL, outputs=[new_output(
            "stream", name="stdout", text="[interp_lib] local kernel; fast mode: True\n")]),
        new_code_cell("secret_model = load_it()", outputs=[new_output(
            "stream", name="stdout",
            text="[interp_lib] model: course (/home/someone/path)\ncourse: 4 layers\n")]),
        new_markdown_cell("## 1. First section\n\nHeads attend to tokens, e.g. the previous one. "
                          "The second sentence stays in the notebook.\n\n"
                          "### Exercise 1.1 · Write it\n\nExercise prose is not a takeaway."),
        new_code_cell("draw()", outputs=[
            new_output("stream", name="stdout", text="printed numbers\n"),
            new_output("display_data", data={"text/html": "<script>window.PlotlyConfig = {};"
                                                          "</script><script>lib</script>"}),
            _figure("first-figure"), _figure("second-figure")]),
        new_markdown_cell("The first figure shows one thing. Then more text."),
        new_code_cell("x = 1", outputs=[new_output("stream", name="stdout", text="1\n")]),
        new_markdown_cell("Text before the heading.\n\n## 2. Second section\n\n| a | b |\n|---|---|"
                          "\n| 1 | 2 |\n\nProse after the table."),
        new_markdown_cell("## Summary\n\n- point one;\n- point two.\n\nProse after the list."),
    ])


def test_make_offline_removes_network_resources_and_keeps_the_rest():
    page = ('<head><script src="https://cdnjs.example/require.min.js"></script>'
            '<link rel="stylesheet" href="http://fonts.example/a.css">'
            '<script>var local = 1;</script></head>'
            '<a href="https://colab.example"><img alt="Open In Colab" src="https://x/b.svg"></a>')
    out = make_offline(page)
    assert "https://cdnjs" not in out and "fonts.example" not in out
    assert "var local = 1" in out
    assert '<a href="https://colab.example">Open In Colab</a>' in out


def test_the_doc_examples_of_the_pages_module_hold():
    result = doctest.testmod(tools.pages)
    assert result.attempted >= 6 and result.failed == 0


def test_notebook_info_reads_title_and_goals_and_keeps_their_markdown():
    nb = nbformat.read(TOUR, as_version=4)
    info = notebook_info(nb, "00_tour")
    assert info.title.startswith("00")
    assert len(info.goals) >= 3 and all(goal.strip() for goal in info.goals)
    assert "interp_lib.load_model" in info.goals[0] and "`" not in info.goals[0]
    assert any("<code>run_with_cache</code>" in goal for goal in info.goals_html)
    info = notebook_info(_notebook(), "98_t")
    assert info.title == "98 · A title with code_span"
    assert info.title_html == "98 · A title with <code>code_span</code>"
    assert info.goals == ["how run_with_cache keeps every activation;",
                          "what snake_case_words look like."]


def test_markdown_inline_renders_code_and_emphasis_and_escapes_html():
    assert markdown_inline("`a_b` and *c* and **d**") == (
        "<code>a_b</code> and <em>c</em> and <strong>d</strong>")
    assert markdown_inline("<script>x</script> & snake_case") == (
        "&lt;script&gt;x&lt;/script&gt; &amp; snake_case")


def test_the_index_renders_the_goals_and_links_every_flavour(tmp_path):
    nb = nbformat.read(TOUR, as_version=4)
    files = {}
    for key, rel in (("html", "00_tour.html"), ("lecture", "lecture/00_tour.html"),
                     ("slides", "slides/00_tour.slides.html")):
        files[key] = tmp_path / rel
        files[key].parent.mkdir(parents=True, exist_ok=True)
        files[key].write_text("x" * 2**20)
    result = SimpleNamespace(info=notebook_info(nb, "00_tour"), status="ok", seconds=1.5, **files)
    text = write_index([result], tmp_path, "model: course").read_text()
    assert "<code>interp_lib.load_model</code>" in text
    assert "<code>run_with_cache</code>" in text and "runwithcache" not in text
    assert "interplib" not in text
    assert 'href="00_tour.html"' in text and 'href="lecture/00_tour.html"' in text
    assert 'href="slides/00_tour.slides.html"' in text and "slides 1.0 MB" in text


def test_lecture_flavour_hides_code_setup_and_badge_and_keeps_outputs(tmp_path):
    page, lecture = export_pages(_notebook(), tmp_path, "t")
    full = page.read_text()
    assert "secret_model" in full and "[interp_lib] model" in full
    text = lecture.read_text()
    assert "secret_model" not in text
    assert "course: 4 layers" in text and "printed numbers" in text  # outputs stay
    assert "Introduction prose." in text
    assert "[interp_lib]" not in text and "/home/someone" not in text
    assert "Open In Colab" not in text and "colab-badge" not in text
    assert LECTURE_CSS in text
    assert re.search(r"--jp-content-font-size1:\s*2\dpx", text)
    assert re.search(r"\.modebar-container[^{]*\{\s*display:\s*none", text)


def test_widget_outputs_become_a_note_and_nothing_is_fetched_from_unpkg(tmp_path):
    widget_view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb = new_notebook(cells=[
        new_markdown_cell("# T"),
        new_code_cell("make_widget()", outputs=[new_output(
            "display_data", data={WIDGET_VIEW: widget_view, "text/plain": "VBox()"})]),
    ])
    # what nbclient stores after running a notebook that displayed a widget
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {}, "version_major": 2, "version_minor": 0}}
    before, _ = HTMLExporter().from_notebook_node(nb)
    assert "unpkg.com" in before  # nbconvert alone would fetch the widget renderer
    paths = [*export_pages(nb, tmp_path, "t"), export_slides(nb, tmp_path, "t", FAKE_REVEAL)]
    for path in paths:
        text = path.read_text()
        assert "unpkg.com" not in text and WIDGET_VIEW not in text
    assert all("interactive control" in path.read_text() for path in paths[:2])
    assert "widgets" in nb.metadata  # the caller's notebook is left as it was


def _slides(deck) -> list[tuple[str, str]]:
    """(slide type, what the cell shows) for each cell of a deck."""
    out = []
    for cell in deck.cells:
        kind = cell.metadata["slideshow"]["slide_type"]
        if cell.cell_type == "markdown":
            out.append((kind, cell.source))
        else:
            shown = [o.get("data", {}).get("text/html", o.get("text", "")) for o in cell.outputs]
            out.append((kind, " ".join(shown)))
    return out


def test_the_deck_has_a_title_a_slide_per_section_and_a_slide_per_figure():
    nb = _notebook()
    slides = _slides(slide_deck(nb))
    kinds = [kind for kind, _ in slides]
    assert kinds == ["slide", "slide", "-", "subslide", "-", "subslide", "slide", "slide"]
    title = slides[0][1]
    assert title.startswith("# 98 · A title with `code_span`")
    assert "- how `run_with_cache` keeps *every* activation;" in title
    assert "colab" not in title.lower() and "Introduction prose" not in title
    assert slides[1][1] == ("## 1. First section\n\n"
                            "Heads attend to tokens, e.g. the previous one.")
    assert "window.PlotlyConfig" in slides[2][1]  # plotly.js, in front of the figures
    assert "first-figure" in slides[3][1] and "second-figure" in slides[5][1]
    assert slides[4][1] == "The first figure shows one thing."  # under the first figure
    assert slides[6][1].startswith("## 2. Second section\n\n| a | b |")
    assert slides[7][1] == "## Summary\n\n- point one;\n- point two."  # a summary's list
    shown = " ".join(text for _, text in slides)
    for left_out in ("Exercise", "printed numbers", "[interp_lib]", "course: 4 layers",
                     "second sentence", "Then more text", "Text before the heading",
                     "Prose after the table", "Prose after the list"):
        assert left_out not in shown
    assert nb.cells[1].outputs  # the caller's notebook is left as it was


def test_slide_types_an_author_set_are_kept():
    nb = _notebook()
    nb.cells[3].metadata["slideshow"] = {"slide_type": "slide"}
    nb.cells[5].metadata["slideshow"] = {"slide_type": "skip"}
    deck = slide_deck(nb)
    assert len(deck.cells) == len(nb.cells)
    assert deck.cells[5].metadata["slideshow"]["slide_type"] == "skip"
    assert "Open In Colab" not in deck.cells[0].source  # still the lecture clean-up


def test_a_deck_inlines_reveal_and_loads_nothing_from_the_network(tmp_path):
    path = export_slides(_notebook(), tmp_path, "98_t", FAKE_REVEAL)
    assert path == tmp_path / "slides" / "98_t.slides.html"
    text = path.read_text()
    assert not REMOTE.search(text), REMOTE.search(text)
    assert "window.Reveal = {fake: 1};" in text and "Reveal.initialize(" in text
    assert "require(" not in text and "mermaid.initialize" not in text
    assert "<title>98 · A title with code_span slides</title>" in text
    assert text.count("<section") == 2 * 4 + 2  # 4 slides, 2 figure slides below the first
    assert "secret_model" not in text and "[interp_lib]" not in text


def test_reveal_assets_inline_fonts_and_drop_remote_imports(tmp_path, monkeypatch):
    dist = tmp_path / "reveal.js" / "dist"
    (dist / "theme" / "fonts").mkdir(parents=True)
    (dist / "reveal.js").write_text("/*! reveal.js 5.1.0 */ var a = '</script>';\n"
                                    "//# sourceMappingURL=reveal.js.map")
    (dist / "reveal.css").write_text(".reveal{color:red}")
    (dist / "theme" / "white.css").write_text(
        '@import url("https://fonts.example/x.css");\n@import url(./fonts/f.css);\n.t{}')
    (dist / "theme" / "fonts" / "f.css").write_text(
        "@font-face{font-family:F;src:url(f.woff) format('woff')}")
    (dist / "theme" / "fonts" / "f.woff").write_bytes(b"wOFF-bytes")
    monkeypatch.setenv(tools.pages.REVEAL_ENV, str(tmp_path / "reveal.js"))
    assets = reveal_assets()
    assert assets.version == "5.1.0" and assets.root == (tmp_path / "reveal.js").resolve()
    assert "fonts.example" not in assets.theme and "@import" not in assets.theme
    assert "url(data:font/woff;base64,d09GRi1ieXRlcw==)" in assets.theme
    assert "</script" not in assets.js and "sourceMappingURL" not in assets.js
    with pytest.raises(RevealNotFoundError, match="pip install pyreveal"):
        reveal_assets(tmp_path / "nothing-here")


# ---------------------------------------------------------------- end to end, in a browser

def _generated(folder: Path) -> list[Path]:
    """Two tiny course-shaped notebooks: one drawing figures (two plotly figures in one cell,
    an SVG), one with prose and a table only."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = new_notebook(cells=[
        new_markdown_cell(f"{colab_badge('notebooks/96_figures.ipynb')}\n\n# 96 · Figures\n\n"
                          "**What you will learn**\n- what `interp_lib.heatmap` draws;\n"
                          "- that snake_case survives.\n"),
        new_code_cell(SETUP_CELL),
        new_markdown_cell("## 1. Two figures\n\nTwo heatmaps from one cell. More prose."),
        new_code_cell("import torch\n"
                      "interp_lib.heatmap(torch.arange(6.).reshape(2, 3), title='first').show()\n"
                      "interp_lib.heatmap(torch.ones(3, 2), title='second').show()\n"
                      "print('[interp_lib] a line the lecture leaves out')"),
        new_markdown_cell("The first heatmap grows to the right. Etc."),
        new_markdown_cell("## 2. A drawing\n\nAn SVG drawn by the notebook."),
        new_code_cell("from IPython.display import SVG\nSVG('<svg xmlns=\"http://www.w3.org/2000/"
                      "svg\" width=\"120\" height=\"60\"><rect width=\"120\" height=\"60\" "
                      "fill=\"teal\"/></svg>')"),
    ])
    prose = new_notebook(cells=[
        new_markdown_cell("# 97 · Prose only\n\n**What you will learn**\n- to read a table.\n"),
        new_code_cell(SETUP_CELL),
        new_markdown_cell("## 1. A table\n\n| notebook | what |\n|---|---|\n| 00 | tour |\n"),
        new_code_cell("print('no figure here')"),
        # a long summary: the deck shrinks its font until it fits the slide
        new_markdown_cell("## Summary\n\n" + "\n".join(
            f"- point {i}: a sentence long enough to fill most of a line of a slide, and more."
            for i in range(14))),
    ])
    paths = []
    for name, nb in (("96_figures", figures), ("97_prose", prose)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        paths.append(folder / f"{name}.ipynb")
        nbformat.write(nb, paths[-1])
    return paths


@pytest.fixture(scope="module")
def built_pages(tmp_path_factory):
    """Run the course command on 00_tour and the generated notebooks (every course notebook
    with INTERP_PAGES_ALL=1) into a temporary directory, leaving build/ as it was."""
    _chromium_or_skip()
    _reveal_or_skip()
    from tools.course import course_notebooks, main

    tmp = tmp_path_factory.mktemp("course-pages")
    notebooks = [TOUR, *_generated(tmp / "generated")]
    if os.environ.get("INTERP_PAGES_ALL", "").strip() in {"1", "true", "yes"}:
        notebooks = [*course_notebooks(ROOT / "notebooks"), *notebooks[1:]]
    index = ROOT / "build" / "index.html"
    before = index.stat().st_mtime_ns if index.exists() else None
    out = tmp / "build"
    code = main(["--no-install", "--out", str(out), *map(str, notebooks)])
    assert code == 0, "a notebook failed while building the pages (see the table above)"
    after = index.stat().st_mtime_ns if index.exists() else None
    assert after == before, "the page test wrote into build/, where make course keeps its pages"
    return SimpleNamespace(out=out, names=[p.stem for p in notebooks])


def test_every_page_lecture_and_deck_renders_offline_in_chromium(built_pages):
    from tools.browser import check_page, check_slides

    out = built_pages.out
    shots = ROOT / "build" / "screenshots"
    if shots.exists():
        shutil.rmtree(shots)
    index = check_page(out / "index.html", shots / "index.png")
    reports = {"index": index}
    for name in built_pages.names:
        reports[name] = check_page(out / f"{name}.html", shots / f"{name}.png")
        reports[f"lecture-{name}"] = check_page(out / "lecture" / f"{name}.html",
                                                shots / f"lecture-{name}.png")
        reports[f"slides-{name}"] = check_slides(out / "slides" / f"{name}.slides.html",
                                                 shots / f"slides-{name}.png")
    summary = "\n".join(f"{key}: {r.summary()} ({r.seconds:.1f} s)" for key, r in reports.items())
    print(summary)
    assert all(r.ok for r in reports.values()), summary
    for name in built_pages.names:
        page, lecture = reports[name], reports[f"lecture-{name}"]
        deck = reports[f"slides-{name}"]
        assert lecture.font_px >= 1.3 * page.font_px, (name, lecture.font_px, page.font_px)
        assert lecture.modebars_visible == 0 and deck.modebars_visible == 0
        assert page.modebars_visible == page.plots  # the full page keeps plotly's toolbar
        # the deck shows every figure of the page, each drawn on its own slide
        assert deck.plots == page.plots and deck.views == page.views
        assert deck.slides >= 2 and deck.screenshot.stat().st_size > 5_000
        assert page.screenshot.stat().st_size > 10_000
    figures = reports["slides-96_figures"]
    assert (figures.plots, figures.plots_drawn, figures.slides) == (2, 2, 6)
    assert figures.figure_screenshot is not None
    assert reports["slides-97_prose"].slides == 3 and reports["97_prose"].plots == 0
    assert reports["00_tour"].plots >= 2 and reports["00_tour"].views >= 1  # not vacuous
    text = (out / "index.html").read_text()
    assert "<code>interp_lib.heatmap</code>" in text and "snake_case survives" in text
    for name in built_pages.names:
        assert f'href="slides/{name}.slides.html"' in text
        lecture = (out / "lecture" / f"{name}.html").read_text()
        assert "[interp_lib]" not in lecture and "Open In Colab" not in lecture


def test_the_deck_check_fails_on_an_overflowing_slide_and_a_failed_load(tmp_path):
    _chromium_or_skip()
    assets = _reveal_or_skip()
    from tools.browser import check_slides

    rows = "\n".join(f"| {i} | row |" for i in range(60))
    nb = new_notebook(cells=[
        new_markdown_cell("# 95 · Broken\n"),
        new_markdown_cell(f"## 1. Too long\n\n| n | what |\n|---|---|\n{rows}\n"),
        new_markdown_cell('## 2. Missing picture\n\nA picture <img src="no-such-file.png" '
                          'alt="x"> that is not there.'),
    ])
    report = check_slides(export_slides(nb, tmp_path, "95_broken", assets))
    assert report.slides == 3
    assert not report.ok
    assert [label.split(" ")[0] for label in report.overflowing] == ["1.0"]
    assert any("no-such-file.png" in error for error in report.errors), report.errors
