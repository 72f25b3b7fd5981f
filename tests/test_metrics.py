"""interp_lib.metrics: checked against the model's own loss and plain torch."""

from __future__ import annotations

import pytest
import torch

from interp_lib.metrics import answer_prob_metric, logit_diff_metric, loss_metric


def test_loss_metric_equals_the_models_own_loss(tiny_model):
    tokens = tiny_model.to_tokens(["The cat sat on the mat and the dog", "Mary gave the book to J"])
    tokens = tokens[:, : min(tokens.shape[1], 9)]
    logits = tiny_model(tokens)
    own = tiny_model(tokens, return_type="loss", loss_per_token=True)  # [batch, pos - 1]
    torch.testing.assert_close(loss_metric()(logits, tokens), own.mean(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(loss_metric(4)(logits, tokens), own[:, 3:].mean(-1), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(loss_metric(2, 5)(logits, tokens), own[:, 1:4].mean(-1),
                               atol=1e-5, rtol=0)


def test_logit_diff_and_prob_per_example_and_repeated_copies():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 10)
    tokens = torch.zeros(3, 4, dtype=torch.long)
    diff = logit_diff_metric([1, 2, 3], [4, 5, 6])(logits, tokens)
    expected = torch.stack([logits[i, -1, c] - logits[i, -1, w]
                            for i, (c, w) in enumerate([(1, 4), (2, 5), (3, 6)])])
    torch.testing.assert_close(diff, expected)
    # two stacked copies of the batch: the ids repeat copy-major
    stacked = logits.repeat(2, 1, 1)
    metric = logit_diff_metric([1, 2, 3], [4, 5, 6])
    torch.testing.assert_close(metric(stacked, tokens.repeat(2, 1)), expected.repeat(2))
    probs = answer_prob_metric(7, position=1)(logits, tokens)
    torch.testing.assert_close(probs, logits[:, 1].softmax(-1)[:, 7])


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: loss_metric(0), ValueError, "at least 1"),
    (lambda: logit_diff_metric(1.5, 2), TypeError, "token id"),
    (lambda: logit_diff_metric([1, 2], 3)(torch.zeros(3, 2, 5), torch.zeros(3, 2).long()),
     ValueError, "one id per example"),
    (lambda: loss_metric(5)(torch.zeros(1, 4, 5), torch.zeros(1, 4).long()), ValueError, "empty"),
])
def test_metrics_reject_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
