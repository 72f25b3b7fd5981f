"""Checked inputs shared by the technique modules: token batches, layers and "L.H" head names.

Every public function of ``interp_lib`` that takes text, tokens, a layer or a head goes through
these helpers, so a wrong input fails early with a message that says what to do.

>>> from interp_lib.inputs import head_name, parse_head
>>> head_name(5, 1)
'5.1'
>>> class Cfg: n_layers, n_heads = 12, 12
>>> parse_head("5.1", Cfg)
(5, 1)
>>> parse_head((12, 0), Cfg)
Traceback (most recent call last):
...
ValueError: layer 12 is out of range: this model has layers 0..11
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int

__all__ = [
    "check_layer",
    "head_name",
    "head_names",
    "pad_rows",
    "parse_head",
    "parse_heads",
    "to_tokens",
]

#: A batch of token ids ``[batch, pos]``.
Tokens = Int[torch.Tensor, "batch pos"]


def head_name(layer: int, head: int) -> str:
    """The course's name for a head: ``"layer.head"``, as in "induction head 5.5"."""
    return f"{layer}.{head}"


def head_names(cfg: Any) -> list[str]:
    """All head names of a model, layer-major: ``["0.0", "0.1", ..., "L.H"]``."""
    return [head_name(layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)]


def _index(value: Any, what: str) -> int:
    if isinstance(value, bool | float) or not hasattr(value, "__index__"):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return operator.index(value)


def check_layer(layer: Any, cfg: Any, *, what: str = "layer") -> int:
    """``layer`` as an int in ``0 .. n_layers - 1`` (negative values count from the end)."""
    layer = _index(layer, what)
    if layer < 0:
        layer += cfg.n_layers
    if not 0 <= layer < cfg.n_layers:
        raise ValueError(
            f"{what} {layer} is out of range: this model has layers 0..{cfg.n_layers - 1}"
        )
    return layer


def parse_head(head: Any, cfg: Any) -> tuple[int, int]:
    """A head given as ``"L.H"`` or ``(L, H)``, checked against the model's sizes."""
    if isinstance(head, str):
        parts = head.strip().split(".")
        if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise ValueError(f"head {head!r} is not of the form 'layer.head', e.g. '1.4'")
        layer, index = int(parts[0]), int(parts[1])
    elif isinstance(head, Sequence) and len(head) == 2:
        layer, index = head
    else:
        raise TypeError(
            f"a head is 'layer.head' (e.g. '1.4') or a (layer, head) pair, got {head!r}"
        )
    layer = check_layer(layer, cfg)
    index = _index(index, "head index")
    if not 0 <= index < cfg.n_heads:
        raise ValueError(
            f"head {index} is out of range: layer {layer} has heads 0..{cfg.n_heads - 1}"
        )
    return layer, index


def parse_heads(heads: Any, cfg: Any) -> list[tuple[int, int]]:
    """A list of heads (names or pairs); a single head is accepted too. Must be non-empty."""
    if isinstance(heads, str) or (
        isinstance(heads, Sequence) and len(heads) == 2 and all(isinstance(h, int) for h in heads)
    ):
        heads = [heads]
    heads = list(heads)
    if not heads:
        raise ValueError("no heads given: pass at least one head, e.g. ['1.4']")
    return [parse_head(h, cfg) for h in heads]


def to_tokens(
    model: Any,
    inputs: str | Sequence[str] | torch.Tensor,
    *,
    prepend_bos: bool | None = None,
) -> Tokens:
    """A ``[batch, pos]`` token tensor on the model's device from text, texts or tokens.

    Texts of different lengths are refused rather than silently padded (padding changes what a
    head attends to); give token tensors, or texts that tokenize to the same length. Sequences
    longer than the model's context are refused.
    """
    cfg = model.cfg
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, torch.Tensor):
        tokens = inputs
        if tokens.ndim == 1:
            tokens = tokens[None]
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
        tokens = tokens.long()
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= cfg.d_vocab):
            raise ValueError(
                f"token ids must lie in 0..{cfg.d_vocab - 1} (the model's vocabulary); got "
                f"{int(tokens.min())}..{int(tokens.max())}"
            )
    elif isinstance(inputs, Sequence) and all(isinstance(t, str) for t in inputs):
        if not inputs:
            raise ValueError("no texts given: pass a string or a non-empty list of strings")
        if any(not t for t in inputs):
            raise ValueError("an input text is empty; give at least one character per text")
        rows = [model.to_tokens(t, prepend_bos=prepend_bos)[0] for t in inputs]
        lengths = sorted({len(r) for r in rows})
        if len(lengths) > 1:
            raise ValueError(
                f"the texts tokenize to different lengths {lengths}; pass them one at a time or "
                "as an equal-length token tensor (padding would change the attention patterns)"
            )
        tokens = torch.stack(rows)
    else:
        raise TypeError(
            "inputs must be a string, a list of strings or a [batch, pos] token tensor, got "
            f"{type(inputs).__name__}"
        )
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"the token batch is empty (shape {tuple(tokens.shape)})")
    if tokens.shape[1] > cfg.n_ctx:
        raise ValueError(
            f"sequence length {tokens.shape[1]} exceeds the model's context of {cfg.n_ctx} "
            "tokens; shorten the text or split it into windows"
        )
    return tokens.to(cfg.device)


def pad_rows(
    rows: Sequence[Sequence[int] | torch.Tensor], pad_id: int, side: str = "right"
) -> tuple[Tokens, Int[torch.Tensor, "batch pos"]]:
    """Token rows of different lengths as one ``[batch, width]`` tensor padded with ``pad_id``
    on ``side``, and the attention mask (1 on real tokens). Right padding is what a causal
    model needs no care for: it never attends to pads that come after the real tokens.

    >>> tokens, mask = pad_rows([[5, 6, 7], [8]], pad_id=0, side="left")
    >>> tokens.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', got {side!r}")
    rows = [torch.as_tensor(row, dtype=torch.long).flatten() for row in rows]
    if not rows or any(len(row) == 0 for row in rows):
        raise ValueError("pad_rows needs at least one row and no empty rows")
    width = max(len(row) for row in rows)
    tokens = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        tokens[i, span] = row.cpu()
        mask[i, span] = 1
    return tokens, mask
