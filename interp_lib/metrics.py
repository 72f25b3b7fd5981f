"""Metrics for ablation, patching and tracing: functions of a forward pass's logits that give one
number per example.

Every metric here is called as ``metric(logits, tokens)`` with ``logits [batch, pos, vocab]`` and
the ``tokens [batch, pos]`` that produced them, and returns a ``[batch]`` tensor. Sweeps stack
several copies of a batch along the batch axis (copy-major: rows ``0..B-1`` are copy 0, and so
on), so metrics that carry per-example answers repeat them to the number of rows they are given.

- :func:`loss_metric`: mean next-token loss (nats) over a span of predicted positions.
- :func:`logit_diff_metric`: logit of the right answer minus the logit of the wrong one.
- :func:`answer_prob_metric`: probability of the answer token.

>>> import torch
>>> from interp_lib.metrics import logit_diff_metric, loss_metric
>>> logits = torch.zeros(2, 3, 5); logits[:, -1, 1] = 2.0
>>> logit_diff_metric(correct=1, wrong=4)(logits, torch.zeros(2, 3, dtype=torch.long))
tensor([2., 2.])
>>> loss_metric()(torch.zeros(1, 4, 5), torch.zeros(1, 4, dtype=torch.long))  # uniform: log 5
tensor([1.6094])
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int

from interp_lib.logprobs import log_probs_of

__all__ = ["Metric", "answer_prob_metric", "check_metric", "logit_diff_metric", "loss_metric",
           "metric_name"]

#: ``metric(logits [batch, pos, vocab], tokens [batch, pos]) -> [batch]``.
Metric = Callable[[Float[torch.Tensor, "batch pos vocab"], Int[torch.Tensor, "batch pos"]],
                  Float[torch.Tensor, " batch"]]


def check_metric(metric: Any, default: Metric | None = None) -> Metric:
    """``metric`` if it is callable, ``default`` if it is None (and a default is given)."""
    if metric is None and default is not None:
        return default
    if not callable(metric):
        raise TypeError(
            "metric must be a function metric(logits, tokens) -> [batch], e.g. "
            f"interp_lib.metrics.loss_metric(); got {type(metric).__name__}"
        )
    return metric


def metric_name(metric: Metric) -> str:
    """A metric's readable name (its ``__name__``), for labels and titles."""
    return getattr(metric, "__name__", "metric")


def _ids(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a token id or a sequence of ids, got a bool")
    if isinstance(value, int) or hasattr(value, "__index__") and not hasattr(value, "shape"):
        return torch.tensor([operator.index(value)])
    ids = torch.as_tensor(value)
    if ids.ndim == 0:
        ids = ids[None]
    if ids.ndim != 1 or ids.numel() == 0 or ids.is_floating_point():
        raise TypeError(f"{what} must be a token id or a 1-D sequence of ids, got {value!r}")
    return ids.long()


def _per_row(ids: torch.Tensor, rows: int, what: str) -> torch.Tensor:
    """``ids`` (one per example, or one for all) repeated to ``rows`` copy-major rows."""
    if len(ids) == 1:
        return ids.expand(rows)
    if rows % len(ids):
        raise ValueError(
            f"{what} has {len(ids)} entries but the batch has {rows} rows; give one id per "
            "example (or a single id for all)"
        )
    return ids.repeat(rows // len(ids))


def loss_metric(start: int = 1, stop: int | None = None) -> Metric:
    """Mean next-token loss (nats) of each example over the *predicted* positions
    ``start .. stop - 1`` (position ``p`` is predicted from the logits at ``p - 1``).

    ``loss_metric()`` is the ordinary loss over every position after the first;
    ``loss_metric(n + 1)`` on BOS + n + n repeated tokens is the loss on the second half.
    """
    if isinstance(start, bool) or not hasattr(start, "__index__"):
        raise TypeError(f"start must be an int (a position), got {type(start).__name__}")
    start = operator.index(start)
    if start < 1:
        raise ValueError(f"start must be at least 1 (position 0 is never predicted), got {start}")
    if stop is not None:
        if isinstance(stop, bool) or not hasattr(stop, "__index__"):
            raise TypeError(f"stop must be an int or None, got {type(stop).__name__}")
        stop = operator.index(stop)
        if stop <= start:
            raise ValueError(f"stop must be greater than start ({start}), got {stop}")

    def metric(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        end = tokens.shape[1] if stop is None else stop
        if not start < end <= tokens.shape[1]:
            raise ValueError(
                f"loss span {start}..{end - 1} is empty or outside the {tokens.shape[1]} positions"
            )
        return -log_probs_of(logits[:, start - 1: end - 1], tokens[:, start:end]).mean(-1)

    metric.__name__ = f"loss over positions {start}..{'end' if stop is None else stop - 1}"
    return metric


def logit_diff_metric(correct: int | Sequence[int] | torch.Tensor,
                      wrong: int | Sequence[int] | torch.Tensor, position: int = -1) -> Metric:
    """Logit of ``correct`` minus logit of ``wrong`` at ``position`` (default the last); ids are
    one for all examples or one per example."""
    correct_ids, wrong_ids = _ids(correct, "correct"), _ids(wrong, "wrong")

    def metric(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        rows = logits.shape[0]
        last = logits[:, position].float()
        right = last.gather(-1, _per_row(correct_ids, rows, "correct").to(last.device)[:, None])
        other = last.gather(-1, _per_row(wrong_ids, rows, "wrong").to(last.device)[:, None])
        return (right - other)[:, 0]

    metric.__name__ = "logit difference (correct - wrong)"
    return metric


def answer_prob_metric(answer: int | Sequence[int] | torch.Tensor, position: int = -1) -> Metric:
    """Probability of ``answer`` (one id, or one per example) at ``position``."""
    answer_ids = _ids(answer, "answer")

    def metric(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        probs = logits[:, position].float().softmax(-1)
        ids = _per_row(answer_ids, logits.shape[0], "answer").to(probs.device)
        return probs.gather(-1, ids[:, None])[:, 0]

    metric.__name__ = "probability of the answer"
    return metric
