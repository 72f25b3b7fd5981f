"""The logit lens: decode the residual stream at every depth as if it were the last layer.

nostalgebraist's logit lens ("interpreting GPT: the logit lens", 2020) asks, at each layer,
"what would the model predict if it stopped here?" by sending the residual stream through the
unembedding. This module reads a batch at every *site* and reports, per (site, batch, position):

- ``top1``: the site's top-1 token; ``top_ids`` / ``top_probs``: its top-k;
- ``final_top1_prob``, ``final_top1_logit``, ``final_top1_rank``: how the site rates the token
  the model finally predicts;
- ``kl_to_final`` = KL(final ‖ site) and ``kl_to_input`` = KL(input ‖ site), in nats, where
  *final* is the model's own output distribution and *input* is the input row decoded like any
  other; ``input_rank``: the rank of the current (input) token;
- ``next_prob``, ``next_rank``, ``next_loss``: the true next token's probability, rank and loss
  (NaN / 0 at the last position, which has no next token); ``entropy`` (nats).

**Ranks are 1-based** (1 = top-1), as in the post, transformer-utils and tuned-lens
(TransformerLens 4.3's ``logit_lens`` counts from 0). **KL(P ‖ Q) = Σ P log(P / Q)**, with the
reference distribution P first: KL(final ‖ site) is the extra loss the site's guess would cost
if the final distribution were the truth.

Sites: ``"input"`` (the residual before block 0: the embedding), ``"{l}_pre"`` (the input of
block ``l``, for ``l >= 1``), optionally ``"{l}_mid"`` (after block ``l``'s attention), and
``"final"`` (the output of the last block). Two decoders:

- ``"standard"``: the model's real final norm (statistics recomputed per site) and unembedding,
  through TransformerLens's ``logit_readout``; the ``"final"`` row reproduces the model's
  log-probs exactly;
- ``"original"``: the post's decoder for intermediate rows: a parameter-free normalisation
  (subtract the mean, divide by the standard deviation) and the transposed token embedding.

Everything over the vocabulary is computed in chunks of positions, so at most
``[sites, chunk_size, d_vocab]`` logits exist at once; :func:`lens_dataset` aggregates many
sequences without ever holding ``[sites, batch, pos, d_vocab]``.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.logit_lens import logit_lens
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> lens = logit_lens(model, "The cat sat on the mat")
>>> lens.sites
['input', '1_pre', 'final']
>>> float(lens.kl_to_final[-1].abs().max()) < 1e-5  # KL(final || final) = 0
True
>>> int(lens.next_rank[:, 0, :-1].min()) >= 1  # ranks are 1-based
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float, Int

from interp_lib import validate
from interp_lib.hooks import hook_name, only
from interp_lib.inputs import to_tokens
from interp_lib.validate import check_model

__all__ = [
    "DECODERS",
    "METRICS",
    "LensDataset",
    "LensResult",
    "lens_dataset",
    "logit_lens",
    "site_names",
]

Decoder = Literal["standard", "original"]
DECODERS: tuple[str, ...] = ("standard", "original")

#: Per-cell metrics of a :class:`LensResult`, with a description (and unit) for figures.
METRICS: dict[str, str] = {
    "kl_to_final": "KL(final ‖ site), nats",
    "kl_to_input": "KL(input ‖ site), nats",
    "final_top1_prob": "probability of the final top-1 token",
    "final_top1_logit": "logit of the final top-1 token",
    "final_top1_rank": "rank of the final top-1 token (1 = top)",
    "input_rank": "rank of the input token (1 = top)",
    "next_prob": "probability of the true next token",
    "next_rank": "rank of the true next token (1 = top)",
    "next_loss": "loss on the true next token, nats",
    "entropy": "entropy, nats",
}
RANK_METRICS = ("final_top1_rank", "input_rank", "next_rank")


def site_names(n_layers: int, include_mid: bool = False) -> list[str]:
    """The site labels of a model with ``n_layers`` blocks, in depth order.

    >>> site_names(3, include_mid=True)
    ['input', '0_mid', '1_pre', '1_mid', '2_pre', '2_mid', 'final']
    """
    names = []
    for layer in range(n_layers):
        names.append("input" if layer == 0 else f"{layer}_pre")
        if include_mid:
            names.append(f"{layer}_mid")
    names.append("final")
    return names


def _hook_names(n_layers: int, include_mid: bool) -> list[str]:
    names = []
    for layer in range(n_layers):
        names.append(hook_name("resid_pre", layer))
        if include_mid:
            names.append(hook_name("resid_mid", layer))
    names.append(hook_name("resid_post", n_layers - 1))
    return names


# ---------------------------------------------------------------- decoding kernel


def _decode_logits(model: Any, vectors: torch.Tensor, decoder: str) -> torch.Tensor:
    """Logits ``[..., d_vocab]`` of residual vectors ``[..., d_model]`` under ``decoder``."""
    if decoder == "standard":
        from transformer_lens.tools.analysis.logit_lens import logit_readout

        readout = logit_readout(model, vectors, return_type="logits",
                                chunk_size=max(1, vectors.shape[:-1].numel()))
        return readout.values
    x = vectors.float()
    x = x - x.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    return x @ model.W_E.float().T


def _readout_logits(model: Any, vectors: torch.Tensor) -> torch.Tensor:
    """The standard decoder without TransformerLens's per-chunk extras: the model's own final
    norm (``ln_final``), then ``W_U`` and ``b_U``. ``logit_readout`` computes the same logits
    and also an entropy per row, which dataset mode computes itself; the tests check the two
    agree."""
    lead = vectors.shape[:-1]
    flat = vectors.reshape(-1, vectors.shape[-1])
    if getattr(model.cfg, "normalization_type", None) is not None:
        flat = model.ln_final(flat.unsqueeze(0)).squeeze(0)
    logits = flat @ model.W_U + model.b_U
    transform = getattr(getattr(model, "adapter", None), "apply_output_logits_transform", None)
    if callable(transform):
        logits = transform(logits)
    return logits.reshape(*lead, -1)


def _ranks(log_probs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``ids[...]`` under ``log_probs[..., vocab]`` (ties rank high)."""
    chosen = log_probs.gather(-1, ids[..., None])
    return (log_probs > chosen).sum(-1) + 1


def _cell_stats(
    logits: torch.Tensor,        # [site, n, vocab]
    final_lp: torch.Tensor,      # [n, vocab], the model's own output
    current: torch.Tensor,       # [n] the token at each position
    nxt: torch.Tensor,           # [n] the next token (any id where there is none)
    top_k: int,
) -> dict[str, torch.Tensor]:
    logits = logits.float()
    lp = logits.log_softmax(-1)
    sites = lp.shape[0]
    final_top = final_lp.argmax(-1)  # [n]
    p_final = final_lp.exp()
    input_lp = lp[0]
    top = lp.topk(top_k, dim=-1)
    expand = lambda ids: ids[None].expand(sites, -1)  # noqa: E731
    return {
        "top1": top.indices[..., 0],
        "top_ids": top.indices,
        "top_probs": top.values.exp(),
        "final_top1_prob": lp.gather(-1, expand(final_top)[..., None])[..., 0].exp(),
        "final_top1_logit": logits.gather(-1, expand(final_top)[..., None])[..., 0],
        "final_top1_rank": _ranks(lp, expand(final_top)),
        "kl_to_final": (p_final[None] * (final_lp[None] - lp)).sum(-1),
        "kl_to_input": (input_lp.exp()[None] * (input_lp[None] - lp)).sum(-1),
        "input_rank": _ranks(lp, expand(current)),
        "next_prob": lp.gather(-1, expand(nxt)[..., None])[..., 0].exp(),
        "next_rank": _ranks(lp, expand(nxt)),
        "next_loss": -lp.gather(-1, expand(nxt)[..., None])[..., 0],
        "entropy": -(lp.exp() * lp).sum(-1),
        "final_top1": final_top[None].expand(sites, -1),
    }


def _check_common(model: Any, decoder: str, chunk_size: int, top_k: int) -> None:
    check_model(model)
    validate.choice(decoder, "decoder", DECODERS)
    validate.positive_int(chunk_size, "chunk_size")
    validate.positive_int(top_k, "top_k")
    if top_k > model.cfg.d_vocab:
        raise ValueError(f"top_k={top_k} exceeds the vocabulary ({model.cfg.d_vocab})")
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() first")


@torch.no_grad()
def _residuals(model: Any, tokens: torch.Tensor, include_mid: bool):
    """(final log-probs ``[b, pos, vocab]``, residual stack ``[site, b, pos, d_model]``)."""
    names = _hook_names(model.cfg.n_layers, include_mid)
    logits, cache = model.run_with_cache(tokens, names_filter=only(*names))
    stack = torch.stack([cache[name] for name in names])
    return logits, stack


# ---------------------------------------------------------------- one batch, every cell


@dataclass
class LensResult:
    """Logit-lens readings of a batch, ``[site, batch, pos]`` per metric (see the module doc).

    ``sites`` labels the first axis, ``str_tokens[b]`` the positions of sequence ``b``;
    ``tokens`` are the input ids. ``next_*`` at the last position are NaN (probabilities and
    losses) or 0 (ranks): there is no next token there. Ranks are 1-based.
    """

    sites: list[str]
    tokens: Int[torch.Tensor, "batch pos"]
    str_tokens: list[list[str]]
    decoder: str
    top1: Int[torch.Tensor, "site batch pos"]
    top_ids: Int[torch.Tensor, "site batch pos k"]
    top_probs: Float[torch.Tensor, "site batch pos k"]
    final_top1: Int[torch.Tensor, "site batch pos"]
    final_top1_prob: Float[torch.Tensor, "site batch pos"]
    final_top1_logit: Float[torch.Tensor, "site batch pos"]
    final_top1_rank: Int[torch.Tensor, "site batch pos"]
    kl_to_final: Float[torch.Tensor, "site batch pos"]
    kl_to_input: Float[torch.Tensor, "site batch pos"]
    input_rank: Int[torch.Tensor, "site batch pos"]
    next_prob: Float[torch.Tensor, "site batch pos"]
    next_rank: Int[torch.Tensor, "site batch pos"]
    next_loss: Float[torch.Tensor, "site batch pos"]
    entropy: Float[torch.Tensor, "site batch pos"]
    tokenizer: Any = field(default=None, repr=False, compare=False)

    def metric(self, name: str) -> torch.Tensor:
        """The ``[site, batch, pos]`` tensor of a metric named in :data:`METRICS`."""
        return getattr(self, validate.choice(name, "metric", METRICS))

    def site_index(self, site: str | int) -> int:
        if isinstance(site, int) and not isinstance(site, bool):
            if not -len(self.sites) <= site < len(self.sites):
                raise ValueError(f"site {site} out of range: there are {len(self.sites)} sites")
            return site % len(self.sites)
        if not isinstance(site, str):
            raise TypeError(f"site must be a site name or an index, got {type(site).__name__}")
        if site not in self.sites:
            raise ValueError(f"unknown site {site!r}; sites are {self.sites}")
        return self.sites.index(site)

    def decode(self, token_id: int | torch.Tensor) -> str:
        """The text of one token id (the id itself when no tokenizer is attached)."""
        token_id = int(token_id)
        return self.tokenizer.decode([token_id]) if self.tokenizer is not None else str(token_id)

    def _batch(self, batch: int) -> int:
        return validate.int_in_range(batch, "batch", 0, self.top1.shape[1] - 1)

    def top_tokens(self, batch: int = 0) -> list[list[str]]:
        """Decoded top-1 token per ``[site][pos]`` of one sequence."""
        return [[self.decode(t) for t in row] for row in self.top1[:, self._batch(batch)]]

    def to_frame(self, batch: int | None = None):
        """Long DataFrame: one row per (site, batch, position) with every metric and the
        decoded top-1 token. ``batch`` keeps one sequence."""
        import pandas as pd

        n_sites, n_batch, n_pos = self.top1.shape
        batches = range(n_batch) if batch is None else [self._batch(batch)]
        rows = []
        for b in batches:
            for s, site in enumerate(self.sites):
                for p in range(n_pos):
                    row = {"site": site, "depth": s, "batch": b, "position": p,
                           "token": self.str_tokens[b][p],
                           "top1": self.decode(self.top1[s, b, p])}
                    for name in METRICS:
                        row[name] = getattr(self, name)[s, b, p].item()
                    rows.append(row)
        return pd.DataFrame(rows)


def _check_include_mid(include_mid: Any) -> None:
    if not isinstance(include_mid, bool):
        raise TypeError(f"include_mid must be True or False, got {include_mid!r}")


@torch.no_grad()
def logit_lens(
    model: Any,
    inputs: str | Sequence[str] | Int[torch.Tensor, "batch pos"],
    *,
    decoder: Decoder = "standard",
    include_mid: bool = False,
    top_k: int = 5,
    chunk_size: int = 64,
) -> LensResult:
    """Decode every site of every position of a batch; see the module docstring.

    Args:
        model: a model from :func:`interp_lib.load_model` (eval mode).
        inputs: text, equal-length texts, or a ``[batch, pos]`` token tensor.
        decoder: ``"standard"`` (real final norm and unembedding) or ``"original"``
            (parameter-free normalisation and transposed embedding, as in the 2020 post).
        include_mid: also read the residual after each block's attention (``"{l}_mid"``).
        top_k: how many top tokens to keep per cell (for hover text).
        chunk_size: positions decoded at once (memory: ``sites × chunk_size × d_vocab``).

    Example::

        lens = logit_lens(model, "The Eiffel Tower is in the city of")
        lens.to_frame().query("position == 8")[["site", "top1", "kl_to_final"]]
    """
    _check_common(model, decoder, chunk_size, top_k)
    _check_include_mid(include_mid)
    tokens = to_tokens(model, inputs)
    batch, pos = tokens.shape
    logits, stack = _residuals(model, tokens, include_mid)
    final_lp = logits.float().log_softmax(-1).reshape(batch * pos, -1)
    flat = stack.reshape(stack.shape[0], batch * pos, -1)
    current = tokens.reshape(-1)
    nxt = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1).reshape(-1)  # last: placeholder
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, batch * pos, chunk_size):
        sl = slice(start, start + chunk_size)
        cell = _cell_stats(_decode_logits(model, flat[:, sl], decoder), final_lp[sl],
                           current[sl], nxt[sl], top_k)
        for key, value in cell.items():
            parts.setdefault(key, []).append(value.cpu())
    out = {k: torch.cat(v, dim=1).reshape(v[0].shape[0], batch, pos, *v[0].shape[2:])
           for k, v in parts.items()}
    for key in ("next_prob", "next_loss"):
        out[key][:, :, -1] = float("nan")
    out["next_rank"][:, :, -1] = 0
    result = LensResult(
        sites=site_names(model.cfg.n_layers, include_mid),
        tokens=tokens.cpu(),
        str_tokens=[[str(t) for t in model.to_str_tokens(row)] for row in tokens],
        decoder=decoder,
        tokenizer=model.tokenizer,
        **out,
    )
    return result


# ---------------------------------------------------------------- dataset mode


@dataclass
class LensDataset:
    """Per-site averages of the lens over many sequences (positions with a next token).

    ``first_stable`` counts positions by the first site from which the site's top-1 equals the
    final top-1 at that site *and every later site*; index ``len(sites)`` counts positions
    where even the last site disagrees (possible with the ``"original"`` decoder only).
    """

    sites: list[str]
    decoder: str
    n_sequences: int
    n_positions: int
    mean_kl_to_final: Float[torch.Tensor, " site"]
    mean_loss: Float[torch.Tensor, " site"]
    agreement_with_final: Float[torch.Tensor, " site"]
    mean_entropy: Float[torch.Tensor, " site"]
    first_stable: Int[torch.Tensor, " site_plus_one"]

    def to_frame(self):
        """One row per site: the means, and how many positions first settle there."""
        import pandas as pd

        return pd.DataFrame({
            "site": self.sites,
            "mean_kl_to_final": self.mean_kl_to_final.numpy(),
            "mean_loss": self.mean_loss.numpy(),
            "agreement_with_final": self.agreement_with_final.numpy(),
            "mean_entropy": self.mean_entropy.numpy(),
            "first_stable_positions": self.first_stable[: len(self.sites)].numpy(),
        })


def _first_stable(agree: torch.Tensor) -> torch.Tensor:
    """``agree[site, n]`` (bool) -> index of the first site from which all later agree."""
    n_sites = agree.shape[0]
    # suffix-all: stays[s] = agree[s:].all()
    stays = agree.flip(0).cumprod(0).flip(0).bool()
    first = torch.where(stays.any(0), stays.float().argmax(0), torch.tensor(n_sites))
    return first


@torch.no_grad()
def lens_dataset(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    *,
    decoder: Decoder = "standard",
    include_mid: bool = False,
    batch_size: int = 16,
    chunk_size: int = 256,
) -> LensDataset:
    """Aggregate the lens over ``tokens`` (e.g. many windows of text) in chunks.

    For each chunk of ``batch_size`` sequences: one forward pass caching only the residual
    sites, then the sites decoded ``chunk_size`` positions at a time and reduced to sums at
    once. Peak memory is one forward pass plus ``sites × chunk_size × d_vocab`` floats.
    """
    _check_common(model, decoder, chunk_size, 1)
    _check_include_mid(include_mid)
    tokens = to_tokens(model, tokens)
    if tokens.shape[1] < 2:
        raise ValueError("dataset mode needs sequences of at least 2 tokens (a next token)")
    batch_size = validate.positive_int(batch_size, "batch_size")
    sites = site_names(model.cfg.n_layers, include_mid)
    n_sites = len(sites)
    sums = {k: torch.zeros(n_sites, dtype=torch.float64)
            for k in ("kl", "loss", "agree", "entropy")}
    first_counts = torch.zeros(n_sites + 1, dtype=torch.long)
    count = 0
    for chunk in tokens.split(batch_size):
        logits, stack = _residuals(model, chunk, include_mid)
        b, pos = chunk.shape
        # positions with a next token only
        final_lp = logits[:, :-1].float().log_softmax(-1).reshape(b * (pos - 1), -1)
        del logits
        flat = stack[:, :, :-1].reshape(n_sites, b * (pos - 1), -1)
        nxt = chunk[:, 1:].reshape(-1)
        for start in range(0, flat.shape[1], chunk_size):
            sl = slice(start, start + chunk_size)
            if decoder == "standard":
                lp = _readout_logits(model, flat[:, sl]).float().log_softmax(-1)
            else:
                lp = _decode_logits(model, flat[:, sl], decoder).float().log_softmax(-1)
            f = final_lp[sl]
            # KL(final || site) = sum p_f (log p_f - lp): the first term once per position
            pf = f.exp()
            neg_entropy_f = (pf * f).sum(-1)  # [n]
            sums["kl"] += (neg_entropy_f[None] - torch.einsum("nv,snv->sn", pf, lp)
                           ).sum(-1).double().cpu()
            sums["loss"] += (-lp.gather(-1, nxt[sl][None, :, None].expand(n_sites, -1, 1))
                             ).sum((1, 2)).double().cpu()
            agree = lp.argmax(-1) == f.argmax(-1)[None]
            sums["agree"] += agree.sum(-1).double().cpu()
            sums["entropy"] += (-(lp.exp() * lp).sum(-1)).sum(-1).double().cpu()
            first_counts += torch.bincount(_first_stable(agree).cpu(), minlength=n_sites + 1)
            count += lp.shape[1]
            del lp
    return LensDataset(
        sites=sites, decoder=decoder, n_sequences=int(tokens.shape[0]), n_positions=count,
        mean_kl_to_final=(sums["kl"] / count).float(),
        mean_loss=(sums["loss"] / count).float(),
        agreement_with_final=(sums["agree"] / count).float(),
        mean_entropy=(sums["entropy"] / count).float(),
        first_stable=first_counts,
    )
