"""Checks for notebook 02 (induction heads).

>>> import torch
>>> from interp_lib.exercises.induction import check_previous_token_scores
>>> def previous_token_scores(pattern):
...     return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, -1))
>>> check_previous_token_scores(previous_token_scores)
✔ previous_token_scores: correct (a planted previous-token head scores 1)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.attribution import logit_attribution
from interp_lib.data import repeated_tokens
from interp_lib.exercises import call, compare, expect, passed
from interp_lib.hooks import hook_name, only, zero_ablation
from interp_lib.metrics import loss_metric

__all__ = ["check_ablation_cost", "check_head_logit_attribution", "check_induction_scores",
           "check_previous_token_scores", "check_zero_head_hook"]


def _planted_patterns(n: int, batch: int = 2, heads: int = 4, seed: int = 0) -> torch.Tensor:
    """Causal random patterns ``[batch, head, q, k]`` on BOS + n + n, head 1 a perfect
    induction head, head 2 a perfect previous-token head."""
    seq = 2 * n + 1
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, heads, seq, seq, generator=gen)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    ind = torch.zeros(seq, seq)
    ind[0, 0] = 1
    for q in range(1, seq):
        ind[q, q - n + 1 if q > n else q - 1] = 1
    prev = torch.zeros(seq, seq)
    prev[0, 0] = 1
    prev[torch.arange(1, seq), torch.arange(seq - 1)] = 1
    pattern[:, 1] = ind
    pattern[:, 2] = prev
    return pattern


def _diagonal_mean(pattern: torch.Tensor, offset: int, queries: range) -> torch.Tensor:
    q = torch.tensor(list(queries))
    return pattern[..., q, q + offset].mean((0, -1))


def check_induction_scores(fn: Any, model: Any = None) -> None:
    """``fn(pattern [batch, head, query, key], n) -> [head]``: on BOS + n random tokens + the
    same n, each head's mean attention from the second-half queries ``n+1 .. 2n`` to the
    token right after the earlier copy (key ``q - n + 1``)."""
    n = 6
    pattern = _planted_patterns(n)
    got = call(fn, pattern.clone(), n, name="induction_scores")
    second = range(n + 1, 2 * n + 1)
    expected = _diagonal_mean(pattern, 1 - n, second)
    mistakes = [(_diagonal_mean(pattern, -n, second),
                 "you measured attention to the earlier copy of the *same* token (key q - n): "
                 "that is a duplicate-token head; an induction head attends to the token after "
                 "it (key q - n + 1)"),
                (_diagonal_mean(pattern, 1 - n, range(n - 1, 2 * n + 1)),
                 "you included first-half queries; only the second-half queries n + 1 .. 2n "
                 "have an earlier copy to look at"),
                (_diagonal_mean(pattern, 2 - n, second), "off by one: the key is q - n + 1"),
                (pattern.diagonal(1 - n, -2, -1).mean((0, -1)),
                 "pattern.diagonal(offset) takes offsets of the key minus the query with keys "
                 "ahead positive; here you want key - query = 1 - n, over second-half queries "
                 "only (you took the whole diagonal)")]
    compare(got, expected, "induction_scores", axes=("head",), mistakes=mistakes)
    expect(abs(float(got[1]) - 1) < 1e-5, "induction_scores: the planted induction head "
                                          "(head 1) must score 1")
    detail = "a planted induction head scores 1"
    if model is not None:
        tokens = repeated_tokens(model, n=20, batch=2, seed=3)
        name = hook_name("pattern", model.cfg.n_layers - 1)
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=only(name))
        got = call(fn, cache[name], 20, name="induction_scores")
        compare(got, _diagonal_mean(cache[name], -19, range(21, 41)),
                "induction_scores on the model's last layer", axes=("head",))
        detail += "; the model's last layer checked too"
    passed("induction_scores", detail)


def check_previous_token_scores(fn: Any, model: Any = None) -> None:
    """``fn(pattern [batch, head, query, key]) -> [head]``: each head's mean attention from
    query ``q`` to ``q - 1``, over the queries ``q >= 1``."""
    pattern = _planted_patterns(5)
    got = call(fn, pattern.clone(), name="previous_token_scores")
    seq = pattern.shape[-1]
    expected = _diagonal_mean(pattern, -1, range(1, seq))
    mistakes = [(_diagonal_mean(pattern, 0, range(seq)),
                 "you read the main diagonal (each query attending to itself: the current "
                 "token); the previous token is one below it"),
                (_diagonal_mean(pattern, 0, range(1, seq)),
                 "you read the main diagonal; the previous token is the diagonal one below")]
    compare(got, expected, "previous_token_scores", axes=("head",), mistakes=mistakes)
    expect(abs(float(got[2]) - 1) < 1e-5, "previous_token_scores: the planted previous-token "
                                          "head (head 2) must score 1")
    passed("previous_token_scores", "a planted previous-token head scores 1")


def check_zero_head_hook(fn: Any, model: Any) -> None:
    """``fn(head) -> hook``: a ``hook_z`` hook (``hook(z, hook)``) that sets one head's
    output to zero; ``z`` is ``[batch, pos, head, d_head]``."""
    tokens = model.to_tokens("Mr and Mrs Dursley, of number four, were proud to say so.")
    layer, head = model.cfg.n_layers - 1, model.cfg.n_heads - 1
    hook = call(fn, head, name="zero_head_hook")
    expect(callable(hook), f"zero_head_hook({head}) must return a function hook(z, hook), got "
                           f"{type(hook).__name__}")
    name = hook_name("z", layer)
    seen = {}

    def spy(z, hook=None):
        seen["z"] = z.detach().clone()

    with torch.no_grad():
        with zero_ablation(model, [(layer, head)]):
            expected = model(tokens)
        wrong_axis = model.run_with_hooks(tokens, fwd_hooks=[
            (name, lambda z, hook: z.index_fill(1, torch.tensor([head], device=z.device), 0.0)
             if z.shape[1] > head else z)])
        got = call(lambda: model.run_with_hooks(tokens, fwd_hooks=[(name, hook), (name, spy)]),
                   name="zero_head_hook", model=model)
    compare(got, expected, "the model's logits with your hook",
            axes=("batch", "pos", "vocab"), atol=1e-4,
            mistakes=[(wrong_axis, f"you zeroed position {head}, not head {head}: z is "
                                   "[batch, pos, head, d_head], the head is axis 2")])
    expect(bool((seen["z"][:, :, head] == 0).all()),
           "zero_head_hook: the head's output must be exactly zero")
    passed("zero_head_hook", f"head {layer}.{head} removed, the others untouched")


def check_head_logit_attribution(fn: Any, model: Any) -> None:
    """``fn(z [batch, pos, head, d_head], W_O [head, d_head, d_model], W_U [d_model, vocab],
    scale [batch, pos, 1], tokens [batch, pos]) -> [head]``: each head of one layer's direct
    contribution to the logit of the *next* token, ``(z_h W_O^h) / scale · W_U[:, next]``,
    averaged over the second-half positions ``n .. 2n - 1`` of repeated tokens."""
    n = 10
    tokens = repeated_tokens(model, n=n, batch=2, seed=4)
    layer = model.cfg.n_layers - 1
    names = (hook_name("z", layer), hook_name("ln_final_scale"))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=only(*names))
    z, scale = cache[names[0]], cache[names[1]]
    w_o, w_u = model.W_O[layer].detach(), model.W_U.detach()
    got = call(fn, z, w_o, w_u, scale, tokens, name="head_logit_attribution")
    dla = logit_attribution(model, tokens)
    where = torch.zeros_like(dla.positions)
    where[:, n: 2 * n] = True
    expected = dla.heads(where).values[layer]

    def variant(next_token: bool, with_scale: bool) -> torch.Tensor:
        out = torch.einsum("bphe,hed->bphd", z, w_o)
        out = out - out.mean(-1, keepdim=True)
        if with_scale:
            out = out / scale[..., None]
        ids = tokens[:, 1:] if next_token else tokens[:, :-1]
        u = w_u[:, ids].permute(1, 2, 0)                          # [batch, pos-1, d_model]
        contrib = torch.einsum("bphd,bpd->bph", out[:, :-1], u)
        return contrib[:, n: 2 * n].mean((0, 1))

    mistakes = [(variant(False, True), "you scored the *current* token; a position's logits "
                                       "predict the next token (tokens[:, p + 1])"),
                (variant(True, False), "you forgot to divide by the final LayerNorm's scale "
                                       "(the cached ln_final.hook_scale)")]
    compare(got, expected, "head_logit_attribution", axes=("head",), atol=1e-3, rtol=1e-3,
            mistakes=mistakes)
    passed("head_logit_attribution", f"layer {layer}; equal to interp_lib.attribution's "
                                     "decomposition, which sums to the logit")


def check_ablation_cost(fn: Any, model: Any) -> None:
    """``fn(model, tokens, heads) -> float``: how much the mean loss on the second half of
    repeated tokens rises when ``heads`` (``["L.H", ...]``) are zero-ablated."""
    n = 12
    tokens = repeated_tokens(model, n=n, batch=2, seed=5)
    metric = loss_metric(n + 1)
    heads = [f"{model.cfg.n_layers - 1}.0", "0.1"]
    with torch.no_grad():
        clean = metric(model(tokens), tokens).mean()
        with zero_ablation(model, heads):
            ablated = metric(model(tokens), tokens).mean()
        whole = model(tokens, return_type="loss")
        with zero_ablation(model, heads):
            whole_ablated = model(tokens, return_type="loss")
    got = call(fn, model, tokens, heads, name="ablation_cost", model=model)
    compare(got, ablated - clean, "ablation_cost",
            mistakes=[(ablated, "that is the ablated loss; subtract the clean loss"),
                      (clean - ablated, "the sign is flipped: ablated minus clean"),
                      (whole_ablated - whole, "you used the loss over the whole sequence; "
                                              "measure the second half (positions n+1..2n)")])
    passed("ablation_cost", f"{heads}: {float(ablated - clean):+.3f} nats")
