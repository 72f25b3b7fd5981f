"""Argument checks shared by every public function: one place, one wording.

Each validator takes the value and the *name of the argument* it came in, and either returns
the value (converted where that is safe: an int-like to ``int``, a sequence to a ``list``) or
raises :class:`TypeError` (wrong kind of thing) or :class:`ValueError` (right kind, wrong
value) with a message that names the argument, says what it got and what is allowed. They run
before any forward pass, so a bad call costs nothing and explains itself.

>>> from interp_lib.validate import positive_int, fraction
>>> positive_int(4, "batch_size")
4
>>> positive_int(0, "batch_size")
Traceback (most recent call last):
...
ValueError: batch_size must be a positive int, got 0
>>> fraction(2.0, "test_fraction")
Traceback (most recent call last):
...
ValueError: test_fraction must be a number in (0, 1), got 2.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "ModelMismatchError",
    "check_model",
    "check_same_model",
    "choice",
    "finite_float",
    "finite_tensor",
    "flag",
    "fraction",
    "function",
    "int_in_range",
    "model_signature",
    "nonnegative_int",
    "positive_int",
    "probability",
    "texts",
]


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}" if not isinstance(value, int | float) else text


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is a whole number >= 1 (bools and floats refused)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {_describe(value)}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def nonnegative_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` if it is a whole number >= 0."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a non-negative int, got {_describe(value)}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value}")
    return int(value)


def int_in_range(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an ``int`` if ``low <= value <= high``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int in {low}..{high}, got {_describe(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high}, got {value}")
    return int(value)


def finite_float(value: Any, name: str, *, positive: bool = False,
                 nonnegative: bool = False) -> float:
    """``value`` as a finite ``float`` (NaN and infinities refused), optionally > 0 or >= 0."""
    kind = "a positive" if positive else "a non-negative" if nonnegative else "a finite"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            value = value.item()  # a 0-d tensor or numpy scalar
        else:
            raise TypeError(f"{name} must be {kind} number, got {_describe(value)}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be {kind} number, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {kind} number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value}")
    return value


def fraction(value: Any, name: str, *, closed: bool = False) -> float:
    """A number in ``(0, 1)`` (``closed=True``: ``[0, 1]``)."""
    interval = "[0, 1]" if closed else "(0, 1)"
    try:
        value = finite_float(value, name)
    except (TypeError, ValueError):
        kind = TypeError if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            else ValueError
        raise kind(f"{name} must be a number in {interval}, got {_describe(value)}") from None
    inside = 0 <= value <= 1 if closed else 0 < value < 1
    if not inside:
        raise ValueError(f"{name} must be a number in {interval}, got {value}")
    return value


def probability(value: Any, name: str) -> float:
    """A number in ``[0, 1]``."""
    return fraction(value, name, closed=True)


def flag(value: Any, name: str) -> bool:
    """``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return value


def choice(value: Any, name: str, options: Iterable[Any]) -> Any:
    """``value`` if it is one of ``options``."""
    options = tuple(options)
    try:
        ok = value in options
    except TypeError:  # unhashable or uncomparable
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {list(options)}, got {_describe(value)}")
    return value


def function(value: Any, name: str, signature: str = "") -> Callable:
    """``value`` if it is callable; ``signature`` shows what it is called with."""
    if not callable(value):
        shape = f" {signature}" if signature else ""
        raise TypeError(f"{name} must be a function{shape}, got {_describe(value)}")
    return value


def texts(value: Any, name: str, *, min_count: int = 1, allow_single: bool = False
          ) -> list[str]:
    """A list of non-empty strings (at least ``min_count``). A single string is refused, so
    that it is never split into letters, unless ``allow_single`` (then it becomes a list)."""
    if isinstance(value, str):
        if not allow_single:
            raise TypeError(
                f"{name} must be a list of strings, got a single string {value[:40]!r}; "
                f"wrap it in a list: [{value[:20]!r}]")
        value = [value]
    if not isinstance(value, Sequence) and not (
            isinstance(value, Iterable) and not hasattr(value, "shape")):
        raise TypeError(f"{name} must be a list of strings, got {_describe(value)}")
    items = list(value)
    bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name} must contain only strings; item {bad[0]} is "
                        f"{_describe(items[bad[0]])}")
    empty = [i for i, t in enumerate(items) if not t.strip()]
    if empty:
        raise ValueError(f"{name}: item {empty[0]} is an empty string; every text needs "
                         "at least one character that is not whitespace")
    if not items:
        raise ValueError(f"{name} is empty: give at least {min_count} text"
                         f"{'s' if min_count > 1 else ''}")
    if len(items) < min_count:
        raise ValueError(f"{name} must hold at least {min_count} text"
                         f"{'s' if min_count > 1 else ''}, got {len(items)}")
    return items


def finite_tensor(value: Any, name: str, *, shape: Sequence[int | None] | None = None,
                  dims: str = ""):
    """``value`` as a float tensor with no NaN or infinity, optionally of ``shape`` (``None``
    entries match any size; ``dims`` names the axes in the message, e.g. ``"[layer, head]"``)."""
    import torch

    if not isinstance(value, torch.Tensor):
        try:
            import numpy as np

            if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray
                                                          | numbers.Real):
                raise TypeError
            value = torch.as_tensor(value, dtype=torch.float32)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a tensor of numbers, got {_describe(value)}"
                            ) from None
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{name} must be a tensor of real numbers, got dtype {value.dtype}")
    if shape is not None:
        want, got = tuple(shape), tuple(value.shape)
        if len(got) != len(want) or any(
                w is not None and w != g for w, g in zip(want, got, strict=True)):
            shown = "[" + ", ".join("*" if w is None else str(w) for w in want) + "]"
            raise ValueError(f"{name} must have shape {dims + ' = ' if dims else ''}{shown}, "
                             f"got {list(got)}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} has {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'}; "
                         "give finite numbers")
    return value


# ---------------------------------------------------------------- models


def check_model(model: Any, name: str = "model") -> Any:
    """``model`` if it looks like a model from :func:`interp_lib.load_model` (a
    TransformerLens bridge: a ``cfg`` with sizes, hooks, a tokenizer). A string is the
    common mistake: the message says to load it first."""
    if isinstance(model, str | bytes) or model is None or isinstance(model, numbers.Number):
        shown = repr(model)[:40]
        hint = (f"; call interp_lib.load_model({shown}) first and pass the model it returns"
                if isinstance(model, str) else "")
        raise TypeError(f"{name}: expected a model from interp_lib.load_model(...), got "
                        f"{type(model).__name__} {shown}{hint}")
    cfg = getattr(model, "cfg", None)
    needed = ("n_layers", "n_heads", "d_model", "d_vocab", "n_ctx")
    if cfg is None or not all(hasattr(cfg, k) for k in needed) or not hasattr(model, "hooks"):
        raise TypeError(f"{name}: expected a model from interp_lib.load_model(...) (a "
                        f"TransformerLens bridge with .cfg and hooks), got "
                        f"{type(model).__name__}")
    return model


def model_signature(model: Any) -> tuple[int, int, int, int, int]:
    """The sizes that make activations and probes of two models interchangeable:
    ``(n_layers, n_heads, d_model, d_head, d_vocab)``."""
    cfg = model.cfg
    return (int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_model), int(cfg.d_head),
            int(cfg.d_vocab))


class ModelMismatchError(ValueError):
    """A result computed on one model was used with a model of another shape."""


def check_same_model(model: Any, signature: tuple[int, ...] | None, what: str) -> None:
    """Refuse ``model`` when ``signature`` (recorded by a result) says ``what`` came from a
    model of other sizes."""
    if signature is None:
        return
    mine = model_signature(model)
    if tuple(signature) != mine:
        labels = ("n_layers", "n_heads", "d_model", "d_head", "d_vocab")
        diff = ", ".join(f"{k} {a} vs {b}" for k, a, b in zip(labels, signature, mine, strict=True)
                         if a != b)
        raise ModelMismatchError(
            f"{what} was computed on a model of other sizes ({diff}: theirs vs this model's); "
            "rebuild it with this model")
