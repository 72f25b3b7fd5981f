"""Checks for notebook 06 (steering).

>>> import torch
>>> from interp_lib.exercises.steering import check_distinct_bigram_fraction
>>> def distinct_bigram_fraction(tokens):
...     pairs = list(zip(tokens[:-1], tokens[1:]))
...     return len(set(pairs)) / len(pairs) if pairs else 0.0
>>> check_distinct_bigram_fraction(distinct_bigram_fraction)
✔ distinct_bigram_fraction: correct (1 for varied text, near 0 for '!!!!', 0 for no pairs)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.exercises import ExerciseFailed, call, compare, expect, passed
from interp_lib.hooks import hook_name
from interp_lib.inputs import padded_batch

__all__ = ["check_add_vector_hook", "check_distinct_bigram_fraction",
           "check_mean_activation_difference", "check_probe_direction"]


def check_mean_activation_difference(fn: Any, model: Any = None) -> None:
    """``fn(pos_acts [b, p, d], pos_mask [b, p], neg_acts [c, q, d], neg_mask [c, q]) -> [d]``:
    the mean activation over the *real* tokens (mask 1) of the positive batch minus that of
    the negative batch: a contrastive steering vector."""
    gen = torch.Generator().manual_seed(9)
    pos = torch.randn(3, 5, 4, generator=gen) + 1
    neg = torch.randn(2, 6, 4, generator=gen) - 1
    pos_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    neg_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    pos[pos_mask == 0] = 50.0  # pads hold garbage
    neg[neg_mask == 0] = -50.0
    got = call(fn, pos.clone(), pos_mask.clone(), neg.clone(), neg_mask.clone(),
               name="mean_activation_difference")

    def mean(x, m):
        m = m.float()[..., None]
        return (x * m).sum((0, 1)) / m.sum()

    def per_sequence(x, m):
        m = m.float()[..., None]
        return ((x * m).sum(1) / m.sum(1)).mean(0)

    expected = mean(pos, pos_mask) - mean(neg, neg_mask)
    mistakes = [(pos.mean((0, 1)) - neg.mean((0, 1)),
                 "you averaged the padded positions too; weight each position by its mask"),
                (-expected, "the sign is flipped: positive minus negative"),
                (per_sequence(pos, pos_mask) - per_sequence(neg, neg_mask),
                 "you averaged each sequence first, then the sequences; average over all real "
                 "tokens at once (a long text counts for more tokens)")]
    compare(got, expected, "mean_activation_difference", axes=("d_model",), mistakes=mistakes)
    if model is not None:
        texts = ["The whale rose from the sea.", "The sailors watched the whale in silence."]
        tokens, mask = padded_batch(model, texts)
        name = hook_name("resid_pre", model.cfg.n_layers // 2)
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=name)
        acts = cache[name]
        got = call(fn, acts, mask, acts.flip(0), mask.flip(0), name="mean_activation_difference")
        compare(got, torch.zeros(model.cfg.d_model), "the difference of a batch with itself "
                                                     "(reordered)", axes=("d_model",),
                atol=1e-4)
    passed("mean_activation_difference", "padded positions left out")


def check_add_vector_hook(fn: Any, model: Any) -> None:
    """``fn(vector [d_model], coefficient) -> hook``: a residual-stream hook that adds
    ``coefficient * vector`` at every position."""
    tokens = model.to_tokens("The captain of the ship spoke to the crew.")
    gen = torch.Generator().manual_seed(10)
    vector = torch.randn(model.cfg.d_model, generator=gen)
    layer = model.cfg.n_layers // 2
    name = hook_name("resid_pre", layer)
    coefficient = 4.0
    with torch.no_grad():
        def reference(x, hook=None):
            return x + coefficient * vector.to(x.device, x.dtype)

        def last_only(x, hook=None):
            x = x.clone()
            x[:, -1] += coefficient * vector.to(x.device, x.dtype)
            return x

        expected = model.run_with_hooks(tokens, fwd_hooks=[(name, reference)])
        wrong_last = model.run_with_hooks(tokens, fwd_hooks=[(name, last_only)])
        unscaled = model.run_with_hooks(tokens, fwd_hooks=[
            (name, lambda x, hook: x + vector.to(x.device, x.dtype))])
        hook = call(fn, vector.clone(), coefficient, name="add_vector_hook")
        expect(callable(hook), "add_vector_hook must return a function hook(resid, hook)")
        got = call(lambda: model.run_with_hooks(tokens, fwd_hooks=[(name, hook)]),
                   name="add_vector_hook", model=model)
    compare(got, expected, "the logits with your hook", axes=("batch", "pos", "vocab"),
            atol=1e-4, mistakes=[(wrong_last, "you added the vector at the last position only; "
                                              "add it at every position"),
                                 (unscaled, "multiply the vector by the coefficient")])
    passed("add_vector_hook", f"coefficient {coefficient:g} at layer {layer}")


def check_distinct_bigram_fraction(fn: Any, model: Any = None) -> None:
    """``fn(tokens: list[int]) -> float``: the number of distinct adjacent pairs divided by the
    number of adjacent pairs: 1 for varied text, near 0 for text that repeats itself (a
    steered model that writes '!!!!!!' scores its measure but not this); 0 for fewer than two
    tokens (no text is not varied text)."""
    varied = [5, 9, 2, 7, 3, 8]
    stuck = [4] * 12
    loop = [1, 2, 1, 2, 1, 2, 1, 2]
    for tokens, expected in ((varied, 1.0), (stuck, 1 / 11), (loop, 2 / 7)):
        got = call(fn, list(tokens), name="distinct_bigram_fraction")
        unigram = len(set(tokens)) / len(tokens)
        compare(torch.as_tensor(float(got)), torch.tensor(expected),
                f"distinct_bigram_fraction({tokens})",
                mistakes=[(torch.tensor(unigram), "you counted single tokens; count adjacent "
                                                  "pairs (tokens[i], tokens[i + 1])")])
    no_pair = ("fewer than two tokens have no adjacent pair; return 0.0 then (an empty "
               "generation is not varied text)")
    for short in ([], [7]):
        try:
            got = call(fn, list(short), name="distinct_bigram_fraction")
        except ExerciseFailed as err:
            raise ExerciseFailed(f"{err}, on tokens {short}: {no_pair}") from None
        expect(float(got) == 0.0, f"distinct_bigram_fraction({short}) returned {got!r}: {no_pair}")
    passed("distinct_bigram_fraction", "1 for varied text, near 0 for '!!!!', 0 for no pairs")


def check_probe_direction(fn: Any, model: Any = None) -> None:
    """``fn(weights [d, 2], std [d]) -> [d]``: the unit vector, in the activations' own
    (unstandardised) space, along which a two-class logistic probe trained on standardised
    features ``(x - mean) / std`` raises the positive class (column 1) over the negative."""
    gen = torch.Generator().manual_seed(11)
    weights = torch.randn(6, 2, generator=gen)
    std = torch.rand(6, generator=gen) * 3 + 0.2
    got = call(fn, weights.clone(), std.clone(), name="probe_direction")
    raw = (weights[:, 1] - weights[:, 0]) / std
    expected = raw / raw.norm()
    no_std = weights[:, 1] - weights[:, 0]
    mistakes = [(no_std / no_std.norm(), "these are the standardised weights: divide by std to "
                                         "get the direction in the activations' own units"),
                (raw, "normalise the direction to unit length"),
                (-expected, "the direction must raise the positive class (column 1) over "
                            "the negative (column 0)"),
                ((weights[:, 1] - weights[:, 0]) * std
                 / ((weights[:, 1] - weights[:, 0]) * std).norm(),
                 "divide by std (the features were divided by it), do not multiply")]
    compare(got, expected, "probe_direction", axes=("d",), mistakes=mistakes)
    passed("probe_direction", "unit length, in the activations' units")
