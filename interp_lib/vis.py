"""circuitsvis views that never stall offline.

circuitsvis decides, every time a view is displayed, whether to load its JavaScript from the
unpkg CDN by opening ``http://google.com`` (``internet_on()``); where DNS packets are dropped
that lookup can hang for seconds per view, and offline it inlines its 1.3 MB bundle into every
output. These wrappers decide once, with a bounded wait (:mod:`interp_lib.network`), and
build the HTML themselves from circuitsvis's bundled script:

- ``"cdn"``: load circuitsvis from the CDN (online; small outputs).
- ``"once"``: inline the bundle in the first view of the session only; later views reuse the
  page's ``window.CircuitsVis`` (Jupyter, JupyterLab and exported HTML pages share one page).
- ``"inline"``: inline the bundle in every view (self-contained; Colab offline, where each
  output is its own frame).

``INTERP_CIRCUITSVIS_MODE`` overrides the automatic choice.

>>> from interp_lib.vis import attention_heads
>>> view = attention_heads([[[1.0, 0.0], [0.5, 0.5]]], ["A", "B"], mode="once")
>>> "CircuitsVis.render" in view.html
True
"""

from __future__ import annotations

import html
import os
import sys
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float

from interp_lib import network
from interp_lib.plotting import as_numpy

__all__ = ["CircuitsVisView", "Diagram", "attention_heads", "choose_mode", "colored_tokens",
           "diagram", "reset"]

Mode = Literal["cdn", "once", "inline"]
#: Attention patterns ``[head, dest, src]`` (or ``[dest, src]``, or ``[1, head, dest, src]``).
Patterns = Float[torch.Tensor, "*head dest src"] | Float[np.ndarray, "*head dest src"]
MODES: tuple[str, ...] = ("cdn", "once", "inline")

_state = {"bundle_emitted": False}


def reset() -> None:
    """Make the next ``"once"`` view inline the bundle again (e.g. after clearing outputs)."""
    _state["bundle_emitted"] = False


def _in_colab() -> bool:
    return "google.colab" in sys.modules


def choose_mode() -> Mode:
    """The rendering mode for this session: env override, else by place and network."""
    forced = os.environ.get("INTERP_CIRCUITSVIS_MODE", "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"INTERP_CIRCUITSVIS_MODE={forced!r}; use one of {MODES}")
        return forced  # type: ignore[return-value]
    if network.cdn_reachable():
        return "cdn"
    return "inline" if _in_colab() else "once"


@lru_cache(maxsize=1)
def _bundle() -> str:
    import circuitsvis

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"circuitsvis's bundled script is missing ({path}); reinstall it with "
            "`pip install --force-reinstall circuitsvis`"
        )
    # A literal closing script tag inside the code would end the <script> element early.
    return path.read_text(encoding="utf-8").replace("</script>", "<\\/script>")


class CircuitsVisView:
    """A circuitsvis element with its props, rendered as HTML by Jupyter (``_repr_html_``)."""

    def __init__(self, element: str, props: dict[str, Any], mode: Mode | None = None):
        from circuitsvis.utils.convert_props import convert_props

        if mode is None:
            mode = choose_mode()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.element = element
        self.mode: Mode = mode
        self._props_json = convert_props(props)
        self._html: str | None = None

    def _build(self, with_bundle: bool, cdn: bool) -> str:
        div_id = "circuits-vis-" + uuid.uuid4().hex[:12]
        if cdn:
            import circuitsvis

            return (
                f'<div id="{div_id}" style="margin: 15px 0;"></div>\n<script type="module">\n'
                f'import {{ render, {self.element} }} from '
                f'"https://unpkg.com/circuitsvis@{circuitsvis.__version__}/dist/cdn/esm.js";\n'
                f'render("{div_id}", {self.element}, {self._props_json});\n</script>'
            )
        bundle = f"<script>\n{_bundle()}\n</script>\n" if with_bundle else ""
        hint = html.escape(
            "circuitsvis is not loaded in this page: run interp_lib.vis.reset() and re-run "
            "this cell (or set INTERP_CIRCUITSVIS_MODE=inline)."
        )
        return (
            f'<div id="{div_id}" style="margin: 15px 0;"></div>\n{bundle}<script>\n'
            "(function () {\n"
            f'  if (window.CircuitsVis) {{ CircuitsVis.render("{div_id}", '
            f"CircuitsVis.{self.element}, {self._props_json}); }}\n"
            f'  else {{ document.getElementById("{div_id}").textContent = "{hint}"; }}\n'
            "})();\n</script>"
        )

    @property
    def html(self) -> str:
        """The HTML of this view (built on first use; the ``"once"`` bundle goes to the first)."""
        if self._html is None:
            if self.mode == "cdn":
                self._html = self._build(with_bundle=False, cdn=True)
            elif self.mode == "inline":
                self._html = self._build(with_bundle=True, cdn=False)
            else:
                first = not _state["bundle_emitted"]
                _state["bundle_emitted"] = True
                self._html = self._build(with_bundle=first, cdn=False)
        return self._html

    def _repr_html_(self) -> str:
        return self.html

    def __html__(self) -> str:
        return self.html

    def save(self, path: str | Path) -> Path:
        """Write a standalone HTML page (bundle inlined, works offline)."""
        path = Path(path)
        page = self._build(with_bundle=True, cdn=False)
        path.write_text(f"<!DOCTYPE html>\n<meta charset='utf-8'>\n{page}\n", encoding="utf-8")
        return path


def _tokens(tokens: Any, n: int, what: str) -> list[str]:
    if isinstance(tokens, str) or not hasattr(tokens, "__len__"):
        raise TypeError(f"{what} must be a list of strings (e.g. model.to_str_tokens(text))")
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise ValueError(f"{what} has {len(tokens)} entries but the values cover {n} positions")
    return tokens


def attention_heads(
    attention: Patterns,
    tokens: list[str],
    head_names: list[str] | None = None,
    *,
    max_value: float | None = None,
    min_value: float | None = None,
    mask_upper_tri: bool | None = None,
    mode: Mode | None = None,
) -> CircuitsVisView:
    """circuitsvis's ``AttentionHeads`` view of ``attention[head, dest, src]``.

    Args:
        attention: ``[head, dest, src]`` patterns (``[dest, src]`` for one head; a leading
            batch dimension of size 1 is dropped), as from ``cache["pattern", layer][0]``.
        tokens: one string per position (``model.to_str_tokens(text)``).
        head_names: one name per head, e.g. ``["0.3", "1.5"]`` ("layer.head").
        mode: ``"cdn"``, ``"once"`` or ``"inline"`` (default: :func:`choose_mode`).
    """
    array = as_numpy(attention, name="attention")
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise ValueError(
            "attention must be [head, dest, src] with dest == src (or [dest, src]); got shape "
            f"{tuple(as_numpy(attention, name='attention').shape)}"
        )
    if not np.isfinite(array).all():
        raise ValueError("attention has NaN or infinite entries; give finite attention weights")
    n_heads, n_pos, _ = array.shape
    tokens = _tokens(tokens, n_pos, "tokens")
    if head_names is not None:
        head_names = [str(h) for h in head_names]
        if len(head_names) != n_heads:
            raise ValueError(f"head_names has {len(head_names)} names for {n_heads} heads")
    props = {
        "attention": array.tolist(),
        "tokens": tokens,
        "attentionHeadNames": head_names,
        "maxValue": max_value,
        "minValue": min_value,
        "maskUpperTri": mask_upper_tri,
    }
    return CircuitsVisView("AttentionHeads", props, mode)


def colored_tokens(
    values: Float[torch.Tensor, " pos"] | Float[np.ndarray, " pos"] | list[float],
    tokens: list[str],
    *,
    mode: Mode | None = None,
) -> CircuitsVisView:
    """circuitsvis's ``ColoredTokens``: each token shaded by its value (one value per token)."""
    array = as_numpy(values, ndim=1, name="values")
    if not np.isfinite(array).all():
        raise ValueError("values has NaN or infinite entries; give one finite value per token")
    tokens = _tokens(tokens, len(array), "tokens")
    return CircuitsVisView("ColoredTokens", {"tokens": tokens, "values": array.tolist()}, mode)


_DIAGRAMS = Path(__file__).resolve().parent / "diagrams"


class Diagram:
    """One of the course's SVG diagrams; Jupyter, Colab and the pages show it inline."""

    def __init__(self, name: str, svg: str):
        self.name, self.svg = name, svg

    def _repr_svg_(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return f"Diagram({self.name!r})"


def diagram(name: str) -> Diagram:
    """The course diagram ``name`` (``residual_stream``, ``qk_ov``, ``k_composition``,
    ``patching``, ``probe``), drawn by ``tools/diagrams.py`` and shipped with the package."""
    available = sorted(p.stem for p in _DIAGRAMS.glob("*.svg"))
    if name not in available:
        raise ValueError(f"unknown diagram {name!r}; available: {available}")
    return Diagram(name, (_DIAGRAMS / f"{name}.svg").read_text(encoding="utf-8"))
