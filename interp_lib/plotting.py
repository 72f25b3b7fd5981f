"""Plotly figures with labelled axes, and a renderer that suits Colab, Jupyter and CI.

Functions here only build figures (``plotly.graph_objects.Figure``); showing them is the
caller's ``fig.show()``. Computation lives in the technique modules; these helpers take
plain arrays or tensors plus their labels.

Token labels repeat (" the" twice in a sentence), and plotly merges repeated category labels
into one column, so axes are drawn at integer positions with the labels as tick text.

>>> import numpy as np
>>> from interp_lib.plotting import heatmap
>>> fig = heatmap(np.eye(3), x_labels=["a", "b", "a"], y_labels=["L0", "L1", "L2"])
>>> list(fig.layout.xaxis.ticktext)
['a', 'b', 'a']
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch
from jaxtyping import Float

__all__ = ["as_numpy", "bar", "configure_plotly", "directions", "heatmap", "histogram", "line",
           "line_over_layers", "line_panels"]

#: A ``[rows, columns]`` grid of numbers: a tensor, an array or nested lists.
Grid = Float[torch.Tensor, "rows cols"] | Float[np.ndarray, "rows cols"] | Sequence[Sequence[float]]
#: Values over layers: one row per series (or a single 1-D series).
Series = Float[torch.Tensor, "*series layer"] | Float[np.ndarray, "*series layer"] | Sequence[float]


def as_numpy(values: Any, *, ndim: int | None = None, name: str = "values") -> np.ndarray:
    """A float numpy copy of a tensor, array or nested list; checks ``ndim`` if given."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values, dtype=float)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {tuple(array.shape)}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)})")
    return array


def _labels(labels: Sequence[Any] | None, n: int, what: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    if isinstance(labels, str):
        raise TypeError(f"{what} must be a sequence of labels, not a single string")
    labels = [str(label) for label in labels]
    if len(labels) != n:
        raise ValueError(f"{what} has {len(labels)} labels but the data has {n} along that axis")
    return labels


def configure_plotly(renderer: str | None = None) -> str:
    """Pick plotly's renderer for where the code runs, and return its name.

    An explicit ``renderer`` or the ``PLOTLY_RENDERER`` environment variable wins. Otherwise
    plotly's own choice stands (``colab`` in Colab, ``vscode`` in VS Code...), except in a plain
    Jupyter kernel, where plotly stores only figure JSON: there ``plotly_mimetype+notebook``
    also embeds plotly.js once per notebook, so figures survive HTML export and work offline.
    """
    if renderer is not None:
        if renderer not in pio.renderers:
            # a "+"-joined combination is validated part by part by plotly itself
            parts = renderer.split("+")
            unknown = [p for p in parts if p not in pio.renderers]
            if unknown:
                raise ValueError(
                    f"Unknown plotly renderer(s) {unknown}; available: {list(pio.renderers)}"
                )
        pio.renderers.default = renderer
    elif os.environ.get("PLOTLY_RENDERER"):
        pio.renderers.default = os.environ["PLOTLY_RENDERER"]
    elif pio.renderers.default == "plotly_mimetype" and "ipykernel" in sys.modules:
        pio.renderers.default = "plotly_mimetype+notebook"
    return pio.renderers.default


def heatmap(
    values: Grid,
    *,
    x_labels: Sequence[Any] | None = None,
    y_labels: Sequence[Any] | None = None,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    colorbar_title: str | None = None,
    zmid: float | None = None,
    colorscale: str | None = None,
    text: Sequence[Sequence[Any]] | None = None,
    value_format: str = ".3g",
) -> go.Figure:
    """A 2-D heatmap of ``values[row, column]`` with labelled rows and columns.

    Args:
        values: ``[rows, columns]`` tensor or array; row 0 is drawn at the top.
        x_labels / y_labels: one label per column / row (repeats allowed).
        zmid: centre of a diverging colour scale (e.g. 0 for signed values).
        text: optional ``[rows, columns]`` strings written in the cells.
        value_format: d3 format of the value in the hover box.
    """
    array = as_numpy(values, ndim=2)
    n_rows, n_cols = array.shape
    xs = _labels(x_labels, n_cols, "x_labels")
    ys = _labels(y_labels, n_rows, "y_labels")
    if colorscale is None:
        colorscale = "RdBu" if zmid is not None else "Viridis"
    custom = np.empty((n_rows, n_cols, 2), dtype=object)
    custom[..., 0] = np.array(ys, dtype=object)[:, None]
    custom[..., 1] = np.array(xs, dtype=object)[None, :]
    trace = go.Heatmap(
        z=array,
        x=list(range(n_cols)),
        y=list(range(n_rows)),
        zmid=zmid,
        colorscale=colorscale,
        reversescale=zmid is not None,
        customdata=custom,
        colorbar={"title": {"text": colorbar_title}} if colorbar_title else None,
        hovertemplate=f"%{{customdata[0]}} · %{{customdata[1]}}<br>%{{z:{value_format}}}"
        "<extra></extra>",
    )
    if text is not None:
        cells = np.asarray(text, dtype=object)
        if cells.shape != array.shape:
            raise ValueError(f"text has shape {cells.shape}, values have {array.shape}")
        trace.update(text=cells, texttemplate="%{text}")
    fig = go.Figure(trace)
    fig.update_layout(
        title=title,
        xaxis={"title": x_title, "tickmode": "array", "tickvals": list(range(n_cols)),
               "ticktext": xs},
        yaxis={"title": y_title, "tickmode": "array", "tickvals": list(range(n_rows)),
               "ticktext": ys, "autorange": "reversed"},
    )
    return fig


def line_over_layers(
    series: Mapping[str, Series] | Series,
    *,
    layer_labels: Sequence[Any] | None = None,
    series_labels: Sequence[str] | None = None,
    title: str | None = None,
    x_title: str = "layer",
    y_title: str | None = None,
) -> go.Figure:
    """Lines of a quantity over layers: one line per series.

    Args:
        series: ``{name: values over layers}``, or a ``[n_series, n_layers]`` array (then
            ``series_labels`` names the rows), or one 1-D sequence.
        layer_labels: one label per layer (e.g. ``["embed", "L0", ..., "final"]``).
    """
    if isinstance(series, Mapping):
        if not series:
            raise ValueError("series is empty: give at least one line")
        names = [str(k) for k in series]
        rows = [as_numpy(v, ndim=1, name=f"series {k!r}") for k, v in series.items()]
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            raise ValueError(f"all series must have the same length, got lengths {sorted(lengths)}")
    else:
        array = as_numpy(series, name="series")
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2:
            raise ValueError(f"series must be 1-D or 2-D, got shape {tuple(array.shape)}")
        rows = list(array)
        names = _labels(series_labels, len(rows), "series_labels")
    n_layers = len(rows[0])
    xs = _labels(layer_labels, n_layers, "layer_labels")
    fig = go.Figure()
    for name, row in zip(names, rows, strict=True):
        fig.add_trace(go.Scatter(x=list(range(n_layers)), y=row, mode="lines+markers", name=name,
                                 customdata=xs,
                                 hovertemplate="%{customdata}: %{y:.4g}<extra>" + name
                                 + "</extra>"))
    fig.update_layout(
        title=title,
        xaxis={"title": x_title, "tickmode": "array", "tickvals": list(range(n_layers)),
               "ticktext": xs},
        yaxis={"title": y_title},
    )
    return fig


def _series_rows(series: Mapping[str, Any], n: int | None = None) -> dict[str, np.ndarray]:
    if not isinstance(series, Mapping) or not series:
        raise ValueError("series must be a non-empty {name: values} mapping")
    rows = {str(k): as_numpy(v, ndim=1, name=f"series {k!r}") for k, v in series.items()}
    lengths = {len(r) for r in rows.values()} | ({n} if n is not None else set())
    if len(lengths) != 1:
        raise ValueError(f"every series must have one value per x, got lengths {sorted(lengths)}")
    return rows


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def line(
    x: Sequence[Any],
    series: Mapping[str, Series],
    *,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    log_y: bool = False,
    vlines: Mapping[float, str] | None = None,
    hlines: Mapping[float, str] | None = None,
    x_format: str | None = None,
) -> go.Figure:
    """Lines of ``series[name][i]`` against ``x[i]``, one per name; ``vlines`` / ``hlines``
    mark positions with a label (``{x: "second copy starts"}``)."""
    xs = list(x)
    rows = _series_rows(series, len(xs))
    fig = go.Figure()
    for i, (name, row) in enumerate(rows.items()):
        fig.add_trace(go.Scatter(x=xs, y=row, mode="lines+markers" if len(xs) <= 60 else "lines",
                                 name=name, line={"color": _COLOURS[i % len(_COLOURS)]},
                                 hovertemplate="%{x}: %{y:.4g}<extra>" + name + "</extra>"))
    for value, label in (vlines or {}).items():
        fig.add_vline(x=value, line_dash="dash", annotation_text=label,
                      annotation_position="top right")
    for value, label in (hlines or {}).items():
        fig.add_hline(y=value, line_dash="dot", annotation_text=label)
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title,
                      yaxis_type="log" if log_y else None, xaxis_tickformat=x_format)
    return fig


def line_panels(
    x: Sequence[Any],
    panels: Mapping[str, Mapping[str, Series]],
    *,
    title: str | None = None,
    x_title: str | None = None,
    hlines: Mapping[str, Mapping[float, str]] | None = None,
) -> go.Figure:
    """Side-by-side panels (``{panel title: {series name: values}}``) sharing ``x`` and one
    legend: a series keeps its colour in every panel. ``hlines[panel]`` marks values."""
    from plotly.subplots import make_subplots

    if not panels:
        raise ValueError("panels is empty: give at least one {title: {name: values}}")
    xs = list(x)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels))
    colours: dict[str, str] = {}
    for col, (panel, series) in enumerate(panels.items(), start=1):
        for name, row in _series_rows(series, len(xs)).items():
            first = name not in colours
            colour = colours.setdefault(name, _COLOURS[len(colours) % len(_COLOURS)])
            fig.add_trace(go.Scatter(x=xs, y=row, mode="lines+markers", name=name,
                                     legendgroup=name, showlegend=first,
                                     line={"color": colour}), row=1, col=col)
        for value, label in (hlines or {}).get(panel, {}).items():
            fig.add_hline(y=value, line_dash="dot", annotation_text=label, row=1, col=col)
    fig.update_xaxes(title_text=x_title)
    fig.update_layout(title=title)
    return fig


def bar(
    labels: Sequence[Any],
    values: Series,
    *,
    text: Sequence[str] | None = None,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
) -> go.Figure:
    """A bar per label (repeats allowed), with optional text above each bar."""
    heights = as_numpy(values, ndim=1, name="values")
    names = _labels(labels, len(heights), "labels")
    trace = go.Bar(x=list(range(len(names))), y=heights, customdata=names,
                   hovertemplate="%{customdata}: %{y:.4g}<extra></extra>")
    if text is not None:
        trace.update(text=_labels(text, len(heights), "text"), textposition="outside")
    fig = go.Figure(trace)
    fig.update_layout(title=title, yaxis_title=y_title,
                      xaxis={"title": x_title, "tickmode": "array",
                             "tickvals": list(range(len(names))), "ticktext": names})
    return fig


def histogram(
    series: Mapping[str, Sequence[float] | np.ndarray | torch.Tensor] | Sequence[float]
    | np.ndarray | torch.Tensor,
    *,
    bins: int = 50,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str = "count",
    vlines: Mapping[float, str] | None = None,
) -> go.Figure:
    """A histogram of each series (``{name: values}`` or one 1-D array), ``bins`` equal bins
    over the range of all values, overlaid; ``vlines`` mark values with a label."""
    if not isinstance(series, Mapping):
        series = {"values": series}
    if not series:
        raise ValueError("series is empty: give at least one {name: values}")
    rows = {str(k): as_numpy(v, ndim=1, name=f"series {k!r}") for k, v in series.items()}
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    every = np.concatenate(list(rows.values()))
    if not np.isfinite(every).all():
        raise ValueError("histogram values must be finite (drop NaN and infinities first)")
    low, high = float(every.min()), float(every.max())
    size = (high - low) / bins if high > low else 1.0
    fig = go.Figure()
    for i, (name, row) in enumerate(rows.items()):
        fig.add_trace(go.Histogram(x=row, name=name, opacity=0.75 if len(rows) > 1 else 1.0,
                                   xbins={"start": low, "end": high + size * 1e-6, "size": size},
                                   marker={"color": _COLOURS[i % len(_COLOURS)]}))
    for value, label in (vlines or {}).items():
        fig.add_vline(x=value, line_dash="dash", annotation_text=label,
                      annotation_position="top right")
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title,
                      barmode="overlay", showlegend=len(rows) > 1)
    return fig


def directions(
    panels: Mapping[str, Float[torch.Tensor, "n 2"] | Float[np.ndarray, "n 2"]],
    *,
    labels: Sequence[Any] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Vectors in the plane drawn as lines from the origin, one panel per entry of ``panels``
    (``{panel title: [n, 2] array}``); ``labels`` names the ``n`` vectors (the same in every
    panel, each vector keeping its colour)."""
    from plotly.subplots import make_subplots

    if not isinstance(panels, Mapping) or not panels:
        raise ValueError("panels must be a non-empty {title: [n, 2] array} mapping")
    arrays = {str(k): as_numpy(v, ndim=2, name=f"panel {k!r}") for k, v in panels.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or next(iter(shapes))[1] != 2:
        raise ValueError(f"every panel must be an [n, 2] array of the same n, got shapes "
                         f"{sorted(shapes)}")
    n = next(iter(shapes))[0]
    names = _labels(labels, n, "labels")
    reach = max(float(np.abs(a).max()) for a in arrays.values()) * 1.15 or 1.0
    fig = make_subplots(rows=1, cols=len(arrays), subplot_titles=list(arrays))
    for col, array in enumerate(arrays.values(), start=1):
        for i, (x, y) in enumerate(array):
            fig.add_trace(go.Scatter(x=[0.0, x], y=[0.0, y], mode="lines+markers",
                                     name=names[i], legendgroup=names[i], showlegend=col == 1,
                                     line={"color": _COLOURS[i % len(_COLOURS)]},
                                     marker={"size": [0, 8]},
                                     hovertemplate=f"{names[i]}: (%{{x:.3g}}, %{{y:.3g}})"
                                     "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(range=[-reach, reach], row=1, col=col)
        fig.update_yaxes(range=[-reach, reach], row=1, col=col,
                         scaleanchor=f"x{col if col > 1 else ''}", scaleratio=1)
    fig.update_layout(title=title)
    return fig
