"""Checks for notebook 08 (sparse autoencoders and superposition).

>>> import torch
>>> from interp_lib.exercises.sae import check_fvu
>>> def fvu(x, x_hat):
...     return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
>>> check_fvu(fvu)
✔ fvu: correct (planted activations: 0 for a perfect fit, 1 for the mean)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.exercises import call, compare, expect, passed
from interp_lib.hooks import hook_name
from interp_lib.sae import (
    SparseAutoencoder,
    evaluate_sae,
    fraction_of_variance_unexplained,
    load_sae,
    shipped_sites,
    toy_forward,
)
from interp_lib.validate import model_signature

__all__ = ["check_fvu", "check_logit_effect", "check_loss_recovered", "check_topk_encode",
           "check_toy_forward"]


def _sae_for(model: Any, site: str, seed: int = 0) -> SparseAutoencoder:
    """The shipped SAE for ``site`` when it fits the model (the course model), else a seeded
    random one of the model's width (the check's arithmetic is the same)."""
    if site in shipped_sites():
        sae = load_sae(site)
        if tuple(sae.signature or ()) == model_signature(model):
            return sae.to(model.cfg.device)
    sae = SparseAutoencoder(model.cfg.d_model, 4 * model.cfg.d_model, 8, site=site,
                            signature=model_signature(model), seed=seed)
    gen = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():  # an encoder that differs from the decoder, as a trained one does
        sae.encoder.weight.add_(0.5 * torch.randn(sae.encoder.weight.shape, generator=gen)
                                / model.cfg.d_model ** 0.5)
        sae.encoder.bias.fill_(0.05)
    return sae.to(model.cfg.device)


def check_toy_forward(fn: Any, model: Any = None) -> None:
    """``fn(W [instance, hidden, feature], b [instance, feature], x [batch, instance, feature])
    -> [batch, instance, feature]``: the toy model's reconstruction ``ReLU(Wᵀ W x + b)``."""
    gen = torch.Generator().manual_seed(11)
    W = torch.randn(3, 2, 5, generator=gen)
    b = torch.randn(3, 5, generator=gen) * 0.5
    x = torch.rand(7, 3, 5, generator=gen) * (torch.rand(7, 3, 5, generator=gen) < 0.5)
    got = call(fn, W.clone(), b.clone(), x.clone(), name="toy_forward")
    hidden = torch.einsum("ihf,bif->bih", W, x)
    linear = torch.einsum("ihf,bih->bif", W, hidden)
    mistakes = [
        (linear + b, "the ReLU is missing: the output is ReLU(Wᵀ W x + b)"),
        (torch.relu(linear), "the bias b is missing (it is added before the ReLU)"),
        (torch.relu(linear) + b, "the ReLU comes after adding b: ReLU(Wᵀ W x + b), not "
                                 "ReLU(Wᵀ W x) + b"),
        (torch.relu(torch.einsum("ihf,bih->bif", W, torch.relu(hidden)) + b),
         "no ReLU on the hidden layer: the toy model is linear up to h = W x, and the one "
         "ReLU comes at the output"),
    ]
    compare(got, toy_forward(W, b, x), "toy_forward", axes=("batch", "instance", "feature"),
            mistakes=mistakes)
    passed("toy_forward", "3 instances of 5 features in 2 dimensions")


def check_topk_encode(fn: Any, model: Any = None) -> None:
    """``fn(x [batch, d_in], W_enc [d_sae, d_in], b_enc [d_sae], b_dec [d_in], k) -> [batch,
    d_sae]``: the TopK SAE's latents, ``ReLU((x - b_dec) W_encᵀ + b_enc)`` with all but the
    ``k`` largest of each row set to 0."""
    sae = SparseAutoencoder(6, 24, 4, seed=12)
    gen = torch.Generator().manual_seed(13)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(6, generator=gen))
        sae.encoder.bias.copy_(torch.randn(24, generator=gen) * 0.3 - 0.6)
    x = torch.randn(9, 6, generator=gen) + sae.b_dec.detach()
    x[0] = sae.b_dec.detach()  # a row with fewer than k positive pre-activations
    args = (sae.W_enc.detach(), sae.b_enc.detach(), sae.b_dec.detach())
    got = call(fn, x.clone(), *[a.clone() for a in args], 4, name="topk_encode")
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (9, 4):
        expect(False, "topk_encode: you returned the k values [batch, k]; return all d_sae "
                      "latents [batch, d_sae], with zeros where a latent is not kept (scatter "
                      "the values back to their indices)")
    pre = torch.nn.functional.linear(x - sae.b_dec, sae.W_enc, sae.b_enc).detach()
    no_centre = torch.relu(torch.nn.functional.linear(x, sae.W_enc, sae.b_enc)).detach()
    raw_values, raw_index = pre.topk(4, dim=-1)
    mistakes = [
        (torch.zeros_like(pre).scatter(-1, no_centre.topk(4, dim=-1).indices,
                                       no_centre.topk(4, dim=-1).values),
         "subtract b_dec from x before the encoder: pre = (x - b_dec) W_encᵀ + b_enc"),
        (torch.zeros_like(pre).scatter(-1, raw_index, raw_values),
         "the ReLU is missing: a kept pre-activation below 0 must become 0 (a row can have "
         "fewer than k positive latents)"),
        (torch.relu(pre), "you kept every positive latent; keep only the k largest per row"),
        (torch.zeros_like(pre).scatter(0, torch.relu(pre).topk(4, dim=0).indices,
                                       torch.relu(pre).topk(4, dim=0).values),
         "you took the top k over the batch (dim 0); take it over the latents (dim -1)"),
    ]
    compare(got, sae.encode(x).detach(), "topk_encode", axes=("batch", "d_sae"),
            mistakes=mistakes)
    detail = "planted SAE, one row with fewer than k positive latents"
    if model is not None:
        site = hook_name("resid_pre", model.cfg.n_layers // 2)
        real = _sae_for(model, site)
        tokens = model.to_tokens("The whale rose slowly from the deep and the ship turned.")
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=site)
        acts = cache[site][0, 1:]
        with torch.no_grad():
            got = call(fn, acts, real.W_enc.detach(), real.b_enc.detach(),
                       real.b_dec.detach(), real.k, name="topk_encode")
        compare(got, real.encode(acts).detach(), f"topk_encode on {site} of the model",
                axes=("token", "d_sae"), atol=1e-4, rtol=1e-4)
        detail += f"; and the SAE at {site} ({real.d_sae} latents, k = {real.k})"
    passed("topk_encode", detail)


def check_fvu(fn: Any, model: Any = None) -> None:
    """``fn(x [batch, d], x_hat [batch, d]) -> scalar``: the fraction of variance unexplained,
    ``Σ ‖x - x_hat‖² / Σ ‖x - mean(x)‖²`` (the mean over the batch)."""
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(40, 5, generator=gen) * torch.tensor([3.0, 1.0, 0.5, 2.0, 1.0]) + 4.0
    x_hat = x + torch.randn(40, 5, generator=gen) * 0.7
    got = call(fn, x.clone(), x_hat.clone(), name="fvu")
    expected = fraction_of_variance_unexplained(x, x_hat)
    err = (x - x_hat).pow(2)
    mistakes = [
        (err.sum() / x.pow(2).sum(), "divide by the variance around the mean, Σ ‖x - mean‖², "
                                     "not by Σ ‖x‖² (these activations have a mean far from 0)"),
        (err.mean(), "that is the mean squared error; divide the summed squared error by the "
                     "summed squared deviation from the mean"),
        ((err.sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean(),
         "you averaged one FVU per dimension; the field's FVU divides the total error by the "
         "total variance (dimensions with more variance count for more)"),
        (err.sum() / (x - x.mean(-1, keepdim=True)).pow(2).sum(),
         "the mean is over the batch (dim 0), one mean vector for all rows, not each row's "
         "own mean"),
        (1 - expected, "that is the fraction of variance *explained*; return the unexplained "
                       "part"),
    ]
    compare(got, expected, "fvu", mistakes=mistakes)
    expect(float(call(fn, x.clone(), x.clone(), name="fvu")) < 1e-6,
           "fvu: a perfect reconstruction must give 0")
    mean = x.mean(0, keepdim=True).expand_as(x).clone()
    expect(abs(float(call(fn, x.clone(), mean, name="fvu")) - 1) < 1e-4,
           "fvu: predicting the mean of x for every row must give 1")
    passed("fvu", "planted activations: 0 for a perfect fit, 1 for the mean")


def _window(model: Any) -> torch.Tensor:
    return model.to_tokens(["The Congress met again this year, and the President spoke of the "
                            "treaty and the army.", "The whale rose beside the ship, and the "
                            "sailors watched it in silence for a long time."][:1])


def check_loss_recovered(fn: Any, model: Any) -> None:
    """``fn(model, tokens, sae) -> float``: loss recovered, ``(L_zero - L_sae) / (L_zero -
    L_clean)``, with the site ``sae.site`` replaced by ``sae(x)`` (L_sae) or by zeros (L_zero)
    at every position but BOS, and the hooks removed afterwards."""
    site = hook_name("resid_pre", model.cfg.n_layers // 2)
    sae = _sae_for(model, site)
    tokens = _window(model)
    expected = evaluate_sae(model, sae, tokens)

    def replaced(value, keep_bos=True):
        def hook(act, hook=None):
            out = act.clone()
            start = 1 if keep_bos else 0
            out[:, start:] = value(act[:, start:])
            return out
        return hook

    with torch.no_grad():
        all_sae = float(model.run_with_hooks(tokens, return_type="loss",
                                             fwd_hooks=[(site, replaced(sae, False))]))
        all_zero = float(model.run_with_hooks(tokens, return_type="loss",
                                              fwd_hooks=[(site, replaced(torch.zeros_like,
                                                                         False))]))
    clean, spliced, zero = expected.loss_clean, expected.loss_sae, expected.loss_zero
    with torch.no_grad():  # no gradients needed: losses only
        got = call(fn, model, tokens, sae, name="loss_recovered", model=model)
    mistakes = [
        ((all_zero - all_sae) / (all_zero - clean),
         "you replaced BOS (position 0) too; the SAE never saw BOS in training: keep "
         "position 0 and replace positions 1 onwards"),
        ((spliced - clean) / (zero - clean),
         "that is the fraction of the loss *lost* (1 - loss recovered): measure from the "
         "zero-ablated loss, (L_zero - L_sae) / (L_zero - L_clean)"),
        ((zero - clean) / (zero - spliced), "the fraction is upside down: (L_zero - L_sae) / "
                                            "(L_zero - L_clean)"),
        (spliced, "that is the loss with the SAE spliced in; turn it into the fraction "
                  "(L_zero - L_sae) / (L_zero - L_clean)"),
    ]
    compare(got, torch.tensor(expected.loss_recovered), "loss_recovered", mistakes=mistakes,
            atol=1e-4)
    passed("loss_recovered", f"{expected.loss_recovered:.3f} for the SAE at {site} on one "
                             f"text (clean {clean:.3f}, SAE {spliced:.3f}, zero {zero:.3f} nats)")


def check_logit_effect(fn: Any, model: Any) -> None:
    """``fn(sae, feature, W_U [d_model, vocab]) -> [vocab]``: a feature's direct effect on the
    logits, its decoder row ``sae.W_dec[feature]`` times the unembedding (the final
    LayerNorm's centring is folded into ``W_U`` in compatibility mode; its scale is left out)."""
    site = hook_name("resid_pre", model.cfg.n_layers // 2)
    sae = _sae_for(model, site, seed=1)
    with torch.no_grad():
        sae.b_dec.add_(0.3)  # a decoder bias that must stay out of a feature's effect
    w_u = model.W_U.detach()
    feature = 3
    with torch.no_grad():
        got = call(fn, sae, feature, w_u.clone(), name="logit_effect")
    dec, enc = sae.W_dec.detach(), sae.W_enc.detach()
    expected = dec[feature] @ w_u
    mistakes = [
        (enc[feature] @ w_u, "you used the encoder row W_enc[feature], which *reads* the "
                             "feature; the decoder row W_dec[feature] is what it writes"),
        ((dec[feature] + sae.b_dec.detach()) @ w_u,
         "leave out b_dec: it is added whatever the latents are, so it is no feature's effect"),
        ((dec[feature] @ w_u).softmax(-1), "the effect is on the logits: leave out the softmax"),
        (-expected, "the sign is flipped: the feature adds its decoder row"),
    ]
    compare(got, expected, "logit_effect", axes=("vocab",), mistakes=mistakes,
            atol=1e-4 * float(expected.abs().max()))
    top = model.tokenizer.decode([int(expected.argmax())])
    passed("logit_effect", f"latent {feature} of the SAE at {site} promotes {top!r} most")
