import numpy as np
import plotly.io as pio
import pytest
import torch

from interp_lib.plotting import as_numpy, configure_plotly, heatmap, line_over_layers


def test_heatmap_keeps_repeated_token_labels_apart():
    values = torch.arange(6.0).reshape(2, 3)
    fig = heatmap(values, x_labels=[" the", " cat", " the"], y_labels=["L0", "L1"],
                  title="t", x_title="token", y_title="layer")
    trace = fig.data[0]
    assert list(trace.x) == [0, 1, 2]  # integer positions: repeated labels stay separate columns
    assert list(fig.layout.xaxis.ticktext) == [" the", " cat", " the"]
    assert list(fig.layout.yaxis.ticktext) == ["L0", "L1"]
    np.testing.assert_array_equal(trace.z, values.numpy())
    assert trace.customdata[1][2][0] == "L1" and trace.customdata[1][2][1] == " the"
    assert fig.layout.xaxis.title.text == "token"


def test_heatmap_diverging_scale_when_centred():
    fig = heatmap(np.array([[-1.0, 1.0]]), zmid=0)
    assert fig.data[0].zmid == 0
    assert fig.data[0].reversescale


def test_heatmap_cell_text():
    fig = heatmap(np.zeros((1, 2)), text=[["a", "b"]])
    assert list(fig.data[0].text[0]) == ["a", "b"]
    with pytest.raises(ValueError, match="text has shape"):
        heatmap(np.zeros((1, 2)), text=[["a"]])


@pytest.mark.parametrize("values, kwargs, match", [
    (np.zeros(3), {}, "2-dimensional"),
    (np.zeros((2, 3)), {"x_labels": ["a", "b"]}, "x_labels has 2 labels"),
    (np.zeros((2, 3)), {"y_labels": ["a"]}, "y_labels has 1 labels"),
    (np.zeros((0, 3)), {}, "empty"),
])
def test_heatmap_validates_shapes_and_labels(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        heatmap(values, **kwargs)


def test_heatmap_rejects_a_string_as_labels():
    with pytest.raises(TypeError, match="sequence of labels"):
        heatmap(np.zeros((1, 3)), x_labels="abc")


def test_line_over_layers_from_dict_and_array():
    fig = line_over_layers({"a": [1, 2, 3], "b": torch.tensor([3.0, 2.0, 1.0])},
                           layer_labels=["embed", "L0", "final"], y_title="norm")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[1].y) == [3.0, 2.0, 1.0]
    assert list(fig.layout.xaxis.ticktext) == ["embed", "L0", "final"]
    fig2 = line_over_layers(np.ones((2, 4)), series_labels=["p", "q"])
    assert [t.name for t in fig2.data] == ["p", "q"] and len(fig2.data[0].y) == 4
    assert len(line_over_layers([1.0, 2.0]).data) == 1


@pytest.mark.parametrize("series, kwargs, match", [
    ({}, {}, "empty"),
    ({"a": [1, 2], "b": [1, 2, 3]}, {}, "same length"),
    (np.ones((2, 3)), {"series_labels": ["only one"]}, "series_labels"),
    (np.ones((2, 3)), {"layer_labels": ["a", "b"]}, "layer_labels"),
    (np.ones((2, 2, 2)), {}, "1-D or 2-D"),
])
def test_line_over_layers_validates(series, kwargs, match):
    with pytest.raises(ValueError, match=match):
        line_over_layers(series, **kwargs)


def test_as_numpy_accepts_tensors_that_need_grad():
    x = torch.ones(2, requires_grad=True)
    assert as_numpy(x * 2).tolist() == [2.0, 2.0]


def test_configure_plotly_explicit_env_and_invalid(monkeypatch):
    before = pio.renderers.default
    try:
        assert configure_plotly("json") == "json"
        assert configure_plotly("plotly_mimetype+notebook") == "plotly_mimetype+notebook"
        monkeypatch.setenv("PLOTLY_RENDERER", "png")
        assert configure_plotly() == "png"
        with pytest.raises(ValueError, match="Unknown plotly renderer"):
            configure_plotly("no-such-renderer")
    finally:
        pio.renderers.default = before
