"""interp_lib.inputs: head names, layer checks and token batches, with their error messages."""

from __future__ import annotations

import pytest
import torch

from interp_lib.inputs import check_layer, head_names, parse_head, parse_heads, to_tokens


class Cfg:
    n_layers, n_heads = 4, 8


def test_head_names_are_layer_major():
    names = head_names(Cfg)
    assert names[:3] == ["0.0", "0.1", "0.2"] and names[-1] == "3.7" and len(names) == 32


@pytest.mark.parametrize(("head", "expected"), [("1.4", (1, 4)), ((3, 7), (3, 7)),
                                                (" 2.0 ", (2, 0)), ((-1, 0), (3, 0))])
def test_parse_head_accepts_names_and_pairs(head, expected):
    assert parse_head(head, Cfg) == expected


@pytest.mark.parametrize(("head", "error", "match"), [
    ("1-4", ValueError, "not of the form"),
    ("1.4.2", ValueError, "not of the form"),
    ((4, 0), ValueError, "layer 4 is out of range"),
    ((0, 8), ValueError, "head 8 is out of range"),
    ((0.0, 1), TypeError, "must be an int"),
    (7, TypeError, "head must be"),
])
def test_parse_head_explains_what_is_wrong(head, error, match):
    with pytest.raises(error, match=match):
        parse_head(head, Cfg)


def test_parse_heads_takes_one_or_many_and_refuses_none():
    assert parse_heads("1.2", Cfg) == [(1, 2)]
    assert parse_heads((1, 2), Cfg) == [(1, 2)]
    assert parse_heads(["0.1", (2, 3)], Cfg) == [(0, 1), (2, 3)]
    with pytest.raises(ValueError, match="heads is empty"):
        parse_heads([], Cfg)


def test_check_layer_counts_from_the_end_and_refuses_bools():
    assert check_layer(-1, Cfg) == 3
    assert check_layer(torch.tensor(2), Cfg) == 2
    with pytest.raises(TypeError):
        check_layer(True, Cfg)
    with pytest.raises(ValueError, match="layers 0..3"):
        check_layer(4, Cfg)


def test_to_tokens_from_text_texts_and_tensors(tiny_model):
    one = to_tokens(tiny_model, "the cat")
    assert one.ndim == 2 and one[0, 0] == tiny_model.tokenizer.bos_token_id
    assert torch.equal(to_tokens(tiny_model, ["the cat", "the cat"]), one.repeat(2, 1))
    assert torch.equal(to_tokens(tiny_model, one[0]), one)
    assert to_tokens(tiny_model, one.int()).dtype == torch.long


@pytest.mark.parametrize(("inputs", "error", "match"), [
    ([], ValueError, "inputs is empty"),
    ([""], ValueError, "empty"),
    (torch.zeros(1, 0, dtype=torch.long), ValueError, "empty"),
    (torch.zeros(2, 3, 4, dtype=torch.long), ValueError, r"\[batch, pos\]"),
    (torch.zeros(1, 3), TypeError, "integer tensor"),
    (torch.full((1, 3), 10**6), ValueError, "vocabulary"),
    (3.5, TypeError, "inputs must be"),
])
def test_to_tokens_refuses_bad_inputs(tiny_model, inputs, error, match):
    with pytest.raises(error, match=match):
        to_tokens(tiny_model, inputs)
