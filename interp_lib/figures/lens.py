"""Figures and controls for the logit lens (computation lives in :mod:`interp_lib.logit_lens`).

:func:`lens_heatmap` draws sites (rows, depth downwards) × positions (columns) for one sequence:
the top-1 token written in each cell, the colour a chosen metric (log scale for ranks), a dot
where the top-1 is the true next token, a box where the site's top-1 already equals the final
top-1, and the top-k tokens with probabilities on hover. Its x axis is the *input* token at each
position: the row at position p shows the guess for position p + 1.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.logit_lens import logit_lens
>>> from interp_lib.figures.lens import lens_heatmap
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> fig = lens_heatmap(logit_lens(model, "one two three four"), "next_rank")
>>> fig.data[0].z.shape[0]  # sites: input, 1_pre, final
3
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from interp_lib.logit_lens import METRICS, RANK_METRICS, LensDataset, LensResult

__all__ = ["dataset_figure", "first_stable_figure", "lens_heatmap", "lens_widget", "strided_sites"]


def strided_sites(n_sites: int, stride: int) -> list[int]:
    """Every ``stride``-th site index from the first, always keeping the last.

    >>> strided_sites(13, 4)
    [0, 4, 8, 12]
    >>> strided_sites(6, 4)
    [0, 4, 5]
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    keep = list(range(0, n_sites, stride))
    if keep[-1] != n_sites - 1:
        keep.append(n_sites - 1)
    return keep


def _window(n_pos: int, window: tuple[int, int] | None) -> tuple[int, int]:
    if window is None:
        return 0, n_pos
    start, stop = window
    start, stop = int(start), int(stop)
    if start < 0:
        start += n_pos
    if stop < 0:
        stop += n_pos
    if not 0 <= start < stop <= n_pos:
        raise ValueError(
            f"window {window} is not a non-empty range within positions 0..{n_pos}; "
            "give (start, stop) with start < stop"
        )
    return start, stop


def _cell_text(token: str, limit: int = 8) -> str:
    token = token.replace("\n", "⏎").replace(" ", "·")
    return token if len(token) <= limit else token[: limit - 1] + "…"


def lens_heatmap(
    lens: LensResult,
    metric: str = "kl_to_final",
    *,
    batch: int = 0,
    window: tuple[int, int] | None = None,
    stride: int = 1,
    title: str | None = None,
) -> go.Figure:
    """The lens of one sequence as a heatmap; see the module docstring.

    Args:
        lens: a :func:`~interp_lib.logit_lens.logit_lens` result.
        metric: a key of :data:`~interp_lib.logit_lens.METRICS`; ranks use a log₁₀ colour
            scale; KLs name their direction on the colour bar.
        batch: which sequence of the batch.
        window: ``(start, stop)`` positions to show (default all).
        stride: show every ``stride``-th site, always keeping the final one.
    """
    values = lens.metric(metric)
    n_sites, n_batch, n_pos = values.shape
    if not 0 <= batch < n_batch:
        raise ValueError(f"batch {batch} out of range: the lens holds {n_batch} sequences")
    start, stop = _window(n_pos, window)
    rows = strided_sites(n_sites, stride)
    grid = values[rows, batch, start:stop].float().numpy()
    is_rank = metric in RANK_METRICS
    shown = np.log10(np.where(grid > 0, grid, np.nan)) if is_rank else grid
    top1 = lens.top1[rows, batch, start:stop]
    final_top1 = lens.final_top1[rows, batch, start:stop]
    text = [[_cell_text(lens.decode(t)) for t in row] for row in top1]
    nxt = lens.tokens[batch, start + 1: stop + 1]
    hover = []
    for r, s in enumerate(rows):
        line = []
        for c, p in enumerate(range(start, stop)):
            tops = ", ".join(
                f"{lens.decode(i)!r} {prob:.2f}"
                for i, prob in zip(lens.top_ids[s, batch, p].tolist(),
                                   lens.top_probs[s, batch, p].tolist(), strict=True))
            line.append(f"{lens.sites[s]} · pos {p} {lens.str_tokens[batch][p]!r}<br>"
                        f"{METRICS[metric]}: {grid[r, c]:.4g}<br>top: {tops}")
        hover.append(line)
    colorbar = METRICS[metric] + (" (log₁₀)" if is_rank else "")
    fig = go.Figure(go.Heatmap(
        z=shown, x=list(range(stop - start)), y=list(range(len(rows))),
        text=text, texttemplate="%{text}", textfont={"size": 10},
        customdata=np.array(hover, dtype=object), hovertemplate="%{customdata}<extra></extra>",
        colorscale="Viridis",
        colorbar={"title": {"text": colorbar}},
    ))
    # a dot where the top-1 is the true next token; a box where it equals the final top-1
    dots_x, dots_y = [], []
    for r in range(len(rows)):
        for c in range(stop - start):
            if start + c < n_pos - 1 and int(top1[r, c]) == int(nxt[c]):
                dots_x.append(c + 0.38)
                dots_y.append(r - 0.32)
            if int(top1[r, c]) == int(final_top1[r, c]):
                fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                              line={"color": "white", "width": 1.5})
    fig.add_trace(go.Scatter(x=dots_x, y=dots_y, mode="markers", hoverinfo="skip",
                             marker={"symbol": "circle", "size": 6, "color": "red"},
                             name="top-1 = true next token", showlegend=True))
    fig.update_layout(
        title=title or (f"Logit lens ({lens.decoder} decoder): cells show each site's top-1; "
                        "box = equals the final top-1, red dot = the true next token"),
        xaxis={"title": "input token (the cell guesses the next one)", "tickmode": "array",
               "tickvals": list(range(stop - start)),
               "ticktext": [_cell_text(t, 12) for t in lens.str_tokens[batch][start:stop]]},
        yaxis={"title": "site (depth)", "tickmode": "array", "tickvals": list(range(len(rows))),
               "ticktext": [lens.sites[s] for s in rows], "autorange": "reversed"},
        legend={"orientation": "h", "y": -0.25},
        height=max(300, 45 * len(rows) + 160),
    )
    return fig


def dataset_figure(*results: LensDataset, names: list[str] | None = None) -> go.Figure:
    """Per-site mean KL(final ‖ site), mean loss and agreement with the final top-1, one line
    per dataset result (e.g. the two decoders)."""
    from plotly.subplots import make_subplots

    if not results:
        raise ValueError("give at least one LensDataset")
    names = names or [r.decoder for r in results]
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "mean KL(final ‖ site), nats", "mean loss on the next token, nats",
        "agreement with the final top-1"))
    for name, result in zip(names, results, strict=True):
        for col, values in enumerate((result.mean_kl_to_final, result.mean_loss,
                                      result.agreement_with_final), start=1):
            fig.add_trace(go.Scatter(x=result.sites, y=values.numpy(), mode="lines+markers",
                                     name=name, legendgroup=name, showlegend=col == 1), 1, col)
    fig.update_layout(title=f"Logit lens over {results[0].n_sequences} sequences "
                            f"({results[0].n_positions:,} positions)", height=380)
    return fig


def first_stable_figure(result: LensDataset) -> go.Figure:
    """Histogram: at which site the final answer becomes top-1 and stays top-1."""
    labels = [*result.sites, "never"]
    counts = result.first_stable.numpy()
    keep = len(labels) if counts[-1] else len(labels) - 1
    fig = go.Figure(go.Bar(x=labels[:keep], y=counts[:keep] / counts.sum()))
    fig.update_layout(title="First site from which the final top-1 is top-1 for good",
                      xaxis_title="site", yaxis_title="share of positions")
    return fig


def lens_widget(lens: LensResult, *, batch: int = 0, window: int = 24) -> Any:
    """ipywidgets controls over :func:`lens_heatmap`: metric, comparison (vs final / vs input),
    window start and site stride. Returns the widget box (display it); its ``figure``
    attribute holds the figure currently shown."""
    import ipywidgets as widgets

    n_pos = lens.tokens.shape[1]
    width = min(window, n_pos)
    metric = widgets.Dropdown(options=[m for m in METRICS if not m.startswith("kl")],
                              value="next_rank", description="metric")
    compare = widgets.ToggleButtons(options=["metric", "KL vs final", "KL vs input"],
                                    value="KL vs final", description="colour")
    start = widgets.IntSlider(value=0, min=0, max=max(0, n_pos - width), description="window")
    stride = widgets.IntSlider(value=1, min=1, max=max(1, len(lens.sites) - 1),
                               description="stride")
    out = widgets.Output()
    box = widgets.VBox([widgets.HBox([metric, compare]), widgets.HBox([start, stride]), out])

    def draw(*_):
        name = {"KL vs final": "kl_to_final", "KL vs input": "kl_to_input"}.get(
            compare.value, metric.value)
        box.figure = lens_heatmap(lens, name, batch=batch,
                                  window=(start.value, start.value + width), stride=stride.value)
        with out:
            out.clear_output(wait=True)
            box.figure.show()

    for control in (metric, compare, start, stride):
        control.observe(draw, names="value")
    draw()
    return box
