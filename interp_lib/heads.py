"""Attention-head scores: induction, previous-token, duplicate-token, current-token, first-token
and attention entropy for every head, from one forward pass per batch chunk.

The classic test bed (ARENA 1.2; the repeated-tokens blog post "How to Interpret
GPT2-Small", 2024) is a sequence of random tokens that repeats: BOS,
then ``n`` random tokens, then the same ``n`` again. A model cannot predict the first half but
can predict the second half by copying; the heads that do it attend from each second-half token
to the token *after* its earlier copy (induction heads), helped by heads that attend to the
previous position (previous-token heads).

Score definitions (each a fraction of a head's attention, in ``[0, 1]``, averaged over the
queries for which it is defined, then over the batch):

- ``previous_token``: attention from position ``q`` to ``q - 1`` (queries ``q >= 1``).
- ``current_token``: attention from ``q`` to itself (queries ``q >= 1``; BOS attends to itself
  by necessity and is left out).
- ``first_token``: attention from ``q`` to position 0, the BOS "attention sink" (``q >= 1``).
- ``duplicate_token``: attention from ``q`` to earlier positions holding the same token (queries
  whose token occurred before).
- ``induction``: attention from ``q`` to positions ``k <= q`` right after an earlier occurrence of
  ``q``'s token, i.e. ``tokens[k - 1] == tokens[q]`` with ``k - 1 < q`` (queries whose token
  occurred before). On repeated random tokens this is the diagonal at offset ``1 - n`` over the
  second half; ARENA's ``pattern.diagonal(1 - n)`` also averages two first-half entries that
  have no earlier copy (a small downward bias we avoid).

TransformerLens's ``head_detector.detect_head`` ("mul" measure) uses the same masks but divides
the attention mass by the number of *all* query positions, so its scores equal
``HeadScores.mass[kind] / (batch * seq_len)`` here (see the tests).

Also ``entropy`` (nats, queries ``q >= 1``) and ``entropy_no_first`` (the pattern renormalised
without position 0, queries ``q >= 2``): a head that parks its attention on BOS looks focused by
the first and may be diffuse by the second.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.data import repeated_tokens
>>> from interp_lib.heads import head_scores
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> tokens = repeated_tokens(model, n=10, batch=4, seed=0)
>>> tokens.shape
torch.Size([4, 21])
>>> scores = head_scores(model, tokens)
>>> scores["induction"].shape
torch.Size([2, 4])
>>> bool(((scores["induction"] >= 0) & (scores["induction"] <= 1)).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int

from interp_lib import validate
from interp_lib.data import repeat_period
from interp_lib.hooks import hook_name, only, zero_ablation
from interp_lib.inputs import head_name, head_names, parse_heads, to_tokens
from interp_lib.logprobs import next_token_log_probs

__all__ = [
    "SCORE_KINDS",
    "SHARE_KINDS",
    "HeadScores",
    "RepeatPerformance",
    "attention_view",
    "head_patterns",
    "head_scores",
    "repeat_performance",
]

#: The attention-share scores, each in [0, 1].
SHARE_KINDS: tuple[str, ...] = (
    "induction", "previous_token", "duplicate_token", "current_token", "first_token",
)
#: Everything :func:`head_scores` returns: the shares plus two entropies (nats).
SCORE_KINDS: tuple[str, ...] = (*SHARE_KINDS, "entropy", "entropy_no_first")



# ---------------------------------------------------------------- repeated random tokens


@dataclass
class RepeatPerformance:
    """How well a model predicts repeated random tokens, per position and per half.

    ``log_probs[b, p]`` is the log-probability the model gives the true token ``p + 1`` at
    position ``p`` (``2 n`` predictions per sequence). The first half is the ``n`` predictions
    of the first copy (impossible beyond chance), the second half the ``n`` predictions of the
    second copy, the first of which is still a guess (as in ARENA and the repeated-tokens post).
    """

    log_probs: Float[torch.Tensor, "batch pred"]
    correct: torch.Tensor  # bool [batch, pred]: the top-1 token is the true next token
    n: int
    ablated: list[str] = field(default_factory=list)

    def _half(self, values: torch.Tensor, second: bool) -> float:
        part = values[:, self.n:] if second else values[:, : self.n]
        return float(part.float().mean())

    @property
    def first_half_log_prob(self) -> float:
        return self._half(self.log_probs, False)

    @property
    def second_half_log_prob(self) -> float:
        return self._half(self.log_probs, True)

    @property
    def first_half_loss(self) -> float:
        """Mean loss (nats) on the first half: ``-first_half_log_prob``."""
        return -self.first_half_log_prob

    @property
    def second_half_loss(self) -> float:
        return -self.second_half_log_prob

    @property
    def first_half_accuracy(self) -> float:
        return self._half(self.correct, False)

    @property
    def second_half_accuracy(self) -> float:
        return self._half(self.correct, True)

    def summary(self) -> dict[str, float]:
        return {
            "first_half_loss": self.first_half_loss,
            "second_half_loss": self.second_half_loss,
            "first_half_accuracy": self.first_half_accuracy,
            "second_half_accuracy": self.second_half_accuracy,
        }

    def to_frame(self):
        """One row per predicted position: mean loss and accuracy over the batch."""
        import pandas as pd

        loss = -self.log_probs.float().mean(0)
        return pd.DataFrame({
            "position": np.arange(1, 2 * self.n + 1),
            "half": ["first"] * self.n + ["second"] * self.n,
            "loss": loss.cpu().numpy(),
            "accuracy": self.correct.float().mean(0).cpu().numpy(),
        })

    def figure(self, title: str | None = None):
        """Loss per predicted token (mean over the batch), with the halves marked."""
        from interp_lib.plotting import line

        frame = self.to_frame()
        return line(frame["position"], {"loss": frame["loss"].to_numpy()},
                    title=title or "Loss per token on repeated random tokens",
                    x_title="position of the predicted token", y_title="loss (nats)",
                    vlines={self.n + 0.5: "second copy starts"})


@torch.no_grad()
def repeat_performance(
    model: Any,
    tokens: Int[torch.Tensor, "batch seq"],
    *,
    ablate: Sequence[Any] | str | None = None,
    batch_size: int = 32,
) -> RepeatPerformance:
    """Per-token log-probs and top-1 accuracy on repeated random tokens (from
    :func:`repeated_tokens`), optionally with some heads zero-ablated (``ablate=["1.4"]``).

    Runs in chunks of ``batch_size`` sequences; only log-probs of the true tokens are kept.
    """
    tokens = to_tokens(model, tokens, name="tokens")
    n = repeat_period(tokens)
    batch_size = validate.positive_int(batch_size, "batch_size")
    log_probs, correct = [], []
    with zero_ablation(model, ablate) as names:
        for chunk in tokens.split(batch_size):
            logits = model(chunk, return_type="logits")
            log_probs.append(next_token_log_probs(logits, chunk).cpu())
            correct.append((logits[:, :-1].argmax(-1) == chunk[:, 1:]).cpu())
    return RepeatPerformance(torch.cat(log_probs), torch.cat(correct), n, names)


# ---------------------------------------------------------------- head scores


@dataclass
class HeadScores:
    """Scores of every head, ``[layer, head]`` per kind, with "L.H" labels.

    ``scores[kind]`` is the mean per defined query; ``mass[kind]`` the summed attention and
    ``queries[kind]`` the number of defined queries behind it (``scores = mass / queries``);
    ``positions`` is ``batch * seq_len``, the denominator TransformerLens's detector uses.
    """

    scores: dict[str, Float[torch.Tensor, "layer head"]]
    mass: dict[str, Float[torch.Tensor, "layer head"]]
    queries: dict[str, int]
    positions: int
    n_layers: int
    n_heads: int

    def __getitem__(self, kind: str) -> Float[torch.Tensor, "layer head"]:
        return self.scores[self._kind(kind)]

    def _kind(self, kind: str) -> str:
        if not isinstance(kind, str):
            raise TypeError(f"kind must be a score name (a str), got {type(kind).__name__}")
        return validate.choice(kind, "kind", self.scores)

    @property
    def kinds(self) -> list[str]:
        return list(self.scores)

    @property
    def names(self) -> list[str]:
        """Head names, layer-major, matching ``scores[kind].flatten()``."""
        return head_names(self)

    def to_frame(self):
        """One row per head: ``name``, ``layer``, ``head`` and one column per score."""
        import pandas as pd

        frame = pd.DataFrame({
            "name": self.names,
            "layer": np.repeat(np.arange(self.n_layers), self.n_heads),
            "head": np.tile(np.arange(self.n_heads), self.n_layers),
        })
        for kind, values in self.scores.items():
            frame[kind] = values.flatten().cpu().numpy()
        return frame

    def top(self, kind: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring heads as ``(name, score)``, best first."""
        values = self[kind].flatten()
        k = validate.int_in_range(k, "k", 1, len(values))
        order = torch.argsort(values, descending=True, stable=True)[:k]
        return [(self.names[i], float(values[i])) for i in order]

    def detect(self, kind: str, threshold: float = 0.4) -> list[str]:
        """Names of the heads whose ``kind`` score is at least ``threshold``, best first
        (ARENA's detectors use 0.4)."""
        values = self[kind].flatten()
        threshold = validate.finite_float(threshold, "threshold")
        order = torch.argsort(values, descending=True, stable=True)
        return [self.names[i] for i in order if values[i] >= threshold]

    def heatmap(self, kind: str, title: str | None = None):
        """A ``[layer, head]`` heatmap of one score."""
        from interp_lib.plotting import heatmap

        kind = self._kind(kind)
        unit = "nats" if kind.startswith("entropy") else "share of attention"
        return heatmap(
            self.scores[kind],
            x_labels=[str(h) for h in range(self.n_heads)],
            y_labels=[str(la) for la in range(self.n_layers)],
            title=title or f"{kind.replace('_', ' ')} score per head",
            x_title="head", y_title="layer", colorbar_title=unit,
        )


def _masks(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean ``[batch, query, key]`` masks of the keys each share score counts."""
    _, seq = tokens.shape
    q = torch.arange(seq, device=tokens.device)[:, None]
    k = torch.arange(seq, device=tokens.device)[None, :]
    same = tokens[:, :, None] == tokens[:, None, :]
    duplicate = same & (k < q)
    induction = torch.zeros_like(duplicate)
    induction[:, :, 1:] = duplicate[:, :, :-1]  # key k counts when key k - 1 is a duplicate
    after_first = (q >= 1).expand(seq, seq)
    return {
        "induction": induction,
        "previous_token": ((k == q - 1) & after_first).expand_as(same),
        "duplicate_token": duplicate,
        "current_token": ((k == q) & after_first).expand_as(same),
        "first_token": ((k == 0) & after_first).expand_as(same),
    }


class _Accumulator:
    def __init__(self, n_layers: int, n_heads: int, kinds: Sequence[str]):
        self.kinds = list(kinds)
        self.mass = {kind: torch.zeros(n_layers, n_heads, dtype=torch.float64) for kind in kinds}
        self.queries = dict.fromkeys(kinds, 0)

    def add(self, layer: int, pattern: torch.Tensor, masks: dict[str, torch.Tensor]) -> None:
        """Add one layer's ``[batch, head, q, k]`` pattern of one chunk."""
        pattern = pattern.double()
        for kind in self.kinds:
            if kind in SHARE_KINDS:
                mask = masks[kind]
                per_query = torch.einsum("bhqk,bqk->bhq", pattern, mask.double())
                defined = mask.any(-1)  # [batch, q]
            else:
                start = 1 if kind == "entropy" else 2
                probs = pattern[:, :, start:, :]
                if kind == "entropy_no_first":
                    probs = probs[..., 1:]
                    probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-30)
                per_query = -(probs * probs.clamp_min(1e-30).log()).sum(-1)
                defined = torch.ones(pattern.shape[0], pattern.shape[2] - start, dtype=torch.bool,
                                     device=pattern.device)
            self.mass[kind][layer] += (per_query * defined[:, None]).sum((0, 2)).cpu()
            if layer == 0:
                self.queries[kind] += int(defined.sum())

    def result(self, positions: int, n_layers: int, n_heads: int) -> HeadScores:
        scores = {}
        for kind in self.kinds:
            count = self.queries[kind]
            scores[kind] = (self.mass[kind] / count if count else
                            torch.full_like(self.mass[kind], float("nan"))).float()
        return HeadScores(scores, {k: v.float() for k, v in self.mass.items()},
                          dict(self.queries), positions, n_layers, n_heads)


def _check_kinds(kinds: Sequence[str] | None) -> list[str]:
    if kinds is None:
        return list(SCORE_KINDS)
    if not isinstance(kinds, str | Sequence):
        raise TypeError(f"kinds must be a score name or a list of them, got {type(kinds).__name__}")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in kinds if k not in SCORE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown or no score kinds {unknown}; choose from {list(SCORE_KINDS)}")
    return kinds


@torch.no_grad()
def head_scores(
    model: Any,
    inputs: str | Sequence[str] | Int[torch.Tensor, "batch seq"],
    *,
    kinds: Sequence[str] | None = None,
    batch_size: int = 16,
) -> HeadScores:
    """All heads' scores (see the module docstring) from one forward pass per chunk of
    ``batch_size`` sequences.

    Each layer's attention pattern is reduced to per-head sums inside a hook and dropped, so
    memory holds one layer's ``[chunk, head, pos, pos]`` pattern at a time, and the forward
    pass stops after the last attention layer (no unembedding).

    Args:
        model: a loaded model (:func:`interp_lib.load_model`).
        inputs: text, equal-length texts, or a ``[batch, seq]`` token tensor such as
            :func:`repeated_tokens` makes.
        kinds: a subset of :data:`SCORE_KINDS` (default: all).
    """
    tokens = to_tokens(model, inputs)
    kinds = _check_kinds(kinds)
    batch_size = validate.positive_int(batch_size, "batch_size")
    if tokens.shape[1] < 2:
        raise ValueError("head scores need at least 2 positions per sequence")
    cfg = model.cfg
    acc = _Accumulator(cfg.n_layers, cfg.n_heads, kinds)
    for chunk in tokens.split(batch_size):
        masks = _masks(chunk)

        def hook(pattern, hook, masks=masks):
            acc.add(hook.layer(), pattern, masks)

        hooks = [(hook_name("pattern", layer), hook) for layer in range(cfg.n_layers)]
        model.run_with_hooks(chunk, fwd_hooks=hooks, return_type=None,
                             stop_at_layer=cfg.n_layers)
    return acc.result(tokens.numel(), cfg.n_layers, cfg.n_heads)


# ---------------------------------------------------------------- looking at heads


@torch.no_grad()
def head_patterns(
    model: Any,
    inputs: str | Int[torch.Tensor, "batch seq"],
    heads: Sequence[Any] | str,
) -> Float[torch.Tensor, "head dest src"]:
    """Attention patterns ``[head, dest, src]`` of the given heads on the first sequence,
    caching only the layers those heads are in."""
    tokens = to_tokens(model, inputs)[:1]
    pairs = parse_heads(heads, model.cfg)
    names = sorted({hook_name("pattern", layer) for layer, _ in pairs})
    _, cache = model.run_with_cache(tokens, names_filter=only(*names))
    return torch.stack([cache[hook_name("pattern", layer)][0, head] for layer, head in pairs]).cpu()


def attention_view(
    model: Any,
    inputs: str | Int[torch.Tensor, "batch seq"],
    heads: Sequence[Any] | str,
    **kwargs: Any,
):
    """circuitsvis view of the given heads' patterns on the first sequence, labelled "L.H"."""
    from interp_lib.vis import attention_heads

    tokens = to_tokens(model, inputs)[:1]
    pairs = parse_heads(heads, model.cfg)
    patterns = head_patterns(model, tokens, pairs)
    labels = [str(t) for t in model.to_str_tokens(tokens[0])]
    return attention_heads(patterns, labels, [head_name(*p) for p in pairs], **kwargs)
