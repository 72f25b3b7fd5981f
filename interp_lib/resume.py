"""Resume a recorded forward pass from any block, at any position: sweeps that compute only
what an intervention changes.

An intervention at layer ``l`` and position ``p`` (patch an MLP output, ablate a head) leaves
everything below layer ``l`` as it was, and, in a causal model, every position before ``p``:
the patched forward differs from the clean one only at layers ``>= l`` and positions ``>= p``.
A sweep that reruns the whole model for every cell recomputes all the rest. Here the clean
forward is run once and *recorded*: the residual stream entering every block, the keys and
values every attention layer computed (after its own position handling: rotary models rotate
them first) and the arguments the model passed to every block (its causal mask, position ids
and rotary angles). A resumed run then feeds the recorded residual at positions ``>= p`` to
the model's own blocks ``l, l + 1, ...``, with the recorded keys and values of positions
``< p`` in front of the new ones (a key/value cache, as in generation), then the final norm and
the unembedding; the logits of positions ``< p`` are the recorded ones.

The blocks are the bridge's own (``model.blocks[i]``), so every hook of a resumed block fires,
with positions counted from ``p`` (activations are ``[rows, pos - p, ...]``), and the numbers
are the ones the full forward computes (compatibility mode included) up to float rounding:
``tests/test_resume.py`` checks resumed runs against full forwards on GPT-2 and GPT-NeoX.
TransformerLens 4's own ``start_at_layer`` cannot do this: the bridge still runs every block
below the start layer (their hooks fire) and only swaps the residual in afterwards.

**Copies that join.** :func:`resume_metric` runs several copies of the batch at once, copy
``c`` entering at block ``starts[c]`` (``starts`` sorted): at block ``i`` the activations hold
the copies whose start is ``<= i``, copy-major (rows ``0 .. batch - 1`` are copy 0), so
:func:`copies_at` tells a hook how many copies it sees and the copies that entered at its
block are the last ones. A sweep over layers thus runs each block once for all the copies
that need it, and never a block a copy does not need.

**Soundness.** :func:`record_run` checks, on the recorded run itself, that resuming the last
block at the last position reproduces its logits, and that every block's arguments are of a
kind it knows how to cut (masks ``[.., pos, pos]``, position ids, rotary tables ``[.., pos,
dim]``); :attr:`RecordedRun.resumable` is ``False`` (with :attr:`RecordedRun.reason`) for an
architecture where either fails, and the sweeps then run whole forwards instead.

>>> import tempfile
>>> import torch
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_neox
>>> from interp_lib.resume import record_run, resume_metric
>>> from interp_lib.metrics import loss_metric
>>> model = load_model(str(save_tiny_neox(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> tokens = model.to_tokens(["The cat sat on the mat", "The dog sat on the rug"])
>>> run = record_run(model, tokens)
>>> run.resumable
True
>>> values = resume_metric(model, run, loss_metric(), [1], position=3)  # nothing patched
>>> bool(torch.allclose(values[0], loss_metric()(run.logits, tokens), atol=1e-5))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from interp_lib import validate
from interp_lib.inputs import check_layer, to_tokens
from interp_lib.validate import check_model

__all__ = ["RecordedRun", "copies_at", "record_run", "resume_metric"]


class _KeyValueRecorder:
    """Stands in for the model's key/value cache during the recorded run: keeps what each
    attention layer computed and hands it back unchanged."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer_idx], self.values[layer_idx] = key, value
        return key, value


class _KeyValuePrefix:
    """The key/value cache of a resumed run: the recorded keys and values of the positions
    before ``start`` (the same for every copy), in front of the ones the block computes."""

    def __init__(self, recorder: _KeyValueRecorder, start: int) -> None:
        self.recorder, self.start = recorder, start

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.start == 0:
            return key, value
        old_k, old_v = self.recorder.keys[layer_idx], self.recorder.values[layer_idx]
        copies = key.shape[0] // old_k.shape[0]
        prefix_k = old_k[:, :, : self.start].to(key.dtype).repeat(copies, 1, 1, 1)
        prefix_v = old_v[:, :, : self.start].to(value.dtype).repeat(copies, 1, 1, 1)
        return torch.cat([prefix_k, key], dim=2), torch.cat([prefix_v, value], dim=2)


def _is_cache(value: Any) -> bool:
    """A Hugging Face key/value cache object (replaced by ours in recorded and resumed runs)."""
    return (not isinstance(value, torch.Tensor) and hasattr(value, "update")
            and hasattr(value, "get_seq_length"))


class _UnknownArgument(Exception):
    pass


def _cut(value: Any, n_pos: int, start: int, batch: int, copies: int) -> Any:
    """A block argument for a resumed run: positions ``start..`` of whatever has a position
    axis (masks keep all their key columns), batch-sized axes repeated for the copies."""
    if isinstance(value, tuple):
        return tuple(_cut(v, n_pos, start, batch, copies) for v in value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if _is_cache(value):
        return None
    if not isinstance(value, torch.Tensor):
        raise _UnknownArgument(f"a block argument of type {type(value).__name__}")
    shape = tuple(value.shape)
    if value.ndim == 4 and shape[-2:] == (n_pos, n_pos):       # attention mask [b, 1, q, k]
        cut = value[..., start:, :]
    elif value.ndim == 3 and shape[-2] == n_pos and value.is_floating_point():
        cut = value[:, start:]                                 # rotary tables [b, pos, dim]
    elif value.ndim == 2 and shape[-1] == n_pos and not value.is_floating_point():
        cut = value[:, start:]                                 # position ids [b, pos]
    elif value.ndim == 1 and shape[0] == n_pos and not value.is_floating_point():
        return value[start:]                                   # cache positions [pos]
    else:
        raise _UnknownArgument(f"a block argument of shape {list(shape)}")
    if copies > 1 and batch > 1 and cut.shape[0] == batch:
        cut = cut.repeat(copies, *([1] * (cut.ndim - 1)))
    return cut


@dataclass
class RecordedRun:
    """One forward pass of ``tokens``, recorded so that :func:`resume_metric` can resume it
    from any block at any position.

    ``logits`` are the run's logits; ``cache`` holds the activations ``names_filter`` asked for
    (an ``ActivationCache``, or ``None``); :meth:`residual` gives the residual stream entering
    a block. ``resumable`` says whether resumed runs reproduce this model's forward (checked
    when recording); ``reason`` says why not when they do not.
    """

    tokens: Int[torch.Tensor, "batch pos"]
    logits: Float[torch.Tensor, "batch pos vocab"]
    cache: Any
    resumable: bool
    reason: str
    signature: tuple[int, ...]
    _inputs: list[torch.Tensor] = field(repr=False)
    _calls: list[tuple[tuple, dict]] = field(repr=False)
    _recorder: _KeyValueRecorder = field(repr=False)

    @property
    def batch(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[1])

    def residual(self, layer: int) -> Float[torch.Tensor, "batch pos d_model"]:
        """The residual stream entering block ``layer`` (``hook_resid_pre``) in this run."""
        validate.int_in_range(layer, "layer", 0, len(self._inputs) - 1)
        return self._inputs[layer]


def record_run(model: Any, tokens: Int[torch.Tensor, "batch pos"] | str | list[str], *,
               names_filter: Callable[[str], bool] | None = None) -> RecordedRun:
    """Run ``model`` on ``tokens`` once and record what resuming it needs (see the module's
    docstring). With ``names_filter`` the run is a ``run_with_cache`` and the cache is kept.
    Runs under the caller's gradient mode."""
    check_model(model)
    tokens = to_tokens(model, tokens, name="tokens")
    if names_filter is not None:
        validate.function(names_filter, "names_filter", "(name) -> bool")
    recorder = _KeyValueRecorder()
    n_layers = model.cfg.n_layers
    inputs: list[torch.Tensor | None] = [None] * n_layers
    calls: list[tuple[tuple, dict] | None] = [None] * n_layers

    def pre_hook(layer: int) -> Callable:
        def hook(module, args, kwargs):
            args = tuple(None if _is_cache(a) else a for a in args)
            kwargs = {k: (None if _is_cache(v) else v) for k, v in kwargs.items()}
            kwargs["layer_past"] = recorder
            hidden = args[0] if args else kwargs.get("hidden_states")
            inputs[layer] = hidden
            calls[layer] = (args, kwargs)
            return args, kwargs
        return hook

    handles = [block.register_forward_pre_hook(pre_hook(i), with_kwargs=True)
               for i, block in enumerate(model.blocks)]
    try:
        if names_filter is None:
            logits, cache = model(tokens), None
        else:
            logits, cache = model.run_with_cache(tokens, names_filter=names_filter)
    finally:
        for handle in handles:
            handle.remove()
    run = RecordedRun(tokens, logits, cache, False, "", validate.model_signature(model),
                      inputs, calls, recorder)
    run.resumable, run.reason = _self_check(model, run)
    return run


def _self_check(model: Any, run: RecordedRun) -> tuple[bool, str]:
    """Resume the last block at the last position with nothing changed: the logits must be
    the recorded ones."""
    n_layers = model.cfg.n_layers
    if any(x is None or not isinstance(x, torch.Tensor) for x in run._inputs):
        return False, "the blocks were not called with the residual stream as first argument"
    missing = [la for la in range(n_layers) if la not in run._recorder.keys]
    if missing:
        return False, (f"attention layer(s) {missing} did not hand their keys and values to a "
                       "cache, so later positions cannot be resumed")
    start = max(0, run.n_pos - 1)
    try:
        with torch.no_grad():
            last = _resume_logits(model, run, [n_layers - 1], start, ())
    except _UnknownArgument as err:
        return False, f"the model passes its blocks {err}, which a resumed run cannot cut"
    except RuntimeError as err:  # e.g. a hook attached around the sweep expects every position
        return False, f"resuming the last block failed ({str(err).splitlines()[0]})"
    expected = run.logits[:, start:].detach()
    scale = max(1.0, float(expected.abs().max()))
    error = float((last[0].float() - expected.float()).abs().max())
    if not error <= 1e-4 * scale:
        return False, (f"resuming the last block changed the logits by {error:.1e}; this "
                       "architecture's blocks depend on something a resumed run does not pass")
    return True, ""


def copies_at(starts: Sequence[int], layer: int) -> int:
    """How many copies a resumed run holds at block ``layer``: those with ``start <= layer``
    (they are the first ones, copy-major, since ``starts`` is sorted)."""
    return sum(1 for s in starts if s <= layer)


def _check_starts(model: Any, starts: Any) -> list[int]:
    if isinstance(starts, int | str) or not hasattr(starts, "__iter__"):
        raise TypeError(f"starts must be a list of layer indices, got {starts!r}")
    starts = [check_layer(s, model.cfg) for s in starts]
    if not starts:
        raise ValueError("starts is empty: give the layer each copy starts at")
    if starts != sorted(starts):
        raise ValueError(f"starts must be sorted (copies join in layer order), got {starts}")
    return starts


def _final_residual(model: Any, run: RecordedRun, starts: list[int], start: int,
                    ) -> torch.Tensor:
    """Blocks ``starts[0]..`` on positions ``start..``, copies joining at their blocks; the
    final residual stream after the last block, ``[copies * batch, pos - start, d_model]``."""
    batch, n_pos = run.batch, run.n_pos
    prefix = _KeyValuePrefix(run._recorder, start)
    hidden = None
    for layer in range(starts[0], model.cfg.n_layers):
        joining = starts.count(layer)
        if joining:
            new = run._inputs[layer][:, start:]
            new = new.repeat(joining, 1, 1) if joining > 1 else new
            hidden = new if hidden is None else torch.cat([hidden, new.to(hidden.dtype)])
        copies = hidden.shape[0] // batch
        args, kwargs = run._calls[layer]
        rest = tuple(_cut(a, n_pos, start, batch, copies) for a in args[1:])
        kw = {k: _cut(v, n_pos, start, batch, copies) for k, v in kwargs.items()
              if k not in ("layer_past", "hidden_states")}
        kw["layer_past"] = prefix
        out = model.blocks[layer](hidden, *rest, **kw)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def _resume_logits(model: Any, run: RecordedRun, starts: list[int], start: int,
                   fwd_hooks: Sequence) -> torch.Tensor:
    """``[copies, batch, pos - start, vocab]`` (for the self-check: small runs only)."""
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        hidden = _final_residual(model, run, starts, start)
        logits = model.unembed(model.ln_final(hidden))
    return logits.view(len(starts), run.batch, *logits.shape[1:])


def resume_metric(
    model: Any,
    run: RecordedRun,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    starts: Sequence[int],
    *,
    position: int = 0,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    logit_budget: int | None = None,
) -> Float[torch.Tensor, "copy batch"]:
    """``metric(logits, tokens)`` of resumed copies of ``run``, ``[copy, batch]``.

    Copy ``c`` enters block ``starts[c]`` (sorted) with the recorded residual stream at
    positions ``position ..``; positions before ``position`` keep the recorded keys, values
    and logits. ``fwd_hooks`` are attached for the resumed blocks, the final norm and the
    unembedding; at block ``i`` they see :func:`copies_at` ``(starts, i)`` copies, copy-major,
    positions counted from ``position``. The final norm runs on all copies at once, the
    unembedding on as many copies' new positions as fit in ``logit_budget`` vectors of
    ``[vocab]`` (default: ``batch x pos``, the recorded run's own logits), and the metric on
    one copy at a time (its logits at every position: the recorded ones, then the new ones).
    """
    check_model(model)
    if not isinstance(run, RecordedRun):
        raise TypeError(f"run must be a RecordedRun from record_run, got {type(run).__name__}")
    validate.check_same_model(model, run.signature, "the recorded run")
    validate.function(metric, "metric", "(logits, tokens) -> [batch]")
    starts = _check_starts(model, starts)
    position = validate.int_in_range(position, "position", 0, run.n_pos - 1)
    batch, n_pos = run.batch, run.n_pos
    budget = batch * n_pos if logit_budget is None else validate.positive_int(
        logit_budget, "logit_budget")
    if not run.resumable:
        raise ValueError(f"this model's recorded run cannot be resumed: {run.reason}")
    per_unembed = max(1, budget // (batch * (n_pos - position)))
    prefix = run.logits[:, :position] if position else None
    values = []
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        normed = model.ln_final(_final_residual(model, run, starts, position))
        for first in range(0, len(starts), per_unembed):
            new = model.unembed(normed[first * batch: (first + per_unembed) * batch])
            for copy in range(new.shape[0] // batch):
                logits = new[copy * batch: (copy + 1) * batch]
                if prefix is not None:
                    logits = torch.cat([prefix.to(logits.dtype), logits], dim=1)
                values.append(metric(logits, run.tokens).float())
                del logits
            del new
    return torch.stack(values)
