"""Checks for notebook 03 (ablation and activation patching).

>>> import torch
>>> from interp_lib.exercises.patching import check_normalised_recovery
>>> def normalised_recovery(patched, clean, corrupted):
...     return (patched - corrupted) / (clean - corrupted)
>>> check_normalised_recovery(normalised_recovery)
✔ normalised_recovery: correct (0 = corrupted, 1 = clean)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.data import repeated_tokens
from interp_lib.exercises import call, compare, expect, passed
from interp_lib.hooks import hook_name, only, scale_heads_hook
from interp_lib.metrics import loss_metric

__all__ = ["check_head_mask_importance", "check_logit_difference", "check_mean_ablation_values",
           "check_normalised_recovery", "check_patch_position_hook"]


def check_patch_position_hook(fn: Any, model: Any) -> None:
    """``fn(clean_activation [batch, pos, d_model], position) -> hook``: a hook that puts the
    clean run's activation back at one position and leaves every other position as it is."""
    n = 8
    clean = repeated_tokens(model, n=n, batch=2, seed=6)
    corrupted = torch.cat([clean[:, : n + 1], repeated_tokens(model, n=n, batch=2, seed=7)
                           [:, n + 1:]], 1)
    layer, position = model.cfg.n_layers // 2, n + 3
    name = hook_name("resid_pre", layer)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean, names_filter=only(name))
        act = cache[name]

        def reference(x, hook=None, p=position):
            x = x.clone()
            x[:, p] = act[:, p]
            return x

        def everywhere(x, hook=None):
            return act.clone()

        expected = model.run_with_hooks(corrupted, fwd_hooks=[(name, reference)])
        all_positions = model.run_with_hooks(corrupted, fwd_hooks=[(name, everywhere)])
        shifted = model.run_with_hooks(corrupted, fwd_hooks=[
            (name, lambda x, hook: reference(x, p=position + 1))])
        plain = model(corrupted)
        hook = call(fn, act, position, name="patch_position_hook")
        expect(callable(hook), "patch_position_hook must return a function hook(x, hook)")
        got = call(lambda: model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)]),
                   name="patch_position_hook", model=model)
    mistakes = [(all_positions, "you patched every position; patch only `position`"),
                (shifted, "off by one: you patched position + 1"),
                (plain, "nothing changed: does your hook return the patched activation (or "
                        "modify it in place)?")]
    compare(got, expected, "the corrupted run's logits with your hook",
            axes=("batch", "pos", "vocab"), atol=1e-4, mistakes=mistakes)
    passed("patch_position_hook", f"layer {layer}, position {position}")


def check_normalised_recovery(fn: Any, model: Any = None) -> None:
    """``fn(patched, clean, corrupted) -> same shape as patched``: 0 where the patch restored
    nothing (the corrupted value), 1 where it restored the clean value."""
    patched = torch.tensor([[0.5, 2.0, 1.0], [3.0, -1.0, 1.5]])
    clean, corrupted = torch.tensor(3.0), torch.tensor(-1.0)
    got = call(fn, patched.clone(), clean, corrupted, name="normalised_recovery")
    expected = (patched - corrupted) / (clean - corrupted)
    mistakes = [(1 - expected, "that is 1 - recovery: 0 must mean 'still corrupted'"),
                (patched / clean, "subtract the corrupted value first, then divide by the "
                                  "clean - corrupted gap"),
                ((patched - clean) / (corrupted - clean),
                 "that measures distance from clean; use (patched - corrupted) / "
                 "(clean - corrupted)")]
    compare(got, expected, "normalised_recovery", axes=("layer", "pos"), mistakes=mistakes)
    passed("normalised_recovery", "0 = corrupted, 1 = clean")


def check_mean_ablation_values(fn: Any, model: Any) -> None:
    """``fn(z [batch, pos, head, d_head]) -> [1, pos, head, d_head]``: each head's mean output
    over the reference batch, at each position (what mean ablation puts in its place)."""
    tokens = repeated_tokens(model, n=6, batch=5, seed=8)
    name = hook_name("z", 0)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=only(name))
    z = cache[name]
    got = call(fn, z.clone(), name="mean_ablation_values")
    expected = z.mean(0, keepdim=True)
    mistakes = [(z.mean((0, 1), keepdim=True).expand_as(expected),
                 "you also averaged over positions; mean ablation keeps one mean per position")]
    compare(got, expected, "mean_ablation_values", axes=("batch", "pos", "head", "d_head"),
            mistakes=mistakes)
    passed("mean_ablation_values", f"{tokens.shape[0]} reference sequences")


def _importance(model: Any, tokens: torch.Tensor, metric: Any) -> torch.Tensor:
    cfg = model.cfg
    mask = torch.ones(cfg.n_layers, cfg.n_heads, requires_grad=True)
    with torch.enable_grad():
        hooks = [(hook_name("z", la), scale_heads_hook(mask[la])) for la in range(cfg.n_layers)]
        with model.hooks(fwd_hooks=hooks):
            value = metric(model(tokens), tokens).mean()
        (grad,) = torch.autograd.grad(value, mask)
    return grad


def check_head_mask_importance(fn: Any, model: Any) -> None:
    """``fn(model, tokens, metric) -> [layer, head]``: ``|d metric / d mask|`` at mask = 1, for
    a mask multiplying every head's output (``hook_z``), ``metric(logits, tokens) -> [batch]``
    averaged over the batch; one backward pass."""
    n = 8
    tokens = repeated_tokens(model, n=n, batch=2, seed=9)
    metric = loss_metric(n + 1)
    grad = _importance(model, tokens, metric)
    got = call(fn, model, tokens, metric, name="head_mask_importance", model=model)
    expected = grad.abs()
    mistakes = [(grad, "keep the size, drop the sign: importance is |d metric / d mask|"),
                (expected / expected.norm(dim=1, keepdim=True),
                 "you normalised each layer; the exercise asks for the raw |gradient| (the "
                 "library's head_importance normalises per layer on request)")]
    compare(got, expected, "head_mask_importance", axes=("layer", "head"), atol=1e-4,
            rtol=1e-3, mistakes=mistakes)
    passed("head_mask_importance", "equal to an autograd reference")


def check_logit_difference(fn: Any, model: Any = None) -> None:
    """``fn(logits [batch, pos, vocab], right [batch], wrong [batch]) -> [batch]``: at the last
    position, the logit of each example's right answer minus that of its wrong answer."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 7, generator=gen)
    right, wrong = torch.tensor([1, 4, 6]), torch.tensor([2, 0, 6])
    got = call(fn, logits.clone(), right, wrong, name="logit_difference")
    rows = torch.arange(3)
    expected = logits[rows, -1, right] - logits[rows, -1, wrong]
    mistakes = [(logits[rows, 0, right] - logits[rows, 0, wrong],
                 "you read position 0; the answer is predicted at the last position"),
                (-expected, "the sign is flipped: right minus wrong")]
    compare(got, expected, "logit_difference", axes=("batch",), mistakes=mistakes)
    passed("logit_difference", "one value per example, at the last position")
