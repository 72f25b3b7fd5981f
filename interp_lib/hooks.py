"""Hook names and per-head hooks: the one place the library spells a hook point or edits a head.

**Names.** :func:`hook_name` turns a site and a layer into TransformerLens's hook name
(``hook_name("z", 3) == "blocks.3.attn.hook_z"``); :data:`SITES` lists the sites the course
uses. :func:`only` builds a ``names_filter`` that keeps exactly the given names.

**Heads.** A head's output is its ``hook_z`` slice ``[batch, pos, head, d_head]``; the output
projection ``W_O`` turns it into the head's write to the residual stream. :func:`load_model`
keeps each head's value bias inside its values (compatibility mode without value-bias
folding), so ``hook_z = 0`` removes the head's whole write: the same as zeroing its slice
before the output projection in the plain Hugging Face model (tests/test_hooks.py). Three
hook makers, one each:

- :func:`replace_heads_hook`: set some heads' outputs to zero or to given values (zero, mean
  and resample ablation); :func:`copy_heads_hook` does it in a batch stacked from copies,
  each copy with its own head (sweeps that ablate or patch many heads in one forward);
- :func:`scale_heads_hook`: multiply every head's output by a mask (pruning, and
  ``|d metric / d mask|`` head importance when the mask requires gradients);
- :func:`shift_heads_hook`: add a vector to some heads' outputs (inference-time intervention).

Contexts built on them remove their hooks on exit, also when the body raises:
:func:`ablated_heads` (and :func:`zero_ablation`), :func:`masked_heads`. :func:`attached_hooks`
counts what is left attached, for tests and exercise checks.

>>> from interp_lib.hooks import hook_name, only
>>> hook_name("resid_pre", 2)
'blocks.2.hook_resid_pre'
>>> keep = only(hook_name("z", 0), hook_name("z", 1))
>>> keep("blocks.1.attn.hook_z"), keep("blocks.1.attn.hook_q")
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float

from interp_lib import validate
from interp_lib.inputs import check_layer, head_name, parse_heads
from interp_lib.validate import check_model

__all__ = [
    "SITES",
    "Hook",
    "ablated_heads",
    "attached_hooks",
    "by_layer",
    "copy_heads_hook",
    "hook_name",
    "layer_hooks",
    "masked_heads",
    "only",
    "replace_heads_hook",
    "scale_heads_hook",
    "shift_heads_hook",
    "zero_ablation",
]

#: ``(hook name, fn(activation, hook) -> activation or None)``, as TransformerLens takes it.
Hook = tuple[str, Callable]

#: Sites and their hook-name templates (``{}`` is the layer).
SITES: dict[str, str] = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "mlp_in": "blocks.{}.hook_mlp_in",
    "mlp_input": "blocks.{}.mlp.hook_in",  # what the MLP reads (after ln2); always on
    "mlp_pre": "blocks.{}.mlp.hook_pre",
    "mlp_post": "blocks.{}.mlp.hook_post",
    "z": "blocks.{}.attn.hook_z",
    "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k",
    "v": "blocks.{}.attn.hook_v",
    "pattern": "blocks.{}.attn.hook_pattern",
    "attn_scores": "blocks.{}.attn.hook_attn_scores",
    "cos": "blocks.{}.attn.hook_cos",
    "sin": "blocks.{}.attn.hook_sin",
    "ln1_scale": "blocks.{}.ln1.hook_scale",
    "ln2_scale": "blocks.{}.ln2.hook_scale",
}


def hook_name(site: str, layer: int | None = None) -> str:
    """The hook name of ``site`` (a key of :data:`SITES`) at ``layer``; sites outside blocks
    (``"embed"``, ``"pos_embed"``, ``"ln_final_scale"``) take no layer."""
    outside = {"embed": "hook_embed", "pos_embed": "hook_pos_embed",
               "ln_final_scale": "ln_final.hook_scale"}
    if site in outside:
        if layer is not None:
            raise ValueError(f"site {site!r} is outside the blocks: give no layer")
        return outside[site]
    validate.choice(site, "site", [*SITES, *outside])
    if layer is None:
        raise ValueError(f"site {site!r} is inside a block: give its layer")
    validate.nonnegative_int(layer, "layer")
    return SITES[site].format(layer)


def only(*names: str) -> Callable[[str], bool]:
    """A ``names_filter`` keeping exactly ``names`` (cache only what is needed)."""
    wanted = frozenset(names)
    return wanted.__contains__


def by_layer(model: Any, heads: Any) -> dict[int, list[int]]:
    """Heads (``"L.H"`` names or pairs) grouped by layer: ``{layer: [head, ...]}``."""
    grouped: dict[int, list[int]] = {}
    for layer, head in parse_heads(heads, model.cfg):
        grouped.setdefault(layer, [])
        if head not in grouped[layer]:
            grouped[layer].append(head)
    return dict(sorted(grouped.items()))


# ---------------------------------------------------------------- hook makers


def replace_heads_hook(heads: Sequence[int],
                       values: Float[torch.Tensor, "batch pos head d_head"] | None = None
                       ) -> Callable:
    """A ``hook_z`` hook setting the outputs of ``heads`` (indices in one layer) to zero, or to
    ``values[..., head, :]`` (broadcast over batch and position: a mean has batch 1)."""
    index = list(heads)

    def hook(z, hook=None):
        z = z.clone()
        if values is None:
            z[:, :, index] = 0.0
        else:
            z[:, :, index] = values[:, :, index].to(z.device, z.dtype).expand(
                z.shape[0], z.shape[1], len(index), z.shape[-1])
        return z

    return hook


def copy_heads_hook(copies: Sequence[int] | torch.Tensor, heads: Sequence[int] | torch.Tensor,
                    n_copies: int,
                    values: Float[torch.Tensor, "batch pos head d_head"] | None = None
                    ) -> Callable:
    """A ``hook_z`` hook for a batch stacked from ``n_copies`` copies of one batch (copy-major):
    copy ``copies[i]`` gets head ``heads[i]`` set to zero, or to ``values[..., heads[i], :]``
    (``values`` has the batch's own size, or batch 1 for a mean)."""
    copies, heads = torch.as_tensor(copies), torch.as_tensor(heads)
    if copies.shape != heads.shape or copies.ndim != 1:
        raise ValueError(f"copies {list(copies.shape)} and heads {list(heads.shape)} must be "
                         "1-D and of the same length: one head per listed copy")

    def hook(z, hook=None):
        z = z.clone()
        view = z.view(n_copies, -1, *z.shape[1:])
        if values is None:
            view[copies, :, :, heads] = 0.0
        else:
            view[copies, :, :, heads] = values[:, :, heads].permute(2, 0, 1, 3).to(z.dtype)
        return z
    return hook


def scale_heads_hook(mask: Float[torch.Tensor, "*batch head"]) -> Callable:
    """A ``hook_z`` hook multiplying each head's output by ``mask`` (``[head]`` for all
    examples or ``[batch, head]`` per example); differentiable in ``mask``."""
    def hook(z, hook=None):
        scale = mask.to(z.device, z.dtype)
        scale = scale[None, None, :, None] if scale.ndim == 1 else scale[:, None, :, None]
        return z * scale

    return hook


def shift_heads_hook(shift: Float[torch.Tensor, "head d_head"]) -> Callable:
    """A ``hook_z`` hook adding ``shift[head]`` to each head's output at every position."""
    def hook(z, hook=None):
        return z + shift.to(z.device, z.dtype)

    return hook


# ---------------------------------------------------------------- contexts


@contextmanager
def ablated_heads(model: Any, heads: Any, values: dict[int, torch.Tensor] | None = None
                  ) -> Iterator[list[str]]:
    """A context in which ``heads`` are ablated: their outputs are zero, or, with ``values``
    (``{layer: [batch or 1, pos, head, d_head]}``, e.g. means over a reference batch), those
    values. Yields the heads' names; ``None`` or ``[]`` changes nothing. Hooks are removed on
    exit, also when the body raises."""
    check_model(model)
    if heads is None or (isinstance(heads, Sequence) and not isinstance(heads, str)
                         and len(heads) == 0):
        yield []
        return
    grouped = by_layer(model, heads)
    hooks = [(hook_name("z", layer), replace_heads_hook(index, (values or {}).get(layer)))
             for layer, index in grouped.items()]
    with model.hooks(fwd_hooks=hooks):
        yield [head_name(layer, h) for layer, index in grouped.items() for h in index]


def zero_ablation(model: Any, heads: Any):
    """A context in which ``heads``' outputs are zero (the whole head removed, value bias
    included); yields their names. See :func:`ablated_heads`."""
    return ablated_heads(model, heads)


def _check_mask(mask: Any, cfg: Any) -> torch.Tensor:
    return validate.finite_tensor(mask, "mask", shape=(cfg.n_layers, cfg.n_heads),
                                  dims="[n_layers, n_heads]").float()


@contextmanager
def masked_heads(model: Any, mask: Float[torch.Tensor, "layer head"]) -> Iterator[None]:
    """A context in which every head's output is multiplied by ``mask[layer, head]`` (0 removes
    the head, 1 keeps it); layers whose mask is all ones get no hook."""
    check_model(model)
    mask = _check_mask(mask, model.cfg).to(model.cfg.device)
    hooks = [(hook_name("z", layer), scale_heads_hook(mask[layer]))
             for layer in range(model.cfg.n_layers) if not bool((mask[layer] == 1).all())]
    with model.hooks(fwd_hooks=hooks):
        yield


def attached_hooks(model: Any) -> dict[str, int]:
    """Hook points that still have forward or backward hooks attached: ``{name: count}``."""
    names: dict[int, list[str]] = {}
    points = {}
    for name, point in model.hook_dict.items():  # compatibility mode aliases hook points
        names.setdefault(id(point), []).append(name)
        points[id(point)] = point
    left = {}
    for key, point in points.items():
        count = (len(getattr(point, "fwd_hooks", [])) + len(getattr(point, "bwd_hooks", []))
                 or len(getattr(point, "_forward_hooks", {})))
        if count:
            # the classic name (hook_z, hook_resid_pre...) rather than a bridge alias
            classic = [n for n in names[key] if not n.endswith((".hook_in", ".hook_out"))]
            left[min(classic or names[key], key=len)] = count
    return left


def layer_hooks(model: Any, site: str, layers: Sequence[int], make: Callable[[int], Callable]
                ) -> list[Hook]:
    """``[(hook_name(site, layer), make(layer)) for layer in layers]``, layers checked."""
    return [(hook_name(site, check_layer(layer, model.cfg)), make(layer)) for layer in layers]
