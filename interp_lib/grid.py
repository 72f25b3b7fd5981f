"""A ``[rows, columns]`` result with its labels: what ablation, patching and tracing sweeps return.

>>> import torch
>>> from interp_lib.grid import LabelledGrid
>>> grid = LabelledGrid(torch.tensor([[0.1, 0.5], [0.3, 0.2]]), ["0", "1"], ["0", "1"],
...                     row_title="layer", col_title="head", what="loss increase")
>>> grid.top(1)
[('0', '1', 0.5)]
>>> grid.to_frame().shape
(4, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float

__all__ = ["LabelledGrid"]


@dataclass
class LabelledGrid:
    """``values[row, column]`` with one label per row and per column.

    ``row_title`` / ``col_title`` name the axes ("layer", "position", "head"), ``what`` names the
    quantity with its unit or direction ("increase in loss (nats)"). ``baseline`` is the value
    of the quantity without any intervention, when that is meaningful; ``reference`` the value at
    the other extreme (the clean run in patching), also optional.
    """

    values: Float[torch.Tensor, "rows cols"]
    row_labels: list[str]
    col_labels: list[str]
    row_title: str = "row"
    col_title: str = "column"
    what: str = "value"
    baseline: float | None = None
    reference: float | None = None

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise ValueError(
                f"values must be [rows, columns], got shape {tuple(self.values.shape)}")
        if (len(self.row_labels), len(self.col_labels)) != tuple(self.values.shape):
            raise ValueError(
                f"{len(self.row_labels)} row and {len(self.col_labels)} column labels for values "
                f"of shape {tuple(self.values.shape)}"
            )

    @classmethod
    def layer_head(cls, values: Float[torch.Tensor, "layer head"], what: str,
                   baseline: float | None = None, reference: float | None = None
                   ) -> LabelledGrid:
        """A ``[layer, head]`` grid: rows ``"0".."L-1"``, columns ``"0".."H-1"``, so that
        :meth:`names` gives ``"L.H"`` head names."""
        n_layers, n_heads = values.shape
        return cls(values, [str(la) for la in range(n_layers)], [str(h) for h in range(n_heads)],
                   row_title="layer", col_title="head", what=what, baseline=baseline,
                   reference=reference)

    @classmethod
    def layer_position(cls, values: Float[torch.Tensor, "layer pos"], str_tokens: list[str],
                       what: str, baseline: float | None = None,
                       reference: float | None = None) -> LabelledGrid:
        """A ``[layer, position]`` grid: rows ``"0".."L-1"``, columns ``"p: token"`` from one
        sequence's ``str_tokens`` (``model.to_str_tokens(tokens[0])``), as the patching
        sweeps label them."""
        n_layers = values.shape[0]
        return cls(values, [str(la) for la in range(n_layers)],
                   [f"{p}: {tok}" for p, tok in enumerate(str_tokens)], row_title="layer",
                   col_title="position", what=what, baseline=baseline, reference=reference)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    def names(self, sep: str = ".") -> list[str]:
        """Cell names row-major: ``"row.col"`` ("1.4" for layer 1, head 4)."""
        return [f"{r}{sep}{c}" for r in self.row_labels for c in self.col_labels]

    def top(self, k: int = 5, *, largest: bool = True) -> list[tuple[str, str, float]]:
        """The ``k`` cells with the largest (or smallest) values: ``(row, col, value)``; NaN
        cells (cells with no value) are left out."""
        flat = self.values.flatten()
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k must be an int, got {type(k).__name__}")
        if not 1 <= k <= flat.numel():
            raise ValueError(f"k must be in 1..{flat.numel()} (the grid's cells), got {k}")
        if not isinstance(largest, bool):
            raise TypeError(f"largest must be True or False, got {largest!r}")
        flat = torch.where(torch.isnan(flat), torch.full_like(flat, -float("inf") if largest
                                                               else float("inf")), flat)
        order = torch.argsort(flat, descending=largest, stable=True)[:k]
        n_cols = self.values.shape[1]
        return [(self.row_labels[int(i) // n_cols], self.col_labels[int(i) % n_cols],
                 float(flat[i])) for i in order]

    def to_frame(self):
        """Long format: one row per cell with columns ``row_title``, ``col_title`` and ``what``."""
        import pandas as pd

        rows, cols = self.values.shape
        return pd.DataFrame({
            self.row_title: [r for r in self.row_labels for _ in range(cols)],
            self.col_title: self.col_labels * rows,
            self.what: self.values.flatten().detach().float().cpu().numpy(),
        })

    def heatmap(self, title: str | None = None, *, zmid: float | None = 0.0,
                colorscale: str | None = None):
        """A heatmap with the grid's labels; diverging around ``zmid`` (None: sequential)."""
        from interp_lib.plotting import heatmap

        return heatmap(self.values, x_labels=self.col_labels, y_labels=self.row_labels,
                       title=title or self.what, x_title=self.col_title, y_title=self.row_title,
                       colorbar_title=self.what, zmid=zmid, colorscale=colorscale)
