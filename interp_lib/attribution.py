"""Direct logit attribution: how much each component writes a logit directly.

The final residual stream is a sum of components — the token (and position) embedding, every
head's output at every position, each layer's attention-output bias and every MLP's output.
The logits are the final LayerNorm and the unembedding applied to that sum. LayerNorm is not
linear, but *given* its scale at a position (cached from the run, ``ln_final.hook_scale``) it
is: centre, divide by the scale. So a logit splits exactly into one term per component,

    logit_t = sum_c  (c - mean(c)) / scale · W_U[:, t]   +   b_U[t],

(the mean is left out for RMSNorm models), and the terms, biases included, **sum to the
logit** (the tests check it to float tolerance). The same holds for a logit *difference*
(``W_U[:, right] - W_U[:, wrong]``), the usual target in circuit analysis. This is ARENA 1.2's
"direct logit attribution" and what TransformerLens's ``cache.decompose_resid`` plus
``cache.apply_ln_to_stack`` compute (cross-checked in the tests); here each component is
projected as soon as it is read, so ``[component, batch, pos, d_model]`` never exists.

"Direct" means only the path from a component straight to the logits: what a head writes
that later layers read and transform is not counted here (patching measures that).

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.attribution import logit_attribution
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> dla = logit_attribution(model, "The cat sat on the mat")
>>> dla.components[:3], dla.values.shape[0] == len(dla.components)
(['embed', 'pos_embed', '0.0'], True)
>>> cells = dla.positions  # every position but the last has a next token
>>> bool((dla.total()[cells] - dla.logits[cells]).abs().max() < 1e-4)  # terms sum to the logit
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int

from interp_lib import validate
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import hook_name, only
from interp_lib.inputs import head_name, to_tokens
from interp_lib.validate import check_model

__all__ = ["LogitAttribution", "logit_attribution"]


@dataclass
class LogitAttribution:
    """``values[component, batch, pos]``: each component's direct contribution to the target
    logit (or logit difference) predicted at each position; ``logits[batch, pos]`` is the
    model's own value, which the components sum to. ``components`` labels the first axis:
    ``"embed"``, ``"pos_embed"`` (learned positions only), ``"L.H"`` for every head,
    ``"L attn bias"``, ``"L mlp"``, and ``"unembed bias"``. ``target`` says what was
    attributed; ``positions[batch, pos]`` marks the cells that have a target (the others hold
    NaN: the last position has no next token)."""

    values: Float[torch.Tensor, "component batch pos"]
    components: list[str]
    logits: Float[torch.Tensor, "batch pos"]
    positions: torch.Tensor
    target: str
    n_layers: int
    n_heads: int

    def total(self) -> Float[torch.Tensor, "batch pos"]:
        """The sum over components (equals :attr:`logits` up to float rounding)."""
        return self.values.sum(0)

    def _mask(self, where: torch.Tensor | None) -> torch.Tensor:
        if where is None:
            return self.positions
        mask = torch.as_tensor(where, dtype=torch.bool)
        if mask.shape != self.positions.shape:
            raise ValueError(f"where must be a [batch, pos] mask of shape "
                             f"{list(self.positions.shape)}, got {list(mask.shape)}")
        if not (mask & self.positions).any():
            raise ValueError("where selects no cell that has a target")
        return mask & self.positions

    def mean(self, where: torch.Tensor | None = None) -> Float[torch.Tensor, " component"]:
        """Each component's mean contribution over the cells ``where`` (default: all cells with
        a target)."""
        mask = self._mask(where)
        return self.values[:, mask].mean(-1)

    def heads(self, where: torch.Tensor | None = None) -> LabelledGrid:
        """The heads' mean contributions as a ``[layer, head]`` grid."""
        means = self.mean(where)
        index = [self.components.index(head_name(la, h)) for la in range(self.n_layers)
                 for h in range(self.n_heads)]
        return LabelledGrid.layer_head(means[index].view(self.n_layers, self.n_heads),
                                       f"direct contribution to {self.target}")

    def top(self, k: int = 5, where: torch.Tensor | None = None) -> list[tuple[str, float]]:
        """The ``k`` components with the largest mean contribution, largest first."""
        k = validate.int_in_range(k, "k", 1, len(self.components))
        means = self.mean(where)
        order = torch.argsort(means, descending=True, stable=True)[:k]
        return [(self.components[int(i)], float(means[i])) for i in order]

    def to_frame(self, where: torch.Tensor | None = None):
        """One row per component: its mean contribution over ``where``, largest first."""
        import pandas as pd

        frame = pd.DataFrame({"component": self.components,
                              "mean_contribution": self.mean(where).numpy()})
        return frame.sort_values("mean_contribution", ascending=False, ignore_index=True)

    def figure(self, where: torch.Tensor | None = None, title: str | None = None):
        """A bar per component of its mean contribution."""
        from interp_lib.plotting import bar

        return bar(self.components, self.mean(where),
                   title=title or f"Direct contribution of each component to {self.target}",
                   y_title="mean contribution (logit units)")


def _targets(model: Any, tokens: torch.Tensor, target: Any, wrong: Any
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, str]:
    """(target ids [batch, pos], wrong ids or None, cells with a target, description)."""
    batch, pos = tokens.shape
    if target is None:
        ids = torch.cat([tokens[:, 1:], tokens[:, :1]], 1)
        mask = torch.ones(batch, pos, dtype=torch.bool)
        mask[:, -1] = False  # the last position has no next token
        return ids, None, mask, "the logit of the true next token"
    raw = torch.as_tensor(target)
    if raw.is_floating_point() or raw.is_complex() or raw.dtype == torch.bool or raw.ndim > 2:
        raise TypeError("target must be None, a token id, one id per example [batch], or ids "
                        f"per position [batch, pos], got {target!r}"[:200])
    ids = raw.to(device=tokens.device, dtype=torch.long)
    if ids.ndim > 2:
        raise TypeError("target must be None, a token id, one id per example [batch], or ids "
                        "per position [batch, pos]")
    if ids.ndim == 0:
        ids = ids.expand(batch)
    if ids.ndim == 1:
        if len(ids) != batch:
            raise ValueError(f"target has {len(ids)} ids for a batch of {batch}")
        ids = ids[:, None].expand(batch, pos)
        mask = torch.zeros(batch, pos, dtype=torch.bool)
        mask[:, -1] = True  # one answer per example: read at the last position
    else:
        if ids.shape != (batch, pos):
            raise ValueError(f"target ids per position must be [batch, pos] = {[batch, pos]}, "
                             f"got {list(ids.shape)}")
        mask = torch.ones(batch, pos, dtype=torch.bool)
    if ids.min() < 0 or ids.max() >= model.cfg.d_vocab:
        raise ValueError(f"target ids must lie in 0..{model.cfg.d_vocab - 1}")
    if wrong is None:
        return ids, None, mask, "the target logit"
    other, _, _, _ = _targets(model, tokens, wrong, None)
    return ids, other, mask, "the logit difference (target - wrong)"


@torch.no_grad()
def logit_attribution(
    model: Any,
    inputs: str | list[str] | Int[torch.Tensor, "batch pos"],
    target: int | Int[torch.Tensor, "..."] | None = None,
    *,
    wrong: int | Int[torch.Tensor, "..."] | None = None,
) -> LogitAttribution:
    """Direct logit attribution of every component (see the module docstring) from one
    forward pass that caches only what it needs.

    Args:
        inputs: text, equal-length texts or a ``[batch, pos]`` token tensor.
        target: ``None`` (default): at every position, the true next token. A token id or one
            id per example ``[batch]``: that token at the last position. Ids ``[batch, pos]``:
            a token per position.
        wrong: with a ``target``, attribute the logit difference ``target - wrong`` instead
            (same forms).
    """
    check_model(model)
    tokens = to_tokens(model, inputs)
    cfg = model.cfg
    ids, wrong_ids, mask, what = _targets(model, tokens, target, wrong)
    names = ["hook_embed", "hook_pos_embed", hook_name("ln_final_scale")]
    names += [hook_name("z", la) for la in range(cfg.n_layers)]
    names += [hook_name("mlp_out", la) for la in range(cfg.n_layers)]
    logits, cache = model.run_with_cache(tokens, names_filter=only(*names))
    w_u = model.W_U.detach()
    b_u = model.b_U.detach()
    direction = w_u[:, ids]                                   # [d_model, batch, pos]
    bias = b_u[ids]
    own = logits.gather(-1, ids[..., None])[..., 0]
    if wrong_ids is not None:
        direction = direction - w_u[:, wrong_ids]
        bias = bias - b_u[wrong_ids]
        own = own - logits.gather(-1, wrong_ids[..., None])[..., 0]
    direction = direction.permute(1, 2, 0)                    # [batch, pos, d_model]
    if getattr(cfg, "normalization_type", "LN") in ("LN", "LNPre"):
        direction = direction - direction.mean(-1, keepdim=True)  # (c - mean c)·u = c·(u - mean u)
    if getattr(cfg, "normalization_type", "LN") is not None:
        direction = direction / cache[hook_name("ln_final_scale")]  # scale: [batch, pos, 1]

    def project(component: torch.Tensor) -> torch.Tensor:     # [batch, pos, d_model] -> [b, p]
        return (component * direction).sum(-1)

    values, labels = [project(cache["hook_embed"])], ["embed"]
    if "hook_pos_embed" in cache.cache_dict:
        values.append(project(cache["hook_pos_embed"]))
        labels.append("pos_embed")
    for layer in range(cfg.n_layers):
        # each head's write z @ W_O, projected without materialising it: z · (W_O direction)
        w_o_dir = torch.einsum("hed,bpd->bphe", model.W_O[layer].detach(), direction)
        z = cache[hook_name("z", layer)]
        values.extend(torch.einsum("bphe,bphe->hbp", z, w_o_dir))
        labels.extend(head_name(layer, h) for h in range(cfg.n_heads))
        values.append(project(model.b_O[layer].detach().expand_as(direction)))
        labels.append(f"{layer} attn bias")
        values.append(project(cache[hook_name("mlp_out", layer)]))
        labels.append(f"{layer} mlp")
    values.append(bias.float())
    labels.append("unembed bias")
    stack = torch.stack([v.float() for v in values]).cpu()
    own = own.float().cpu()
    stack[:, ~mask] = float("nan")
    own[~mask] = float("nan")
    return LogitAttribution(stack, labels, own, mask, what, cfg.n_layers, cfg.n_heads)
