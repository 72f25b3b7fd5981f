"""Figures that belong to one technique and are more than a labelled grid or a line.

Result objects draw their own simple figures (``result.heatmap()``, ``result.figure()``, built
with :mod:`interp_lib.plotting`); what needs several results at once, or a figure with marks,
boxes and hover text of its own, lives here, one module per technique:

- :mod:`interp_lib.figures.lens`: the logit-lens heatmap with top-1 tokens, its widget, and the
  dataset-mode curves;
- :mod:`interp_lib.figures.ablation`: pruning curves side by side.

This package sits above the techniques (it reads their results); nothing in a technique
imports it.
"""

from interp_lib.figures.ablation import pruning_figure
from interp_lib.figures.lens import (
    dataset_figure,
    first_stable_figure,
    lens_heatmap,
    lens_widget,
    strided_sites,
)

__all__ = ["dataset_figure", "first_stable_figure", "lens_heatmap", "lens_widget",
           "pruning_figure", "strided_sites"]
