"""Checks for notebook 12 (attribution patching).

>>> import torch
>>> from interp_lib.exercises.attribution_patching import check_atp_per_position
>>> def atp_per_position(clean_act, corrupt_act, grad):
...     return ((clean_act - corrupt_act) * grad).sum(dim=(0, 2))
>>> check_atp_per_position(atp_per_position)
✔ atp_per_position: correct (planted activations, 2 sequences of 5 positions)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.attribution_patching import attribution_patching
from interp_lib.data import repeated_tokens
from interp_lib.exercises import ExerciseFailed, call, compare, expect, passed
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import hook_name
from interp_lib.metrics import logit_diff_metric

__all__ = ["check_atp_per_position", "check_metric_and_gradients",
           "check_recomputed_pattern_estimate", "check_top_k_overlap", "induction_pair"]


def induction_pair(model: Any, n: int = 12, k: int = 6, batch: int = 3, seed: int = 5):
    """Notebook 03's induction task: clean = BOS r_1..r_n r_1..r_k, corrupted = BOS s_1..s_n
    r_1..r_k, and the metric logit(r_{k+1}) - logit(s_{k+1}) at the last position."""
    r = repeated_tokens(model, n=n, batch=batch, seed=seed)[:, : n + 1]
    s = repeated_tokens(model, n=n, batch=batch, seed=seed + 1)[:, 1: n + 1]
    clean = torch.cat([r, r[:, 1: k + 1]], dim=1)
    corrupted = torch.cat([r[:, :1], s, r[:, 1: k + 1]], dim=1)
    return clean, corrupted, logit_diff_metric(r[:, k + 1], s[:, k])


def _gradients(model: Any, tokens: torch.Tensor, metric: Any, names: list[str], *,
               cut: bool = False):
    """The batch-mean metric, and the activations and its gradients at ``names``: the graph
    starts at a leaf made of the token embeddings; with ``cut``, at a fresh leaf at every
    hook instead (the mistake that drops the paths through later hooks)."""
    kept: dict[str, torch.Tensor] = {}

    def leaf(embed, hook=None):
        return embed.detach().requires_grad_(True)

    def keep(name: str):
        def hook(act, hook=None):  # hook.name can be the bridge's own name for an alias
            kept[name] = act.detach().requires_grad_(True) if cut else act
            return kept[name]
        return hook

    hooks = [("hook_embed", leaf)] + [(name, keep(name)) for name in names]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        value = metric(model(tokens), tokens).float().mean()
        grads = torch.autograd.grad(value, [kept[name] for name in names], allow_unused=True)
    grads = [torch.zeros_like(kept[n]) if g is None else g for n, g in zip(names, grads,
                                                                           strict=True)]
    return (float(value), {n: kept[n].detach() for n in names},
            dict(zip(names, grads, strict=True)))


def check_metric_and_gradients(fn: Any, model: Any) -> None:
    """``fn(model, tokens, metric, names) -> (value, activations, gradients)``: the batch-mean
    metric on ``tokens`` as a float, and dicts ``{name: activation}`` and ``{name: d value /
    d activation}`` for the hook names ``names``, from one forward and one backward."""
    _, corrupted, metric = induction_pair(model, n=6, k=3, batch=2)
    last = model.cfg.n_layers - 1
    names = [hook_name("resid_pre", 0), hook_name("z", last), hook_name("mlp_out", last)]
    got = call(fn, model, corrupted, metric, list(names), name="metric_and_gradients",
               model=model)
    expect(isinstance(got, tuple) and len(got) == 3,
           "metric_and_gradients: return a tuple (value, activations, gradients)")
    value, acts, grads = got
    for what, found in (("activations", acts), ("gradients", grads)):
        expect(isinstance(found, dict) and set(found) == set(names),
               f"metric_and_gradients: {what} must be a dict with one entry per name in "
               f"names ({names}), got {sorted(found) if isinstance(found, dict) else found!r}")
    expected_value, expected_acts, expected_grads = _gradients(model, corrupted, metric, names)
    _, _, cut_grads = _gradients(model, corrupted, metric, names, cut=True)
    compare(torch.as_tensor(float(value)), torch.tensor(expected_value),
            "metric_and_gradients: the value (the metric's mean over the batch)",
            mistakes=[(torch.tensor(expected_value * corrupted.shape[0]),
                       "you summed the metric over the batch; take its mean")])
    for name in names:
        axes = ("batch", "pos", "head", "d_head") if name.endswith("hook_z") else \
            ("batch", "pos", "d_model")
        compare(acts[name], expected_acts[name], f"metric_and_gradients: activations[{name!r}]",
                axes=axes)
        if grads[name] is None:
            raise ExerciseFailed(
                f"metric_and_gradients: gradients[{name!r}] is None: that activation is not on "
                "the path to the value; return the tensor your hook gave the model (a leaf you "
                "made with .detach().requires_grad_(True)), not a copy")
        expected = expected_grads[name]
        scale = float(expected.abs().max())
        compare(grads[name], expected, f"metric_and_gradients: gradients[{name!r}]", axes=axes,
                atol=1e-4 * max(scale, 1e-3), rtol=1e-3, mistakes=[
                    (torch.zeros_like(expected),
                     "the gradients are all zero: in a notebook gradients are off, so wrap the "
                     "forward and backward in `with torch.enable_grad():`"),
                    (cut_grads[name],
                     "your gradients miss the paths through the later hooks: a fresh leaf "
                     "(.detach().requires_grad_(True)) at every hook cuts the graph between "
                     "them. Make one leaf, at hook_embed, and record the activations themselves"),
                    (expected * corrupted.shape[0],
                     "the gradients are batch-size times too large: differentiate the metric's "
                     "mean over the batch, not its sum")])
    passed("metric_and_gradients", f"{len(names)} hooks, on the corrupted induction batch; "
           f"value {expected_value:.3f}")


def check_atp_per_position(fn: Any, model: Any = None) -> None:
    """``fn(clean_act, corrupt_act, grad) -> [pos]``: AtP's estimate for patching each
    position of a ``[batch, pos, d_model]`` activation, ``Σ_batch,d (clean - corrupt) ·
    grad``."""
    gen = torch.Generator().manual_seed(3)
    clean, corrupt, grad = (torch.randn(2, 5, 7, generator=gen) for _ in range(3))
    expected = ((clean - corrupt) * grad).sum(dim=(0, 2))
    mistakes = [
        (((corrupt - clean) * grad).sum(dim=(0, 2)),
         "the sign is flipped: the patch moves the activation from corrupted to clean, so the "
         "difference is clean - corrupted"),
        (((clean - corrupt) * grad).sum(-1).mean(0),
         "you averaged over the batch; sum it: the gradient of the batch-mean metric already "
         "carries the 1 / batch"),
        ((clean * grad).sum(dim=(0, 2)),
         "multiply the gradient by the *change* of the activation (clean - corrupted), not by "
         "the clean activation"),
    ]
    got = call(fn, clean, corrupt, grad, name="atp_per_position")
    compare(got, expected, "atp_per_position", axes=("pos",), mistakes=mistakes)
    detail = "planted activations, 2 sequences of 5 positions"
    if model is not None:
        clean_tokens, corrupted, metric = induction_pair(model, n=6, k=3, batch=2)
        layer = model.cfg.n_layers // 2
        name = hook_name("resid_pre", layer)
        _, acts, grads = _gradients(model, corrupted, metric, [name])
        with torch.no_grad():
            _, cache = model.run_with_cache(clean_tokens, names_filter=lambda n: n == name)
        got = call(fn, cache[name], acts[name], grads[name], name="atp_per_position")
        library = attribution_patching(model, clean_tokens, corrupted, metric,
                                       kinds="resid_pre", normalise=False)
        expected = library.grid("resid_pre").values[layer] - library.corrupted_value
        compare(got, expected, f"atp_per_position on layer {layer}'s residual stream (vs the "
                "library's attribution_patching)", axes=("pos",), atol=1e-4, rtol=1e-3)
        detail += f"; and layer {layer}'s residual stream of {model.cfg.model_name}, as the library"
    passed("atp_per_position", detail)


def check_top_k_overlap(fn: Any, model: Any = None) -> None:
    """``fn(estimate [rows, cols], exact [rows, cols], k) -> float``: the fraction of the
    ``k`` cells with the largest exact effects *by size* that are also among the ``k``
    largest estimates by size."""
    exact = torch.tensor([[0.9, -0.8, 0.1, 0.05], [-0.7, 0.02, 0.3, -0.01],
                          [0.0, 0.6, -0.5, 0.2]])
    estimate = torch.tensor([[0.5, -0.9, 0.0, 0.4], [0.1, 0.03, -0.6, 0.0],
                             [0.02, 0.7, -0.3, 0.35]])

    def overlap(a, b, k, by=torch.abs):
        top_a = set(torch.argsort(by(a).flatten(), descending=True)[:k].tolist())
        top_b = set(torch.argsort(by(b).flatten(), descending=True)[:k].tolist())
        return len(top_a & top_b) / k

    for k in (3, 4):
        expected = overlap(estimate, exact, k)
        got = call(fn, estimate.clone(), exact.clone(), k, name="top_k_overlap")
        mistakes = [(torch.tensor(overlap(estimate, exact, k, by=lambda x: x)),
                     "you ranked by signed value: a large negative effect is important too, "
                     "rank by size (.abs())"),
                    (torch.tensor(overlap(estimate, exact, k) * k),
                     "return the fraction of the k cells, not their count")]
        compare(torch.as_tensor(float(got)), torch.tensor(expected), f"top_k_overlap (k={k})",
                mistakes=mistakes)
    grid = LabelledGrid.layer_head(exact, "exact")
    from interp_lib.attribution_patching import agreement

    library = agreement(LabelledGrid.layer_head(estimate, "estimate"), grid, k=4).top_k_overlap
    got = float(call(fn, estimate.clone(), exact.clone(), 4, name="top_k_overlap"))
    expect(abs(got - library) < 1e-9, f"top_k_overlap: {got} but agreement() gives {library}")
    passed("top_k_overlap", "planted 3 x 4 grids, k = 3 and 4, and as agreement() counts")


def check_recomputed_pattern_estimate(fn: Any, model: Any) -> None:
    """``fn(patched_scores, scores, grad_pattern) -> [head]``: AtP*'s estimate for one layer,
    ``Σ (softmax(patched_scores) - softmax(scores)) · grad_pattern`` over batch, queries and
    keys, from the masked attention scores ``[batch, head, query, key]`` with and without the
    clean keys and the metric's gradient at the pattern."""
    clean, corrupted, metric = induction_pair(model, n=6, k=3, batch=2)
    layer = model.cfg.n_layers - 1
    k_name, s_name = hook_name("k", layer), hook_name("attn_scores", layer)
    p_name = hook_name("pattern", layer)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean, names_filter=lambda n: n == k_name)
        seen = {}

        def put_keys(act, hook=None):
            return clean_cache[k_name].to(act.dtype)

        def record(act, hook=None):
            seen["scores"] = act.detach()
            return act

        with model.hooks(fwd_hooks=[(k_name, put_keys), (s_name, record)]):
            model(corrupted)
        patched_scores = seen["scores"]
        _, cache = model.run_with_cache(corrupted, names_filter=lambda n: n == s_name)
        scores = cache[s_name]
    _, _, grads = _gradients(model, corrupted, metric, [p_name])
    grad = grads[p_name]
    got = call(fn, patched_scores.clone(), scores.clone(), grad.clone(),
               name="recomputed_pattern_estimate")
    expected = ((patched_scores.softmax(-1) - scores.softmax(-1)) * grad).sum(dim=(0, 2, 3))
    scale = max(float(expected.abs().max()), 1e-3)
    mistakes = [
        (((patched_scores.softmax(-2) - scores.softmax(-2)).nan_to_num() * grad
          ).sum(dim=(0, 2, 3)),
         "softmax over the keys (the last axis, dim=-1): each query's pattern sums to 1 over "
         "the keys it can see"),
        ((patched_scores.softmax(-1) * grad).sum(dim=(0, 2, 3)),
         "the estimate is of the *change*: subtract the corrupted run's pattern"),
        (((scores.softmax(-1) - patched_scores.softmax(-1)) * grad).sum(dim=(0, 2, 3)),
         "the sign is flipped: the patched (clean-key) pattern minus the corrupted one"),
    ]
    compare(got, expected, "recomputed_pattern_estimate", axes=("head",),
            atol=1e-4 * scale, rtol=1e-3, mistakes=mistakes)
    library = attribution_patching(model, clean, corrupted, metric, kinds="head_k",
                                   method="atp*", normalise=False)
    compare(got, library.grid("head_k").values[layer] - library.corrupted_value,
            f"recomputed_pattern_estimate on layer {layer} (vs the library's AtP* for keys)",
            axes=("head",), atol=1e-4 * scale, rtol=1e-3)
    passed("recomputed_pattern_estimate", f"layer {layer}'s {model.cfg.n_heads} heads with "
           "clean keys, as the library's AtP*")
