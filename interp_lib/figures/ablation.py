"""Pruning curves side by side (computation: :func:`interp_lib.ablation.prune_heads`).

>>> from interp_lib.ablation import PruningCurve
>>> from interp_lib.figures.ablation import pruning_figure
>>> curve = PruningCurve([0.0, 0.5, 1.0], [1.0, 2.0, 5.0], [], "random", "loss")
>>> len(pruning_figure(curve).data)
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_lib.plotting import line

if TYPE_CHECKING:  # pragma: no cover
    from interp_lib.ablation import PruningCurve

__all__ = ["pruning_figure"]


def pruning_figure(*curves: PruningCurve, title: str | None = None):
    """The metric against the fraction of heads removed, one line per curve (curves with the
    same order, e.g. several random seeds, are numbered)."""
    if not curves:
        raise ValueError("give at least one PruningCurve")
    fractions = curves[0].fractions
    if any(c.fractions != fractions for c in curves):
        raise ValueError("the curves were pruned in different steps; give curves made with "
                         "the same step")
    series, seen = {}, {}
    for curve in curves:
        seen[curve.order] = seen.get(curve.order, 0) + 1
        count = sum(c.order == curve.order for c in curves)
        name = f"{curve.order} order" + (f" {seen[curve.order]}" if count > 1 else "")
        series[name] = curve.values
    return line(fractions, series, title=title or "Pruning heads",
                x_title="fraction of heads removed", y_title=curves[0].what, x_format=".0%")
