"""Activation patching: put one activation from one run into another and measure what changes.

- :func:`mlp_position_patching` (after the repeated-tokens blog post "How to Interpret
  GPT2-Small", 2024): on repeated tokens (BOS + n + the same n), replace
  the MLP output of layer ``L`` at a second-half position with the one the same run computed at
  the matching first-half position, and record the change of the second-half loss. If the MLPs
  mattered for copying, this swap would hurt little (the two positions hold the same token), so
  the grid shows how position-specific each layer's MLP output is. A cell ``(l, p)`` changes
  the run only at layers ``>= l`` and positions ``>= p``, and that is all it computes: the
  clean run is recorded once and resumed (:mod:`interp_lib.resume`) from block ``l`` at
  position ``p``, with the clean keys and values of the earlier positions, all the layers of
  one position in one run. :func:`~interp_lib.reference.mlp_position_patching_loop` is the
  one-forward-per-cell version.
- :func:`activation_patching`: clean vs corrupted prompt, every cell of a kind (residual
  stream, attention or MLP output per position, head output), as a labelled, optionally
  normalised grid (0 = corrupted, 1 = clean). Its values are TransformerLens's
  ``patching.get_act_patch_*`` ones; it computes only what each patch changes, resuming the
  recorded corrupted run from the patched layer and position.
- :func:`causal_trace` (ROME, Meng et al. 2022): add Gaussian noise to the subject's
  token embeddings, then restore one (layer, position) activation from the clean run at a time
  and record the probability of the answer. Batched over positions and noise samples.

About starting from the cached residual: TransformerLens 4's ``TransformerBridge`` accepts
``start_at_layer``, but it still runs the Hugging Face blocks below that layer and discards
their output (the hooks of block 0 fire: ``tests/test_resume.py`` checks it), so it saves no
work. :mod:`interp_lib.resume` calls the bridge's blocks itself instead, from the recorded
residual, with the arguments (mask, positions, rotary tables) the model passed them in the
clean run; on an architecture where that does not reproduce the forward, the sweep falls
back to whole forwards on stacked batches.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.data import repeated_tokens
>>> from interp_lib.patching import mlp_position_patching
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> grid = mlp_position_patching(model, repeated_tokens(model, n=5, batch=2))
>>> grid.shape, grid.col_labels[0]
((2, 5), '6')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int

from interp_lib import validate
from interp_lib.data import repeat_period
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import SITES, copy_heads_hook, hook_name, only
from interp_lib.inputs import check_layer, to_tokens
from interp_lib.metrics import Metric, answer_prob_metric, check_metric, loss_metric
from interp_lib.resume import copies_at, record_run, resume_metric
from interp_lib.validate import check_model

__all__ = [
    "PATCH_KINDS",
    "TRACE_SITES",
    "CausalTrace",
    "activation_patching",
    "causal_trace",
    "mlp_grid",
    "mlp_position_patching",
    "mlp_setup",
    "subject_positions",
]

#: Where :func:`causal_trace` can restore clean activations.
TRACE_SITES = {site: SITES[site] for site in ("resid_pre", "resid_post", "attn_out", "mlp_out")}


def _check_rows(max_rows: int) -> None:
    validate.positive_int(max_rows, "max_rows")


def _layers(model: Any, layers: Any) -> list[int]:
    if layers is None:
        return list(range(model.cfg.n_layers))
    if isinstance(layers, int | str) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be a list of layer indices or None, got {layers!r}")
    layers = [check_layer(la, model.cfg) for la in layers]
    if not layers:
        raise ValueError("layers is empty: give at least one layer (or None for all)")
    return layers


# ---------------------------------------------------------------- MLP position patching


def mlp_setup(model: Any, tokens: Any, metric: Any):
    """The checked inputs of an MLP position sweep: tokens, the period ``n`` and the metric
    (default: the mean loss on the second half)."""
    check_model(model)
    tokens = to_tokens(model, tokens, name="tokens")
    n = repeat_period(tokens)
    metric = check_metric(metric, loss_metric(n + 1))
    return tokens, n, metric


def mlp_grid(values: torch.Tensor, layers: list[int], n: int, metric: Metric,
              clean: float) -> LabelledGrid:
    """The ``[layer, position]`` grid of an MLP position sweep, labelled."""
    return LabelledGrid(values, [str(la) for la in layers],
                        [str(p) for p in range(n + 1, 2 * n + 1)], row_title="layer",
                        col_title="position",
                        what=f"change in {getattr(metric, '__name__', 'metric')}",
                        baseline=clean)


@torch.no_grad()
def mlp_position_patching(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    metric: Metric | None = None,
    *,
    layers: list[int] | None = None,
    max_rows: int = 64,
) -> LabelledGrid:
    """``[layer, position]``: change of ``metric`` (default: mean loss on the second half)
    when the MLP output at second-half position ``p`` is replaced by the same run's MLP output at
    ``p - n``. Columns are the positions ``n + 1 .. 2n``; ``grid.baseline`` is the clean value.

    ``tokens`` must be BOS + n tokens + the same n (see :func:`interp_lib.heads.repeated_tokens`).
    ``max_rows`` bounds the rows of one forward (copies x batch).

    The cell ``(l, p)`` differs from the clean run only at layers ``>= l`` and positions
    ``>= p``, so each cell computes only those (:mod:`interp_lib.resume`): for every position,
    one resumed run in which the copy for layer ``l`` joins at block ``l``, with the clean keys
    and values of the earlier positions; the logits before ``p`` are the clean ones.
    """
    tokens, n, metric = mlp_setup(model, tokens, metric)
    _check_rows(max_rows)
    layers = _layers(model, layers)
    names = [hook_name("mlp_out", la) for la in layers]
    run = record_run(model, tokens, names_filter=only(*names))
    clean = metric(run.logits, tokens).float().mean().item()
    if not run.resumable:
        return _mlp_sweep_whole(model, tokens, metric, layers, run.cache, clean, n, max_rows)
    values = _position_sweep(model, run, metric, layers, range(n + 1, 2 * n + 1),
                             lambda layer, p: run.cache[hook_name("mlp_out", layer)][:, p - n],
                             lambda layer: hook_name("mlp_out", layer), max_rows)
    values -= clean
    return mlp_grid(values, layers, n, metric, clean)


def _patch_first_position(source: torch.Tensor, copies: list[int], active: int, batch: int
                          ) -> Callable:
    """An ``mlp_out`` hook of a resumed run (positions counted from the patched one): the
    listed copies get ``source`` ``[batch, d_model]`` at their first position."""
    index = torch.tensor(copies)

    def hook(out, hook=None):
        out = out.clone()
        view = out.view(active, batch, *out.shape[1:])
        view[index, :, 0] = source.to(out.dtype)
        return out

    return hook


def _position_sweep(model: Any, run: Any, metric: Metric, layers: list[int],
                    positions: Sequence[int], source: Callable[[int, int], torch.Tensor],
                    name: Callable[[int], str], max_rows: int) -> torch.Tensor:
    """``[len(layers), len(positions)]``: the mean ``metric`` of ``run`` resumed with the
    activation ``name(layer)`` at position ``p`` replaced by ``source(layer, p)`` (``[batch,
    d]``). One resumed run per position (and per ``max_rows`` rows), every layer's copy joining
    at its own block."""
    order = sorted(range(len(layers)), key=lambda row: layers[row])
    per_run = max(1, max_rows // run.batch)
    values = torch.empty(len(layers), len(positions))
    for col, p in enumerate(positions):
        for first in range(0, len(order), per_run):
            rows = order[first: first + per_run]
            starts = [layers[row] for row in rows]
            hooks = []
            for layer in sorted(set(starts)):
                joined = [c for c, s in enumerate(starts) if s == layer]
                hooks.append((name(layer), _patch_first_position(
                    source(layer, p), joined, copies_at(starts, layer), run.batch)))
            effect = resume_metric(model, run, metric, starts, position=p, fwd_hooks=hooks)
            values[rows, col] = effect.mean(1).cpu()
    return values


def _mlp_sweep_whole(model: Any, tokens: torch.Tensor, metric: Metric, layers: list[int],
                     cache: Any, clean: float, n: int, max_rows: int) -> LabelledGrid:
    """The sweep with whole forwards (for architectures a run cannot be resumed on): the batch
    stacked once per position, each copy patched at its own position."""
    batch = tokens.shape[0]
    positions = torch.arange(n + 1, 2 * n + 1)
    values = torch.empty(len(layers), n)
    per_forward = max(1, max_rows // batch)
    for row, layer in enumerate(layers):
        mlp = cache[hook_name("mlp_out", layer)]
        for start in range(0, n, per_forward):
            pos = positions[start: start + per_forward]
            copies = len(pos)

            def hook(out, hook=None, pos=pos, copies=copies, mlp=mlp):
                out = out.clone()
                view = out.view(copies, batch, *out.shape[1:])
                view[torch.arange(copies), :, pos] = mlp[:, pos - n].transpose(0, 1)
                return out

            stacked = tokens.repeat(copies, 1)
            with model.hooks(fwd_hooks=[(hook_name("mlp_out", layer), hook)]):
                patched = metric(model(stacked), stacked).float().view(copies, batch).mean(1)
            values[row, start: start + copies] = patched.cpu() - clean
    return mlp_grid(values, layers, n, metric, clean)


# ---------------------------------------------------------------- clean / corrupted patching


def _tl_patchers() -> dict[str, Callable]:
    """TransformerLens's patching function for each kind (one whole forward per cell)."""
    from transformer_lens import patching as tl

    return {"resid_pre": tl.get_act_patch_resid_pre, "attn_out": tl.get_act_patch_attn_out,
            "mlp_out": tl.get_act_patch_mlp_out,
            "head_out": tl.get_act_patch_attn_head_out_all_pos}


#: What :func:`activation_patching` can patch: residual stream, attention and MLP outputs per
#: (layer, position), and each head's output over all positions per (layer, head).
PATCH_KINDS = ("resid_pre", "attn_out", "mlp_out", "head_out")


def activation_patching(
    model: Any,
    clean: Int[torch.Tensor, "batch pos"] | str | list[str],
    corrupted: Int[torch.Tensor, "batch pos"] | str | list[str],
    metric: Metric,
    *,
    kind: str = "resid_pre",
    normalise: bool = True,
    max_rows: int = 64,
) -> LabelledGrid:
    """Patch each clean activation into the corrupted run, one cell at a time, and return the
    metric as a labelled grid: ``[layer, position]`` for the residual stream (``resid_pre``)
    and the attention and MLP outputs, ``[layer, head]`` for each head's output at all
    positions (``head_out``). The values are TransformerLens's ``patching.get_act_patch_*``
    ones (``tests/test_patching.py`` compares them, atol 1e-4).

    ``kind`` is one of :data:`PATCH_KINDS`. With ``normalise`` the values are
    ``(patched - corrupted) / (clean - corrupted)``: 0 means the patch restored nothing, 1 means
    it restored the clean behaviour. ``grid.baseline`` is the corrupted value and
    ``grid.reference`` the clean one (unnormalised). ``max_rows`` bounds the rows of one
    forward (copies x batch).

    A patch at layer ``l`` and position ``p`` leaves the corrupted run as it was below layer
    ``l`` and before position ``p``, so the corrupted run is recorded once and each cell
    resumed from there (:mod:`interp_lib.resume`): all the layers of one position in one run,
    each layer's copy joining at its block; a head's patch (every position) resumes at its
    layer. On an architecture a run cannot be resumed on, TransformerLens's
    ``get_act_patch_*`` run one whole forward per cell.
    """
    check_model(model)
    validate.choice(kind, "kind", PATCH_KINDS)
    validate.flag(normalise, "normalise")
    _check_rows(max_rows)
    metric = check_metric(metric)
    clean_tokens = to_tokens(model, clean, name="clean")
    corrupt_tokens = to_tokens(model, corrupted, name="corrupted")
    if clean_tokens.shape != corrupt_tokens.shape:
        raise ValueError(
            f"clean {tuple(clean_tokens.shape)} and corrupted {tuple(corrupt_tokens.shape)} token "
            "batches must have the same shape; patching copies activations position by position"
        )
    site = "z" if kind == "head_out" else kind
    names = [hook_name(site, layer) for layer in range(model.cfg.n_layers)]
    model.eval()  # TransformerLens refuses to patch a model in training mode
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(clean_tokens, names_filter=only(*names))
        clean_value = metric(clean_logits, clean_tokens).float().mean().item()
        del clean_logits
        run = record_run(model, corrupt_tokens)
        corrupt_value = metric(run.logits, corrupt_tokens).float().mean().item()
        if normalise and abs(clean_value - corrupt_value) < 1e-8:  # before any patched run
            raise ValueError(
                "the metric is the same on the clean and the corrupted input, so the normalised "
                "effect is undefined; choose prompts that differ in the metric, or normalise=False"
            )
        if run.resumable and kind == "head_out":
            values = _patch_heads_resumed(model, run, cache, metric, names, max_rows)
        elif run.resumable:
            layers = list(range(model.cfg.n_layers))
            values = _position_sweep(model, run, metric, layers, range(run.n_pos),
                                     lambda layer, p: cache[names[layer]][:, p],
                                     names.__getitem__, max_rows)
        else:
            del run
            patcher = _tl_patchers()[kind]

            def scalar(logits: torch.Tensor) -> torch.Tensor:
                return metric(logits, corrupt_tokens).float().mean()

            values = patcher(model, corrupt_tokens, cache, scalar).float().cpu()
    if normalise:
        values = (values - corrupt_value) / (clean_value - corrupt_value)
    what = (f"{kind} patching: " + ("recovered fraction of " if normalise else "")
            + getattr(metric, "__name__", "metric"))
    if kind != "head_out":
        return LabelledGrid.layer_position(values, model.to_str_tokens(clean_tokens[0]), what,
                                           corrupt_value, clean_value)
    return LabelledGrid.layer_head(values, what, corrupt_value, clean_value)


def _patch_heads_resumed(model: Any, run: Any, cache: Any, metric: Metric, names: list[str],
                         max_rows: int) -> torch.Tensor:
    """``[layer, head]``: the metric with head ``h``'s clean output at every position, the copy
    for a head of layer ``l`` joining the resumed run at block ``l``."""
    n_heads = model.cfg.n_heads
    jobs = [(layer, head) for layer in range(len(names)) for head in range(n_heads)]
    per_run = max(1, max_rows // run.batch)
    values = torch.empty(len(jobs))
    for first in range(0, len(jobs), per_run):
        chunk = jobs[first: first + per_run]
        starts = [layer for layer, _ in chunk]
        hooks = []
        for layer in sorted(set(starts)):
            copies = [c for c, s in enumerate(starts) if s == layer]
            heads = [chunk[c][1] for c in copies]
            hooks.append((names[layer], copy_heads_hook(copies, heads, copies_at(starts, layer),
                                                        cache[names[layer]])))
        effect = resume_metric(model, run, metric, starts, fwd_hooks=hooks)
        values[first: first + len(chunk)] = effect.mean(1).cpu()
    return values.view(len(names), n_heads)


# ---------------------------------------------------------------- causal tracing


def subject_positions(model: Any, prompt: str, subject: str) -> list[int]:
    """Positions (in ``model.to_tokens(prompt)``, BOS included if the model prepends one) of the
    tokens that overlap the first occurrence of ``subject`` in ``prompt``."""
    check_model(model)
    if not isinstance(prompt, str) or not isinstance(subject, str):
        raise TypeError(f"prompt and subject must be strings, got {type(prompt).__name__} and "
                        f"{type(subject).__name__}")
    if not prompt.strip():
        raise ValueError("prompt is empty")
    if not subject.strip():
        raise ValueError("subject is empty: give the words to corrupt, e.g. 'The Eiffel Tower'")
    start = prompt.find(subject)
    if start < 0:
        raise ValueError(f"subject {subject!r} does not occur in the prompt {prompt!r}")
    end = start + len(subject)
    encoded = model.tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=False)
    tokens = model.to_tokens(prompt, truncate=False)[0].tolist()
    shift = len(tokens) - len(encoded["input_ids"])
    if tokens[shift:] != list(encoded["input_ids"]):
        raise ValueError("could not align the tokenizer's offsets with model.to_tokens(prompt)")
    spans = encoded["offset_mapping"]
    return [i + shift for i, (a, b) in enumerate(spans) if a < end and b > start]


@dataclass
class CausalTrace:
    """Probability of ``answer`` with the subject corrupted and one activation restored.

    ``grid.values[layer, position]`` is the mean over noise samples; ``grid.baseline`` the
    corrupted probability (nothing restored), ``grid.reference`` the clean one.
    """

    grid: LabelledGrid
    answer: str
    subject: list[int]
    site: str

    @property
    def clean_prob(self) -> float:
        return float(self.grid.reference)

    @property
    def corrupted_prob(self) -> float:
        return float(self.grid.baseline)

    def indirect_effect(self) -> LabelledGrid:
        """Restored minus corrupted probability, ``[layer, position]``."""
        g = self.grid
        return LabelledGrid(g.values - g.baseline, g.row_labels, g.col_labels, g.row_title,
                            g.col_title, f"indirect effect on p({self.answer!r})", g.baseline,
                            g.reference)

    def figure(self, title: str | None = None):
        """ROME's picture: positions down the side (subject tokens starred), layers across."""
        from interp_lib.plotting import heatmap

        g = self.grid
        return heatmap(
            g.values.T, x_labels=g.row_labels, y_labels=g.col_labels, colorscale="Purples",
            title=title or (f"p({self.answer!r}) with {self.site} restored · clean "
                            f"{self.clean_prob:.3f}, corrupted {self.corrupted_prob:.3f}"),
            x_title="layer of the restored activation", y_title="position (* = subject)",
            colorbar_title="probability",
        )


def _answer_id(model: Any, answer: Any, clean_logits: torch.Tensor) -> int:
    if answer is None:
        return int(clean_logits[0, -1].argmax())
    if isinstance(answer, str):
        ids = model.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"answer {answer!r} is {len(ids)} tokens; give a single-token answer (with its "
                "leading space, e.g. ' Paris') or a token id"
            )
        return int(ids[0])
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < model.cfg.d_vocab:
            raise ValueError(
                f"answer id {answer} is outside the vocabulary 0..{model.cfg.d_vocab - 1}")
        return answer
    raise TypeError(f"answer must be a string, a token id or None, got {type(answer).__name__}")


@torch.no_grad()
def causal_trace(
    model: Any,
    prompt: str,
    subject: str,
    answer: str | int | None = None,
    *,
    site: str = "resid_post",
    noise: float = 3.0,
    samples: int = 10,
    seed: int = 0,
    layers: list[int] | None = None,
    max_rows: int = 128,
) -> CausalTrace:
    """ROME-style causal tracing of ``prompt`` with the ``subject`` tokens corrupted.

    Noise: Gaussian with standard deviation ``noise`` times the standard deviation of the
    token-embedding entries (ROME uses 3 times the embeddings' standard deviation), added to the
    subject's token embeddings (``hook_embed``), the same ``samples`` draws for every cell. Each
    cell restores the clean ``site`` activation (``resid_post`` = the output of the layer, as
    in ROME; or ``resid_pre``, ``attn_out``, ``mlp_out``) at one (layer, position).
    ``answer`` defaults to the model's own top-1 prediction on the clean prompt.
    """
    check_model(model)
    validate.choice(site, "site", TRACE_SITES)
    samples = validate.positive_int(samples, "samples")
    noise = validate.finite_float(noise, "noise", nonnegative=True)
    validate.nonnegative_int(seed, "seed")
    _check_rows(max_rows)
    layers = _layers(model, layers)
    subj = subject_positions(model, prompt, subject)
    tokens = to_tokens(model, prompt)
    template = TRACE_SITES[site]
    names = {template.format(la) for la in layers}
    clean_logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    answer_id = _answer_id(model, answer, clean_logits)
    prob = answer_prob_metric(answer_id)
    clean_prob = prob(clean_logits, tokens).item()

    scale = noise * model.W_E.float().std().item()
    gen = torch.Generator().manual_seed(seed)
    draws = (torch.randn(samples, len(subj), model.cfg.d_model, generator=gen) * scale)
    draws = draws.to(model.cfg.device)
    subj_idx = torch.tensor(subj, device=model.cfg.device)

    def corrupt(copies: int) -> Callable:
        def hook(embed, hook=None):
            embed = embed.clone()
            view = embed.view(copies, samples, *embed.shape[1:])
            view[:, :, subj_idx] += draws.to(embed.dtype)
            return embed
        return hook

    with model.hooks(fwd_hooks=[("hook_embed", corrupt(1))]):
        rows = tokens.repeat(samples, 1)
        run = record_run(model, rows)
    corrupted_prob = prob(run.logits, rows).mean().item()
    if run.resumable:
        values = _position_sweep(
            model, run, prob, layers, range(run.n_pos),
            lambda layer, p: cache[template.format(layer)][0, p].expand(run.batch, -1),
            template.format, max_rows)
    else:
        del run
        values = _trace_whole(model, tokens, cache, template, layers, prob, corrupt, samples,
                              max_rows)
    labels = model.to_str_tokens(tokens[0])
    col_labels = [f"{p}: {tok}{' *' if p in subj else ''}" for p, tok in enumerate(labels)]
    answer_text = model.tokenizer.decode([answer_id])
    grid = LabelledGrid(values, [str(la) for la in layers], col_labels, row_title="layer",
                        col_title="position", what=f"p({answer_text!r}) with {site} restored",
                        baseline=corrupted_prob, reference=clean_prob)
    return CausalTrace(grid, answer_text, subj, site)


def _trace_whole(model: Any, tokens: torch.Tensor, cache: Any, template: str,
                 layers: list[int], prob: Metric, corrupt: Callable[[int], Callable],
                 samples: int, max_rows: int) -> torch.Tensor:
    """The same with whole forwards (for architectures a run cannot be resumed on): the noisy
    batch stacked once per position, each copy restored at its own position."""
    n_pos = tokens.shape[1]
    values = torch.empty(len(layers), n_pos)
    per_forward = max(1, max_rows // samples)
    for row, layer in enumerate(layers):
        clean_act = cache[template.format(layer)][0]
        for start in range(0, n_pos, per_forward):
            pos = torch.arange(start, min(n_pos, start + per_forward))
            copies = len(pos)

            def restore(act, hook=None, pos=pos, copies=copies, clean_act=clean_act):
                act = act.clone()
                view = act.view(copies, samples, *act.shape[1:])
                view[torch.arange(copies), :, pos] = clean_act[pos][:, None].to(act.dtype)
                return act

            stacked = tokens.repeat(copies * samples, 1)
            hooks = [("hook_embed", corrupt(copies)), (template.format(layer), restore)]
            with model.hooks(fwd_hooks=hooks):
                p = prob(model(stacked), stacked).float().view(copies, samples).mean(1)
            values[row, start: start + copies] = p.cpu()
    return values
