"""Attribution patching: every cell of an activation-patching grid from one backward pass.

Activation patching puts one clean activation into the corrupted run and reruns the model,
once per cell. **Attribution patching** (AtP; Nanda 2023, "Attribution Patching: Activation
Patching At Industrial Scale"; Syed, Rager & Conmy 2023, "Attribution Patching Outperforms
Automated Circuit Discovery") replaces each rerun by the first-order Taylor estimate of its
effect, at the corrupted run:

    metric(patched) - metric(corrupted)  ≈  (a_clean - a_corrupted) · ∂metric/∂a |corrupted

So one clean forward (for ``a_clean``), one corrupted forward and one backward (for
``a_corrupted`` and the gradient) give every cell of every kind at once.
:func:`attribution_patching` returns the same labelled grids as
:func:`interp_lib.patching.activation_patching` (rows, columns, titles; normalised the same
way: 0 = corrupted, 1 = clean), so the two can be compared cell by cell
(:func:`agreement`).

Kinds (:data:`ATP_KINDS`): the four of exact patching (``resid_pre``, ``attn_out``,
``mlp_out`` per (layer, position); ``head_out``, each head's output over all positions, per
(layer, head)), and each head's queries, keys and values over all positions (``head_q``,
``head_k``, ``head_v``), which :func:`head_input_patching` patches exactly.

**Where the line bends.** The estimate is exact when the metric is linear in the patched
activation along the way from corrupted to clean, and poor when it is not: a large patch
(the token embedding at layer 0), an early MLP whose output the rest of the model reads
non-linearly, and above all a **saturated softmax**: when a head attends almost entirely to
one key, the gradient of its pattern with respect to the other keys' scores is nearly zero,
so AtP says patching the keys that would move its attention does nothing.

**AtP\\*** (Kramár, Lieberum, Shah & Nanda 2024, "AtP*: An efficient and scalable method for
localizing LLM behaviour to components", arXiv:2403.00745) fixes that for queries and keys:
it recomputes the head's attention pattern exactly with the clean queries (or keys) and
takes the linear estimate only from the pattern onwards, ``(A_patched - A) · ∂metric/∂A``.
``method="atp*"`` does this for ``head_q`` and ``head_k`` with two extra forward passes of
the corrupted input (one with every head's queries clean, one with every head's keys clean;
each pattern is recorded and the corrupted one passed on, so the rest of the run stays the
corrupted run). The other kinds do not pass through a softmax of their own before the patched
point, so their estimate is the same under both methods. AtP*'s second fix, **GradDrop**,
targets cancellation between a component's direct and indirect effects; it would need one
more backward pass per layer, each with the gradient through that layer's residual
contributions set to zero, and combines the per-layer estimates' absolute values. It is not
implemented here.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.metrics import logit_diff_metric
>>> from interp_lib.attribution_patching import attribution_patching
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> clean = model.to_tokens("Mary gave the book to John")
>>> corrupted = model.to_tokens("John gave the book to Mary")
>>> atp = attribution_patching(model, clean, corrupted, logit_diff_metric(11, 17))
>>> atp.grid("resid_pre").shape == (2, clean.shape[1]), atp.grid("head_out").shape
(True, (2, 4))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int

from interp_lib import validate
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import copy_heads_hook, hook_name, only
from interp_lib.inputs import to_tokens
from interp_lib.metrics import Metric, check_metric, metric_name
from interp_lib.resume import copies_at, record_run, resume_metric
from interp_lib.validate import check_model

__all__ = [
    "ATP_KINDS",
    "HEAD_INPUTS",
    "METHODS",
    "Agreement",
    "AttributionPatching",
    "agreement",
    "attribution_patching",
    "head_input_patching",
    "side_by_side",
]

#: What :func:`attribution_patching` estimates, and the hook each kind patches: per (layer,
#: position) the residual stream, attention and MLP outputs; per (layer, head) each head's
#: output, queries, keys and values over all positions.
ATP_KINDS = {
    "resid_pre": "resid_pre",
    "attn_out": "attn_out",
    "mlp_out": "mlp_out",
    "head_out": "z",
    "head_q": "q",
    "head_k": "k",
    "head_v": "v",
}
#: ``"atp"`` (the plain estimate) or ``"atp*"`` (queries and keys through a recomputed softmax).
METHODS = ("atp", "atp*")
#: The head inputs :func:`head_input_patching` patches exactly.
HEAD_INPUTS = ("q", "k", "v")
_PER_HEAD = ("head_out", "head_q", "head_k", "head_v")


def _check_pair(model: Any, clean: Any, corrupted: Any) -> tuple[torch.Tensor, torch.Tensor]:
    clean_tokens = to_tokens(model, clean, name="clean")
    corrupt_tokens = to_tokens(model, corrupted, name="corrupted")
    if clean_tokens.shape != corrupt_tokens.shape:
        raise ValueError(
            f"clean {tuple(clean_tokens.shape)} and corrupted {tuple(corrupt_tokens.shape)} token "
            "batches must have the same shape; patching copies activations position by position"
        )
    return clean_tokens, corrupt_tokens


def _check_kinds(kinds: Any) -> list[str]:
    if kinds is None:
        return list(ATP_KINDS)
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, Sequence) or not kinds:
        raise TypeError(f"kinds must be a kind, a list of kinds or None, got {kinds!r}")
    out = []
    for kind in kinds:
        validate.choice(kind, "kinds", ATP_KINDS)
        if kind not in out:
            out.append(kind)
    return out


@dataclass
class AttributionPatching:
    """Attribution-patching estimates, one :class:`~interp_lib.grid.LabelledGrid` per kind.

    ``grids[kind]`` has the rows, columns and titles of
    :func:`interp_lib.patching.activation_patching`'s grid of that kind; with ``normalised``
    its values are the estimated recovered fraction ``(patched - corrupted) / (clean -
    corrupted)``, else the estimated patched metric. ``clean_value`` and ``corrupted_value``
    are the metric (mean over the batch) on the two inputs.
    """

    grids: dict[str, LabelledGrid]
    method: str
    clean_value: float
    corrupted_value: float
    normalised: bool
    signature: tuple[int, ...]

    def grid(self, kind: str) -> LabelledGrid:
        """The grid of ``kind``."""
        validate.choice(kind, "kind", list(self.grids))
        return self.grids[kind]

    def to_frame(self):
        """Long format: one row per cell, with columns ``kind``, ``layer``, ``column`` (the
        position or head label) and ``estimate``."""
        import pandas as pd

        frames = []
        for kind, grid in self.grids.items():
            frame = grid.to_frame().rename(columns={grid.col_title: "column",
                                                    grid.what: "estimate"})
            frame.insert(0, "kind", kind)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def figure(self, kind: str, exact: LabelledGrid | None = None, title: str | None = None):
        """The estimate of ``kind`` as a heatmap; with ``exact`` (the same kind's grid from
        activation patching), the two side by side on one colour scale."""
        grid = self.grid(kind)
        if exact is None:
            return grid.heatmap(title or f"{self.method.upper()} estimate: {grid.what}")
        _check_same_labels(grid, exact)
        return side_by_side([exact, grid], ["exact (activation patching)",
                                            f"{self.method.upper()} estimate"],
                            title or f"{kind}: exact vs attributed")


def side_by_side(grids: Sequence[LabelledGrid], titles: Sequence[str], title: str = ""):
    """Heatmaps of equally labelled grids next to each other, on one diverging colour scale
    around 0 (drawn with :func:`interp_lib.plotting.heatmap`)."""
    from plotly.subplots import make_subplots

    from interp_lib.plotting import heatmap

    if len(grids) != len(titles) or not grids:
        raise ValueError("give one title per grid (and at least one grid)")
    for other in grids[1:]:
        _check_same_labels(grids[0], other)
    top = max(float(g.values.abs().max()) for g in grids) or 1.0
    fig = make_subplots(rows=1, cols=len(grids), subplot_titles=list(titles),
                        horizontal_spacing=0.06)
    first = grids[0]
    for i, grid in enumerate(grids, start=1):
        part = heatmap(grid.values, x_labels=grid.col_labels, y_labels=grid.row_labels,
                       x_title=grid.col_title, y_title=grid.row_title,
                       colorbar_title=grid.what if i == 1 else None, zmid=0.0)
        trace = part.data[0]
        trace.update(zmin=-top, zmax=top, showscale=i == 1, coloraxis=None)
        fig.add_trace(trace, row=1, col=i)
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(grid.col_labels))),
                         ticktext=grid.col_labels, title_text=grid.col_title, row=1, col=i)
        fig.update_yaxes(tickmode="array", tickvals=list(range(len(grid.row_labels))),
                         ticktext=grid.row_labels, autorange="reversed", row=1, col=i,
                         title_text=first.row_title if i == 1 else None)
    fig.update_layout(title=title, height=max(300, 40 * len(first.row_labels) + 160))
    return fig


# ---------------------------------------------------------------- the estimate


def _sum_per_cell(delta: torch.Tensor, grad: torch.Tensor, per_head: bool) -> torch.Tensor:
    """``Σ delta · grad`` over batch and features: ``[pos]`` for ``[batch, pos, d]``, ``[head]``
    for ``[batch, pos, head, d_head]`` (every position patched at once)."""
    product = (delta.float() * grad.float())
    if per_head:
        return product.sum(dim=(0, 1, 3))
    return product.sum(dim=(0, 2))


def attribution_patching(
    model: Any,
    clean: Int[torch.Tensor, "batch pos"] | str | list[str],
    corrupted: Int[torch.Tensor, "batch pos"] | str | list[str],
    metric: Metric,
    *,
    kinds: str | Sequence[str] | None = None,
    method: str = "atp",
    normalise: bool = True,
) -> AttributionPatching:
    """Estimate patching each clean activation into the corrupted run, for every cell of
    every kind in ``kinds`` (default all of :data:`ATP_KINDS`), from one clean forward, one
    corrupted forward and one backward (plus two corrupted forwards for ``method="atp*"``
    when ``head_q`` or ``head_k`` is asked for).

    ``metric(logits, tokens) -> [batch]`` is averaged over the batch, as in
    :func:`interp_lib.patching.activation_patching`; ``normalise`` divides the estimated
    change by ``clean - corrupted``.
    """
    check_model(model)
    metric = check_metric(metric)
    validate.choice(method, "method", METHODS)
    validate.flag(normalise, "normalise")
    kinds = _check_kinds(kinds)
    clean_tokens, corrupt_tokens = _check_pair(model, clean, corrupted)
    cfg = model.cfg
    sites = sorted({ATP_KINDS[kind] for kind in kinds})
    fix = [kind for kind in ("head_q", "head_k") if kind in kinds] if method == "atp*" else []
    grad_sites = sorted(set(sites) | ({"pattern"} if fix else set()))
    names = {site: [hook_name(site, la) for la in range(cfg.n_layers)] for site in grad_sites}
    model.eval()

    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(
            clean_tokens, names_filter=only(*(n for s in sites for n in names[s])))
        clean_value = metric(clean_logits, clean_tokens).float().mean().item()
        del clean_logits
    corrupt_value, acts, grads = _corrupted_gradients(
        model, corrupt_tokens, metric, [n for s in grad_sites for n in names[s]])
    span = clean_value - corrupt_value
    if normalise and abs(span) < 1e-8:
        raise ValueError(
            "the metric is the same on the clean and the corrupted input, so the normalised "
            "effect is undefined; choose prompts that differ in the metric, or normalise=False"
        )
    str_tokens = model.to_str_tokens(clean_tokens[0])
    grids = {}
    for kind in kinds:
        site = ATP_KINDS[kind]
        per_head = kind in _PER_HEAD
        if kind in fix:
            estimate = _qk_fixed(model, corrupt_tokens, clean_cache, acts, grads, site)
        else:
            estimate = torch.stack([
                _sum_per_cell(clean_cache[name].float() - acts[name], grads[name], per_head)
                for name in names[site]])
        values = estimate.cpu() / span if normalise else corrupt_value + estimate.cpu()
        what = (f"{kind} attribution patching ({method}): "
                + ("recovered fraction of " if normalise else "") + metric_name(metric))
        if per_head:
            grids[kind] = LabelledGrid.layer_head(values, what, corrupt_value, clean_value)
        else:
            grids[kind] = LabelledGrid.layer_position(values, str_tokens, what, corrupt_value,
                                                      clean_value)
    return AttributionPatching(grids, method, clean_value, corrupt_value, normalise,
                               validate.model_signature(model))


def _corrupted_gradients(model: Any, tokens: torch.Tensor, metric: Metric, names: list[str]
                         ) -> tuple[float, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The corrupted run's metric (mean over the batch), and its activations and the
    metric's gradient at the hooks ``names``; no weight gradients are computed."""
    acts: dict[str, torch.Tensor] = {}

    def leaf(embed, hook=None):  # gradients flow from here, whatever the weights require
        return embed.detach().requires_grad_(True)

    def keep(name: str) -> Callable:
        def hook(act, hook=None):
            acts[name] = act
            return act  # returned, so that what the model computes with is this tensor
        return hook

    hooks = [("hook_embed", leaf)] + [(name, keep(name)) for name in names]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        value = metric(model(tokens), tokens).float().mean()
        # an activation a hook replaced by a constant has no gradient: its estimate is 0
        live = [name for name in names if acts[name].requires_grad]
        found = torch.autograd.grad(value, [acts[name] for name in live], allow_unused=True)
    acts = {name: acts[name].detach().float() for name in names}
    grads = {name: torch.zeros_like(acts[name]) for name in names}
    grads.update({name: g.detach().float() for name, g in zip(live, found, strict=True)
                  if g is not None})
    return float(value.detach()), acts, grads


@torch.no_grad()
def _qk_fixed(model: Any, tokens: torch.Tensor, clean_cache: Any, acts: dict, grads: dict,
              site: str) -> torch.Tensor:
    """AtP* for every head's queries (``site="q"``) or keys (``"k"``): the corrupted run with
    all heads' ``site`` clean, each layer's pattern recorded and the corrupted pattern passed
    on; the estimate ``Σ (A_patched - A) · ∂metric/∂A`` per head, ``[layer, head]``."""
    n_layers = model.cfg.n_layers
    patched: dict[int, torch.Tensor] = {}

    def put_clean(name: str) -> Callable:
        def hook(act, hook=None):
            return clean_cache[name].to(act.dtype)
        return hook

    def record(layer: int) -> Callable:
        def hook(pattern, hook=None):
            patched[layer] = pattern.detach().float()
            return acts[hook_name("pattern", layer)].to(pattern.dtype)
        return hook


    hooks = []
    for layer in range(n_layers):
        hooks.append((hook_name(site, layer), put_clean(hook_name(site, layer))))
        hooks.append((hook_name("pattern", layer), record(layer)))
    with model.hooks(fwd_hooks=hooks):
        model(tokens)
    rows = []
    for layer in range(n_layers):
        name = hook_name("pattern", layer)
        rows.append(((patched[layer] - acts[name]) * grads[name]).sum(dim=(0, 2, 3)))
    return torch.stack(rows)


# ---------------------------------------------------------------- exact, for queries, keys, values


@torch.no_grad()
def head_input_patching(
    model: Any,
    clean: Int[torch.Tensor, "batch pos"] | str | list[str],
    corrupted: Int[torch.Tensor, "batch pos"] | str | list[str],
    metric: Metric,
    *,
    site: str = "k",
    normalise: bool = True,
    max_rows: int = 32,
) -> LabelledGrid:
    """Exact patching of each head's queries, keys or values (``site`` in
    :data:`HEAD_INPUTS`) over all positions, clean into corrupted: ``[layer, head]``, labelled
    and normalised like :func:`interp_lib.patching.activation_patching` (what
    TransformerLens's ``get_act_patch_attn_head_{q,k,v}_all_pos`` compute, one forward per
    head). Patching a head of layer ``l`` leaves everything below ``l`` as it was, so the
    corrupted run is recorded once and resumed from block ``l`` (:mod:`interp_lib.resume`),
    one copy per head, at most ``max_rows`` rows (copies x batch) at a time.
    """
    check_model(model)
    metric = check_metric(metric)
    validate.choice(site, "site", HEAD_INPUTS)
    validate.flag(normalise, "normalise")
    max_rows = validate.positive_int(max_rows, "max_rows")
    clean_tokens, corrupt_tokens = _check_pair(model, clean, corrupted)
    cfg = model.cfg
    model.eval()
    names = [hook_name(site, la) for la in range(cfg.n_layers)]
    clean_logits, clean_cache = model.run_with_cache(clean_tokens, names_filter=only(*names))
    clean_value = metric(clean_logits, clean_tokens).float().mean().item()
    del clean_logits
    run = record_run(model, corrupt_tokens)
    corrupt_value = metric(run.logits, corrupt_tokens).float().mean().item()
    if normalise and abs(clean_value - corrupt_value) < 1e-8:
        raise ValueError(
            "the metric is the same on the clean and the corrupted input, so the normalised "
            "effect is undefined; choose prompts that differ in the metric, or normalise=False"
        )
    batch = corrupt_tokens.shape[0]
    jobs = [(la, h) for la in range(cfg.n_layers) for h in range(cfg.n_heads)]
    per_run = max(1, max_rows // batch)
    values = torch.empty(len(jobs))
    for first in range(0, len(jobs), per_run):
        chunk = jobs[first: first + per_run]
        starts = [la for la, _ in chunk]
        active = copies_at(starts, cfg.n_layers - 1) if run.resumable else len(chunk)
        hooks = []
        for layer in sorted(set(starts)):
            copies = [i for i, la in enumerate(starts) if la == layer]
            heads = [h for la, h in chunk if la == layer]
            rows_here = copies_at(starts, layer) if run.resumable else active
            hooks.append((names[layer], copy_heads_hook(copies, heads, rows_here,
                                                        clean_cache[names[layer]])))
        if run.resumable:
            patched = resume_metric(model, run, metric, starts, fwd_hooks=hooks).mean(1)
        else:
            stacked = corrupt_tokens.repeat(len(chunk), 1)
            with model.hooks(fwd_hooks=hooks):
                patched = metric(model(stacked), stacked).float().view(len(chunk), batch).mean(1)
        values[first: first + len(chunk)] = patched.cpu()
    values = values.view(cfg.n_layers, cfg.n_heads)
    if normalise:
        values = (values - corrupt_value) / (clean_value - corrupt_value)
    what = (f"head {site} patching: " + ("recovered fraction of " if normalise else "")
            + metric_name(metric))
    return LabelledGrid.layer_head(values, what, corrupt_value, clean_value)


# ---------------------------------------------------------------- agreement with exact patching


def _check_same_labels(a: LabelledGrid, b: LabelledGrid) -> None:
    if not isinstance(a, LabelledGrid) or not isinstance(b, LabelledGrid):
        raise TypeError(f"expected two LabelledGrids, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    if (a.shape != b.shape or a.row_labels != b.row_labels or a.col_labels != b.col_labels
            or a.row_title != b.row_title or a.col_title != b.col_title):
        raise ValueError(
            f"the grids are not of the same cells ({a.row_title} x {a.col_title} {a.shape} vs "
            f"{b.row_title} x {b.col_title} {b.shape}, or other labels): compare the same kind "
            "on the same clean input")


@dataclass
class Agreement:
    """How well an estimated grid agrees with the exact one: Pearson ``correlation`` of the
    cells, ``rank_correlation`` (Spearman), ``top_k_overlap`` (the fraction of the ``k``
    largest exact effects, by size, that are also among the ``k`` largest estimates), and the
    cell ``worst`` where they differ most (``(row, column, exact, estimate)``)."""

    correlation: float
    rank_correlation: float
    top_k_overlap: float
    k: int
    worst: tuple[str, str, float, float]

    def summary(self) -> str:
        row, col, exact, est = self.worst
        return (f"correlation {self.correlation:.3f}, rank correlation "
                f"{self.rank_correlation:.3f}, top-{self.k} overlap {self.top_k_overlap:.0%}; "
                f"largest miss at {row}, {col}: exact {exact:+.3f}, estimate {est:+.3f}")


def _ranks(x: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=x.dtype)
    for value in x.unique():
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def agreement(estimate: LabelledGrid, exact: LabelledGrid, k: int = 5) -> Agreement:
    """Compare an estimated grid with the exact grid of the same cells (same labels)."""
    _check_same_labels(estimate, exact)
    validate.int_in_range(k, "k", 1, exact.values.numel())
    a = validate.finite_tensor(estimate.values, "estimate").flatten().double()
    b = validate.finite_tensor(exact.values, "exact").flatten().double()
    if a.numel() < 2:
        raise ValueError("need at least two cells to compare")
    top_a = set(torch.argsort(a.abs(), descending=True, stable=True)[:k].tolist())
    top_b = set(torch.argsort(b.abs(), descending=True, stable=True)[:k].tolist())
    miss = int((a - b).abs().argmax())
    n_cols = exact.values.shape[1]
    worst = (exact.row_labels[miss // n_cols], exact.col_labels[miss % n_cols], float(b[miss]),
             float(a[miss]))
    return Agreement(_pearson(a, b), _pearson(_ranks(a), _ranks(b)), len(top_a & top_b) / k, k,
                     worst)
