"""HTML pages of executed notebooks that work with no network: full pages, a ``lecture``
flavour for projecting, reveal.js slide decks and an index.

nbconvert's page template loads require.js and MathJax from a CDN; offline those requests fail
(and can stall a page), so :func:`make_offline` removes every script loaded from ``http(s)://``.
What the pages need ships inside them: plotly.js is embedded once per notebook by the renderer
that :func:`interp_lib.plotting.configure_plotly` picks, and circuitsvis's bundle once per
notebook by :mod:`interp_lib.vis` (mode ``"once"``). The course notebooks use no TeX.
ipywidgets controls cannot work in a static page without their renderer, which nbconvert loads
from unpkg; :func:`without_widgets` replaces each with a note saying to run the notebook.

The **lecture** flavour (:func:`lecture_notebook`) hides the code, leaves out the setup cell's
output, the ``[interp_lib] ...`` lines and the Colab badge, sets a larger base font and hides
plotly's toolbar. The **slides** (:func:`slide_deck`, :func:`export_slides`) are derived from
the notebook's structure: the title and learning goals, then for every ``## `` section a slide
with its heading and its one-line takeaway, and each of its figures on a slide below it with
the first sentence of the text that interprets it. reveal.js is inlined into every deck from
a local copy (:func:`reveal_assets`), so a deck is one file that works offline.

>>> make_offline('<script src="https://cdn.example/require.js"></script><p>kept</p>')
'<p>kept</p>'
>>> make_offline('<a href="u"><img alt="Open In Colab" src="https://x/badge.svg"/></a>')
'<a href="u">Open In Colab</a>'
>>> markdown_inline("how `run_with_cache` keeps *every* activation")
'how <code>run_with_cache</code> keeps <em>every</em> activation'
"""

from __future__ import annotations

import base64
import copy
import functools
import html
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LECTURE_CSS",
    "NotebookInfo",
    "REVEAL_ENV",
    "RevealAssets",
    "RevealNotFoundError",
    "export_pages",
    "export_slides",
    "first_sentence",
    "is_setup_cell",
    "lecture_notebook",
    "make_offline",
    "markdown_inline",
    "notebook_info",
    "reveal_assets",
    "slide_deck",
    "without_widgets",
    "write_index",
]

_REMOTE_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']https?://[^\"']*[\"'][^>]*>\s*</script>\s*", re.IGNORECASE
)
_REMOTE_STYLESHEET = re.compile(
    r"<link\b[^>]*\bhref\s*=\s*[\"']https?://[^\"']*[\"'][^>]*>\s*", re.IGNORECASE
)


_REMOTE_IMAGE = re.compile(
    r"<img\b[^>]*\bsrc\s*=\s*[\"']https?://[^\"']*[\"'][^>]*>", re.IGNORECASE
)
_ALT = re.compile(r"\balt\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)


def _image_as_text(match: re.Match) -> str:
    alt = _ALT.search(match.group(0))
    return html.escape(alt.group(1)) if alt else ""


def make_offline(page: str) -> str:
    """``page`` without scripts or stylesheets loaded from the network; remote images (the
    Colab badge) become their alt text, so links keep working."""
    page = _REMOTE_SCRIPT.sub("", page)
    page = _REMOTE_STYLESHEET.sub("", page)
    return _REMOTE_IMAGE.sub(_image_as_text, page)


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("[An interactive control (ipywidgets) was here: it needs a running kernel. Open the "
               "notebook in Colab or Jupyter to use it.]")


def without_widgets(nb: Any) -> Any:
    """A copy of the notebook ``nb`` with no widget state (so nbconvert adds no script that
    fetches the widget renderer from unpkg) and each widget output replaced by a note.

    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(metadata={"widgets": {}})
    >>> nb.cells.append(nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
    ...     "display_data", data={WIDGET_VIEW: {"model_id": "x"}, "text/plain": "VBox()"})]))
    >>> out = without_widgets(nb)
    >>> "widgets" in out.metadata, out.cells[0].outputs[0].data["text/plain"][:23]
    (False, '[An interactive control')
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                output["data"] = {"text/plain": WIDGET_NOTE,
                                  "text/html": f"<p><em>{html.escape(WIDGET_NOTE)}</em></p>"}
    return nb


# ---------------------------------------------------------------------------- Markdown, goals

def markdown_inline(text: str) -> str:
    """One line of Markdown as inline HTML: code spans become ``<code>``, emphasis ``<em>`` and
    ``<strong>``, links stay links, and raw HTML is escaped (``snake_case`` keeps its
    underscores)."""
    import mistune

    rendered = mistune.create_markdown(escape=True)(text).strip()
    if rendered.startswith("<p>") and rendered.endswith("</p>") and rendered.count("<p>") == 1:
        rendered = rendered[3:-4]
    return rendered


def _plain(text: str) -> str:
    """The text a reader sees of one line of Markdown (no markup, nothing lost)."""
    return html.unescape(re.sub(r"<[^>]+>", "", markdown_inline(text))).strip()


def _without_links(text: str) -> str:
    return re.sub(r"(?<!!)\[([^\]]*)\]\([^)]*\)", r"\1", text)


@dataclass
class NotebookInfo:
    """A notebook's title and learning goals, from its first markdown cell: ``goals`` as the
    text a reader sees, ``goals_markdown`` as written (the index renders those)."""

    name: str
    title: str
    goals: list[str] = field(default_factory=list)
    goals_markdown: list[str] = field(default_factory=list)
    title_markdown: str = ""

    @property
    def title_html(self) -> str:
        """The title as inline HTML (links reduced to their text)."""
        return markdown_inline(_without_links(self.title_markdown or self.title))

    @property
    def goals_html(self) -> list[str]:
        """Each goal as inline HTML (code spans as ``<code>``)."""
        return [markdown_inline(goal) for goal in self.goals_markdown]


def notebook_info(nb: Any, name: str) -> NotebookInfo:
    """Title (the first ``# `` heading) and the bullets under "What you will learn"."""
    info = NotebookInfo(name, name)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        heading = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), None)
        if heading is None:
            continue
        info.title_markdown = heading
        info.title = _plain(_without_links(heading))
        in_goals = False
        for line in lines:
            if "what you will learn" in line.lower():
                in_goals = True
            elif in_goals and line.startswith("- "):
                info.goals_markdown.append(line[2:].strip())
            elif in_goals and line.startswith("  ") and info.goals_markdown:
                info.goals_markdown[-1] += " " + line.strip()  # a bullet's continued line
            elif in_goals and info.goals_markdown and not line.strip():
                break
        info.goals = [_plain(goal) for goal in info.goals_markdown]
        break
    return info


# ------------------------------------------------------------------------------ lecture flavour

_BADGE = re.compile(r"\[!\[[^\]]*\]\([^)]*colab[^)]*\)\]\([^)]*\)[ \t]*\n?", re.IGNORECASE)
_LIBRARY_LINE = re.compile(r"^\[interp_lib\][^\n]*(\n|$)", re.MULTILINE)

#: Extra style of the lecture pages: a larger base font for projecting, no plotly toolbar.
LECTURE_CSS = """<style type="text/css">
/* lecture flavour: read from the back of a room */
:root {
  --jp-content-font-size1: 21px;
  --jp-ui-font-size1: 19px;
  --jp-code-font-size: 17px;
  --jp-content-line-height: 1.5;
}
body { font-size: 21px; }
.jp-RenderedMarkdown h1 { font-size: 2.2em; }
.jp-RenderedMarkdown h2 { font-size: 1.7em; }
.modebar-container, .modebar { display: none !important; }
</style>
"""


def is_setup_cell(cell: Any) -> bool:
    """Whether ``cell`` is the course's setup cell (:data:`interp_lib.notebook.SETUP_CELL`),
    recognised by its first line."""
    from interp_lib.notebook import SETUP_CELL

    return (cell.cell_type == "code"
            and cell.source.lstrip().startswith(SETUP_CELL.splitlines()[0]))


def _strip_badge(source: str) -> str:
    return _BADGE.sub("", source).lstrip("\n")


def _strip_library_lines(cell: Any) -> None:
    """Remove the ``[interp_lib] ...`` lines (setup and model choice) from a cell's printed
    output; an output left empty goes."""
    outputs = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            output["text"] = _LIBRARY_LINE.sub("", text)
            if not output["text"].strip():
                continue
        outputs.append(output)
    cell.outputs = outputs


def lecture_notebook(nb: Any) -> Any:
    """A copy of ``nb`` for projecting: no Colab badge, no setup cell output, no
    ``[interp_lib] ...`` lines (the code itself is hidden by the exporter)."""
    nb = without_widgets(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _strip_badge(cell.source)
        elif cell.cell_type == "code":
            if is_setup_cell(cell):
                cell.outputs = []
            _strip_library_lines(cell)
    return nb


def _with_style(page: str, style: str) -> str:
    head_end = page.find("</head>")
    if head_end < 0:
        raise ValueError("the page has no </head> to add its style to")
    return page[:head_end] + style + page[head_end:]


def export_pages(nb: Any, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``out_dir/NAME.html`` (everything) and ``out_dir/lecture/NAME.html`` (the lecture
    flavour: :func:`lecture_notebook`, code hidden, :data:`LECTURE_CSS`), both offline-safe;
    return their paths."""
    from nbconvert import HTMLExporter

    out_dir = Path(out_dir)
    (out_dir / "lecture").mkdir(parents=True, exist_ok=True)
    full, _ = HTMLExporter().from_notebook_node(without_widgets(nb))
    lecture_exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                                    exclude_output_prompt=True)
    lecture, _ = lecture_exporter.from_notebook_node(lecture_notebook(nb))
    page = out_dir / f"{name}.html"
    lecture_page = out_dir / "lecture" / f"{name}.html"
    page.write_text(make_offline(full), encoding="utf-8")
    lecture_page.write_text(_with_style(make_offline(lecture), LECTURE_CSS), encoding="utf-8")
    return page, lecture_page


# ------------------------------------------------------------------------------------ reveal.js

#: A folder holding reveal.js (4 or later: ``dist/reveal.js``), used before the bundled copy.
REVEAL_ENV = "INTERP_REVEAL_JS"
REVEAL_THEME = "white"


@dataclass(frozen=True)
class RevealAssets:
    """reveal.js's script and style sheets, read from a local copy and made self-contained
    (fonts as data URIs, no remote ``@import``), ready to be inlined into a deck."""

    root: Path
    version: str
    js: str
    css: str
    theme: str


class RevealNotFoundError(FileNotFoundError):
    """No local copy of reveal.js: the message says how to get one."""


_CSS_IMPORT = re.compile(r"@import\s+(?:url\()?\s*[\"']?([^\"')\s;]+)[\"']?\s*\)?\s*;")
_CSS_URL = re.compile(r"url\(\s*[\"']?(?!data:|#)([^\"')]+)[\"']?\s*\)")
_MIME = {".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".eot":
         "application/vnd.ms-fontobject", ".svg": "image/svg+xml", ".png": "image/png"}


def _inline_css(text: str, base: Path, depth: int = 0) -> str:
    """``text`` with relative ``@import`` inlined and relative ``url()`` as data URIs; remote
    imports and urls are dropped (a deck must not reach the network)."""
    def imported(match: re.Match) -> str:
        target = match.group(1)
        if re.match(r"(?i)https?:|//", target) or depth > 4:
            return ""
        path = (base / target).resolve()
        return _inline_css(path.read_text(encoding="utf-8"), path.parent, depth + 1)

    def data_uri(match: re.Match) -> str:
        target = match.group(1).split("?")[0].split("#")[0]
        if re.match(r"(?i)https?:|//", target):
            return "none"
        path = (base / target).resolve()
        if not path.is_file():
            return "none"
        mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
        return f"url(data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()})"

    text = _CSS_IMPORT.sub(imported, text)
    return _CSS_URL.sub(data_uri, text)


def _for_inline_script(js: str) -> str:
    js = re.sub(r"//# sourceMappingURL=\S*\s*$", "", js)
    return js.replace("</script", "<\\/script")


def _reveal_roots() -> list[Path]:
    roots = []
    if os.environ.get(REVEAL_ENV):
        roots.append(Path(os.environ[REVEAL_ENV]))
    spec = importlib.util.find_spec("pyreveal")  # bundles reveal.js; found, never imported
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(p) / "revealjs" for p in spec.submodule_search_locations]
    return roots


def _is_reveal(folder: Path) -> bool:
    dist = folder / "dist"
    return all((dist / name).is_file() for name in
               ("reveal.js", "reveal.css", f"theme/{REVEAL_THEME}.css"))


@functools.lru_cache(maxsize=4)
def _load_reveal(folder: Path) -> RevealAssets:
    dist = folder / "dist"
    js = (dist / "reveal.js").read_text(encoding="utf-8")
    version = "unknown"
    package = folder / "package.json"
    if package.is_file():
        version = json.loads(package.read_text(encoding="utf-8")).get("version", version)
    else:
        found = re.search(r"reveal\.js (\d+\.\d+\.\d+)", js[:400])
        version = found.group(1) if found else version
    theme = dist / "theme" / f"{REVEAL_THEME}.css"
    return RevealAssets(folder, version, _for_inline_script(js),
                        _inline_css((dist / "reveal.css").read_text(encoding="utf-8"), dist),
                        _inline_css(theme.read_text(encoding="utf-8"), theme.parent))


def reveal_assets(root: str | Path | None = None) -> RevealAssets:
    """reveal.js from ``root``, else ``$INTERP_REVEAL_JS``, else the copy bundled by the
    ``pyreveal`` package (the course's ``dev`` extra installs it). A folder qualifies when it
    has ``dist/reveal.js``, ``dist/reveal.css`` and ``dist/theme/white.css`` (reveal.js 4 or
    later, as the npm package ``reveal.js`` ships it). Raises :class:`RevealNotFoundError`,
    saying how to get one, when none is found."""
    roots = [Path(root)] if root is not None else _reveal_roots()
    for folder in roots:
        if _is_reveal(folder):
            return _load_reveal(folder.resolve())
    looked = ", ".join(str(r) for r in roots) or "nowhere"
    raise RevealNotFoundError(
        "the slides need a local copy of reveal.js (4 or later) and none was found (looked in "
        f"{looked}): install the package that bundles it, `pip install pyreveal` (the course's "
        f"dev extra lists it), or set {REVEAL_ENV} to a reveal.js folder with dist/reveal.js, "
        "such as the unpacked npm package `reveal.js`"
    )


# ---------------------------------------------------------------------------------- slide deck

_FIGURE_MIMES = ("application/vnd.plotly.v1+json", "image/png", "image/jpeg", "image/svg+xml")
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "vs.", "cf.", "Fig.", "approx.", "etc.", "No.")


def _is_figure(output: Any) -> bool:
    data = output.get("data", {})
    if any(mime in data for mime in _FIGURE_MIMES):
        return True
    page = data.get("text/html", "")
    page = "".join(page) if isinstance(page, list) else page
    return "plotly-graph-div" in page or 'id="circuits-vis-' in page or "<svg" in page[:2000]


def _is_library(output: Any) -> bool:
    """An output that only loads a script later figures use (plotly.js, a circuitsvis
    bundle): kept, invisibly, in front of the first figure."""
    page = output.get("data", {}).get("text/html", "")
    page = "".join(page) if isinstance(page, list) else page
    return not _is_figure(output) and "<script" in page and (
        "window.PlotlyConfig" in page or "CircuitsVis" in page)


def _blocks(markdown: str) -> list[str]:
    """Markdown split into blocks at blank lines; a fenced code block or a ``<details>``
    block stays whole."""
    blocks, current, fence, details = [], [], False, 0
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = not fence
        if not fence:
            details += stripped.count("<details") - stripped.count("</details>")
        if stripped.startswith("#") and not fence and details <= 0 and current:
            blocks.append("\n".join(current))  # a heading starts a block of its own
            current = []
        if not stripped and not fence and details <= 0:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
        if stripped.startswith("#") and not fence and details <= 0:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def _kind(block: str) -> str:
    first = block.lstrip()
    if re.match(r"#{1,6} ", first):
        return "h" + str(len(first) - len(first.lstrip("#")))
    if first.startswith("|"):
        return "table"
    if first.startswith(("- ", "* ", "+ ")) or re.match(r"\d+\. ", first):
        return "list"
    if first.startswith(("```", "<", ">", "!")):
        return "other"
    if first.startswith(("**Predict", "**Exercise")):
        return "other"
    return "paragraph"


def first_sentence(paragraph: str) -> str:
    """The first sentence of a Markdown paragraph (abbreviations such as "e.g." and "et al."
    do not end one; nor does a full stop inside a code span).

    >>> first_sentence("Heads attend. The second sentence.")
    'Heads attend.'
    >>> first_sentence("GPT-2 small (Radford et al. 2019) is small, e.g. 124M. It runs.")
    'GPT-2 small (Radford et al. 2019) is small, e.g. 124M.'
    """
    text = " ".join(paragraph.split())
    in_code = False
    for i, char in enumerate(text):
        if char == "`":
            in_code = not in_code
        if in_code or char not in ".!?" or i + 1 >= len(text):
            continue
        if text[i + 1] != " " or not re.match(r"[A-Z(`*\"“]", text[i + 2:i + 3] or ""):
            continue
        if any(text[:i + 1].endswith(abbreviation) for abbreviation in _ABBREVIATIONS):
            continue
        return text[:i + 1]
    return text


def _deck_cell(cell_type: str, slide_type: str, source: str = "", outputs: list | None = None
               ) -> Any:
    import nbformat

    if cell_type == "markdown":
        cell = nbformat.v4.new_markdown_cell(source)
    else:
        cell = nbformat.v4.new_code_cell(source, outputs=outputs or [])
    cell.metadata["slideshow"] = {"slide_type": slide_type}
    return cell


def _first_paragraph(markdown: str) -> str | None:
    """The first sentence of the text at the start of a markdown cell that interprets the
    figure above it, or ``None`` when the cell starts with something else (a heading)."""
    for block in _blocks(markdown):
        kind = _kind(block)
        if kind == "paragraph":
            return first_sentence(block)
        return None
    return None


def slide_deck(nb: Any, name: str = "slides") -> Any:
    """A slide deck derived from an executed notebook's structure, as a notebook whose cells
    carry ``slideshow.slide_type`` metadata (reveal.js through nbconvert):

    - a title slide: the ``# `` title and the "What you will learn" list (no badge);
    - a slide per ``## `` section: its heading and its one-line takeaway, the first sentence
      of the section's first paragraph (or its table or list when that comes first, as in a
      summary); exercises and "Predict before you run" prompts are left out;
    - a slide below it for each figure the section's cells drew (plotly, images, circuitsvis
      views, diagrams), with the first sentence of the text after the figure, which
      interprets it (under the first figure when one cell drew several);
    - the setup cell, code, printed text and everything else are left out.

    A notebook whose author set slide types on its cells is kept as the author set them (the
    lecture clean-up aside).
    """
    import nbformat

    nb = lecture_notebook(nb)
    if any(cell.metadata.get("slideshow", {}).get("slide_type") for cell in nb.cells):
        return nb
    info = notebook_info(nb, name)
    deck = nbformat.v4.new_notebook(metadata=copy.deepcopy(nb.metadata))
    deck.metadata["title"] = info.title
    title = [f"# {info.title_markdown or info.title}"]
    if info.goals_markdown:
        title += ["", "**What you will learn**", ""] + [f"- {g}" for g in info.goals_markdown]
    cells = [_deck_cell("markdown", "slide", "\n".join(title))]
    title_cell = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                       and re.search(r"(?m)^# ", c.source)), -1)
    section: Any = None       # the current section's slide cell, waiting for its takeaway
    exercise = False          # inside an exercise (a ### Exercise heading): nothing taken
    caption_at = None         # where the text that interprets the last figures goes
    for index, cell in enumerate(nb.cells):
        if index <= title_cell and cell.cell_type == "markdown":
            continue
        if cell.cell_type == "markdown":
            if caption_at is not None:  # under the first figure of the cell before
                caption = _first_paragraph(cell.source)
                if caption:
                    cells.insert(caption_at, _deck_cell("markdown", "-", caption))
                caption_at = None
            for block in _blocks(cell.source):
                kind = _kind(block)
                if kind == "h2" or kind == "h1":
                    heading = block.strip().lstrip("#").strip()
                    section = _deck_cell("markdown", "slide", f"## {heading}")
                    section.metadata["takeaway"] = False
                    cells.append(section)
                    exercise = False
                elif kind.startswith("h"):
                    exercise = "exercise" in block.lower()
                elif section is not None and not section.metadata["takeaway"] and not exercise:
                    if kind in ("paragraph", "table", "list"):
                        text = first_sentence(block) if kind == "paragraph" else block
                        section.source += "\n\n" + text
                        section.metadata["takeaway"] = True
            continue
        if cell.cell_type != "code" or is_setup_cell(cell):
            continue
        caption_at = None
        for output in cell.get("outputs", []):
            if _is_library(output):
                cells.append(_deck_cell("code", "-", outputs=[output]))
            elif _is_figure(output):
                cells.append(_deck_cell("code", "subslide", outputs=[output]))
                caption_at = len(cells) if caption_at is None else caption_at
    for cell in cells:
        cell.metadata.pop("takeaway", None)
    deck.cells = cells
    return deck


#: Style of the decks: left-aligned prose, figures that fit a slide, no plotly toolbar.
SLIDES_CSS = """
.reveal .slides { text-align: left; }
.reveal .slides section { height: 100%; }
/* every slide laid out from the start (reveal.js hides the ones it does not show), so a
   figure drawn while the page loads gets its real size */
.reveal .slides > section, .reveal .slides > section > section { display: block; }
.reveal h1, .reveal h2 { text-transform: none; }
.reveal h1 { font-size: 1.9em; }
.reveal h2 { font-size: 1.45em; margin-bottom: 0.6em; }
.reveal .jp-RenderedMarkdown { font-size: 25px; }
.reveal .jp-RenderedMarkdown p, .reveal .jp-RenderedMarkdown li { line-height: 1.35; }
.reveal .jp-RenderedMarkdown li { margin-bottom: 0.25em; }
.reveal .jp-OutputArea-output svg, .reveal .jp-OutputArea-output img { max-height: 560px;
  max-width: 100%; }
.reveal .jp-RenderedHTMLCommon table { font-size: 0.8em; }
.reveal div[id^="circuits-vis-"] canvas { max-height: 470px; width: auto !important;
  height: auto !important; max-width: 100%; }
.modebar-container, .modebar { display: none !important; }
"""

_SLIDES_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block notebook_css %}
<style type="text/css">
{{ resources.course_reveal.css }}
</style>
{{ super() }}
{% endblock notebook_css %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_css -%}
<style type="text/css" id="theme">
{{ resources.course_reveal.theme }}
</style>
<style type="text/css">
{{ resources.course_reveal.slides_css }}
</style>
{%- endblock html_head_css -%}
{% block footer_js %}
<script>
{{ resources.course_reveal.js }}
</script>
<script>
(function () {
  // a figure drawn while its slide was hidden has no size yet: redraw it when shown
  function resizePlots(slide) {
    window.dispatchEvent(new Event('resize'));
    if (!window.Plotly || !slide) { return; }
    slide.querySelectorAll('.plotly-graph-div').forEach(function (plot) {
      window.Plotly.Plots.resize(plot);
    });
  }
  Reveal.initialize({
    controls: true, progress: true, hash: true, slideNumber: 'c/t', transition: 'none',
    width: 1280, height: 800, margin: 0.04, center: false,
    viewDistance: 1000, mobileViewDistance: 1000  // lay out every slide: figures get a size
  });
  // a slide whose text runs past its bottom gets a smaller font, down to 15px
  function fitText() {
    var height = Reveal.getConfig().height;
    Reveal.getSlides().forEach(function (slide) {
      var prose = slide.querySelectorAll('.jp-RenderedMarkdown');
      var size = 25;
      while (slide.scrollHeight > height && size > 15 && prose.length) {
        size -= 1;
        prose.forEach(function (node) { node.style.fontSize = size + 'px'; });
      }
    });
  }
  Reveal.on('ready', function (event) { fitText(); resizePlots(event.currentSlide); });
  Reveal.on('slidechanged', function (event) { resizePlots(event.currentSlide); });
})();
</script>
{% endblock footer_js %}
"""


def export_slides(nb: Any, out_dir: Path, name: str, assets: RevealAssets | None = None
                  ) -> Path:
    """Write ``out_dir/slides/NAME.slides.html``, the reveal.js deck of :func:`slide_deck`,
    with reveal.js inlined from ``assets`` (default :func:`reveal_assets`): one file that
    needs no network. Returns its path."""
    from nbconvert import SlidesExporter

    assets = assets if assets is not None else reveal_assets()
    deck = slide_deck(nb, name)
    exporter = SlidesExporter(raw_template=_SLIDES_TEMPLATE, exclude_input=True,
                              exclude_input_prompt=True, exclude_output_prompt=True)
    resources = {"course_reveal": {"js": assets.js, "css": assets.css, "theme": assets.theme,
                                   "slides_css": SLIDES_CSS},
                 "metadata": {"name": name}}
    body, _ = exporter.from_notebook_node(deck, resources=resources)
    out = Path(out_dir) / "slides"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.slides.html"
    path.write_text(make_offline(body), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- index

def _size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MB"


def write_index(results: list[Any], out_dir: Path, model_line: str) -> Path:
    """``out_dir/index.html``: the notebooks in order with their titles, learning goals
    (Markdown rendered: code spans as ``<code>``), status, run time, page sizes and links to
    the lecture flavour and the slides. ``results`` are :class:`tools.course.NotebookResult`
    (``info``, ``html``, ``lecture``, ``slides``, ``status``, ``seconds``); those without a page
    are left out."""
    items = []
    for r in results:
        if r.html is None:
            continue
        goals = "".join(f"<li>{goal}</li>" for goal in r.info.goals_html)
        slides = getattr(r, "slides", None)
        views = f'<a href="lecture/{r.lecture.name}">lecture view</a> (code hidden)'
        sizes = f"page {_size(r.html)}, lecture {_size(r.lecture)}"
        if slides is not None:
            views += f' · <a href="slides/{slides.name}">slides</a>'
            sizes += f", slides {_size(slides)}"
        items.append(
            f'<li><h2><a href="{r.html.name}">{r.info.title_html}</a></h2>\n'
            f'<p>{views} · {html.escape(r.status)}, {r.seconds:.1f} s · {sizes}</p>\n'
            + (f"<p>What you will learn:</p><ul>{goals}</ul>" if goals else "") + "</li>"
        )
    index = Path(out_dir) / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>interp-course</title>\n"
        "<style>body{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.4}"
        "ol>li{margin-bottom:1.5em}h2{margin-bottom:.2em}"
        "code{background:#f3f3f3;padding:0 .2em;border-radius:3px}</style></head><body>\n"
        "<h1>interp-course</h1>\n"
        f"<p>{html.escape(model_line)}</p>\n<ol>\n" + "\n".join(items)
        + "\n</ol>\n</body></html>\n",
        encoding="utf-8",
    )
    return index
