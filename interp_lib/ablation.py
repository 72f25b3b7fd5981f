"""Head ablation, head importance from a mask gradient, and pruning.

Three ways to ask "which heads does this behaviour need?" (Alethea Power,
"Looking for Grammar in All the Right Places", 2020; Michel, Levy & Neubig 2019):

- :func:`head_ablation`: replace one head's output (``hook_z``) at a time, with zeros, with its
  mean over a reference batch, or with its value on another example (resampling), and record the
  change of a metric. Ablating a head of layer ``l`` changes nothing below layer ``l``, so the
  clean run is recorded once and resumed from block ``l`` (:mod:`interp_lib.resume`): the
  copies of the batch, one per head, join a stacked run at their own layer, so each block runs
  once for the copies that need it and never for one that does not.
  :func:`~interp_lib.reference.head_ablation_loop` is the straightforward loop, kept for tests
  and benchmarks.
- :func:`head_importance`: a mask multiplies every head's output; one backward pass gives
  ``|d metric / d mask|`` for every head and every example (the mask has one entry per example
  and head, so the per-example gradients come out of one pass). Averaged over examples and, as in
  the paper, L2-normalised within each layer. transformers 5 removed ``head_mask``, so the mask is
  a hook.
- :func:`prune_heads`: remove 10% of the heads at a time, least important first, re-estimating
  the importance after each step; a random order is the control.

The metric is any ``metric(logits, tokens) -> [batch]`` from :mod:`interp_lib.metrics`; the
default is the next-token loss, so a positive ablation effect means the head helped.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.ablation import head_ablation
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> tokens = model.to_tokens(["The cat sat on the mat", "The dog sat on the rug"])
>>> grid = head_ablation(model, tokens)
>>> grid.shape, grid.names()[:2]
((2, 4), ['0.0', '0.1'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from interp_lib import validate
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import copy_heads_hook, hook_name, masked_heads, only, scale_heads_hook
from interp_lib.inputs import to_tokens
from interp_lib.metrics import Metric, check_metric, loss_metric, metric_name
from interp_lib.resume import RecordedRun, copies_at, record_run, resume_metric
from interp_lib.validate import check_model

__all__ = [
    "ABLATION_METHODS",
    "PruningCurve",
    "head_ablation",
    "head_importance",
    "prune_heads",
    "rank_correlation",
    "replacement_values",
]

ABLATION_METHODS = ("zero", "mean", "resample")


def _check_method(method: str) -> None:
    validate.choice(method, "method", ABLATION_METHODS)


@torch.no_grad()
def replacement_values(model: Any, tokens: torch.Tensor, method: str,
                       reference: torch.Tensor | None = None, seed: int = 0
                       ) -> list[torch.Tensor | None]:
    """Per layer, the ``[batch, pos, head, d_head]`` values that replace ablated heads'
    outputs for ``tokens`` (``None`` for zero ablation): each head's mean over ``reference``
    at each position (``"mean"``), or its output on another example (``"resample"``)."""
    _check_method(method)
    if method == "zero":
        return [None] * model.cfg.n_layers
    ref = tokens if reference is None else to_tokens(model, reference, name="reference")
    if ref.shape[1] != tokens.shape[1]:
        raise ValueError(
            f"the reference batch has {ref.shape[1]} positions but the tokens have "
            f"{tokens.shape[1]}; {method} ablation replaces each position with the reference's "
            "value at that position, so give a reference of the same length"
        )
    names = [hook_name("z", layer) for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(ref, names_filter=only(*names))
    zs = [cache[name] for name in names]
    batch = tokens.shape[0]
    if method == "mean":
        return [z.mean(0, keepdim=True).expand(batch, *z.shape[1:]) for z in zs]
    gen = torch.Generator().manual_seed(seed)
    if reference is None:
        if batch < 2:
            raise ValueError("resample ablation needs at least 2 examples (or a reference batch)")
        # every example takes another example's activation, never its own
        source = (torch.arange(batch) + torch.randint(1, batch, (batch,), generator=gen)) % batch
    else:
        source = torch.randint(ref.shape[0], (batch,), generator=gen)
    return [z[source.to(z.device)] for z in zs]


@torch.no_grad()
def head_ablation(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"] | str | list[str],
    metric: Metric | None = None,
    *,
    method: str = "zero",
    reference: Int[torch.Tensor, "ref pos"] | None = None,
    seed: int = 0,
    max_rows: int = 4,
) -> LabelledGrid:
    """Change of ``metric`` (mean over the batch) when each head alone is ablated:
    ``[layer, head]``, ablated minus clean; ``grid.baseline`` is the clean value.

    Args:
        tokens: the batch to evaluate (texts of equal token length or a token tensor).
        metric: ``metric(logits, tokens) -> [batch]``; default next-token loss, so positive
            values mean the head helped.
        method: ``"zero"``; ``"mean"`` (the head's mean output over ``reference`` at each
            position); ``"resample"`` (its output on another example of ``reference``, drawn
            with ``seed``; without a reference, another example of the batch).
        reference: the batch the mean or resampled values come from (default: ``tokens``).
        max_rows: rows per resumed run (copies x batch; at least one copy). Every row holds
            a block's activations at every position, so the peak memory grows with it: at 4
            it stays within 4x that of the one-head-at-a-time loop (about 150 vs 47 MB for one
            sequence of 101 tokens at GPT-2 small's shape), and more rows were not faster on
            a CPU. Raise it on a GPU.
    """
    check_model(model)
    metric = check_metric(metric, loss_metric())
    _check_method(method)
    validate.nonnegative_int(seed, "seed")
    max_rows = validate.positive_int(max_rows, "max_rows")
    tokens = to_tokens(model, tokens, name="tokens")
    cfg = model.cfg
    batch = tokens.shape[0]
    replacements = replacement_values(model, tokens, method, reference, seed)
    run = record_run(model, tokens)
    clean = metric(run.logits, tokens).mean().item()
    all_jobs = [(layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]
    per_forward = max(1, max_rows // batch)
    effects = torch.empty(len(all_jobs))
    for start in range(0, len(all_jobs), per_forward):
        chunk = all_jobs[start: start + per_forward]
        if run.resumable:
            values = _ablate_resumed(model, run, metric, chunk, replacements)
        else:
            values = _ablate_whole(model, tokens, metric, chunk, replacements)
        effects[start: start + len(chunk)] = values.cpu() - clean
    return LabelledGrid.layer_head(effects.view(cfg.n_layers, cfg.n_heads),
                                   f"change in {metric_name(metric)} ({method} ablation)", clean)


def _ablate_resumed(model: Any, run: RecordedRun, metric: Metric, chunk: list[tuple[int, int]],
                    replacements: list[torch.Tensor | None]) -> torch.Tensor:
    """Mean metric per job of ``chunk`` (sorted by layer): the copy ablating a head of layer
    ``l`` joins the resumed run at block ``l``, from the clean residual stream there."""
    starts = [layer for layer, _ in chunk]
    hooks = []
    for layer in sorted(set(starts)):
        jobs = torch.tensor([i for i, la in enumerate(starts) if la == layer])
        heads = torch.tensor([h for la, h in chunk if la == layer])
        hooks.append((hook_name("z", layer), copy_heads_hook(
            jobs, heads, copies_at(starts, layer), replacements[layer])))
    return resume_metric(model, run, metric, starts, fwd_hooks=hooks).mean(1)


def _ablate_whole(model: Any, tokens: torch.Tensor, metric: Metric, chunk: list[tuple[int, int]],
                  replacements: list[torch.Tensor | None]) -> torch.Tensor:
    """The same with whole forwards (for architectures a run cannot be resumed on): the batch
    stacked once per job, each copy ablating its own head."""
    copies, batch = len(chunk), tokens.shape[0]
    hooks = []
    for layer in sorted({la for la, _ in chunk}):
        jobs = torch.tensor([i for i, (la, _) in enumerate(chunk) if la == layer])
        heads = torch.tensor([h for la, h in chunk if la == layer])
        hooks.append((hook_name("z", layer),
                      copy_heads_hook(jobs, heads, copies, replacements[layer])))
    stacked = tokens.repeat(copies, 1)
    with model.hooks(fwd_hooks=hooks):
        return metric(model(stacked), stacked).float().view(copies, batch).mean(1)


def head_importance(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"] | str | list[str],
    metric: Metric | None = None,
    *,
    normalise: bool = True,
    base_mask: Float[torch.Tensor, "layer head"] | None = None,
    batch_size: int = 16,
) -> LabelledGrid:
    """Importance of every head: ``|d metric / d mask|`` per example, averaged over examples
    (Michel et al. 2019), from one backward pass per chunk of ``batch_size`` examples.

    ``normalise`` divides each layer's importances by their L2 norm, as in the paper (so values
    compare within a layer and rankings across layers are balanced). ``base_mask`` (0/1,
    ``[layer, head]``) removes heads first; removed heads get importance 0.
    """
    check_model(model)
    metric = check_metric(metric, loss_metric())
    validate.flag(normalise, "normalise")
    batch_size = validate.positive_int(batch_size, "batch_size")
    tokens = to_tokens(model, tokens, name="tokens")
    cfg = model.cfg
    base = (torch.ones(cfg.n_layers, cfg.n_heads) if base_mask is None
            else validate.finite_tensor(base_mask, "base_mask", shape=(cfg.n_layers, cfg.n_heads),
                                        dims="[n_layers, n_heads]").float()).to(cfg.device)
    total = torch.zeros(cfg.n_layers, cfg.n_heads)
    for chunk in tokens.split(batch_size):
        masks = [torch.ones(len(chunk), cfg.n_heads, device=cfg.device, requires_grad=True)
                 for _ in range(cfg.n_layers)]
        with torch.enable_grad():
            hooks = [(hook_name("z", la), scale_heads_hook(base[la][None, :] * masks[la]))
                     for la in range(cfg.n_layers)]
        with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            value = metric(model(chunk), chunk).sum()
            grads = torch.autograd.grad(value, masks)
        total += torch.stack([g.abs().sum(0) for g in grads]).detach().float().cpu()
    importance = total / tokens.shape[0]
    if normalise:
        importance = importance / importance.norm(dim=1, keepdim=True).clamp_min(1e-12)
    what = "|d metric / d head mask|" + (" (L2-normalised per layer)" if normalise else "")
    return LabelledGrid.layer_head(importance, what)


def rank_correlation(a: torch.Tensor | LabelledGrid, b: torch.Tensor | LabelledGrid) -> float:
    """Spearman rank correlation of two equally shaped sets of scores (ties get their mean
    rank)."""
    def ranks(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten().double()
        order = torch.argsort(x, stable=True)
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=torch.float64)
        for value in x.unique():  # average the ranks of ties
            tied = x == value
            if tied.sum() > 1:
                r[tied] = r[tied].mean()
        return r

    a = validate.finite_tensor(a.values if isinstance(a, LabelledGrid) else a, "a")
    b = validate.finite_tensor(b.values if isinstance(b, LabelledGrid) else b, "b")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() < 2:
        raise ValueError("need at least two scores to correlate")
    ra, rb = ranks(a.detach().cpu()), ranks(b.detach().cpu())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


@dataclass
class PruningCurve:
    """Metric after removing a growing fraction of heads.

    ``fractions[i]`` of the heads are removed in ``masks[i]`` (``[layer, head]``, 1 = kept) and
    the metric is ``values[i]`` (mean over the batch); ``order`` is "importance" or "random".
    """

    fractions: list[float]
    values: list[float]
    masks: list[torch.Tensor]
    order: str
    what: str

    def surviving(self, fraction: float) -> LabelledGrid:
        """The kept heads (1) after removing the step closest to ``fraction``."""
        fraction = validate.probability(fraction, "fraction")
        i = min(range(len(self.fractions)), key=lambda k: abs(self.fractions[k] - fraction))
        mask = self.masks[i]
        return LabelledGrid.layer_head(
            mask.float(), f"kept (1) after removing {self.fractions[i]:.0%} of heads")

    def map_figure(self, fraction: float):
        """Alethea Power's black-and-white map of a pruned model: kept heads white, removed heads
        black."""
        grid = self.surviving(fraction)
        fig = grid.heatmap(zmid=None, colorscale="Greys_r")
        fig.update_traces(zmin=0, zmax=1, showscale=False)
        return fig

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"fraction_removed": self.fractions, self.what: self.values,
                             "order": self.order})


def _evaluate(model: Any, tokens: torch.Tensor, metric: Metric, mask: torch.Tensor,
              batch_size: int) -> float:
    with torch.no_grad(), masked_heads(model, mask):
        return float(torch.cat([metric(model(c), c).float() for c in tokens.split(batch_size)])
                     .mean())


def prune_heads(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"] | str | list[str],
    metric: Metric | None = None,
    *,
    step: float = 0.1,
    order: str = "importance",
    seed: int = 0,
    batch_size: int = 16,
) -> PruningCurve:
    """Remove heads ``step`` (a fraction of all heads) at a time and record the metric.

    ``order="importance"`` removes the least important remaining heads by
    :func:`head_importance` (normalised per layer), re-estimated after every step with the
    removed heads masked; ``order="random"`` removes them in a seeded random order (the
    control). Runs until every head is gone.
    """
    check_model(model)
    metric = check_metric(metric, loss_metric())
    validate.choice(order, "order", ("importance", "random"))
    step = validate.finite_float(step, "step", positive=True)
    if step > 1:
        raise ValueError(f"step must be a fraction in (0, 1], got {step}")
    validate.nonnegative_int(seed, "seed")
    batch_size = validate.positive_int(batch_size, "batch_size")
    tokens = to_tokens(model, tokens, name="tokens")
    cfg = model.cfg
    total = cfg.n_layers * cfg.n_heads
    mask = torch.ones(cfg.n_layers, cfg.n_heads)
    random_order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    fractions, values, masks = [0.0], [_evaluate(model, tokens, metric, mask, batch_size)], [mask]
    removed = 0
    k = 0
    while removed < total:
        k += 1
        target = min(total, max(removed + 1, round(k * step * total)))
        flat = mask.flatten().clone()
        if order == "random":
            flat[random_order[removed:target]] = 0
        else:
            scores = head_importance(model, tokens, metric, base_mask=mask,
                                     batch_size=batch_size).values.flatten()
            scores[flat == 0] = float("inf")
            flat[torch.argsort(scores, stable=True)[: target - removed]] = 0
        mask = flat.view(cfg.n_layers, cfg.n_heads)
        removed = target
        fractions.append(removed / total)
        values.append(_evaluate(model, tokens, metric, mask, batch_size))
        masks.append(mask)
    return PruningCurve(fractions, values, masks, order, metric_name(metric))
