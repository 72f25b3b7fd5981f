"""Reading weights and gradients in the vocabulary: MLP neurons as key-value memories,
parameters in embedding space, and the backward lens.

A vector ``v`` that a component adds to the residual stream changes the logits by
``(v - mean(v)) / scale · W_U`` (the final LayerNorm centres it and divides by one scalar per
position; its weights are folded into ``W_U``). :func:`vocab_projection` computes that *direct
effect* up to the scale, which does not change a ranking; the logit lens (nostalgebraist 2020)
reads hidden states the same way. Everything below reads some vector this way.

**Neurons as key-value memories** (Geva et al. 2021, "Transformer Feed-Forward Layers Are
Key-Value Memories"; Geva et al. 2022, "Transformer Feed-Forward Layers Build Predictions by
Promoting Concepts in the Vocabulary Space"). An MLP computes ``out = f(x W_in + b_in) W_out +
b_out``: neuron ``j`` has a *key*, column ``j`` of ``W_in`` (what it reads), and a *value*,
row ``j`` of ``W_out`` (what it writes). Its output is ``Σ_j a_j W_out[j] + b_out`` with
``a_j`` its activation: a sum of *sub-updates*, one per neuron.

- :func:`value_tokens`: the tokens each value vector promotes and suppresses (in row batches,
  never ``[d_mlp, d_vocab]`` for a big model at once);
- :func:`neuron_contexts`: a key read by the contexts of a text that activate the neuron most,
  in chunks (never a ``[tokens, d_mlp]`` matrix of the whole text); :func:`key_tokens` reads
  it through the token representations instead (Dar et al. 2022);
- :func:`mlp_sub_updates`: one sequence's MLP outputs split into the sub-updates, the top
  neurons at each position (ranked by ``|a_j| ‖W_out[j]‖``, as Geva et al. 2022 do), what they
  promote, and how that agrees with the layer's logit-lens gain at the position.

**Parameters in embedding space** (Dar et al. 2022, "Analyzing Transformers in Embedding
Space", arXiv:2209.02535): :func:`ov_tokens` and :func:`qk_tokens` read rows of a head's full
OV and QK circuits (:mod:`interp_lib.circuits`' factored matrices, never multiplied out);
:func:`top_token_pairs` finds the largest entries of a whole ``[vocab, vocab]`` circuit in row
batches.

**The backward lens** (Katz et al. 2024, "Backward Lens: Projecting Language Model Gradients
into the Vocabulary Space"). For a linear layer ``z = x W`` applied at the ``n`` positions of a
text, ``∂L/∂W = Σ_i x_iᵀ δ_i`` with ``δ_i = ∂L/∂z_i``: the gradient is a sum of ``n`` outer
products, so its rank is at most ``n``. :func:`backward_lens` gets every ``x_i`` and ``δ_i`` of
every MLP's two matrices from **one forward and one backward pass** with hooks: for ``W_in``,
``x_i`` is the MLP's (normalised) input and ``δ_i`` the gradient at ``hook_pre``; for
``W_out``, ``x_i`` is the activation ``hook_post`` and ``δ_i`` the gradient at
``hook_mlp_out``. The two factors that live in the residual stream can be read as tokens: a
gradient-descent step adds ``-lr · Σ_i δ_i[j] x_i`` to neuron ``j``'s key (the inputs are
**imprinted** on the keys) and ``-lr · Σ_i a_i[j] δ_i`` to its value (the values are
**shifted** along ``-δ_i``): the paper's "imprint and shift". :meth:`BackwardLens.projections`
reads ``-δ_i`` of ``W_out`` through the unembedding ("what the values would be made to
write") and ``x_i`` of ``W_in`` against the token representations ("which tokens the keys
would be made to respond to", as :func:`key_tokens` reads keys), per layer and position;
:func:`stepped` applies the step for real and puts the weights back afterwards.

Which weights: :func:`interp_lib.load_model` folds each LayerNorm's weights into the next
matrix *in the model's own parameters*, so ``model.W_in[L]`` is exactly the matrix the forward
pass multiplies by; :func:`mlp_weight` returns that parameter (and says whether it is stored
transposed), and the tests check the factorised gradient against autograd on it.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.vocab_space import backward_lens, mlp_sub_updates, value_tokens
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> values = value_tokens(model, 1, [0, 1], k=3)
>>> values.promoted.ids.shape
torch.Size([2, 3])
>>> sub = mlp_sub_updates(model, "The cat sat on the mat", 1)
>>> sub.error() < 1e-4  # the sub-updates sum to the MLP's output
True
>>> lens = backward_lens(model, "The cat sat on the mat")
>>> lens.rank(0, "W_out") <= lens.n_positions  # a sum of n rank-one terms
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from transformer_lens import FactoredMatrix

from interp_lib import validate
from interp_lib.circuits import (
    TokenRepresentations,
    full_ov_circuit,
    full_qk_circuit,
    token_representations,
)
from interp_lib.hooks import hook_name, only
from interp_lib.inputs import check_layer, to_tokens
from interp_lib.logprobs import next_token_loss
from interp_lib.validate import check_model, check_same_model

__all__ = [
    "WEIGHTS",
    "BackwardLens",
    "GradientProjections",
    "MLPWeight",
    "NeuronContexts",
    "NeuronTokens",
    "SubUpdates",
    "TokenPairs",
    "TopTokens",
    "backward_lens",
    "key_tokens",
    "mlp_sub_updates",
    "mlp_weight",
    "neuron_contexts",
    "ov_tokens",
    "qk_tokens",
    "stepped",
    "top_token_pairs",
    "top_tokens",
    "value_tokens",
    "vocab_projection",
]

#: The two matrices of an MLP, as the model names them: ``W_in [d_model, d_mlp]`` (the keys
#: are its columns) and ``W_out [d_mlp, d_model]`` (the values are its rows).
WEIGHTS: tuple[str, ...] = ("W_in", "W_out")


# ---------------------------------------------------------------- shared helpers


def _decode(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([int(token_id)]) if tokenizer is not None else str(int(token_id))


def _cell(token: str, limit: int = 8) -> str:
    """A token as a short cell label: spaces as ·, newlines as ⏎, cut with … when long."""
    token = token.replace("\n", "⏎").replace(" ", "·")
    return token if len(token) <= limit else token[: limit - 1] + "…"


def _centres(model: Any) -> bool:
    return getattr(model.cfg, "normalization_type", "LN") in ("LN", "LNPre")


def _check_k(k: Any, model: Any, name: str = "k") -> int:
    return validate.int_in_range(k, name, 1, int(model.cfg.d_vocab))


def _check_neurons(neurons: Any, model: Any, name: str = "neurons") -> torch.Tensor:
    """Neuron indices as a 1-D long tensor in ``0..d_mlp - 1`` (``None``: every neuron)."""
    d_mlp = int(model.cfg.d_mlp)
    if neurons is None:
        return torch.arange(d_mlp)
    if isinstance(neurons, bool) or isinstance(neurons, float | str):
        raise TypeError(f"{name} must be a neuron index or a list of them, got {neurons!r}")
    if isinstance(neurons, int):
        neurons = [neurons]
    if isinstance(neurons, torch.Tensor):
        if neurons.is_floating_point() or neurons.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer neuron indices, got dtype {neurons.dtype}")
        ids = neurons.flatten().long().cpu()
    else:
        items = list(neurons)
        if any(isinstance(i, bool) or not isinstance(i, int | np.integer) for i in items):
            raise TypeError(f"{name} must hold integer neuron indices, got {items[:5]!r}")
        ids = torch.tensor([int(i) for i in items], dtype=torch.long)
    if len(ids) == 0:
        raise ValueError(f"{name} is empty: give at least one neuron index")
    if int(ids.min()) < 0 or int(ids.max()) >= d_mlp:
        raise ValueError(f"{name} must lie in 0..{d_mlp - 1} (this model's d_mlp is {d_mlp}), "
                         f"got {int(ids.min())}..{int(ids.max())}")
    return ids


def _check_mlp(model: Any) -> None:
    if getattr(model.cfg, "attn_only", False):
        raise ValueError("this model has no MLPs (attention only)")
    if getattr(model.cfg, "gated_mlp", False):
        raise ValueError("this model's MLPs are gated (W_gate): the key-value reading here is "
                         "for MLPs with one input matrix")


def _token_ids(model: Any, tokens: Any, name: str) -> torch.Tensor:
    """Token ids from ids, single-token strings or a mix: a 1-D long tensor."""
    if isinstance(tokens, str | int) and not isinstance(tokens, bool):
        tokens = [tokens]
    if isinstance(tokens, torch.Tensor):
        if tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise TypeError(f"{name} must be token ids or single-token strings, got dtype "
                            f"{tokens.dtype}")
        items = tokens.flatten().tolist()
    elif isinstance(tokens, Sequence):
        items = list(tokens)
    else:
        raise TypeError(f"{name} must be token ids or single-token strings, got "
                        f"{type(tokens).__name__}")
    if not items:
        raise ValueError(f"{name} is empty: give at least one token")
    return torch.tensor([_one_token(model, t, name) for t in items], dtype=torch.long)


def _one_token(model: Any, token: Any, name: str) -> int:
    vocab = int(model.cfg.d_vocab)
    if isinstance(token, str):
        ids = model.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = [model.tokenizer.decode([i]) for i in ids]
            raise ValueError(f"{name}: {token!r} is {len(ids)} tokens for this tokenizer, not one"
                             f"{f' ({pieces})' if pieces else ''}; give a single token (often "
                             "with its leading space) or its id")
        return int(ids[0])
    if isinstance(token, bool) or not isinstance(token, int | np.integer):
        raise TypeError(f"{name}: a token is an id or a single-token string, got {token!r}")
    if not 0 <= int(token) < vocab:
        raise ValueError(f"{name}: token id {int(token)} is outside the vocabulary 0..{vocab - 1}")
    return int(token)


def _one_sequence(model: Any, inputs: Any) -> torch.Tensor:
    tokens = to_tokens(model, inputs)
    if tokens.shape[0] != 1:
        raise ValueError(f"inputs: give one text (or a [1, pos] token tensor); got a batch of "
                         f"{tokens.shape[0]}: read one sequence at a time")
    return tokens


def vocab_projection(model: Any, vectors: Float[torch.Tensor, "*batch d_model"]
                     ) -> Float[torch.Tensor, "*batch d_vocab"]:
    """The direct effect on the logits of adding ``vectors`` to the residual stream, up to the
    final norm's scale: ``(v - mean(v)) @ W_U`` (no centring for RMSNorm models, no bias).
    Rankings of tokens do not depend on the scale, so this is what the token lists read."""
    check_model(model)
    vectors = validate.finite_tensor(vectors, "vectors")
    if vectors.ndim < 1 or vectors.shape[-1] != model.cfg.d_model:
        raise ValueError(f"vectors must end in d_model = {model.cfg.d_model}, got shape "
                         f"{list(vectors.shape)}")
    return _project(model, vectors)


def _project(model: Any, vectors: torch.Tensor) -> torch.Tensor:
    w_u = model.W_U.detach().float()
    v = vectors.detach().float().to(w_u.device)
    if _centres(model):
        v = v - v.mean(-1, keepdim=True)
    return v @ w_u


def _topk_rows(model: Any, rows: torch.Tensor, k: int, batch_size: int, *, both: bool = False
               ) -> tuple[torch.Tensor, ...]:
    """Top-``k`` (and, with ``both``, bottom-``k``) tokens of each row's vocabulary projection,
    ``batch_size`` rows at a time: ``(ids, scores[, low_ids, low_scores])``, on the CPU."""
    parts: list[list[torch.Tensor]] = [[], [], [], []]
    with torch.no_grad():
        for chunk in rows.split(batch_size):
            logits = _project(model, chunk)
            top = logits.topk(k, dim=-1)
            parts[0].append(top.indices.cpu())
            parts[1].append(top.values.cpu())
            if both:
                low = logits.topk(k, dim=-1, largest=False)
                parts[2].append(low.indices.cpu())
                parts[3].append(low.values.cpu())
    out = tuple(torch.cat(p) for p in parts if p)
    return out


# ---------------------------------------------------------------- token lists



def _neuron_index(neurons: torch.Tensor, neuron: Any) -> int:
    """The row of ``neuron`` in a result that read ``neurons``; a clear error if it did not."""
    neuron = validate.nonnegative_int(neuron, "neuron")
    hits = (neurons == neuron).nonzero()
    if len(hits) == 0:
        raise ValueError(f"neuron {neuron} is not among the {len(neurons)} neurons read")
    return int(hits[0, 0])

@dataclass
class TopTokens:
    """For each of ``n`` rows (vectors, neurons, source tokens...), ``k`` tokens with their
    scores, best first: ``ids [n, k]``, ``scores [n, k]`` and the decoded ``tokens``.
    ``labels`` names the rows; ``what`` says what the scores are."""

    ids: Int[torch.Tensor, "row k"]
    scores: Float[torch.Tensor, "row k"]
    tokens: list[list[str]]
    labels: list[str]
    what: str

    def __len__(self) -> int:
        return len(self.labels)

    def _row(self, row: int | str) -> int:
        if isinstance(row, str):
            if row not in self.labels:
                raise ValueError(f"unknown row {row!r}; rows are {self.labels[:10]}"
                                 f"{' ...' if len(self.labels) > 10 else ''}")
            return self.labels.index(row)
        row = validate.int_in_range(row, "row", -len(self.labels), len(self.labels) - 1)
        return row % len(self.labels)

    def row(self, row: int | str) -> list[tuple[str, float]]:
        """``(token, score)`` pairs of one row (by index or label), best first."""
        i = self._row(row)
        return list(zip(self.tokens[i], self.scores[i].tolist(), strict=True))

    def describe(self, row: int | str, n: int = 8) -> str:
        """The first ``n`` tokens of a row as one printable line."""
        i = self._row(row)
        n = validate.positive_int(n, "n")
        return ", ".join(repr(t) for t in self.tokens[i][:n])

    def to_frame(self):
        """Long format: one line per (row, rank) with the token and its score."""
        import pandas as pd

        k = self.ids.shape[1]
        return pd.DataFrame({
            "row": [label for label in self.labels for _ in range(k)],
            "rank": list(range(1, k + 1)) * len(self.labels),
            "token": [t for row in self.tokens for t in row],
            "token_id": self.ids.flatten().tolist(),
            "score": self.scores.flatten().float().numpy(),
        })


def _top_tokens(model: Any, ids: torch.Tensor, scores: torch.Tensor, labels: list[str],
                what: str) -> TopTokens:
    tokenizer = getattr(model, "tokenizer", None)
    return TopTokens(ids, scores, [[_decode(tokenizer, i) for i in row] for row in ids.tolist()],
                     labels, what)


def top_tokens(
    model: Any,
    vectors: Float[torch.Tensor, "*row d_model"],
    k: int = 10,
    *,
    largest: bool = True,
    labels: Sequence[str] | None = None,
    batch_size: int = 256,
) -> TopTokens:
    """The ``k`` tokens each vector (``[d_model]`` or ``[n, d_model]``) promotes most
    (``largest=False``: suppresses most) through :func:`vocab_projection`, ``batch_size`` rows
    of ``[rows, d_vocab]`` at a time."""
    check_model(model)
    vectors = validate.finite_tensor(vectors, "vectors")
    if vectors.ndim not in (1, 2) or vectors.shape[-1] != model.cfg.d_model:
        raise ValueError(f"vectors must be [d_model] or [n, d_model] with d_model = "
                         f"{model.cfg.d_model}, got shape {list(vectors.shape)}")
    k = _check_k(k, model)
    validate.flag(largest, "largest")
    batch_size = validate.positive_int(batch_size, "batch_size")
    rows = vectors.reshape(-1, vectors.shape[-1])
    names = [str(i) for i in range(len(rows))] if labels is None else [str(x) for x in labels]
    if len(names) != len(rows):
        raise ValueError(f"labels has {len(names)} entries for {len(rows)} vectors")
    sign = 1.0 if largest else -1.0
    ids, scores = _topk_rows(model, sign * rows.float(), k, batch_size)
    what = "direct logit effect" if largest else "minus the direct logit effect (suppressed)"
    return _top_tokens(model, ids, sign * scores, names, what)


# ---------------------------------------------------------------- values and keys


@dataclass
class NeuronTokens:
    """What the value vectors of some neurons of one layer write, as tokens: ``promoted``
    (largest entries of ``W_out[layer, j] @ W_U``) and ``suppressed`` (smallest), each
    ``[neuron, k]``; ``norms`` are the value vectors' lengths."""

    layer: int
    neurons: Int[torch.Tensor, " neuron"]
    promoted: TopTokens
    suppressed: TopTokens
    norms: Float[torch.Tensor, " neuron"]

    def _index(self, neuron: int) -> int:
        return _neuron_index(self.neurons, neuron)

    def describe(self, neuron: int, n: int = 8) -> str:
        """``"L.j promotes ...; suppresses ..."``, one line."""
        i = self._index(neuron)
        return (f"{self.layer}.{neuron} promotes {self.promoted.describe(i, n)}; "
                f"suppresses {self.suppressed.describe(i, n)}")

    def to_frame(self):
        """One line per neuron: its value norm and its top promoted and suppressed tokens."""
        import pandas as pd

        return pd.DataFrame({
            "layer": self.layer, "neuron": self.neurons.tolist(),
            "value_norm": self.norms.numpy(),
            "promotes": [" ".join(row[:5]) for row in self.promoted.tokens],
            "suppresses": [" ".join(row[:5]) for row in self.suppressed.tokens],
        })


@torch.no_grad()
def value_tokens(model: Any, layer: int, neurons: int | Sequence[int] | torch.Tensor | None = None,
                 *, k: int = 10, batch_size: int = 256) -> NeuronTokens:
    """The tokens each neuron's value vector (its row of ``W_out``) promotes and suppresses,
    for ``neurons`` of ``layer`` (default: all), ``batch_size`` value vectors at a time, so at
    most ``[batch_size, d_vocab]`` logits exist."""
    check_model(model)
    _check_mlp(model)
    layer = check_layer(layer, model.cfg)
    ids = _check_neurons(neurons, model)
    k = _check_k(k, model)
    batch_size = validate.positive_int(batch_size, "batch_size")
    rows = model.W_out[layer].detach().float()[ids.to(model.W_out.device)]
    top, top_s, low, low_s = _topk_rows(model, rows, k, batch_size, both=True)
    labels = [f"{layer}.{int(j)}" for j in ids]
    return NeuronTokens(layer, ids,
                        _top_tokens(model, top, top_s, labels, "direct logit effect"),
                        _top_tokens(model, low, low_s, labels, "direct logit effect"),
                        rows.norm(dim=-1).cpu())


@torch.no_grad()
def key_tokens(model: Any, layer: int, neurons: int | Sequence[int] | torch.Tensor, *,
               k: int = 10, embedding: str | TokenRepresentations = "effective",
               batch_size: int = 256) -> TopTokens:
    """The tokens that, alone, drive each neuron's pre-activation highest: the largest entries
    of ``tokens_in @ W_in[layer][:, j] + b_in[layer, j]`` over the vocabulary, where
    ``tokens_in`` is :func:`interp_lib.circuits.token_representations` (default
    ``"effective"``; pass one computed once to reuse it). A key read through the embedding
    (Dar et al. 2022); :func:`neuron_contexts` reads it through real text."""
    check_model(model)
    _check_mlp(model)
    layer = check_layer(layer, model.cfg)
    ids = _check_neurons(neurons, model)
    k = _check_k(k, model)
    batch_size = validate.positive_int(batch_size, "batch_size")
    reps = _representations(model, embedding)
    tokens_in = reps.at(layer).float()
    w_in = model.W_in[layer].detach().float()
    b_in = model.b_in[layer].detach().float()
    found, scores = [], []
    for chunk in ids.split(batch_size):
        chunk = chunk.to(w_in.device)
        pre = tokens_in.to(w_in.device) @ w_in[:, chunk] + b_in[chunk]   # [vocab, chunk]
        top = pre.topk(k, dim=0)
        found.append(top.indices.T.cpu())
        scores.append(top.values.T.cpu())
    return _top_tokens(model, torch.cat(found), torch.cat(scores),
                       [f"{layer}.{int(j)}" for j in ids],
                       f"pre-activation from the token alone ({reps.kind} representation)")


def _representations(model: Any, embedding: Any) -> TokenRepresentations:
    if isinstance(embedding, TokenRepresentations):
        want = (model.cfg.d_vocab, model.cfg.d_model)
        if tuple(embedding.first.shape) != want:
            raise ValueError(f"embedding holds {list(embedding.first.shape)} rows; this model "
                             f"needs [d_vocab, d_model] = {list(want)}: compute it with "
                             "token_representations(model)")
        return embedding
    if isinstance(embedding, str):
        return token_representations(model, embedding)
    raise TypeError(f"embedding must be 'effective', 'normalized', 'raw' or a "
                    f"TokenRepresentations, got {type(embedding).__name__}")


# ---------------------------------------------------------------- keys: top contexts


@dataclass
class NeuronContexts:
    """The ``k`` contexts of a text that activate each neuron most: ``values [neuron, k]``
    (activations, largest first), at ``window [neuron, k]`` and ``position [neuron, k]`` of
    ``tokens [window, pos]``. Positions holding the BOS token are left out. ``n_tokens`` is how
    many positions were read."""

    layer: int
    neurons: Int[torch.Tensor, " neuron"]
    values: Float[torch.Tensor, "neuron k"]
    window: Int[torch.Tensor, "neuron k"]
    position: Int[torch.Tensor, "neuron k"]
    tokens: Int[torch.Tensor, "window pos"]
    n_tokens: int
    tokenizer: Any = field(default=None, repr=False, compare=False)

    def _index(self, neuron: int) -> int:
        return _neuron_index(self.neurons, neuron)

    def next_tokens(self, neuron: int) -> Int[torch.Tensor, " k"]:
        """The token after each top context (``-1`` where the context ends its window)."""
        i = self._index(neuron)
        pos = self.position[i] + 1
        inside = pos < self.tokens.shape[1]
        ids = torch.full_like(pos, -1)
        ids[inside] = self.tokens[self.window[i][inside], pos[inside]]
        return ids

    def examples(self, neuron: int, width: int = 8) -> list[str]:
        """Each top context as ``"...text [token] → next (activation)"``: ``width`` tokens
        before the activating one, which is in brackets."""
        i = self._index(neuron)
        width = validate.nonnegative_int(width, "width")
        nxt = self.next_tokens(neuron)
        out = []
        for value, w, p, n in zip(self.values[i].tolist(), self.window[i].tolist(),
                                  self.position[i].tolist(), nxt.tolist(), strict=True):
            row = self.tokens[w]
            before = _decode_many(self.tokenizer, row[max(0, p - width): p])
            here = _decode(self.tokenizer, row[p])
            after = "" if n < 0 else f" → {_decode(self.tokenizer, n)!r}"
            out.append(f"…{before}[{here}]{after} ({value:.2f})")
        return out

    def agreement(self, values: NeuronTokens) -> Float[torch.Tensor, " neuron"]:
        """For each neuron, the share of its top contexts whose *next* token is among the tokens
        its value vector promotes (``values``, same layer and neurons): do key and value agree?
        Chance is ``values.promoted.ids.shape[1] / d_vocab``."""
        if not isinstance(values, NeuronTokens):
            raise TypeError(f"values must be a NeuronTokens from value_tokens, got "
                            f"{type(values).__name__}")
        if values.layer != self.layer or not torch.equal(values.neurons, self.neurons):
            raise ValueError("values must be read from the same layer and neurons as these "
                             "contexts")
        shares = []
        for i, neuron in enumerate(self.neurons.tolist()):
            nxt = self.next_tokens(neuron)
            valid = nxt >= 0
            hits = torch.isin(nxt[valid], values.promoted.ids[i])
            shares.append(float(hits.float().mean()) if valid.any() else float("nan"))
        return torch.tensor(shares)

    def to_frame(self, neuron: int, width: int = 8):
        """One line per top context of one neuron."""
        import pandas as pd

        i = self._index(neuron)
        return pd.DataFrame({"rank": range(1, self.values.shape[1] + 1),
                             "activation": self.values[i].numpy(),
                             "window": self.window[i].numpy(),
                             "position": self.position[i].numpy(),
                             "context": self.examples(neuron, width)})


def _decode_many(tokenizer: Any, ids: torch.Tensor) -> str:
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return " ".join(map(str, ids))
    return tokenizer.decode(ids)


def _bos_mask(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    if bos is None:
        return torch.zeros_like(tokens, dtype=torch.bool)
    return tokens == int(bos)


@torch.no_grad()
def neuron_contexts(
    model: Any,
    tokens: Int[torch.Tensor, "window pos"],
    layer: int,
    *,
    neurons: int | Sequence[int] | torch.Tensor | None = None,
    k: int = 10,
    batch_size: int = 16,
) -> NeuronContexts:
    """Each neuron's ``k`` most activating contexts (its ``hook_post`` value) over ``tokens``
    (e.g. :func:`interp_lib.data.token_windows` of the shipped text), ``batch_size`` windows
    per forward pass (stopped after ``layer``), keeping a running top-``k`` per neuron: memory
    holds one chunk's ``[batch_size × pos, neurons]`` activations, never the whole text's."""
    check_model(model)
    _check_mlp(model)
    layer = check_layer(layer, model.cfg)
    tokens = to_tokens(model, tokens, name="tokens")
    ids = _check_neurons(neurons, model)
    batch_size = validate.positive_int(batch_size, "batch_size")
    readable = int((~_bos_mask(model, tokens)).sum())
    if readable == 0:
        raise ValueError("tokens holds only BOS tokens: there is no context to read")
    k = validate.int_in_range(k, "k", 1, readable)
    name = hook_name("mlp_post", layer)
    n_pos = tokens.shape[1]
    device_ids = ids.to(model.cfg.device)
    best = torch.full((len(ids), 0), float("-inf"))
    where = torch.zeros((len(ids), 0), dtype=torch.long)
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start: start + batch_size]
        _, cache = model.run_with_cache(chunk, names_filter=only(name), stop_at_layer=layer + 1)
        acts = cache[name][..., device_ids].float()                  # [b, pos, neuron]
        acts = acts.masked_fill(_bos_mask(model, chunk)[..., None], float("-inf"))
        flat = acts.reshape(-1, len(ids)).T                          # [neuron, b * pos]
        top = flat.topk(min(k, flat.shape[1]), dim=1)
        best = torch.cat([best, top.values.cpu()], 1)
        where = torch.cat([where, top.indices.cpu() + start * n_pos], 1)
        keep = best.topk(min(k, best.shape[1]), dim=1)
        best, where = keep.values, where.gather(1, keep.indices)
        del cache, acts, flat
    return NeuronContexts(layer, ids, best, where // n_pos, where % n_pos, tokens.cpu(), readable,
                          getattr(model, "tokenizer", None))


# ---------------------------------------------------------------- sub-updates


@dataclass
class SubUpdates:
    """One sequence's MLP output at ``layer`` as the sum of its neurons' sub-updates,
    ``a_j W_out[j]``, plus the bias.

    ``activations [pos, d_mlp]`` are the neurons' values (``hook_post``), ``value_vectors
    [d_mlp, d_model]`` the rows of ``W_out``, ``mlp_out [pos, d_model]`` the model's own
    output. At each position the ``top`` neurons by ``|a_j| ‖W_out[j]‖`` are in
    ``top_neurons [pos, top]`` with their signed scores ``a_j ‖W_out[j]‖``, and the ``k``
    tokens each one's sub-update promotes in ``promoted [pos, top, k]``. ``lens_gain_ids
    [pos, k]`` are the tokens whose log-probability the MLP raises most under the logit lens
    (log-softmax after the MLP minus before it, the model's own final norm and unembedding)."""

    layer: int
    tokens: Int[torch.Tensor, " pos"]
    str_tokens: list[str]
    activations: Float[torch.Tensor, "pos d_mlp"]
    value_vectors: Float[torch.Tensor, "d_mlp d_model"]
    bias: Float[torch.Tensor, " d_model"]
    mlp_out: Float[torch.Tensor, "pos d_model"]
    top_neurons: Int[torch.Tensor, "pos top"]
    top_scores: Float[torch.Tensor, "pos top"]
    promoted: Int[torch.Tensor, "pos top k"]
    lens_gain_ids: Int[torch.Tensor, "pos k"]
    lens_gain: Float[torch.Tensor, "pos k"]
    d_vocab: int
    signature: tuple[int, ...]
    tokenizer: Any = field(default=None, repr=False, compare=False)

    @property
    def n_positions(self) -> int:
        return len(self.str_tokens)

    def scores(self) -> Float[torch.Tensor, "pos d_mlp"]:
        """Every neuron's signed score ``a_j ‖W_out[j]‖`` at every position."""
        return self.activations * self.value_vectors.norm(dim=-1)

    def total(self) -> Float[torch.Tensor, "pos d_model"]:
        """``Σ_j a_j W_out[j] + b_out`` at every position (equals :attr:`mlp_out`)."""
        return self.activations @ self.value_vectors + self.bias

    def error(self) -> float:
        """Largest ``|total() - mlp_out|``, relative to the largest ``|mlp_out|``."""
        scale = max(float(self.mlp_out.abs().max()), 1e-12)
        return float((self.total() - self.mlp_out).abs().max()) / scale

    def _position(self, position: int) -> int:
        n = self.n_positions
        position = validate.int_in_range(position, "position", -n, n - 1)
        return position % n

    def overlap(self) -> tuple[Int[torch.Tensor, " pos"], Float[torch.Tensor, " pos"]]:
        """At each position: how many of the logit-lens gain's top tokens are among the
        tokens the top neurons promote, and how many a random set of that size would hit on
        average (``|promoted| × k / d_vocab``)."""
        hits, chance = [], []
        k = self.lens_gain_ids.shape[1]
        for p in range(self.n_positions):
            union = torch.unique(self.promoted[p])
            hits.append(int(torch.isin(self.lens_gain_ids[p], union).sum()))
            chance.append(len(union) * k / self.d_vocab)
        return torch.tensor(hits), torch.tensor(chance)

    def describe(self, position: int, n: int = 5, tokens: int = 5) -> list[str]:
        """The top ``n`` neurons at ``position``, each as ``"L.j score: promotes ..."``."""
        p = self._position(position)
        n = validate.int_in_range(n, "n", 1, self.top_neurons.shape[1])
        tokens = validate.int_in_range(tokens, "tokens", 1, self.promoted.shape[2])
        return [f"{self.layer}.{int(j)} {float(s):+.2f}: promotes "
                + ", ".join(repr(_decode(self.tokenizer, t))
                            for t in self.promoted[p, r, :tokens].tolist())
                for r, (j, s) in enumerate(zip(self.top_neurons[p, :n], self.top_scores[p, :n],
                                               strict=True))]

    def gain_tokens(self, position: int) -> list[str]:
        """The tokens the logit lens says the MLP raises most at ``position``."""
        p = self._position(position)
        return [_decode(self.tokenizer, t) for t in self.lens_gain_ids[p].tolist()]

    def to_frame(self, position: int):
        """One line per top neuron at ``position``: its score, activation and what it
        promotes."""
        import pandas as pd

        p = self._position(position)
        neurons = self.top_neurons[p]
        return pd.DataFrame({
            "rank": range(1, len(neurons) + 1), "neuron": neurons.numpy(),
            "activation": self.activations[p, neurons].numpy(),
            "score": self.top_scores[p].numpy(),
            "promotes": [" ".join(_decode(self.tokenizer, t) for t in row[:5])
                         for row in self.promoted[p].tolist()],
        })

    def heatmap(self, title: str | None = None):
        """Top-neuron rank (rows) × position (columns): each cell is the neuron at that rank,
        its signed score as colour, the first token its sub-update promotes as text; hover
        for the neuron and all ``k`` tokens."""
        from interp_lib.plotting import heatmap

        top, n_pos = self.top_neurons.shape[1], self.n_positions
        text = [[_cell(_decode(self.tokenizer, self.promoted[p, r, 0])) for p in range(n_pos)]
                for r in range(top)]
        fig = heatmap(self.top_scores.T, x_labels=[_cell(t, 12) for t in self.str_tokens],
                      y_labels=[f"#{r + 1}" for r in range(top)], text=text, zmid=0.0,
                      title=title or (f"Layer {self.layer}'s MLP: the top sub-updates at each "
                                      "position and the token each promotes most"),
                      x_title="position (input token)", y_title="neuron rank by |a|·‖v‖",
                      colorbar_title="a·‖v‖")
        hover = np.empty((top, n_pos), dtype=object)
        for r in range(top):
            for p in range(n_pos):
                tokens = ", ".join(repr(_decode(self.tokenizer, t))
                                   for t in self.promoted[p, r].tolist())
                hover[r, p] = (f"pos {p} {self.str_tokens[p]!r} · neuron "
                               f"{self.layer}.{int(self.top_neurons[p, r])}<br>a·‖v‖ = "
                               f"{float(self.top_scores[p, r]):.3g}<br>promotes: {tokens}")
        fig.data[0].update(customdata=hover, hovertemplate="%{customdata}<extra></extra>")
        return fig


@torch.no_grad()
def mlp_sub_updates(
    model: Any,
    inputs: str | Int[torch.Tensor, "1 pos"],
    layer: int,
    *,
    top: int = 10,
    k: int = 10,
    batch_size: int = 256,
) -> SubUpdates:
    """Split layer ``layer``'s MLP output on one sequence into its neurons' sub-updates
    (Geva et al. 2022); see :class:`SubUpdates`. One forward pass caching the layer's
    activations, its output and the residual stream around it."""
    check_model(model)
    _check_mlp(model)
    layer = check_layer(layer, model.cfg)
    top = validate.int_in_range(top, "top", 1, int(model.cfg.d_mlp))
    k = _check_k(k, model)
    batch_size = validate.positive_int(batch_size, "batch_size")
    tokens = _one_sequence(model, inputs)
    names = [hook_name("mlp_post", layer), hook_name("mlp_out", layer),
             hook_name("resid_mid", layer), hook_name("resid_post", layer)]
    _, cache = model.run_with_cache(tokens, names_filter=only(*names), stop_at_layer=layer + 1)
    acts = cache[names[0]][0].float()
    out = cache[names[1]][0].float()
    values = model.W_out[layer].detach().float()
    scores = acts * values.norm(dim=-1)
    order = scores.abs().topk(top, dim=-1).indices                   # [pos, top]
    used = torch.unique(order)
    # what each used neuron's value promotes, and what it suppresses (for negative activations)
    hi, _, lo, _ = _topk_rows(model, values[used], k, batch_size, both=True)
    row = torch.searchsorted(used.cpu(), order.cpu())                # [pos, top]
    positive = (acts.gather(1, order) >= 0).cpu()
    promoted = torch.where(positive[..., None], hi[row], lo[row])
    from transformer_lens.tools.analysis.logit_lens import logit_readout

    before = logit_readout(model, cache[names[2]][0], return_type="logits",
                           chunk_size=tokens.shape[1]).values.float().log_softmax(-1)
    after = logit_readout(model, cache[names[3]][0], return_type="logits",
                          chunk_size=tokens.shape[1]).values.float().log_softmax(-1)
    gain = (after - before).topk(k, dim=-1)
    return SubUpdates(
        layer, tokens[0].cpu(), [str(t) for t in model.to_str_tokens(tokens[0])],
        acts.cpu(), values.cpu(), model.b_out[layer].detach().float().cpu(), out.cpu(),
        order.cpu(), scores.gather(1, order).cpu(), promoted, gain.indices.cpu(),
        gain.values.cpu(), int(model.cfg.d_vocab), validate.model_signature(model),
        getattr(model, "tokenizer", None))


# ---------------------------------------------------------------- heads in token space


@torch.no_grad()
def _circuit_rows(model: Any, circuit: FactoredMatrix, ids: torch.Tensor, k: int,
                  labels: list[str], what: str) -> TopTokens:
    rows = circuit.A[ids.to(circuit.A.device)] @ circuit.B          # [n, vocab]
    top = rows.topk(k, dim=-1)
    return _top_tokens(model, top.indices.cpu(), top.values.cpu(), labels, what)


def ov_tokens(model: Any, head: Any, sources: Any, *, k: int = 10,
              embedding: str | TokenRepresentations = "effective") -> TopTokens:
    """For each source token (ids or single-token strings), the ``k`` tokens whose logits the
    head raises most when it attends to that token: rows of its full OV circuit
    ``tokens_in W_V W_O W_U`` (:func:`interp_lib.circuits.full_ov_circuit`), only those rows
    multiplied out."""
    check_model(model)
    k = _check_k(k, model)
    ids = _token_ids(model, sources, "sources")
    circuit = full_ov_circuit(model, head, embedding=embedding)
    tokenizer = getattr(model, "tokenizer", None)
    labels = [_decode(tokenizer, i) for i in ids.tolist()]
    return _circuit_rows(model, circuit, ids, k, labels,
                         f"direct logit effect when head {head} attends to the token")


def qk_tokens(model: Any, head: Any, queries: Any, *, k: int = 10, offset: int = 0,
              embedding: str | TokenRepresentations = "effective") -> TopTokens:
    """For each query token, the ``k`` key tokens the head scores highest from the tokens
    alone: rows of its full QK circuit (:func:`interp_lib.circuits.full_qk_circuit`; rotary
    models at ``offset`` = key position - query position, 0 by default)."""
    check_model(model)
    k = _check_k(k, model)
    ids = _token_ids(model, queries, "queries")
    circuit = full_qk_circuit(model, head, offset=offset, embedding=embedding)
    tokenizer = getattr(model, "tokenizer", None)
    labels = [_decode(tokenizer, i) for i in ids.tolist()]
    return _circuit_rows(model, circuit, ids, k, labels,
                         f"attention score of head {head} (query token → key token)")


@dataclass
class TokenPairs:
    """The largest entries of a ``[vocab, vocab]`` circuit: ``rows``, ``cols`` and
    ``values``, largest first, with the decoded tokens."""

    rows: Int[torch.Tensor, " pair"]
    cols: Int[torch.Tensor, " pair"]
    values: Float[torch.Tensor, " pair"]
    row_tokens: list[str]
    col_tokens: list[str]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"row": self.rows.numpy(), "row_token": self.row_tokens,
                             "col": self.cols.numpy(), "col_token": self.col_tokens,
                             "value": self.values.numpy()})


@torch.no_grad()
def top_token_pairs(model: Any, circuit: FactoredMatrix | Float[torch.Tensor, "vocab vocab"],
                    k: int = 20, *, rows: Sequence[int] | torch.Tensor | None = None,
                    batch_size: int = 512) -> TokenPairs:
    """The ``k`` largest entries of a ``[d_vocab, d_vocab]`` circuit (a ``FactoredMatrix``
    from :mod:`interp_lib.circuits`, or a dense tensor) over ``rows`` (default all), in row
    batches: at most ``batch_size × d_vocab`` entries exist at once."""
    check_model(model)
    if not isinstance(circuit, FactoredMatrix | torch.Tensor):
        raise TypeError(f"circuit must be a FactoredMatrix or a tensor, got "
                        f"{type(circuit).__name__}")
    vocab = int(model.cfg.d_vocab)
    if tuple(circuit.shape) != (vocab, vocab):
        raise ValueError(f"circuit must be [d_vocab, d_vocab] = [{vocab}, {vocab}], got "
                         f"{list(circuit.shape)}")
    batch_size = validate.positive_int(batch_size, "batch_size")
    index = torch.arange(vocab) if rows is None else torch.as_tensor(rows).flatten()
    if index.is_floating_point() or index.dtype == torch.bool:
        raise TypeError("rows must hold integer token ids")
    if len(index) == 0:
        raise ValueError("rows is empty: give at least one row")
    if int(index.min()) < 0 or int(index.max()) >= vocab:
        raise ValueError(f"rows must lie in 0..{vocab - 1}")
    index = index.long()
    k = validate.int_in_range(k, "k", 1, len(index) * vocab)
    if isinstance(circuit, FactoredMatrix):
        left, right = circuit.A.detach().float(), circuit.B.detach().float()
    else:
        left, right = validate.finite_tensor(circuit, "circuit").detach().float(), None
    best = torch.empty(0)
    where = torch.empty(0, dtype=torch.long)
    for chunk in index.split(batch_size):
        chunk_dev = chunk.to(left.device)
        block = left[chunk_dev] if right is None else left[chunk_dev] @ right   # [b, vocab]
        top = block.flatten().topk(min(k, block.numel()))
        r = chunk[(top.indices // vocab).cpu()]
        best = torch.cat([best, top.values.cpu()])
        where = torch.cat([where, r * vocab + (top.indices % vocab).cpu()])
        keep = best.topk(min(k, len(best)))
        best, where = keep.values, where[keep.indices]
    tokenizer = getattr(model, "tokenizer", None)
    r_ids, c_ids = where // vocab, where % vocab
    return TokenPairs(r_ids, c_ids, best, [_decode(tokenizer, i) for i in r_ids.tolist()],
                      [_decode(tokenizer, i) for i in c_ids.tolist()])


# ---------------------------------------------------------------- the MLP's parameters


@dataclass(frozen=True)
class MLPWeight:
    """One MLP matrix as the forward pass uses it: the ``parameter`` (a leaf of autograd) and
    whether it is stored transposed relative to ``model.W_in`` / ``model.W_out`` (a
    ``torch.nn.Linear`` stores ``[out, in]``; GPT-2's ``Conv1D`` stores ``[in, out]``)."""

    name: str
    layer: int
    parameter: torch.nn.Parameter
    transposed: bool

    def as_model_layout(self, tensor: torch.Tensor) -> torch.Tensor:
        """A tensor shaped like the parameter (its gradient, say) in the layout of
        ``model.W_in`` (``[d_model, d_mlp]``) or ``model.W_out`` (``[d_mlp, d_model]``)."""
        return tensor.T if self.transposed else tensor

    def as_parameter_layout(self, tensor: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`as_model_layout`."""
        return tensor.T if self.transposed else tensor


def mlp_weight(model: Any, layer: int, weight: str) -> MLPWeight:
    """The parameter that holds ``model.W_in[layer]`` or ``model.W_out[layer]`` (``weight``
    in :data:`WEIGHTS`), checked to be exactly the matrix the forward pass uses (LayerNorm
    folded in), so autograd's gradient on it is the gradient of that matrix."""
    check_model(model)
    _check_mlp(model)
    layer = check_layer(layer, model.cfg)
    validate.choice(weight, "weight", WEIGHTS)
    mlp = model.blocks[layer].mlp
    linear = getattr(mlp, "in" if weight == "W_in" else "out", None)
    module = getattr(linear, "original_component", None)
    parameter = getattr(module, "weight", None)
    if not isinstance(parameter, torch.nn.Parameter):
        raise ValueError(f"this model's MLP in block {layer} has no {weight} parameter the "
                         "course can find (it expects a bridge's mlp.in / mlp.out linear maps)")
    transposed = isinstance(module, torch.nn.Linear)
    layout = parameter.T if transposed else parameter
    reference = (model.W_in if weight == "W_in" else model.W_out)[layer]
    if tuple(layout.shape) != tuple(reference.shape) or not torch.equal(layout.detach(),
                                                                       reference.detach()):
        raise ValueError(f"model.{weight}[{layer}] is not the parameter the forward pass "
                         "multiplies by in this model (weights processed into a copy?); the "
                         "backward lens needs the matrix that is actually used")
    return MLPWeight(weight, layer, parameter, transposed)


# ---------------------------------------------------------------- the backward lens


def _loss_setup(model: Any, tokens: torch.Tensor, target: Any, position: Any
                ) -> tuple[int | None, int | None, str]:
    """(target id or None, position or None, description of the loss)."""
    n = tokens.shape[1]
    if target is None:
        if position is not None:
            raise ValueError("position chooses where a target is scored: give a target too "
                             "(without one, the loss is the mean next-token loss of the text)")
        if n < 2:
            raise ValueError("inputs: the next-token loss needs at least 2 tokens")
        return None, None, f"mean next-token loss over {n - 1} predictions"
    target_id = _one_token(model, target, "target")
    position = n - 1 if position is None else validate.int_in_range(position, "position",
                                                                     -n, n - 1) % n
    token = _decode(getattr(model, "tokenizer", None), target_id)
    return target_id, position, f"-log p({token!r}) predicted at position {position}"


def _loss(logits: torch.Tensor, tokens: torch.Tensor, target: int | None,
          position: int | None) -> torch.Tensor:
    if target is None:
        return next_token_loss(logits, tokens).mean()
    return -logits[0, position].float().log_softmax(-1)[target]


@dataclass
class BackwardLens:
    """Every MLP's weight gradients on one text, as their rank-one factors (see the module
    docstring): for ``W_in``, ``inputs [layer, pos, d_model]`` (the MLP's normalised input)
    and ``grad_pre [layer, pos, d_mlp]`` (the gradient at ``hook_pre``); for ``W_out``,
    ``post [layer, pos, d_mlp]`` (the activations) and ``grad_out [layer, pos, d_model]``
    (the gradient at ``hook_mlp_out``). ``loss`` is the value differentiated, ``what`` says
    which loss; ``target``/``position`` are set for a target's log-probability."""

    tokens: Int[torch.Tensor, " pos"]
    str_tokens: list[str]
    loss: float
    what: str
    target: int | None
    position: int | None
    inputs: Float[torch.Tensor, "layer pos d_model"]
    grad_pre: Float[torch.Tensor, "layer pos d_mlp"]
    post: Float[torch.Tensor, "layer pos d_mlp"]
    grad_out: Float[torch.Tensor, "layer pos d_model"]
    signature: tuple[int, ...]
    tokenizer: Any = field(default=None, repr=False, compare=False)

    @property
    def n_layers(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.inputs.shape[1])

    def _layer(self, layer: int) -> int:
        layer = validate.int_in_range(layer, "layer", -self.n_layers, self.n_layers - 1)
        return layer % self.n_layers

    def factors(self, layer: int, weight: str = "W_out"
                ) -> tuple[Float[torch.Tensor, "pos d_in"], Float[torch.Tensor, "pos d_out"]]:
        """``(x, δ)``, one row per position: the gradient of ``weight`` is ``x.T @ δ``."""
        layer = self._layer(layer)
        validate.choice(weight, "weight", WEIGHTS)
        if weight == "W_in":
            return self.inputs[layer], self.grad_pre[layer]
        return self.post[layer], self.grad_out[layer]

    def gradient(self, layer: int, weight: str = "W_out") -> FactoredMatrix:
        """``∂loss/∂weight`` as a ``FactoredMatrix`` ``x.T @ δ`` of shape ``[d_in, d_out]``
        (the layout of ``model.W_in`` / ``model.W_out``), inner size ``n`` positions;
        ``.AB`` multiplies it out."""
        x, delta = self.factors(layer, weight)
        return FactoredMatrix(x.T, delta)

    def singular_values(self, layer: int, weight: str = "W_out"
                        ) -> Float[torch.Tensor, " rank"]:
        """The gradient's singular values, largest first, from its factors alone (float64):
        with ``xᵀ = Q_x R_x`` and ``δᵀ = Q_δ R_δ`` (QR), ``xᵀ δ = Q_x (R_x R_δᵀ) Q_δᵀ`` has the
        singular values of the small ``R_x R_δᵀ``, at most ``n`` of them; the ``[d_in,
        d_out]`` matrix is never built."""
        x, delta = self.factors(layer, weight)
        _, r_x = torch.linalg.qr(x.T.double())
        _, r_delta = torch.linalg.qr(delta.T.double())
        return torch.linalg.svdvals(r_x @ r_delta.T)

    def rank(self, layer: int, weight: str = "W_out", *, rtol: float | None = None) -> int:
        """The gradient's numerical rank: singular values above ``rtol`` times the largest
        (default ``max(d_in, d_out) × float32 eps``, as ``torch.linalg.matrix_rank`` for a
        float32 matrix). At most :attr:`n_positions`."""
        x, delta = self.factors(layer, weight)
        if rtol is None:
            rtol = max(x.shape[1], delta.shape[1]) * torch.finfo(torch.float32).eps
        rtol = validate.finite_float(rtol, "rtol", nonnegative=True)
        s = self.singular_values(layer, weight)
        if float(s.max()) == 0:
            return 0
        return int((s > rtol * s.max()).sum())

    def term_norms(self, weight: str = "W_out") -> Float[torch.Tensor, "layer pos"]:
        """``‖x_i‖ ‖δ_i‖``: the size (Frobenius norm) of each position's rank-one term."""
        validate.choice(weight, "weight", WEIGHTS)
        x, delta = (self.inputs, self.grad_pre) if weight == "W_in" else (self.post,
                                                                          self.grad_out)
        return x.norm(dim=-1) * delta.norm(dim=-1)

    def projections(self, model: Any, k: int = 10, *,
                    embedding: str | TokenRepresentations = "effective",
                    batch_size: int = 256) -> GradientProjections:
        """The factors that live in the residual stream, read as tokens per layer and
        position: the **shift** (``-δ_i`` of ``W_out``) through the unembedding, what the step
        would make the values *write*; the **imprint** (``x_i`` of ``W_in``) through the token
        representations (:func:`interp_lib.circuits.token_representations`, ``embedding``),
        the tokens whose representation the input most resembles, which a key moved along
        ``x_i`` would respond to more (as :func:`key_tokens` reads keys). With a target, also
        the target's rank in each shift."""
        check_model(model)
        check_same_model(model, self.signature, "this backward lens")
        k = _check_k(k, model)
        batch_size = validate.positive_int(batch_size, "batch_size")
        reps = _representations(model, embedding)
        n_layers, n_pos = self.n_layers, self.n_positions
        imprint_ids, imprint_scores = [], []
        with torch.no_grad():
            for layer in range(n_layers):
                right = reps.at(layer).float().T
                ids, scores = [], []
                for chunk in self.inputs[layer].split(batch_size):
                    top = (chunk.float().to(right.device) @ right).topk(k, dim=-1)
                    ids.append(top.indices.cpu())
                    scores.append(top.values.cpu())
                imprint_ids.append(torch.cat(ids))
                imprint_scores.append(torch.cat(scores))
        shift_rows = -self.grad_out.reshape(n_layers * n_pos, -1)
        shift = _topk_rows(model, shift_rows, k, batch_size)
        ranks = None
        if self.target is not None:
            found = []
            with torch.no_grad():
                for chunk in shift_rows.split(batch_size):
                    logits = _project(model, chunk)
                    chosen = logits[:, self.target: self.target + 1]
                    found.append(((logits > chosen).sum(-1) + 1).cpu())
            ranks = torch.cat(found).reshape(n_layers, n_pos)
        shape = (n_layers, n_pos, k)
        return GradientProjections(
            torch.stack(imprint_ids), torch.stack(imprint_scores), shift[0].reshape(shape),
            shift[1].reshape(shape), self.term_norms("W_in"), self.term_norms("W_out"), ranks,
            self.target, list(self.str_tokens), self.what, reps.kind, self.tokenizer)

    def to_frame(self):
        """One line per (layer, position): the two terms' norms."""
        import pandas as pd

        imprint, shift = self.term_norms("W_in"), self.term_norms("W_out")
        return pd.DataFrame({
            "layer": [la for la in range(self.n_layers) for _ in range(self.n_positions)],
            "position": list(range(self.n_positions)) * self.n_layers,
            "token": self.str_tokens * self.n_layers,
            "W_in_term_norm": imprint.flatten().numpy(),
            "W_out_term_norm": shift.flatten().numpy(),
        })


@dataclass
class GradientProjections:
    """The backward lens read as tokens, ``[layer, pos, k]`` each (best first): the
    ``imprint`` (``x_i`` of ``W_in``, against the ``representation`` kind of token
    representations) and the ``shift`` (``-δ_i`` of ``W_out``, through the unembedding), with
    each rank-one term's norm ``[layer, pos]``; ``target_ranks [layer, pos]`` (1-based) is the
    target token's rank in the shift, when the loss had a target."""

    imprint_ids: Int[torch.Tensor, "layer pos k"]
    imprint_scores: Float[torch.Tensor, "layer pos k"]
    shift_ids: Int[torch.Tensor, "layer pos k"]
    shift_scores: Float[torch.Tensor, "layer pos k"]
    imprint_norms: Float[torch.Tensor, "layer pos"]
    shift_norms: Float[torch.Tensor, "layer pos"]
    target_ranks: Int[torch.Tensor, "layer pos"] | None
    target: int | None
    str_tokens: list[str]
    what: str
    representation: str
    tokenizer: Any = field(default=None, repr=False, compare=False)

    KINDS = ("shift", "imprint")

    def _kind(self, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        validate.choice(kind, "kind", self.KINDS)
        if kind == "shift":
            return self.shift_ids, self.shift_scores, self.shift_norms
        return self.imprint_ids, self.imprint_scores, self.imprint_norms

    def tokens(self, kind: str = "shift", layer: int = -1) -> list[list[str]]:
        """The decoded token lists of one layer, one list per position."""
        ids, _, _ = self._kind(kind)
        layer = validate.int_in_range(layer, "layer", -ids.shape[0], ids.shape[0] - 1)
        return [[_decode(self.tokenizer, t) for t in row] for row in ids[layer].tolist()]

    def heatmap(self, kind: str = "shift", title: str | None = None):
        """Layer (rows) × position (columns), as the logit-lens figure: each cell's text is the
        top token of that position's ``kind`` factor, its colour the rank-one term's norm
        relative to the largest in its layer; hover for the top ``k``."""
        from interp_lib.plotting import heatmap

        ids, scores, norms = self._kind(kind)
        n_layers, n_pos, _ = ids.shape
        relative = norms / norms.amax(1, keepdim=True).clamp_min(1e-30)
        text = [[_cell(_decode(self.tokenizer, ids[la, p, 0])) for p in range(n_pos)]
                for la in range(n_layers)]
        weight = "W_in" if kind == "imprint" else "W_out"
        factor = "x_i (read against the token representations)" if kind == "imprint" \
            else "-δ_i (read through the unembedding)"
        fig = heatmap(relative, x_labels=[_cell(t, 12) for t in self.str_tokens],
                      y_labels=[f"{la} {weight}" for la in range(n_layers)], text=text,
                      title=title or (f"Backward lens, the {kind}: top token of {factor} of "
                                      f"each MLP's {weight} gradient ({self.what})"),
                      x_title="position (input token)", y_title="layer",
                      colorbar_title="‖x_i‖‖δ_i‖ / layer max")
        hover = np.empty((n_layers, n_pos), dtype=object)
        for la in range(n_layers):
            for p in range(n_pos):
                tops = ", ".join(f"{_decode(self.tokenizer, t)!r} {s:.2g}" for t, s in
                                 zip(ids[la, p].tolist(), scores[la, p].tolist(), strict=True))
                extra = ""
                if kind == "shift" and self.target_ranks is not None:
                    extra = f"<br>target rank {int(self.target_ranks[la, p])}"
                hover[la, p] = (f"layer {la} {weight} · pos {p} {self.str_tokens[p]!r}<br>"
                                f"term norm {float(norms[la, p]):.3g}{extra}<br>top: {tops}")
        fig.data[0].update(customdata=hover, hovertemplate="%{customdata}<extra></extra>")
        fig.update_layout(height=max(300, 45 * n_layers + 180))
        return fig


def backward_lens(
    model: Any,
    inputs: str | Int[torch.Tensor, "1 pos"],
    target: int | str | None = None,
    *,
    position: int | None = None,
) -> BackwardLens:
    """One forward and one backward pass on one text, with hooks, giving every MLP's
    ``W_in`` and ``W_out`` gradients as their rank-one factors (:class:`BackwardLens`).

    Args:
        inputs: one text, or a ``[1, pos]`` token tensor.
        target: ``None`` (default): the loss is the text's mean next-token loss (what
            ``return_type="loss"`` gives). A token id or a single-token string: the loss is
            ``-log p(target)`` predicted at ``position``.
        position: where the target is scored (default: the last position, i.e. the token
            after the text); negative values count from the end.
    """
    check_model(model)
    _check_mlp(model)
    tokens = _one_sequence(model, inputs)
    target_id, position, what = _loss_setup(model, tokens, target, position)
    n_layers = model.cfg.n_layers
    sites = ("mlp_input", "mlp_pre", "mlp_post", "mlp_out")
    store: dict[str, torch.Tensor] = {}

    def keep(act, hook):
        store[hook.name] = act

    def start(act, hook):  # frozen parameters: let the gradient start at the embedding
        return act if act.requires_grad else act.detach().requires_grad_(True)

    fwd = [(hook_name("embed"), start)]
    fwd += [(hook_name(site, la), keep) for la in range(n_layers) for site in sites]
    with torch.enable_grad(), model.hooks(fwd_hooks=fwd):
        logits = model(tokens)
        loss = _loss(logits, tokens, target_id, position)
        wanted = [store[hook_name(s, la)] for s in ("mlp_pre", "mlp_out")
                  for la in range(n_layers)]
        grads = torch.autograd.grad(loss, wanted, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wanted, strict=True)]

    def stack(site: str) -> torch.Tensor:
        return torch.stack([store[hook_name(site, la)][0].detach().float().cpu()
                            for la in range(n_layers)])

    return BackwardLens(
        tokens[0].cpu(), [str(t) for t in model.to_str_tokens(tokens[0])], float(loss.detach()),
        what,
        target_id, position, stack("mlp_input"),
        torch.stack([g[0].detach().float().cpu() for g in grads[:n_layers]]),
        stack("mlp_post"),
        torch.stack([g[0].detach().float().cpu() for g in grads[n_layers:]]),
        validate.model_signature(model), getattr(model, "tokenizer", None))


@contextmanager
def stepped(model: Any, lens: BackwardLens, lr: float, *,
            weights: Sequence[str] = WEIGHTS) -> Iterator[None]:
    """Inside the block, every MLP's ``weights`` have taken one gradient-descent step
    ``W ← W - lr · ∂loss/∂W`` from ``lens``; on exit (also after an error) the exact old
    values are back. What a training step on the text would change, run for real."""
    check_model(model)
    if not isinstance(lens, BackwardLens):
        raise TypeError(f"lens must be a BackwardLens from backward_lens, got "
                        f"{type(lens).__name__}")
    check_same_model(model, lens.signature, "this backward lens")
    lr = validate.finite_float(lr, "lr", positive=True)
    if isinstance(weights, str):
        weights = [weights]
    weights = [validate.choice(w, "weights", WEIGHTS) for w in weights]
    if not weights:
        raise ValueError("weights is empty: give 'W_in', 'W_out' or both")
    saved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer in range(lens.n_layers):
                for name in weights:
                    param = mlp_weight(model, layer, name)
                    grad = lens.gradient(layer, name).AB.to(param.parameter.device)
                    saved.append((param.parameter, param.parameter.detach().clone()))
                    param.parameter.sub_(lr * param.as_parameter_layout(grad).to(
                        param.parameter.dtype))
        yield
    finally:
        with torch.no_grad():
            for parameter, value in saved:
                parameter.copy_(value)
