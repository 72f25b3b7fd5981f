"""Checks for the course's exercises: your function, run on the loaded model and on small
planted cases, compared with the library's own implementation.

Each notebook has a module here (``interp_lib.exercises.logit_lens`` for notebook 01, ...)
with one ``check_<name>(your_function, model)`` per exercise. A check either prints what it
verified, or raises :class:`ExerciseFailed` with a message in the exercise's terms: the shape
it expected (with the axes' names) and the one it got, a result off by one position, a sign
flipped, a distribution normalised over the wrong axis, hooks left attached, a function not
written yet. It never shows you a wall of numbers.

The machinery every check uses:

- :func:`call` runs your function, turns ``NotImplementedError`` into "not written yet" and
  other errors into a short message that names your line, and makes sure no hook is left on
  the model afterwards;
- :func:`compare` compares what you returned with the expected tensor and, when they differ,
  looks for the usual mistakes before giving up with the largest difference;
- :func:`expect` states one more property with its own message.

>>> import torch
>>> from interp_lib.exercises import ExerciseFailed, compare
>>> expected = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
>>> compare(expected.clone(), expected, "probabilities", axes=("query", "key"))
>>> try:
...     compare(-expected, expected, "probabilities", axes=("query", "key"))
... except ExerciseFailed as err:
...     print(err)
probabilities: the sign is flipped (you returned minus the expected values)
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

__all__ = ["PRELUDE", "ExerciseFailed", "Mistake", "call", "compare", "expect",
           "passed"]

#: The names every exercise cell may use without importing them: the notebooks' setup cells
#: import them (and the tests run each exercise cell after this prelude).
PRELUDE = """\
import einops
import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
"""


class ExerciseFailed(AssertionError):
    """Your function does not do what the exercise asks; the message says how."""


#: A known mistake: ``(what the result would be if you made it, what to tell you)``.
Mistake = tuple[Any, str]


def passed(name: str, detail: str = "") -> None:
    """Print the line that says a check passed."""
    print(f"✔ {name}: correct" + (f" ({detail})" if detail else ""))


def expect(condition: bool, message: str) -> None:
    """Raise :class:`ExerciseFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseFailed(message)


def _your_line(err: BaseException) -> str:
    """Where in the student's code (a notebook cell) the error came from, if anywhere."""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [f for f in frames if "interp_lib" not in f.filename and "torch" not in f.filename
            and "site-packages" not in f.filename]
    if not mine:
        return ""
    frame = mine[-1]
    return f" (in {frame.name}, at `{(frame.line or '').strip()}`)"


def _attached(model: Any) -> dict[str, int]:
    from interp_lib.hooks import attached_hooks

    return attached_hooks(model)


def call(fn: Callable, *args: Any, name: str | None = None, model: Any = None,
         **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with the errors a student meets turned into clear messages;
    with ``model``, also fails (and cleans up) if the call left hooks attached to it."""
    label = name or getattr(fn, "__name__", "your function")
    if not callable(fn):
        raise ExerciseFailed(f"{label}: pass your function itself (without calling it), got "
                             f"{type(fn).__name__}")
    before = _attached(model) if model is not None else {}
    try:
        result = fn(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseFailed(
            f"{label} is not written yet: replace `raise NotImplementedError()` with your "
            "code, run that cell, then run this check again") from None
    except ExerciseFailed:
        raise
    except Exception as err:  # noqa: BLE001 - every error becomes a message for the student
        message = str(err).splitlines()[0] if str(err) else ""
        raise ExerciseFailed(f"{label} raised {type(err).__name__}: {message[:300]}"
                             f"{_your_line(err)}") from None
    finally:
        if model is not None:
            left = {k: v for k, v in _attached(model).items() if before.get(k, 0) < v}
            if left:
                model.reset_hooks(including_permanent=False)
    if model is not None and left:
        raise ExerciseFailed(
            f"{label} left {sum(left.values())} hook(s) attached ({', '.join(sorted(left))}); "
            "they would change every later forward pass. Attach hooks with "
            "`with model.hooks(fwd_hooks=...):` or `model.run_with_hooks(...)`, which remove "
            "them afterwards (the check has removed them now)")
    return result


def _as_tensor(got: Any, what: str) -> torch.Tensor:
    if isinstance(got, torch.Tensor):
        return got
    if got is None:
        raise ExerciseFailed(f"{what}: your function returned None; did you forget `return`?")
    try:
        import numpy as np

        if isinstance(got, np.ndarray | list | tuple | float | int):
            return torch.as_tensor(np.asarray(got, dtype=float))
    except (TypeError, ValueError):
        pass
    raise ExerciseFailed(f"{what}: expected a torch.Tensor, got {type(got).__name__}")


def _shape(shape: Sequence[int], axes: Sequence[str] | None) -> str:
    if axes and len(axes) == len(shape):
        return "[" + ", ".join(f"{a}={s}" for a, s in zip(axes, shape, strict=True)) + "]"
    return str(list(shape))


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    if a.shape != b.shape:
        return False
    if not (a.is_floating_point() or b.is_floating_point()):
        return bool(torch.equal(a.long(), b.long()))  # ids, ranks, masks: exactly
    return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol, equal_nan=True))


def _shape_hint(got: torch.Tensor, expected: torch.Tensor, axes: Sequence[str] | None
                ) -> str:
    """Why a wrong shape might be wrong, in the exercise's terms."""
    names = list(axes) if axes and len(axes) == expected.ndim else None
    if got.ndim == expected.ndim and sorted(got.shape) == sorted(expected.shape):
        for perm in itertools.permutations(range(expected.ndim)):
            if tuple(expected.shape[i] for i in perm) == tuple(got.shape) and \
                    perm != tuple(range(expected.ndim)):
                return "; the axes look swapped (check the order of your dimensions)"
    if got.ndim == expected.ndim + 1:
        for axis in range(got.ndim):
            if tuple(got.shape[:axis]) + tuple(got.shape[axis + 1:]) == tuple(expected.shape):
                return (f"; you kept an axis of size {got.shape[axis]} that should have been "
                        "reduced (averaged or summed) away")
    if got.ndim + 1 == expected.ndim and names:
        for axis in range(expected.ndim):
            if tuple(expected.shape[:axis]) + tuple(expected.shape[axis + 1:]) == \
                    tuple(got.shape):
                return f"; the {names[axis]} axis is missing (you reduced it, keep it)"
    if got.ndim == expected.ndim:
        diffs = [i for i in range(got.ndim) if got.shape[i] != expected.shape[i]]
        if len(diffs) == 1 and abs(got.shape[diffs[0]] - expected.shape[diffs[0]]) == 1:
            axis = names[diffs[0]] if names else f"axis {diffs[0]}"
            return (f"; the {axis} axis has one entry too {'many' if got.shape[diffs[0]] > expected.shape[diffs[0]] else 'few'}"  # noqa: E501
                    " (an off-by-one: which positions have a prediction or a target?)")
    return ""


def _diagnose(got: torch.Tensor, expected: torch.Tensor, axes: Sequence[str] | None,
              atol: float, rtol: float, normalised_over: int | None) -> str | None:
    """A known mistake that explains the difference, or None."""
    names = list(axes) if axes and len(axes) == expected.ndim else \
        [f"axis {i}" for i in range(expected.ndim)]
    if _close(-got, expected, atol, rtol):
        return "the sign is flipped (you returned minus the expected values)"
    flat_g, flat_e = got.flatten().double(), expected.flatten().double()
    if flat_e.norm() > 0 and flat_g.norm() > 0:
        scale = float(flat_g @ flat_e / (flat_e @ flat_e))
        if abs(scale - 1) > 1e-3 and scale != 0 and _close(got, expected * scale,
                                                             atol * abs(scale), rtol):
            return (f"your values are the expected ones times {scale:.4g}: a normalisation "
                    "or a scale factor is off (a mean vs a sum, a missing division?)")
        if _close(got, expected + (flat_g - flat_e).mean().to(expected.dtype), atol, rtol):
            return (f"your values are the expected ones plus a constant "
                    f"{float((flat_g - flat_e).mean()):.4g}: an offset or bias term is off")
    for axis in range(expected.ndim):
        n = expected.shape[axis]
        if n < 3:
            continue
        head_g, tail_g = got.narrow(axis, 1, n - 1), got.narrow(axis, 0, n - 1)
        head_e, tail_e = expected.narrow(axis, 0, n - 1), expected.narrow(axis, 1, n - 1)
        if _close(head_g, head_e, atol, rtol) or _close(tail_g, tail_e, atol, rtol):
            return (f"your values are shifted by one along the {names[axis]} axis: an "
                    "off-by-one (which position predicts which token?)")
    if normalised_over is not None and got.ndim == expected.ndim:
        for axis in range(got.ndim):
            if axis == normalised_over:
                continue
            sums = got.sum(axis)
            if bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-4)):
                return (f"your values sum to 1 along the {names[axis]} axis; they should sum "
                        f"to 1 along the {names[normalised_over]} axis (normalised over the "
                        "wrong axis)")
    return None


def compare(
    got: Any,
    expected: torch.Tensor,
    what: str,
    *,
    axes: Sequence[str] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    mistakes: Iterable[Mistake] = (),
    normalised_over: int | None = None,
) -> None:
    """Raise :class:`ExerciseFailed` unless ``got`` equals ``expected`` (to ``atol``/``rtol``).

    ``axes`` names the axes for the messages; ``mistakes`` lists known wrong answers with what
    to say when ``got`` matches one (checked first: "forgot BOS", "reversed KL"...);
    ``normalised_over`` is the axis ``expected`` sums to 1 along, if any.
    """
    got = _as_tensor(got, what)
    expected = expected.detach()
    got = got.detach().to(expected.device)
    if got.dtype == torch.bool and expected.dtype != torch.bool:
        got = got.to(expected.dtype)
    if got.is_floating_point() or expected.is_floating_point():
        got, expected = got.double(), expected.double()
    if tuple(got.shape) != tuple(expected.shape):
        if got.numel() == 1 and expected.numel() == 1:
            got = got.reshape(expected.shape)
        else:
            raise ExerciseFailed(
                f"{what}: expected shape {_shape(expected.shape, axes)}, got "
                f"{list(got.shape)}{_shape_hint(got, expected, axes)}")
    if got.is_floating_point() and not bool(torch.isfinite(got).all()) and \
            bool(torch.isfinite(expected).all()):
        bad = int((~torch.isfinite(got)).sum())
        raise ExerciseFailed(f"{what}: {bad} of your values are NaN or infinite (a log of 0, "
                             "a division by 0, or a softmax over -inf?)")
    if _close(got, expected, atol, rtol):
        return
    for wrong, message in mistakes:
        wrong = torch.as_tensor(wrong).detach().to(expected.device)
        wrong = wrong.double() if wrong.is_floating_point() else wrong.to(expected.dtype)
        if _close(got, wrong, atol, rtol):
            raise ExerciseFailed(f"{what}: {message}")
    hint = _diagnose(got, expected, axes, atol, rtol, normalised_over)
    if hint:
        raise ExerciseFailed(f"{what}: {hint}")
    diff = (got - expected).abs()
    diff = torch.where(torch.isnan(diff), torch.zeros_like(diff), diff)
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    where = ", ".join(f"{a}={i}" for a, i in zip(axes, index, strict=True)) \
        if axes and len(axes) == len(index) else str(list(index))
    share = float((diff > atol + rtol * expected.abs()).double().mean())
    raise ExerciseFailed(
        f"{what}: {share:.0%} of the values differ; the largest difference is "
        f"{float(diff.max()):.4g} at [{where}]: expected {float(expected[index]):.4g}, got "
        f"{float(got[index]):.4g}")
