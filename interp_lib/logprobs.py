"""Next-token log-probabilities and losses from logits: the one implementation of
``log_softmax(-1).gather(...)`` the library uses.

The logits at position ``p`` predict the token at ``p + 1``, so from ``logits [batch, pos,
vocab]`` and the ``tokens [batch, pos]`` that produced them there are ``pos - 1`` predictions
per sequence. The log-probability of a token is its logit minus the log-sum-exp of the row,
computed without materialising a second ``[batch, pos, vocab]`` tensor.

>>> import torch
>>> from interp_lib.logprobs import next_token_log_probs, next_token_loss
>>> logits = torch.zeros(1, 3, 4)          # uniform over 4 tokens
>>> tokens = torch.tensor([[0, 1, 2]])
>>> next_token_log_probs(logits, tokens)    # log(1/4) twice
tensor([[-1.3863, -1.3863]])
>>> next_token_loss(logits, tokens, mask=torch.tensor([[1, 1, 0]]))  # the pad's target dropped
tensor([[1.3863, 0.0000]])
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int

__all__ = ["log_probs_of", "next_token_log_probs", "next_token_loss", "sequence_loss"]


def log_probs_of(logits: Float[torch.Tensor, "*batch vocab"],
                 ids: Int[torch.Tensor, "*batch"]) -> Float[torch.Tensor, "*batch"]:
    """``log softmax(logits)[ids]`` along the last axis, in float32."""
    logits = logits.float()
    chosen = logits.gather(-1, ids[..., None].to(logits.device))[..., 0]
    return chosen - logits.logsumexp(-1)


def next_token_log_probs(logits: Float[torch.Tensor, "batch pos vocab"],
                         tokens: Int[torch.Tensor, "batch pos"]
                         ) -> Float[torch.Tensor, "batch pred"]:
    """Log-probability of each next token: ``[batch, pos - 1]`` (position 0 is not
    predicted)."""
    if logits.ndim != 3 or tokens.ndim != 2 or logits.shape[:2] != tokens.shape:
        raise ValueError(f"logits must be [batch, pos, vocab] and tokens [batch, pos] with the "
                         f"same batch and pos, got {list(logits.shape)} and "
                         f"{list(tokens.shape)}")
    return log_probs_of(logits[:, :-1], tokens[:, 1:])


def next_token_loss(logits: Float[torch.Tensor, "batch pos vocab"],
                    tokens: Int[torch.Tensor, "batch pos"],
                    mask: Int[torch.Tensor, "batch pos"] | None = None
                    ) -> Float[torch.Tensor, "batch pred"]:
    """Per-target loss (nats) ``[batch, pos - 1]``; with an attention ``mask`` a target
    counts (non-zero) only when it and the position predicting it are real tokens."""
    loss = -next_token_log_probs(logits, tokens)
    if mask is not None:
        loss = loss * _real_targets(mask.to(loss.device))
    return loss


def _real_targets(mask: torch.Tensor) -> torch.Tensor:
    return (mask[:, 1:].bool() & mask[:, :-1].bool()).to(torch.float32)


def sequence_loss(logits: Float[torch.Tensor, "batch pos vocab"],
                  tokens: Int[torch.Tensor, "batch pos"],
                  mask: Int[torch.Tensor, "batch pos"] | None = None,
                  reduction: str = "mean") -> Float[torch.Tensor, " batch"]:
    """Each sequence's loss over its real targets: ``"mean"`` (nats per token) or ``"sum"``."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    loss = next_token_loss(logits, tokens, mask)
    total = loss.sum(-1)
    if reduction == "sum":
        return total
    count = (_real_targets(mask.to(loss.device)).sum(-1) if mask is not None
             else torch.full_like(total, loss.shape[1]))
    return total / count.clamp_min(1)
