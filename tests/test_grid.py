"""interp_lib.grid: labels stay with the values through top, frames and figures."""

from __future__ import annotations

import pytest
import torch

from interp_lib.grid import LabelledGrid


def test_top_frame_and_heatmap_keep_labels():
    grid = LabelledGrid(torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]]), ["0", "1"],
                        ["a", "b", "a"], row_title="layer", col_title="token", what="effect")
    assert grid.top(2) == [("1", "a", 3.0), ("0", "a", 1.0)]
    assert grid.top(1, largest=False) == [("0", "b", -2.0)]
    assert grid.names()[:2] == ["0.a", "0.b"]
    frame = grid.to_frame()
    assert list(frame.columns) == ["layer", "token", "effect"]
    assert frame["effect"].tolist() == [1.0, -2.0, 0.5, 3.0, 0.0, -1.0]
    fig = grid.heatmap()
    assert list(fig.layout.xaxis.ticktext) == ["a", "b", "a"]
    assert fig.data[0].zmid == 0.0


@pytest.mark.parametrize(("values", "rows", "cols"), [
    (torch.zeros(2, 3), ["0"], ["a", "b", "c"]),
    (torch.zeros(2, 3), ["0", "1"], ["a"]),
    (torch.zeros(3), ["0", "1", "2"], ["a"]),
])
def test_labels_must_match_the_values(values, rows, cols):
    with pytest.raises(ValueError):
        LabelledGrid(values, rows, cols)
