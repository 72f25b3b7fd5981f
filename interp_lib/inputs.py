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

from interp_lib import validate
from interp_lib.validate import check_model

__all__ = [
    "check_layer",
    "head_name",
    "head_names",
    "pad_id",
    "pad_rows",
    "padded_batch",
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
            f"head must be 'layer.head' (e.g. '1.4') or a (layer, head) pair, got {head!r}"
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
        isinstance(heads, Sequence) and len(heads) == 2
        and all(isinstance(h, int) and not isinstance(h, bool) for h in heads)
    ):
        heads = [heads]
    if not isinstance(heads, Sequence | set | tuple) or isinstance(heads, bytes):
        raise TypeError(f"heads must be a list of heads ('L.H' names or (layer, head) pairs), got "
                        f"{type(heads).__name__}")
    heads = list(heads)
    if not heads:
        raise ValueError("heads is empty: pass at least one head, e.g. ['1.4']")
    return [parse_head(h, cfg) for h in heads]


def to_tokens(
    model: Any,
    inputs: str | Sequence[str] | torch.Tensor,
    *,
    prepend_bos: bool | None = None,
    name: str = "inputs",
) -> Tokens:
    """A ``[batch, pos]`` token tensor on the model's device from text, texts or tokens.

    Texts of different lengths are refused rather than silently padded (padding changes what a
    head attends to); give token tensors, texts that tokenize to the same length, or use
    :func:`padded_batch`. Sequences longer than the model's context are refused, never cut:
    split a long text with :func:`interp_lib.data.token_windows` if windows are what you want.
    ``name`` is the argument's name in error messages.
    """
    check_model(model)
    cfg = model.cfg
    if prepend_bos is not None and not isinstance(prepend_bos, bool):
        raise TypeError(f"prepend_bos must be True, False or None, got {prepend_bos!r}")
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, torch.Tensor):
        tokens = inputs
        if tokens.ndim == 1:
            tokens = tokens[None]
        if tokens.ndim != 2:
            raise ValueError(f"{name}: tokens must be [batch, pos], got shape "
                             f"{list(tokens.shape)}")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise TypeError(f"{name}: token ids must be an integer tensor, got {tokens.dtype}")
        tokens = tokens.long()
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= cfg.d_vocab):
            raise ValueError(
                f"{name}: token ids must lie in 0..{cfg.d_vocab - 1} (the model's vocabulary); "
                f"got {int(tokens.min())}..{int(tokens.max())}"
            )
    elif isinstance(inputs, Sequence):
        texts = validate.texts(inputs, name)
        rows = [_encode(model, t, prepend_bos) for t in texts]
        lengths = sorted({len(r) for r in rows})
        longest = lengths[-1]
        if longest > cfg.n_ctx:
            raise ValueError(
                f"{name}: a text is {longest} tokens long, more than the model's context of "
                f"{cfg.n_ctx}; nothing was cut. Shorten it, or split it into windows with "
                "interp_lib.data.token_windows(model, text, n_windows, length)")
        if len(lengths) > 1:
            raise ValueError(
                f"{name}: the texts tokenize to different lengths {lengths}; pass them one at a "
                "time, as an equal-length token tensor, or as a padded batch "
                "(interp_lib.inputs.padded_batch; padding changes what heads attend to)"
            )
        tokens = torch.stack(rows)
    else:
        raise TypeError(
            f"{name} must be a string, a list of strings or a [batch, pos] token tensor, got "
            f"{type(inputs).__name__}"
        )
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{name}: the token batch is empty (shape {list(tokens.shape)})")
    if tokens.shape[1] > cfg.n_ctx:
        raise ValueError(
            f"{name}: sequence length {tokens.shape[1]} exceeds the model's context of "
            f"{cfg.n_ctx} tokens; shorten it or split it into windows "
            "(interp_lib.data.token_windows)"
        )
    return tokens.to(cfg.device)


def _encode(model: Any, text: str, prepend_bos: bool | None) -> torch.Tensor:
    """One text's tokens, never truncated (TransformerLens truncates to the context by
    default)."""
    return model.to_tokens(text, prepend_bos=prepend_bos, truncate=False)[0]


def pad_id(model: Any) -> int:
    """The one id padded positions hold: the tokenizer's pad token, else its EOS token
    (GPT-2 and the course model have no pad token; EOS is BOS there). Padded positions are
    masked out, so the id only has to be a valid token."""
    tokenizer = model.tokenizer
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None \
            else tokenizer.bos_token_id
    if pad is None:
        raise ValueError("the model's tokenizer has no pad, EOS or BOS token to pad with")
    return int(pad)


def padded_batch(
    model: Any,
    texts: Sequence[str] | Sequence[Sequence[int]] | Sequence[torch.Tensor],
    padding_side: str = "right",
    *,
    prepend_bos: bool = True,
    name: str = "texts",
) -> tuple[Tokens, Int[torch.Tensor, "batch pos"]]:
    """``(tokens, attention_mask)`` of texts (or token rows) of different lengths as one batch,
    on the model's device. Texts get BOS first (``prepend_bos``), whatever the model's default;
    token rows are taken as they are. Padding uses :func:`pad_id` on ``padding_side``; the
    mask is 1 on real tokens. Refuses a row longer than the model's context."""
    check_model(model)
    validate.choice(padding_side, "padding_side", ("left", "right"))
    if isinstance(texts, str):
        validate.texts(texts, name)  # raises: a single string, not a list
    items = list(texts)
    if not items:
        raise ValueError(f"{name} is empty: give at least one text")
    if all(isinstance(t, str) for t in items):
        rows = [_encode(model, t, prepend_bos) for t in validate.texts(items, name)]
    else:
        rows = [to_tokens(model, torch.as_tensor(r), name=name)[0] for r in items]
    width = max(len(r) for r in rows)
    if width > model.cfg.n_ctx:
        raise ValueError(f"{name}: a text has {width} tokens, more than the model's context of "
                         f"{model.cfg.n_ctx}; nothing was cut: shorten it")
    tokens, mask = pad_rows(rows, pad_id(model), padding_side)
    return tokens.to(model.cfg.device), mask.to(model.cfg.device)


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
