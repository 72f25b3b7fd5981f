"""HTML pages of executed notebooks that work with no network: full pages, a ``lecture``
flavour (code hidden, prose and figures kept, for projecting) and an index.

nbconvert's page template loads require.js and MathJax from a CDN; offline those requests fail
(and can stall a page), so :func:`make_offline` removes every script loaded from ``http(s)://``.
What the pages need ships inside them: plotly.js is embedded once per notebook by the renderer
that :func:`interp_lib.plotting.configure_plotly` picks, and circuitsvis's bundle once per
notebook by :mod:`interp_lib.vis` (mode ``"once"``). The course notebooks use no TeX.
ipywidgets controls cannot work in a static page without their renderer, which nbconvert loads
from unpkg; :func:`without_widgets` replaces each with a note saying to run the notebook.

>>> make_offline('<script src="https://cdn.example/require.js"></script><p>kept</p>')
'<p>kept</p>'
>>> make_offline('<a href="u"><img alt="Open In Colab" src="https://x/badge.svg"/></a>')
'<a href="u">Open In Colab</a>'
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "NotebookInfo",
    "export_pages",
    "make_offline",
    "notebook_info",
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
    import copy

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                output["data"] = {"text/plain": WIDGET_NOTE,
                                  "text/html": f"<p><em>{html.escape(WIDGET_NOTE)}</em></p>"}
    return nb


@dataclass
class NotebookInfo:
    """A notebook's title and learning goals, from its first markdown cell."""

    name: str
    title: str
    goals: list[str] = field(default_factory=list)


def _strip_markdown(text: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links -> their text
    return re.sub(r"[*_`]", "", text).strip()


def notebook_info(nb: Any, name: str) -> NotebookInfo:
    """Title (the first ``# `` heading) and the bullets under "What you will learn"."""
    title, goals = name, []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        heading = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), None)
        if heading is None:
            continue
        title = _strip_markdown(heading)
        in_goals = False
        for line in lines:
            if "what you will learn" in line.lower():
                in_goals = True
            elif in_goals and line.startswith("- "):
                goals.append(_strip_markdown(line[2:]))
            elif in_goals and goals and not line.strip():
                break
        break
    return NotebookInfo(name, title, goals)


def export_pages(nb: Any, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write ``out_dir/NAME.html`` (everything) and ``out_dir/lecture/NAME.html`` (code hidden),
    both offline-safe; return their paths."""
    from nbconvert import HTMLExporter

    out_dir = Path(out_dir)
    (out_dir / "lecture").mkdir(parents=True, exist_ok=True)
    nb = without_widgets(nb)
    full, _ = HTMLExporter().from_notebook_node(nb)
    lecture_exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                                    exclude_output_prompt=True)
    lecture, _ = lecture_exporter.from_notebook_node(nb)
    page = out_dir / f"{name}.html"
    lecture_page = out_dir / "lecture" / f"{name}.html"
    page.write_text(make_offline(full), encoding="utf-8")
    lecture_page.write_text(make_offline(lecture), encoding="utf-8")
    return page, lecture_page


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MB"


def write_index(results: list[Any], out_dir: Path, model_line: str) -> Path:
    """``out_dir/index.html``: the notebooks in order with their titles, learning goals,
    status, run time and page sizes. ``results`` are :class:`tools.course.NotebookResult`
    (``info``, ``html``, ``lecture``, ``status``, ``seconds``); those without a page are left out.
    """
    items = []
    for r in results:
        if r.html is None:
            continue
        goals = "".join(f"<li>{html.escape(g)}</li>" for g in r.info.goals)
        items.append(
            f'<li><h2><a href="{r.html.name}">{html.escape(r.info.title)}</a></h2>\n'
            f'<p><a href="lecture/{r.lecture.name}">lecture view</a> (code hidden) · '
            f'{html.escape(r.status)}, {r.seconds:.1f} s · page '
            f'{_size(r.html)}, lecture {_size(r.lecture)}</p>\n'
            + (f"<p>What you will learn:</p><ul>{goals}</ul>" if goals else "") + "</li>"
        )
    index = Path(out_dir) / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>interp-course</title>\n"
        "<style>body{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.4}"
        "ol>li{margin-bottom:1.5em}h2{margin-bottom:.2em}</style></head><body>\n"
        "<h1>interp-course</h1>\n"
        f"<p>{html.escape(model_line)}</p>\n<ol>\n" + "\n".join(items)
        + "\n</ol>\n</body></html>\n",
        encoding="utf-8",
    )
    return index
