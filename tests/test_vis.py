import json
import re

import circuitsvis
import circuitsvis.utils.render
import numpy as np
import pytest
import torch

from interp_lib import vis

BUNDLE_MARK = "var CircuitsVis="


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
    vis.reset()

    def no_probe():
        raise AssertionError("circuitsvis's internet_on() must never be called")

    monkeypatch.setattr(circuitsvis.utils.render, "internet_on", no_probe)


def _props(html: str) -> dict:
    match = re.search(r"CircuitsVis\.AttentionHeads, (\{.*\})\); \}", html)
    assert match, "render call not found"
    return json.loads(match.group(1))


def test_once_mode_inlines_the_bundle_in_the_first_view_only():
    pattern = torch.softmax(torch.randn(2, 3, 3), -1).tril()
    first = vis.attention_heads(pattern, ["a", "b", "c"], mode="once")
    second = vis.attention_heads(pattern, ["a", "b", "c"], mode="once")
    assert BUNDLE_MARK in first._repr_html_()
    assert BUNDLE_MARK not in second._repr_html_()
    assert "window.CircuitsVis" in second.html  # reuses the page's copy, with a hint if absent
    vis.reset()
    assert BUNDLE_MARK in vis.attention_heads(pattern, ["a", "b", "c"], mode="once").html


def test_inline_mode_is_self_contained_every_time():
    for _ in range(2):
        html = vis.attention_heads(np.eye(2), ["x", "y"], mode="inline").html
        assert html.count(BUNDLE_MARK) == 1
        assert "</script>" not in html.split("<script>")[1].split("\n</script>")[0]


def test_cdn_mode_loads_from_unpkg_without_the_bundle():
    html = vis.attention_heads(np.eye(2), ["x", "y"], mode="cdn").html
    assert f"unpkg.com/circuitsvis@{circuitsvis.__version__}" in html
    assert BUNDLE_MARK not in html


def test_props_match_circuitsvis_own_rendering():
    pattern = np.array([[[1.0, 0.0], [0.25, 0.75]]])
    ours = _props(vis.attention_heads(pattern, ["A", "B"], ["0.1"], mode="once").html)
    reference = circuitsvis.attention.attention_heads(pattern, ["A", "B"], ["0.1"]).cdn_src
    theirs = json.loads(re.search(r"AttentionHeads,\s*(\{.*\})\s*\)", reference, re.S).group(1))
    assert ours == theirs


def test_shapes_are_normalised():
    one_head = _props(vis.attention_heads(np.eye(3), list("abc"), mode="once").html)
    batched = _props(vis.attention_heads(np.eye(3)[None, None], list("abc"), mode="once").html)
    assert np.array(one_head["attention"]).shape == (1, 3, 3)
    assert one_head["attention"] == batched["attention"]


@pytest.mark.parametrize("attention, tokens, names, error, match", [
    (np.ones((2, 3, 4)), list("abc"), None, ValueError, "dest == src"),
    (np.ones(3), list("abc"), None, ValueError, "head, dest, src"),
    (np.ones((1, 3, 3)), list("ab"), None, ValueError, "tokens has 2 entries"),
    (np.ones((1, 3, 3)), "abc", None, TypeError, "list of strings"),
    (np.ones((2, 3, 3)), list("abc"), ["0.0"], ValueError, "head_names has 1"),
])
def test_attention_heads_validates(attention, tokens, names, error, match):
    with pytest.raises(error, match=match):
        vis.attention_heads(attention, tokens, names, mode="once")


def test_colored_tokens():
    html = vis.colored_tokens([0.1, 0.9], ["a", "b"], mode="inline").html
    assert "CircuitsVis.ColoredTokens" in html
    with pytest.raises(ValueError, match="tokens has 1"):
        vis.colored_tokens([0.1, 0.9], ["a"], mode="inline")


def test_choose_mode_env_override_and_offline(monkeypatch):
    monkeypatch.setenv("INTERP_CIRCUITSVIS_MODE", "inline")
    assert vis.choose_mode() == "inline"
    monkeypatch.setenv("INTERP_CIRCUITSVIS_MODE", "bogus")
    with pytest.raises(ValueError, match="INTERP_CIRCUITSVIS_MODE"):
        vis.choose_mode()
    monkeypatch.delenv("INTERP_CIRCUITSVIS_MODE")
    monkeypatch.setenv("INTERP_OFFLINE", "1")
    assert vis.choose_mode() == "once"


def test_choose_mode_online_uses_the_cdn(monkeypatch, http_server):
    monkeypatch.setenv("INTERP_CDN_URL", http_server.url)
    assert vis.choose_mode() == "cdn"


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode must be one of"):
        vis.attention_heads(np.eye(2), ["a", "b"], mode="sometimes")


def test_save_writes_a_standalone_page(tmp_path):
    view = vis.attention_heads(np.eye(2), ["a", "b"], mode="cdn")
    page = view.save(tmp_path / "view.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and BUNDLE_MARK in page


def test_model_attention_renders(tiny_model):
    text = "The cat sat on the mat."
    _, cache = tiny_model.run_with_cache(tiny_model.to_tokens(text),
                                         names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = cache["pattern", 1][0]
    props = _props(vis.attention_heads(pattern, tiny_model.to_str_tokens(text), mode="once").html)
    np.testing.assert_allclose(np.array(props["attention"]), pattern.numpy(), atol=1e-6)
