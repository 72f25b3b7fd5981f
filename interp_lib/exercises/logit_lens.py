"""Checks for notebook 01 (the logit lens).

>>> import torch
>>> from interp_lib.exercises.logit_lens import check_token_rank
>>> def token_rank(log_probs, ids):
...     chosen = log_probs.gather(-1, ids[:, None])
...     return (log_probs > chosen).sum(-1) + 1
>>> check_token_rank(token_rank)
✔ token_rank: correct (1-based, ties rank high)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.exercises import call, compare, expect, passed
from interp_lib.hooks import hook_name, only

__all__ = ["check_decode_site", "check_first_stable_site", "check_kl_divergence",
           "check_token_rank"]


def _norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def check_decode_site(fn: Any, model: Any) -> None:
    """``fn(resid [pos, d_model], W_U, b_U, eps) -> [pos, vocab]``: the log-probabilities the
    final norm (recomputed from this site's own statistics) and the unembedding give a
    residual-stream vector at any site."""
    tokens = model.to_tokens("The President said that the Congress agreed with the plan.")
    middle = max(1, model.cfg.n_layers // 2)
    last = model.cfg.n_layers - 1
    names = (hook_name("resid_pre", middle), hook_name("resid_post", last))
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=only(*names))
    w_u, b_u, eps = model.W_U.detach(), model.b_U.detach(), float(model.cfg.eps)
    final = cache[names[1]][0]
    got = call(fn, final, w_u, b_u, eps, name="decode_site")
    compare(got, logits[0].float().log_softmax(-1), "decode_site on the final site",
            axes=("pos", "vocab"), atol=2e-4, rtol=1e-4,
            mistakes=[(logits[0], "these are logits; the lens reports log-probabilities: "
                                  "apply log_softmax over the vocabulary")])
    site = cache[names[0]][0]
    got = call(fn, site, w_u, b_u, eps, name="decode_site")
    expected = (_norm(site, eps) @ w_u + b_u).log_softmax(-1)
    final_scale = (final - final.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True)
    stale = ((site - site.mean(-1, keepdim=True)) / (final_scale + eps).sqrt() @ w_u + b_u
             ).log_softmax(-1)
    mistakes = [
        (stale, "you divided by the *final* layer's scale; recompute the norm from this site's "
                "own residual (TransformerLens's old accumulated_resid had exactly this bug: "
                "ranks survive it, probabilities and KL do not)"),
        ((site @ w_u + b_u).log_softmax(-1),
         "you skipped the normalisation: centre and divide by the root mean square first"),
        (_norm(site, eps) @ w_u + b_u, "these are logits; apply log_softmax"),
    ]
    compare(got, expected, f"decode_site on the input of block {middle}", axes=("pos", "vocab"),
            atol=2e-4, rtol=1e-4, mistakes=mistakes)
    passed("decode_site", f"the final site reproduces the model's log-probs; block {middle}'s "
                          "input decoded with its own norm")


def check_kl_divergence(fn: Any, model: Any = None) -> None:
    """``fn(p_log [n, vocab], q_log [n, vocab]) -> [n]``: KL(P ‖ Q) = Σ P (log P − log Q) in
    nats, with the reference distribution P first."""
    gen = torch.Generator().manual_seed(2)
    p_log = (torch.randn(5, 9, generator=gen) * 2).log_softmax(-1)
    q_log = (torch.randn(5, 9, generator=gen) * 2).log_softmax(-1)
    got = call(fn, p_log, q_log, name="kl_divergence")
    expected = (p_log.exp() * (p_log - q_log)).sum(-1)
    mistakes = [((q_log.exp() * (q_log - p_log)).sum(-1),
                 "that is KL(Q ‖ P): the reference distribution P comes first, and its "
                 "probabilities weight the sum"),
                ((p_log - q_log).sum(-1), "weight each term by P's probability (p_log.exp())"),
                ((p_log * (p_log - q_log)).sum(-1),
                 "you weighted by log P; weight by P = exp(log P)")]
    compare(got, expected, "kl_divergence", axes=("n",), mistakes=mistakes)
    same = call(fn, p_log, p_log, name="kl_divergence")
    compare(same, torch.zeros(5), "kl_divergence of a distribution with itself", axes=("n",),
            atol=1e-6)
    expect(bool((torch.as_tensor(got) >= -1e-6).all()), "kl_divergence: KL is never negative")
    passed("kl_divergence", "KL(P ‖ P) = 0 and the direction is the course's")


def check_token_rank(fn: Any, model: Any = None) -> None:
    """``fn(log_probs [n, vocab], ids [n]) -> [n]``: the 1-based rank of each id (1 = the
    top-1 token); a tie counts in the token's favour."""
    log_probs = torch.tensor([[-0.1, -3.0, -2.0, -5.0],
                              [-2.0, -2.0, -0.5, -4.0],
                              [-1.0, -1.5, -2.5, -0.2]])
    ids = torch.tensor([0, 1, 2])
    got = call(fn, log_probs, ids, name="token_rank")
    expected = torch.tensor([1, 2, 4])
    mistakes = [(expected - 1, "these ranks are 0-based; the course counts from 1 (1 = top-1), "
                               "as the logit-lens post and tuned-lens do"),
                (torch.tensor([4, 2, 1]), "you ranked from the smallest log-prob; rank 1 is the "
                                          "largest"),
                (torch.tensor([1, 3, 4]), "a tie must count in the token's favour: count only "
                                          "the tokens strictly more likely")]
    compare(got, expected, "token_rank", axes=("n",), mistakes=mistakes)
    passed("token_rank", "1-based, ties rank high")


def check_first_stable_site(fn: Any, model: Any = None) -> None:
    """``fn(agree [site, n] bool) -> [n]``: for each position, the first site from which the
    site's top-1 equals the final top-1 at that site *and at every later one*; ``n_sites``
    where even the last site disagrees."""
    agree = torch.tensor([[True, False, False, True, False],
                          [False, True, False, True, False],
                          [True, True, True, True, False]])
    got = call(fn, agree.clone(), name="first_stable_site")
    expected = torch.tensor([2, 1, 2, 0, 3])
    first_agreeing = ("you returned the first site that agrees; it must also agree at every "
                      "later site (position 0 agrees at site 0, disagrees at site 1, so it "
                      "settles at 2)")
    mistakes = [(torch.tensor([0, 1, 2, 0, 3]), first_agreeing),
                (torch.tensor([0, 1, 2, 0, 0]), first_agreeing + "; and a position where no "
                                                "site agrees gets n_sites (3 here)"),
                (torch.tensor([2, 1, 2, 0, 2]),
                 "a position where even the last site disagrees must get n_sites (3 here)"),
                (torch.tensor([2, 1, 2, 0, 0]),
                 "a position where no site agrees must get n_sites (3 here), not 0 (argmax of "
                 "an all-False row is 0)"),
                (torch.tensor([2, 2, 2, 2, 3]), "you returned the last agreeing site")]
    compare(got, expected, "first_stable_site", axes=("n",), mistakes=mistakes)
    passed("first_stable_site", "including a position that never settles")
