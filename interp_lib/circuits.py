"""Circuits read from the weights: full OV and QK circuits, the K-composition circuit of a
previous-token head into an induction head, copying scores, composition scores with a random
baseline, the positional part of a head's attention, and the decomposition of attention scores
into (query source x key source) terms.

Which weights. :func:`interp_lib.load_model` turns on TransformerLens's compatibility mode, so
``model.W_Q`` etc. have each LayerNorm's scale and bias *folded in* and the writing weights
(``W_O``, ``W_E``, ``W_U``) *centred*. A head's input is then ``(x - mean(x)) / scale(x)``
times the folded weights, so products of weights are what the model computes up to that one
scalar per position. On unfolded weights the same products would miss the LayerNorm weights
and give different numbers (TransformerLens issue #1272). The full circuits below start from a
token representation (:func:`token_representations`): ``"raw"`` is ``W_E`` as it is (ARENA's
and the repeated-tokens post's convention, fine for attention-only models); ``"normalized"``
centres and scales each row as LayerNorm would; ``"effective"`` (the default) uses the residual
stream after block 0, normalized, for heads after layer 0, because an MLP in block 0 rewrites the
embedding. Biases are left out.

Rotary models (the course model) have no ``W_pos``: a head's attention score between a
query at ``i`` and a key at ``j`` is ``q^T R(j - i) k`` with a rotation ``R`` on the first
``rotary_dim`` dimensions of each head. The weight-only QK circuits here take an ``offset``
(``j - i``; default 0, i.e. no rotation, the content part only), and :func:`rotation_matrix`
builds ``R`` from the model's own rotary angles (checked against its attention scores in the
tests).

Full circuits are :class:`transformer_lens.FactoredMatrix` objects of shape
``[vocab, vocab]`` that are never multiplied out: :func:`diagonal_accuracy` scores them in row
batches, so memory holds ``batch_size x vocab`` numbers at a time.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.circuits import composition_scores, full_ov_circuit, diagonal_accuracy
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> ov = full_ov_circuit(model, "1.0")
>>> ov.shape
torch.Size([512, 512])
>>> acc = diagonal_accuracy(ov, k=5)
>>> 0 <= acc.top1 <= acc.topk <= 1
True
>>> scores = composition_scores(model, "K")
>>> scores.scores.shape
torch.Size([2, 4, 2, 4])
>>> earlier, later, score = scores.top(1)[0]  # the best (earlier head, later head) pair
>>> earlier.startswith("0.") and later.startswith("1.") and 0 < score < 1
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from transformer_lens import FactoredMatrix

from interp_lib import validate
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import hook_name, only
from interp_lib.inputs import head_name, head_names, parse_head, to_tokens
from interp_lib.validate import check_model

__all__ = [
    "EMBEDDINGS",
    "MODES",
    "AttentionDecomposition",
    "CompositionScores",
    "DiagonalAccuracy",
    "composition_baseline",
    "TokenRepresentations",
    "composition_scores",
    "token_representations",
    "copying_scores",
    "decompose_attention_scores",
    "diagonal_accuracy",
    "full_ov_circuit",
    "full_qk_circuit",
    "k_composition_circuit",
    "positional_scores",
    "rotation_matrix",
]

#: Composition modes: the earlier head's OV output feeds the later head's query, key or value.
MODES: tuple[str, ...] = ("Q", "K", "V")


# ---------------------------------------------------------------- weights and rotations


def _head(model: Any, head: Any) -> tuple[int, int]:
    check_model(model)
    return parse_head(head, model.cfg)


#: How a token enters a full circuit (see :func:`token_representations`).
EMBEDDINGS: tuple[str, ...] = ("effective", "normalized", "raw")


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """What a folded LayerNorm does before its weights: centre, scale to norm sqrt(d)."""
    centred = x - x.mean(-1, keepdim=True)
    return centred / centred.norm(dim=-1, keepdim=True).clamp_min(1e-8) * math.sqrt(x.shape[-1])


@torch.no_grad()
def _after_block0(model: Any, batch_size: int = 2048) -> torch.Tensor:
    """The residual stream after block 0 at the token of ``[BOS, token]``, for every token."""
    vocab = model.cfg.d_vocab
    bos = getattr(model.tokenizer, "bos_token_id", None) or 0
    name = hook_name("resid_post", 0)
    rows = []
    for chunk in torch.arange(vocab, device=model.cfg.device).split(batch_size):
        tokens = torch.stack([torch.full_like(chunk, bos), chunk], 1)
        _, cache = model.run_with_cache(tokens, names_filter=only(name), stop_at_layer=1)
        rows.append(cache[name][:, 1].float())
    return torch.cat(rows)


@dataclass
class TokenRepresentations:
    """How each token looks to the heads of each layer, ``[vocab, d_model]``: ``first`` for
    heads in layer 0, ``later`` for heads in later layers (the same tensor unless
    ``kind == "effective"``). Compute it once with :func:`token_representations` and pass it
    as ``embedding=`` to the circuit functions to reuse it."""

    kind: str
    first: Float[torch.Tensor, "vocab d_model"]
    later: Float[torch.Tensor, "vocab d_model"]

    def at(self, layer: int) -> Float[torch.Tensor, "vocab d_model"]:
        return self.first if layer == 0 else self.later


def token_representations(model: Any, embedding: str = "effective") -> TokenRepresentations:
    """One row per token: how the token alone looks to the heads of each layer.

    - ``"raw"``: ``W_E`` as it is (ARENA's convention, and the repeated-tokens blog post's).
    - ``"normalized"``: ``W_E`` centred and scaled as a LayerNorm would (the folded weights
      expect that).
    - ``"effective"`` (default): for layer 0 as ``"normalized"``; for later layers the
      residual stream after block 0 at the token's position in ``[BOS, token]``, normalized.
      In models with MLPs, the first block rewrites the embedding a lot (the course model's
      induction head reads its query mostly from the layer-0 MLP, see
      :func:`decompose_attention_scores`), so the raw embedding is a poor stand-in. This one
      costs a forward pass over the vocabulary (in batches): compute it once and reuse it.
    """
    check_model(model)
    validate.choice(embedding, "embedding", EMBEDDINGS)
    w_e = model.W_E.detach().float()
    if embedding == "raw":
        return TokenRepresentations("raw", w_e, w_e)
    normalized = _layer_norm(w_e)
    if embedding == "normalized":
        return TokenRepresentations("normalized", normalized, normalized)
    return TokenRepresentations("effective", normalized, _layer_norm(_after_block0(model)))


#: What the circuit functions take as ``embedding``: a name of :data:`EMBEDDINGS` or
#: representations computed once with :func:`token_representations`.
Embedding = str | TokenRepresentations


def _representations(model: Any, embedding: Any) -> TokenRepresentations:
    if isinstance(embedding, TokenRepresentations):
        if embedding.first.shape != (model.cfg.d_vocab, model.cfg.d_model):
            raise ValueError(
                f"embedding holds [{', '.join(map(str, embedding.first.shape))}] rows, this model "
                f"needs [d_vocab, d_model] = [{model.cfg.d_vocab}, {model.cfg.d_model}]; compute "
                "them with token_representations(model) for this model")
        return embedding
    if not isinstance(embedding, str):
        raise TypeError("embedding must be 'effective', 'normalized', 'raw' or a "
                        f"TokenRepresentations, got {type(embedding).__name__}")
    return token_representations(model, embedding)


def _attn_scale(cfg: Any) -> float:
    scale = getattr(cfg, "attn_scale", None)  # -1 in some configs means "the default"
    return float(scale) if scale is not None and scale > 0 else math.sqrt(cfg.d_head)


def _is_rotary(model: Any) -> bool:
    return getattr(model.cfg, "positional_embedding_type", "standard") == "rotary"


def _rotary_angles(model: Any) -> torch.Tensor:
    """The rotary angle per frequency (``[rotary_dim // 2]``), read from the model's own
    ``hook_cos``/``hook_sin`` at position 1 (so no formula or config field is assumed)."""
    bos = getattr(model.tokenizer, "bos_token_id", None) or 0
    tokens = torch.tensor([[bos, bos]], device=model.cfg.device)
    names = (hook_name("cos", 0), hook_name("sin", 0))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=only(*names), stop_at_layer=1)
    cos, sin = (cache[n][0, 1].float().cpu() for n in names)
    half = cos.shape[-1] // 2
    return torch.atan2(sin[:half], cos[:half])


def rotation_matrix(model: Any, offset: int, *, angles: torch.Tensor | None = None
                    ) -> Float[torch.Tensor, "d_head d_head"]:
    """The ``[d_head, d_head]`` rotation ``A`` that rotary embedding applies to a row vector
    ``offset`` positions along (``x -> x @ A``). A query at ``i`` and a key at ``j`` then score
    ``q . (k @ A)`` with ``offset = j - i``, where a model without rotary scores ``q . k``.
    Identity for non-rotary models.

    Supports GPT-NeoX's "rotate half" layout and GPT-J's adjacent pairs
    (``cfg.rotary_adjacent_pairs``); dimensions past ``rotary_dim`` are not rotated.
    ``angles`` (from a previous call's model) saves reading them from the model again.
    """
    check_model(model)
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(
            f"offset must be an int (key position minus query position), got {offset!r}")
    d_head = model.cfg.d_head
    if not _is_rotary(model) or offset == 0:
        return torch.eye(d_head)
    angles = (_rotary_angles(model) if angles is None else angles) * offset
    half = len(angles)
    if getattr(model.cfg, "rotary_adjacent_pairs", False):
        first, second = torch.arange(0, 2 * half, 2), torch.arange(1, 2 * half, 2)
    else:
        first, second = torch.arange(half), torch.arange(half, 2 * half)
    rot = torch.eye(d_head)
    cos, sin = angles.cos(), angles.sin()
    # row-vector convention: rot(k) = k @ rot; x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin
    rot[first, first] = cos
    rot[second, second] = cos
    rot[second, first] = -sin
    rot[first, second] = sin
    return rot


def _check_offset(model: Any, offset: int) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"offset must be an int, got {offset!r}")
    if offset > 0 or -offset >= model.cfg.n_ctx:
        raise ValueError(
            f"offset (key position - query position) must be in -{model.cfg.n_ctx - 1}..0 for a "
            f"causal model, got {offset}"
        )
    return offset


def _qk_right(model: Any, layer: int, head: int, offset: int) -> torch.Tensor:
    """``R W_K^T`` as ``[d_head, d_model]``: the key side of a head's QK circuit."""
    w_k = model.W_K[layer, head].detach().float()
    return rotation_matrix(model, _check_offset(model, offset)).T @ w_k.T


def full_ov_circuit(model: Any, head: Any, *, embedding: Embedding = "effective"
                    ) -> FactoredMatrix:
    """``W_E W_V W_O W_U`` of one head as a ``[vocab, vocab]`` factored matrix: row ``s`` is
    the direct effect on the logits of the head attending to token ``s``. A copying head has a
    large diagonal."""
    layer, index = _head(model, head)
    w_e = _representations(model, embedding).at(layer)
    left = w_e @ model.W_V[layer, index].detach().float()
    right = model.W_O[layer, index].detach().float() @ model.W_U.detach().float()
    return FactoredMatrix(left, right)


def full_qk_circuit(model: Any, head: Any, *, offset: int = 0,
                    embedding: Embedding = "effective") -> FactoredMatrix:
    """``W_E W_Q R W_K^T W_E^T`` of one head, ``[query token, key token]``: the attention
    score between two tokens from their embeddings alone, ``offset`` positions apart (rotary
    models; ignored otherwise)."""
    layer, index = _head(model, head)
    w_e = _representations(model, embedding).at(layer)
    left = w_e @ model.W_Q[layer, index].detach().float()
    return FactoredMatrix(left, _qk_right(model, layer, index, offset) @ w_e.T)


def k_composition_circuit(model: Any, previous_head: Any, induction_head: Any, *,
                          offset: int = 0, embedding: Embedding = "effective"
                          ) -> FactoredMatrix:
    """The K-composition full circuit ``W_E W_Q^B R (W_E W_V^A W_O^A W_K^B)^T`` of a
    previous-token head A into an induction head B (the repeated-tokens
    blog post, 2024), ``[query token, previous token
    of the key]``: how much a query token attends to a key whose *previous* token (moved there
    by A) is a given token. For an induction circuit it peaks on the diagonal."""
    layer_a, index_a = _head(model, previous_head)
    layer_b, index_b = _head(model, induction_head)
    if layer_a >= layer_b:
        raise ValueError(
            f"the previous-token head {head_name(layer_a, index_a)} must be in an earlier layer "
            f"than the induction head {head_name(layer_b, index_b)} to compose with it"
        )
    reps = _representations(model, embedding)
    query, key = reps.at(layer_b), reps.at(layer_a)
    left = query @ model.W_Q[layer_b, index_b].detach().float()
    w_v, w_o = (w[layer_a, index_a].detach().float() for w in (model.W_V, model.W_O))
    right = _qk_right(model, layer_b, index_b, offset) @ (key @ w_v @ w_o).T
    return FactoredMatrix(left, right)


# ---------------------------------------------------------------- diagonal accuracy


@dataclass
class DiagonalAccuracy:
    """How often each row's own index is its top-1 / top-``k`` column.

    ``ranks[i]`` is the 0-based rank of ``M[i, i]`` in row ``i`` (0 = the row's maximum;
    ties count against the diagonal), over the rows in ``rows``.
    """

    ranks: Int[torch.Tensor, "row"]  # noqa: F821 - a jaxtyping dimension name
    rows: Int[torch.Tensor, "row"]  # noqa: F821
    k: int

    @property
    def top1(self) -> float:
        return float((self.ranks == 0).float().mean())

    @property
    def topk(self) -> float:
        return float((self.ranks < self.k).float().mean())

    def summary(self) -> dict[str, float]:
        return {"top1": self.top1, f"top{self.k}": self.topk, "rows": float(len(self.rows)),
                "median_rank": float(self.ranks.float().median())}


def _check_square(matrix: Any) -> tuple[int, int]:
    if not isinstance(matrix, FactoredMatrix | torch.Tensor):
        raise TypeError(f"matrix must be a FactoredMatrix or a tensor, got {type(matrix).__name__}")
    shape = tuple(matrix.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"matrix must be square and 2-D for a diagonal accuracy, got shape "
                         f"{list(shape)}")
    factors = (matrix.A, matrix.B) if isinstance(matrix, FactoredMatrix) else (matrix,)
    for factor in factors:
        validate.finite_tensor(factor.detach(), "matrix")
    return shape


def diagonal_accuracy(
    matrix: FactoredMatrix | Float[torch.Tensor, "n n"],
    *,
    k: int = 5,
    rows: Sequence[int] | torch.Tensor | None = None,
    batch_size: int = 512,
) -> DiagonalAccuracy:
    """Top-1 and top-``k`` "diagonal" accuracy of a square (factored) matrix, over all rows
    or the given ``rows``, computing ``batch_size`` rows at a time (never the whole matrix).
    """
    n, _ = _check_square(matrix)
    k = validate.int_in_range(k, "k", 1, n)
    batch_size = validate.positive_int(batch_size, "batch_size")
    index = torch.arange(n) if rows is None else torch.as_tensor(rows, dtype=torch.long).flatten()
    if len(index) == 0:
        raise ValueError("rows is empty: give at least one row index")
    if index.min() < 0 or index.max() >= n:
        raise ValueError(f"row indices must lie in 0..{n - 1}")
    if isinstance(matrix, FactoredMatrix):
        left, right = matrix.A.detach().float(), matrix.B.detach().float()
    else:
        left, right = matrix.detach().float(), None
    ranks = []
    with torch.no_grad():
        for chunk in index.split(batch_size):
            chunk_dev = chunk.to(left.device)
            block = left[chunk_dev] if right is None else left[chunk_dev] @ right
            diag = block.gather(1, chunk_dev[:, None])
            ranks.append(((block >= diag).sum(1) - 1).cpu())
    return DiagonalAccuracy(torch.cat(ranks), index, k)


# ---------------------------------------------------------------- copying


def copying_scores(model: Any, *, embedding: Embedding = "effective"
                   ) -> LabelledGrid:
    """Every head's copying score from the eigenvalues of its full OV circuit:
    ``sum(lambda) / sum(|lambda|)`` (real part), in ``[-1, 1]``; near 1 for a head whose OV
    circuit maps each token to itself (Elhage et al. 2021). Uses the ``d_head`` non-zero
    eigenvalues, from the small ``[d_head, d_head]`` product ``W_O W_U W_E W_V``."""
    check_model(model)
    w_u = model.W_U.detach().float()
    reps = _representations(model, embedding)
    small = torch.stack([  # W_O W_U E W_V per head, [layer, head, d_head, d_head]
        torch.einsum("hed,dv,vm,hmf->hef", model.W_O[layer].detach().float(), w_u,
                     reps.at(layer), model.W_V[layer].detach().float())
        for layer in range(model.cfg.n_layers)
    ])
    eig = torch.linalg.eigvals(small.double())
    scores = (eig.sum(-1).real / eig.abs().sum(-1).clamp_min(1e-30)).float()
    return LabelledGrid.layer_head(scores, "copying score (eigenvalues of the OV circuit)")


# ---------------------------------------------------------------- composition scores


@dataclass
class CompositionScores:
    """Composition scores ``[layer_a, head_a, layer_b, head_b]`` for one mode, NaN unless
    ``layer_a < layer_b``; ``baseline`` holds scores of random matrices of the same shapes."""

    scores: Float[torch.Tensor, "layer_a head_a layer_b head_b"]
    mode: str
    baseline: Float[torch.Tensor, "sample"] | None  # noqa: F821 - a jaxtyping dimension
    n_layers: int
    n_heads: int

    @property
    def names(self) -> list[str]:
        return head_names(self)

    @property
    def baseline_mean(self) -> float:
        return float("nan") if self.baseline is None else float(self.baseline.mean())

    @property
    def baseline_std(self) -> float:
        return float("nan") if self.baseline is None else float(self.baseline.std())

    def grid(self) -> Float[torch.Tensor, "head_a head_b"]:
        """``[all heads, all heads]`` (layer-major), rows the earlier head."""
        n = self.n_layers * self.n_heads
        return self.scores.reshape(n, n)

    def to_frame(self):
        """One row per (earlier, later) pair: names, layers, score, z-score against the
        baseline."""
        import pandas as pd

        grid = self.grid()
        a, b = (~grid.isnan()).nonzero(as_tuple=True)
        values = grid[a, b].cpu().numpy()
        frame = pd.DataFrame({
            "earlier": [self.names[i] for i in a.tolist()],
            "later": [self.names[i] for i in b.tolist()],
            "layer_earlier": (a // self.n_heads).numpy(),
            "layer_later": (b // self.n_heads).numpy(),
            "score": values,
        })
        frame["z"] = (values - self.baseline_mean) / self.baseline_std
        return frame.sort_values("score", ascending=False, ignore_index=True)

    def top(self, k: int = 5) -> list[tuple[str, str, float]]:
        """The ``k`` highest pairs as ``(earlier, later, score)``."""
        frame = self.to_frame()
        k = validate.int_in_range(k, "k", 1, len(frame))
        frame = frame.head(k)
        return list(zip(frame["earlier"], frame["later"], frame["score"].astype(float),
                        strict=True))

    def score(self, earlier: Any, later: Any) -> float:
        """The score of head ``earlier`` writing into head ``later`` (in a later layer)."""
        (la, ha), (lb, hb) = parse_head(earlier, self), parse_head(later, self)
        if la >= lb:
            raise ValueError(f"earlier head {la}.{ha} must be in an earlier layer than later head "
                             f"{lb}.{hb}: a head reads only what earlier layers wrote (swap them?)")
        return float(self.scores[la, ha, lb, hb])

    def heatmap(self, title: str | None = None):
        """The ``[earlier head, later head]`` grid; cells with no composition are blank."""
        from interp_lib.plotting import heatmap

        names = self.names
        return heatmap(
            self.grid(), x_labels=names, y_labels=names,
            title=title or (f"{self.mode}-composition scores (random baseline "
                            f"{self.baseline_mean:.3f} ± {self.baseline_std:.3f})"),
            x_title="later head (reads)", y_title="earlier head (writes)",
            colorbar_title="score",
        )


def _check_mode(mode: str) -> str:
    return validate.choice(mode, "mode", MODES)


def _factors(model: Any, mode: str) -> tuple[torch.Tensor, ...]:
    """Left/right factors ``[L, H, d_model, d_head]`` / ``[L, H, d_head, d_model]`` of the
    earlier heads' OV and the later heads' reading matrix (TransformerLens's conventions:
    ``OV @ QK`` for Q, ``OV @ QK^T`` for K, ``OV @ OV`` for V)."""
    w_v, w_o = model.W_V.detach().float(), model.W_O.detach().float()
    w_q, w_k = model.W_Q.detach().float(), model.W_K.detach().float()
    if mode == "Q":
        return w_v, w_o, w_q, w_k.transpose(-1, -2)
    if mode == "K":
        return w_v, w_o, w_k, w_q.transpose(-1, -2)
    return w_v, w_o, w_v, w_o


def _frobenius_products(a_l, a_r, b_l, b_r) -> torch.Tensor:
    """``||A_l A_r B_l B_r||_F / (||A_l A_r||_F ||B_l B_r||_F)`` for every pair, broadcast over
    the leading dims, using only ``[rank, rank]`` products: with ``M = A_r B_l``,
    ``||A_l M B_r||_F^2 = tr(M^T (A_l^T A_l) M (B_r B_r^T))``."""
    a_l, a_r, b_l, b_r = (x.double() for x in (a_l, a_r, b_l, b_r))
    gram_a = a_l.transpose(-1, -2) @ a_l          # [..., r, r]
    gram_b = b_r @ b_r.transpose(-1, -2)          # [..., r, r]
    norm_a = torch.einsum("...ij,...jk,...ki->...", gram_a, a_r, a_r.transpose(-1, -2)).sqrt()
    norm_b = torch.einsum("...ij,...jk,...ki->...", b_l.transpose(-1, -2), b_l, gram_b).sqrt()
    return norm_a, norm_b, gram_a, gram_b


def _squared_norms(gram_a, a_r, b_l, gram_b) -> torch.Tensor:
    """``||A_l A_r B_l B_r||_F^2`` for heads ``[h]`` of one earlier layer against every later
    head ``[m, g]``: ``tr(M^T G_A M G_B)`` with ``M = A_r B_l``."""
    middle = torch.einsum("hrd,mgds->hmgrs", a_r, b_l)
    g_a_m = torch.einsum("hir,hmgrs->hmgis", gram_a, middle)   # G_A M
    m_g_b = torch.einsum("hmgis,mgst->hmgit", middle, gram_b)  # M G_B
    return torch.einsum("hmgis,hmgis->hmg", g_a_m, m_g_b)[None]


@torch.no_grad()
def composition_scores(model: Any, mode: str, *, baseline_samples: int = 200,
                       seed: int = 0) -> CompositionScores:
    """Composition scores of every earlier -> later pair of heads for one ``mode`` (``"Q"``,
    ``"K"`` or ``"V"``): ``||W_A W_B||_F / (||W_A||_F ||W_B||_F)`` with ``W_A`` the earlier
    head's OV matrix and ``W_B`` the later head's QK (Q, K) or OV (V) matrix, all pairs at
    once from ``[d_head, d_head]`` products, plus :func:`composition_baseline` with
    ``baseline_samples`` random draws (0 for none). Agrees with TransformerLens's
    ``all_composition_scores`` (tests)."""
    check_model(model)
    mode = _check_mode(mode)
    validate.nonnegative_int(baseline_samples, "baseline_samples")
    validate.nonnegative_int(seed, "seed")
    cfg = model.cfg
    a_l, a_r, b_l, b_r = _factors(model, mode)
    norm_a, norm_b, gram_a, gram_b = _frobenius_products(a_l, a_r, b_l, b_r)
    squared = torch.cat([  # one earlier layer at a time: [head_a, layer_b, head_b, r, r]
        _squared_norms(gram_a[la], a_r[la].double(), b_l.double(), gram_b)
        for la in range(cfg.n_layers)
    ])
    scores = squared.clamp_min(0).sqrt() / (norm_a[:, :, None, None] * norm_b[None, None])
    layers = torch.arange(cfg.n_layers)
    valid = layers[:, None, None, None] < layers[None, None, :, None]
    scores = torch.where(valid, scores, torch.full_like(scores, float("nan"))).float()
    baseline = (composition_baseline(model, mode, samples=baseline_samples, seed=seed)
                if baseline_samples else None)
    return CompositionScores(scores, mode, baseline, cfg.n_layers, cfg.n_heads)


def composition_baseline(model: Any, mode: str, *, samples: int = 200,
                         seed: int = 0) -> Float[torch.Tensor, "sample"]:  # noqa: F821
    """Composition scores of random Gaussian matrices with the model's factor shapes
    (``[d_model, d_head]`` and ``[d_head, d_model]``): what a score looks like when nothing
    composes. The score is scale-free, so only the shapes matter (ARENA's baseline)."""
    check_model(model)
    mode = _check_mode(mode)
    samples = validate.positive_int(samples, "samples")
    validate.nonnegative_int(seed, "seed")
    d_model, d_head = model.cfg.d_model, model.cfg.d_head
    gen = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return torch.randn(samples, *shape, generator=gen, dtype=torch.float64)

    a_l, a_r, b_l, b_r = draw(d_model, d_head), draw(d_head, d_model), draw(d_model, d_head), \
        draw(d_head, d_model)
    norm_a, norm_b, gram_a, gram_b = _frobenius_products(a_l, a_r, b_l, b_r)
    middle = a_r @ b_l
    squared = ((gram_a @ middle) * (middle @ gram_b)).sum((-1, -2))
    return (squared.sqrt() / (norm_a * norm_b)).float()


# ---------------------------------------------------------------- attention by position




@torch.no_grad()
def positional_scores(
    model: Any,
    head: Any,
    inputs: str | Sequence[str] | Int[torch.Tensor, "batch seq"],
    *,
    max_offset: int = 8,
) -> Float[torch.Tensor, "offset"]:  # noqa: F821 - a jaxtyping dimension
    """The part of a head's attention score that depends on position only, for keys
    ``0, 1, ..., max_offset`` positions behind the query: split each query and key (before
    rotation) into its mean over ``inputs`` plus the rest; the mean-query x mean-key term,
    ``q_mean^T R(-d) k_mean / sqrt(d_head)``, varies with the offset ``d`` only. A
    previous-token head peaks at ``d = 1``. Rotary models only (models with learned position
    embeddings show it in ``W_pos W_Q W_K^T W_pos^T`` directly).
    """
    layer, index = _head(model, head)
    if not _is_rotary(model):
        raise ValueError(
            "positional_scores is for rotary models; this model has learned position "
            "embeddings: read the positional QK circuit from model.W_pos instead"
        )
    top = model.cfg.n_ctx - 1
    if isinstance(max_offset, bool) or not isinstance(max_offset, int) \
            or not 1 <= max_offset <= top:
        raise ValueError(f"max_offset must be an int in 1..{top}, got {max_offset!r}")
    tokens = to_tokens(model, inputs)
    names = (hook_name("q", layer), hook_name("k", layer))
    _, cache = model.run_with_cache(tokens, names_filter=only(*names),
                                    stop_at_layer=layer + 1)
    q_mean = cache[names[0]][:, :, index].float().mean((0, 1)).cpu()
    k_mean = cache[names[1]][:, :, index].float().mean((0, 1)).cpu()
    scale = _attn_scale(model.cfg)
    angles = _rotary_angles(model)
    return torch.stack([
        q_mean @ rotation_matrix(model, -d, angles=angles).T @ k_mean / scale
        for d in range(max_offset + 1)
    ])


# ---------------------------------------------------------------- attention-score decomposition


@dataclass
class AttentionDecomposition:
    """A head's attention scores split into ``[query source, key source, query pos, key pos]``
    terms that sum (with the bias terms) to its pre-softmax scores. Sources are the
    residual stream's components at the head's layer: ``"embed"``, every earlier head
    ``"L.H"``, ``"L attn bias"``, ``"L mlp"``, plus ``"bias"`` (``b_Q`` or ``b_K``)."""

    terms: Float[torch.Tensor, "q_source k_source q_pos k_pos"]
    sources: list[str]
    head: str

    def total(self) -> Float[torch.Tensor, "q_pos k_pos"]:
        return self.terms.sum((0, 1))

    def mean_over(self, mask: torch.Tensor) -> Float[torch.Tensor, "q_source k_source"]:
        """Mean of every term over the ``[q_pos, k_pos]`` cells where ``mask`` is true (for
        instance the induction diagonal)."""
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError("mask must be a bool tensor [q_pos, k_pos] of the cells to average")
        if mask.shape != self.terms.shape[2:]:
            raise ValueError(f"mask must have shape {tuple(self.terms.shape[2:])}, got "
                             f"{tuple(mask.shape)}")
        if not mask.any():
            raise ValueError("mask selects no cells")
        return self.terms[:, :, mask].mean(-1)

    def to_frame(self, mask: torch.Tensor):
        """One row per (query source, key source): mean term over ``mask``, largest first."""
        import pandas as pd

        means = self.mean_over(mask)
        n = len(self.sources)
        frame = pd.DataFrame({
            "query_source": np.repeat(self.sources, n),
            "key_source": np.tile(self.sources, n),
            "mean_score": means.flatten().numpy(),
        })
        return frame.reindex(frame["mean_score"].abs().sort_values(ascending=False).index
                             ).reset_index(drop=True)

    def heatmap(self, mask: torch.Tensor, title: str | None = None):
        from interp_lib.plotting import heatmap

        return heatmap(self.mean_over(mask), x_labels=self.sources, y_labels=self.sources,
                       title=title or f"Head {self.head}: attention score by source",
                       x_title="key source", y_title="query source",
                       colorbar_title="mean score")


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, adjacent: bool) -> torch.Tensor:
    """Apply the model's rotary embedding (``cos``/``sin`` ``[pos, rotary_dim]`` from its
    hooks) to ``[..., pos, d_head]``."""
    rd = cos.shape[-1]
    rot, rest = x[..., :rd], x[..., rd:]
    if adjacent:
        pairs = rot.reshape(*rot.shape[:-1], rd // 2, 2)
        turned = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).reshape(rot.shape)
    else:
        turned = torch.cat([-rot[..., rd // 2:], rot[..., : rd // 2]], -1)
    return torch.cat([rot * cos + turned * sin, rest], -1)


@torch.no_grad()
def decompose_attention_scores(
    model: Any,
    inputs: str | Int[torch.Tensor, "batch seq"],
    head: Any,
) -> AttentionDecomposition:
    """Split one head's attention scores on the first sequence of ``inputs`` into (query
    source x key source) terms (ARENA 1.2's decomposition): each residual component is
    centred and divided by the layer's LayerNorm scale (as the model does), projected by the
    folded ``W_Q`` / ``W_K``, rotated (rotary models) and multiplied. The terms sum to the
    head's scores before masking (checked in the tests)."""
    layer, index = _head(model, head)
    tokens = to_tokens(model, inputs)[:1]
    cfg = model.cfg
    wanted = {"hook_embed", "hook_pos_embed", hook_name("ln1_scale", layer),
              hook_name("resid_pre", layer),
              hook_name("cos", layer), hook_name("sin", layer)}
    wanted |= {hook_name("z", la) for la in range(layer)}
    wanted |= {hook_name("mlp_out", la) for la in range(layer)}
    _, cache = model.run_with_cache(tokens, names_filter=only(*wanted),
                                    stop_at_layer=layer + 1)
    parts, sources = [], []
    embed = cache["hook_embed"][0]
    if "hook_pos_embed" in cache.cache_dict:
        embed = embed + cache["hook_pos_embed"][0]
    parts.append(embed)
    sources.append("embed")
    for la in range(layer):
        z = cache[hook_name("z", la)][0]                       # [pos, head, d_head]
        per_head = torch.einsum("phe,hed->hpd", z, model.W_O[la])
        parts.extend(per_head)
        sources.extend(head_name(la, h) for h in range(cfg.n_heads))
        parts.append(model.b_O[la].expand_as(embed))
        sources.append(f"{la} attn bias")
        parts.append(cache[hook_name("mlp_out", la)][0])
        sources.append(f"{la} mlp")
    stack = torch.stack(parts).float()                                  # [source, pos, d_model]
    resid = cache[hook_name("resid_pre", layer)][0].float()
    if not torch.allclose(stack.sum(0), resid, atol=1e-3 * max(1.0, float(resid.abs().max()))):
        raise RuntimeError(
            "the residual components do not add up to the residual stream for this "
            "architecture (a component this function does not know about); please report it"
        )
    stack = (stack - stack.mean(-1, keepdim=True)) / cache[hook_name("ln1_scale", layer)][0].float()
    q = torch.einsum("spd,de->spe", stack, model.W_Q[layer, index].float())
    k = torch.einsum("spd,de->spe", stack, model.W_K[layer, index].float())
    zeros = torch.zeros_like(q[:1])
    q = torch.cat([q, zeros + model.b_Q[layer, index].float()])
    k = torch.cat([k, zeros + model.b_K[layer, index].float()])
    sources = [*sources, "bias"]
    if _is_rotary(model):
        cos = cache[hook_name("cos", layer)][0].float()
        sin = cache[hook_name("sin", layer)][0].float()
        adjacent = bool(getattr(cfg, "rotary_adjacent_pairs", False))
        q, k = _rotate(q, cos, sin, adjacent), _rotate(k, cos, sin, adjacent)
    terms = torch.einsum("spe,tqe->stpq", q, k) / _attn_scale(cfg)
    return AttentionDecomposition(terms.detach().cpu(), sources, head_name(layer, index))
