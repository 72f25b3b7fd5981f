"""Attention-head scores: induction, previous-token, duplicate-token, current-token, first-token
and attention entropy for every head, from one forward pass per batch chunk.

The classic test bed (ARENA 1.2; seed 003) is a sequence of random tokens that repeats: BOS,
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
>>> from interp_lib.testing import save_tiny_gpt2
>>> from interp_lib.heads import head_scores, repeated_tokens
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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int

from interp_lib.inputs import head_name, head_names, parse_heads, to_tokens

__all__ = [
    "SCORE_KINDS",
    "HeadScores",
    "RepeatPerformance",
    "attention_view",
    "head_patterns",
    "head_scores",
    "head_scores_loop",
    "repeat_performance",
    "repeated_tokens",
    "zero_ablation",
]

#: The attention-share scores, each in [0, 1].
SHARE_KINDS: tuple[str, ...] = (
    "induction", "previous_token", "duplicate_token", "current_token", "first_token",
)
#: Everything :func:`head_scores` returns: the shares plus two entropies (nats).
SCORE_KINDS: tuple[str, ...] = (*SHARE_KINDS, "entropy", "entropy_no_first")

_PATTERN = "blocks.{}.attn.hook_pattern"
_Z = "blocks.{}.attn.hook_z"


# ---------------------------------------------------------------- repeated random tokens


def _bos_id(model: Any) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise ValueError(
            "the model's tokenizer has no BOS token; repeated_tokens needs one to start each "
            "sequence (pass your own token tensor to the scoring functions instead)"
        )
    return int(bos)


def repeated_tokens(
    model: Any, n: int = 50, batch: int = 8, seed: int = 0
) -> Int[torch.Tensor, "batch seq"]:
    """``batch`` sequences of BOS + ``n`` random tokens + the same ``n`` tokens again.

    Tokens are drawn uniformly from the tokenizer's vocabulary, leaving out special tokens,
    with a ``torch.Generator`` seeded by ``seed`` (same seed, same tokens, on any device).
    The result has ``2 * n + 1`` positions and lives on the model's device.
    """
    for value, what in ((n, "n"), (batch, "batch")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{what} must be at least 1, got {value}")
    if 2 * n + 1 > model.cfg.n_ctx:
        raise ValueError(
            f"2 * n + 1 = {2 * n + 1} tokens exceed the model's context of {model.cfg.n_ctx}; "
            f"use n <= {(model.cfg.n_ctx - 1) // 2}"
        )
    bos = _bos_id(model)
    size = min(model.cfg.d_vocab, len(model.tokenizer))
    allowed = torch.ones(size, dtype=torch.bool)
    special = [i for i in model.tokenizer.all_special_ids if i is not None and 0 <= i < size]
    allowed[special + [bos]] = False
    candidates = allowed.nonzero()[:, 0]
    gen = torch.Generator().manual_seed(seed)
    half = candidates[torch.randint(len(candidates), (batch, n), generator=gen)]
    tokens = torch.cat([torch.full((batch, 1), bos), half, half], dim=1)
    return tokens.to(model.cfg.device)


def _repeat_period(tokens: torch.Tensor) -> int:
    length = tokens.shape[1]
    n = (length - 1) // 2
    if length < 3 or length % 2 == 0 or not torch.equal(tokens[:, 1: n + 1], tokens[:, n + 1:]):
        raise ValueError(
            "tokens are not BOS + n tokens + the same n tokens (shape "
            f"{tuple(tokens.shape)}); make them with repeated_tokens(model, n, batch)"
        )
    return n


@dataclass
class RepeatPerformance:
    """How well a model predicts repeated random tokens, per position and per half.

    ``log_probs[b, p]`` is the log-probability the model gives the true token ``p + 1`` at
    position ``p`` (``2 n`` predictions per sequence). The first half is the ``n`` predictions
    of the first copy (impossible beyond chance), the second half the ``n`` predictions of the
    second copy, the first of which is still a guess (as in ARENA and seed 003).
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
        import plotly.graph_objects as go

        frame = self.to_frame()
        fig = go.Figure(go.Scatter(x=frame["position"], y=frame["loss"], mode="lines",
                                   name="loss",
                                   hovertemplate="token %{x}: %{y:.3f} nats<extra></extra>"))
        fig.add_vline(x=self.n + 0.5, line_dash="dash",
                      annotation_text="second copy starts", annotation_position="top right")
        fig.update_layout(title=title or "Loss per token on repeated random tokens",
                          xaxis_title="position of the predicted token",
                          yaxis_title="loss (nats)")
        return fig


@contextmanager
def zero_ablation(model: Any, heads: Sequence[Any] | str | None) -> Iterator[list[str]]:
    """A context in which the given heads' outputs (``hook_z``) are zero; yields their names.

    The hooks are removed on exit, also when the body raises. ``None`` or ``[]``: no change.
    """
    if not heads:
        yield []
        return
    pairs = parse_heads(heads, model.cfg)
    by_layer: dict[int, list[int]] = {}
    for layer, head in pairs:
        by_layer.setdefault(layer, []).append(head)

    def make_hook(indices: list[int]) -> Callable:
        def hook(z, hook=None):
            z = z.clone()
            z[:, :, indices] = 0.0
            return z
        return hook

    fwd_hooks = [(_Z.format(layer), make_hook(idx)) for layer, idx in sorted(by_layer.items())]
    with model.hooks(fwd_hooks=fwd_hooks):
        yield [head_name(layer, head) for layer, head in pairs]


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
    tokens = to_tokens(model, tokens)
    n = _repeat_period(tokens)
    log_probs, correct = [], []
    with zero_ablation(model, ablate) as names:
        for chunk in tokens.split(batch_size):
            logits = model(chunk, return_type="logits")[:, :-1].float()
            target = chunk[:, 1:]
            log_probs.append(logits.log_softmax(-1).gather(-1, target[..., None])[..., 0].cpu())
            correct.append((logits.argmax(-1) == target).cpu())
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
        if kind not in self.scores:
            raise ValueError(f"unknown score {kind!r}; available: {list(self.scores)}")
        return kind

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
        order = torch.argsort(values, descending=True, stable=True)[:k]
        return [(self.names[i], float(values[i])) for i in order]

    def detect(self, kind: str, threshold: float = 0.4) -> list[str]:
        """Names of the heads whose ``kind`` score is at least ``threshold``, best first
        (ARENA's detectors use 0.4)."""
        values = self[kind].flatten()
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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if tokens.shape[1] < 2:
        raise ValueError("head scores need at least 2 positions per sequence")
    cfg = model.cfg
    acc = _Accumulator(cfg.n_layers, cfg.n_heads, kinds)
    for chunk in tokens.split(batch_size):
        masks = _masks(chunk)

        def hook(pattern, hook, masks=masks):
            acc.add(hook.layer(), pattern, masks)

        hooks = [(_PATTERN.format(layer), hook) for layer in range(cfg.n_layers)]
        model.run_with_hooks(chunk, fwd_hooks=hooks, return_type=None,
                             stop_at_layer=cfg.n_layers)
    return acc.result(tokens.numel(), cfg.n_layers, cfg.n_heads)


@torch.no_grad()
def head_scores_loop(
    model: Any,
    inputs: str | Sequence[str] | Int[torch.Tensor, "batch seq"],
    *,
    kinds: Sequence[str] | None = None,
) -> HeadScores:
    """The straightforward reference, written independently of :func:`head_scores`: one
    forward pass per sequence and per head, caching that layer's pattern and scoring the one
    head query by query (ARENA/seed style). Slow; for tests and benchmarks.
    """
    tokens = to_tokens(model, inputs)
    kinds = _check_kinds(kinds)
    cfg = model.cfg
    sums = {kind: torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64) for kind in kinds}
    counts = dict.fromkeys(kinds, 0)
    for row in tokens:
        toks = row.tolist()
        seq = len(toks)
        # the keys each share score counts, query by query
        keys = {kind: [[] for _ in range(seq)] for kind in SHARE_KINDS}
        for q in range(1, seq):
            keys["previous_token"][q] = [q - 1]
            keys["current_token"][q] = [q]
            keys["first_token"][q] = [0]
            keys["duplicate_token"][q] = [k for k in range(q) if toks[k] == toks[q]]
            keys["induction"][q] = [k for k in range(1, q + 1) if toks[k - 1] == toks[q]]
        for layer in range(cfg.n_layers):
            for head in range(cfg.n_heads):
                name = _PATTERN.format(layer)
                _, cache = model.run_with_cache(row[None], names_filter=name)
                p = cache[name][0, head].double().cpu()
                for kind in kinds:
                    if kind in SHARE_KINDS:
                        values = [p[q, keys[kind][q]].sum() for q in range(seq) if keys[kind][q]]
                    elif kind == "entropy":
                        values = [-(p[q, : q + 1] * p[q, : q + 1].clamp_min(1e-30).log()).sum()
                                  for q in range(1, seq)]
                    else:
                        values = []
                        for q in range(2, seq):
                            r = p[q, 1: q + 1] / p[q, 1: q + 1].sum()
                            values.append(-(r * r.clamp_min(1e-30).log()).sum())
                    sums[kind][layer, head] += float(sum(values))
                    if layer == 0 and head == 0:
                        counts[kind] += len(values)
    scores = {kind: (sums[kind] / counts[kind]).float() if counts[kind]
              else torch.full((cfg.n_layers, cfg.n_heads), float("nan")) for kind in kinds}
    return HeadScores(scores, {k: v.float() for k, v in sums.items()}, counts, tokens.numel(),
                      cfg.n_layers, cfg.n_heads)


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
    names = sorted({_PATTERN.format(layer) for layer, _ in pairs})
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return torch.stack([cache[_PATTERN.format(layer)][0, head] for layer, head in pairs]).cpu()


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
