"""Checks for notebook 00 (a tour of the tools).

>>> import torch
>>> from interp_lib.exercises.tour import check_next_token_loss
>>> def next_token_loss(logits, tokens):
...     log_probs = logits[:, :-1].log_softmax(-1)
...     return -log_probs.gather(-1, tokens[:, 1:, None]).mean()
>>> check_next_token_loss(next_token_loss)
✔ next_token_loss: correct (planted logits, 2 sequences of 6 tokens)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.exercises import call, compare, expect, passed
from interp_lib.hooks import hook_name

__all__ = ["check_attention_entropy", "check_logits_from_residual", "check_mlp_ablated_loss",
           "check_next_token_loss", "check_residual_from_components"]


def _planted_logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 6, 11, generator=gen) * 3, torch.randint(11, (2, 6), generator=gen)


def _loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    lp = logits[:, :-1].float().log_softmax(-1)
    return -lp.gather(-1, tokens[:, 1:, None]).mean()


def check_next_token_loss(fn: Any, model: Any = None) -> None:
    """``fn(logits [batch, pos, vocab], tokens [batch, pos]) -> scalar``: the mean next-token
    loss in nats."""
    logits, tokens = _planted_logits()
    got = call(fn, logits, tokens, name="next_token_loss")
    lp = logits.log_softmax(-1)
    mistakes = [
        (-lp.gather(-1, tokens[..., None]).mean(),
         "you scored each position against its own token; the logits at position p predict "
         "the token at p + 1 (compare logits[:, :-1] with tokens[:, 1:])"),
        (-lp[:, 1:].gather(-1, tokens[:, :-1, None]).mean(),
         "the shift goes the wrong way: logits[:, :-1] predict tokens[:, 1:]"),
        (-logits[:, :-1].gather(-1, tokens[:, 1:, None]).mean(),
         "you used the raw logits; take log_softmax over the vocabulary first"),
        (-lp[:, :-1].exp().gather(-1, tokens[:, 1:, None]).mean(),
         "you averaged probabilities; the loss is minus the mean *log*-probability"),
    ]
    compare(got, _loss(logits, tokens), "next_token_loss", mistakes=mistakes)
    detail = "planted logits, 2 sequences of 6 tokens"
    if model is not None:
        tokens = model.to_tokens("The cat sat on the mat. The cat sat on the mat again.")
        with torch.no_grad():
            logits = model(tokens)
            own = model(tokens, return_type="loss")
        got = call(fn, logits, tokens, name="next_token_loss")
        compare(got, own, "next_token_loss on the model's own logits (vs return_type='loss')")
        detail += f"; and {float(own):.3f} nats on the model, as its own loss says"
    passed("next_token_loss", detail)


def check_residual_from_components(fn: Any, model: Any) -> None:
    """``fn(cache, n_layers) -> [batch, pos, d_model]``: the final residual stream rebuilt as
    the sum of the embeddings and every attention and MLP output."""
    tokens = model.to_tokens("Whales were seen off the coast at dawn.")
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    n_layers = model.cfg.n_layers
    got = call(fn, cache, n_layers, name="residual_from_components")
    expected = cache[hook_name("resid_post", n_layers - 1)]
    embed = cache["hook_embed"]
    pos = cache["hook_pos_embed"] if "hook_pos_embed" in cache.cache_dict else 0
    attn = sum(cache[hook_name("attn_out", la)] for la in range(n_layers))
    mlp = sum(cache[hook_name("mlp_out", la)] for la in range(n_layers))
    mistakes = [
        (embed + pos + attn + mlp - cache[hook_name("attn_out", n_layers - 1)]
         - cache[hook_name("mlp_out", n_layers - 1)],
         f"the last layer is missing: add the outputs of all {n_layers} layers "
         f"(range(n_layers), not range(n_layers - 1))"),
        (embed + pos + mlp, "the attention outputs are missing (hook_attn_out of every layer)"),
        (embed + pos + attn, "the MLP outputs are missing (hook_mlp_out of every layer)"),
    ]
    if "hook_pos_embed" in cache.cache_dict:
        mistakes.append((embed + attn + mlp,
                         "the position embedding (hook_pos_embed) is missing: this model has "
                         "learned positions"))
    scale = float(expected.abs().max())
    compare(got, expected, "residual_from_components", axes=("batch", "pos", "d_model"),
            atol=1e-5 * scale, rtol=1e-5, mistakes=mistakes)
    passed("residual_from_components", f"{tokens.shape[1]} positions of {model.cfg.model_name}")


def check_logits_from_residual(fn: Any, model: Any) -> None:
    """``fn(resid [batch, pos, d_model], W_U, b_U, eps) -> [batch, pos, vocab]``: the final
    LayerNorm (centre, divide by the root mean square; its weights are folded into ``W_U``)
    then the unembedding."""
    tokens = model.to_tokens("The president spoke to Congress about the treaty.")
    with torch.no_grad():
        logits, cache = model.run_with_cache(
            tokens, names_filter=hook_name("resid_post", model.cfg.n_layers - 1))
    resid = cache[hook_name("resid_post", model.cfg.n_layers - 1)]
    w_u, b_u, eps = model.W_U.detach(), model.b_U.detach(), float(model.cfg.eps)
    got = call(fn, resid, w_u, b_u, eps, name="logits_from_residual")
    centred = resid - resid.mean(-1, keepdim=True)
    normed = centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    mistakes = [
        (resid / (resid.pow(2).mean(-1, keepdim=True) + eps).sqrt() @ w_u + b_u,
         "you forgot to centre: LayerNorm subtracts the mean over d_model first"),
        (normed @ w_u, "the unembedding bias b_U is missing"),
        (centred @ w_u + b_u, "you forgot to divide by the root mean square (the scale)"),
        (centred / centred.std(-1, keepdim=True) @ w_u + b_u,
         "torch.std divides by n - 1; LayerNorm divides by n (use .pow(2).mean(-1) and sqrt, "
         "or std(unbiased=False)), plus eps inside the square root"),
    ]
    scale = float(logits.abs().max())
    compare(got, logits, "logits_from_residual", axes=("batch", "pos", "vocab"),
            atol=1e-4 * max(1.0, scale), rtol=1e-4, mistakes=mistakes)
    passed("logits_from_residual", "equal to the model's logits")


def check_mlp_ablated_loss(fn: Any, model: Any) -> None:
    """``fn(model, tokens, layer) -> scalar``: the loss with layer ``layer``'s MLP output set
    to zero by a hook (removed afterwards)."""
    tokens = model.to_tokens("The ship sailed from the harbour at dawn with forty men.")

    def zero(out, hook):
        return torch.zeros_like(out)

    with torch.no_grad():
        by_layer = [model.run_with_hooks(tokens, return_type="loss",
                                         fwd_hooks=[(hook_name("mlp_out", la), zero)])
                    for la in range(model.cfg.n_layers)]
        attn = [model.run_with_hooks(tokens, return_type="loss",
                                     fwd_hooks=[(hook_name("attn_out", la), zero)])
                for la in range(model.cfg.n_layers)]
        clean = model(tokens, return_type="loss")
    for layer in sorted({0, model.cfg.n_layers - 1}):
        got = call(fn, model, tokens, layer, name="mlp_ablated_loss", model=model)
        mistakes = [(clean, "that is the clean loss: the MLP output was not changed (does your "
                            "hook return the zeros, or run inside `with model.hooks(...)`?)"),
                    (attn[layer], "you zeroed the attention output; zero hook_mlp_out")]
        mistakes += [(by_layer[other], f"you zeroed layer {other}'s MLP, not layer {layer}'s")
                     for other in range(model.cfg.n_layers) if other != layer]
        compare(got, by_layer[layer], f"mlp_ablated_loss(layer={layer})", mistakes=mistakes)
    expect(not torch.allclose(by_layer[0], clean, atol=1e-5),
           "the check's own case is degenerate (layer 0's MLP does not matter here)")
    passed("mlp_ablated_loss", f"layer 0: {float(clean):.3f} -> {float(by_layer[0]):.3f} nats")


def check_attention_entropy(fn: Any, model: Any = None) -> None:
    """``fn(pattern [head, query, key]) -> [head]``: each head's attention entropy in nats,
    averaged over the queries after the first (query 0 can only attend to itself)."""
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 7, 7, generator=gen) * 2
    scores = scores.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
    pattern = scores.softmax(-1)
    pattern[0] = torch.eye(7)  # a head that attends to one position: entropy 0
    got = call(fn, pattern.clone(), name="attention_entropy")
    plogp = torch.where(pattern > 0, pattern * pattern.clamp_min(1e-30).log(),
                        torch.zeros_like(pattern))
    entropy = -plogp.sum(-1)                                   # [head, query]
    expected = entropy[:, 1:].mean(-1)
    mistakes = [(entropy.mean(-1), "you averaged over every query, the first included; leave "
                                   "out query 0 (it can only attend to itself: entropy 0)"),
                (expected / torch.log(torch.tensor(2.0)),
                 "these are bits; the course measures entropy in nats (natural log)"),
                (-plogp.sum(-2)[:, 1:].mean(-1), "you summed over queries instead of keys: the "
                                                 "entropy of each query's row is over keys")]
    compare(got, expected, "attention_entropy", axes=("head",), mistakes=mistakes)
    expect(float(got[0]) < 1e-4, "attention_entropy: a head attending to one key must have "
                                 "entropy 0 (check how you handle 0 * log 0)")
    passed("attention_entropy", "planted patterns, a one-hot head included")
