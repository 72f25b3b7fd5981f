"""Checks for notebook 07 (debugging and evaluating). Three of them use the notebook's own
checks: your code is what they check, so a wrong answer is caught the way a planted bug is.

>>> import torch
>>> from interp_lib.exercises.debugging import check_first_occurrence
>>> def first_occurrence(tokens):
...     seen, out = set(), []
...     for t in tokens.tolist():
...         out.append(t not in seen)
...         seen.add(t)
...     out[0] = False
...     return torch.tensor(out)
>>> check_first_occurrence(first_occurrence)
✔ first_occurrence: correct (BOS is never a first occurrence)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.checks import check_batched_loss, check_generation_score, check_overfit_tiny
from interp_lib.exercises import ExerciseFailed, call, compare, passed

__all__ = ["check_first_occurrence", "check_padded_sequence_losses", "check_score_tokens",
           "check_training_step"]

TEXTS = ["The committee met again on Tuesday and the chairman read the report aloud.",
         "A ship sailed at dawn.",
         "Whales were seen off the coast, and the sailors counted them twice before noon.",
         "Congress adjourned."]


def check_padded_sequence_losses(fn: Any, model: Any) -> None:
    """``fn(model, texts, padding_side) -> [batch]``: each text's summed loss (nats) computed
    from *one* padded batch (``interp_lib.inputs.padded_batch``), equal to its loss alone."""
    for side in ("right", "left"):
        def batch_losses(m, texts, padding_side, side=side):
            return call(fn, m, texts, padding_side, name="padded_sequence_losses", model=m)

        result = check_batched_loss(model, TEXTS, padding_side=side, batch_losses=batch_losses)
        if not result.passed:
            raise ExerciseFailed(
                f"padded_sequence_losses with {side} padding: {result.message} (sequence "
                f"{result.worst}: alone {result.expected[result.worst]:.3f} nats, in your batch "
                f"{result.got[result.worst]:.3f}). Pass the attention mask to the model, and "
                "count only targets where both the target and the position predicting it are "
                "real tokens")
    passed("padded_sequence_losses", "right and left padding")


def check_score_tokens(fn: Any, model: Any) -> None:
    """``fn(model, tokens [1, pos]) -> [1, pos - 1]``: the log-probability the model gives each
    token after the first, given the tokens before it (scoring a generated sequence)."""
    def scorer(m, tokens):
        return call(fn, m, tokens, name="score_tokens", model=m)

    for greedy in (True, False):
        result = check_generation_score(model, "The president told the Congress that", 12,
                                        greedy=greedy, seed=1, scorer=scorer)
        if not result.passed:
            raise ExerciseFailed(
                f"score_tokens ({'greedy' if greedy else 'sampled'} decoding): {result.message}"
                "; the decoder recorded each chosen token's log-probability from the logits at "
                "the position before it, with BOS in front. Score tokens[:, 1:] with "
                "logits[:, :-1] of the whole sequence, BOS included")
    passed("score_tokens", "greedy and sampled generations")


def check_training_step(fn: Any, model: Any) -> None:
    """``fn(tiny_model, optimizer, tokens) -> float``: one training step of a Hugging Face
    causal LM (``tiny_model(tokens).logits``): next-token loss, zero the gradients, backward,
    step; returns the loss. The check trains a tiny model with it for 200 steps: a correct
    step memorises four sequences."""
    def step(tiny, optimizer, tokens):
        return call(fn, tiny, optimizer, tokens, name="training_step")

    result = check_overfit_tiny(model, TEXTS, step=step)
    if not result.passed:
        losses = result.extra["losses"]
        flat = abs(losses[-1] - losses[0]) < 0.05 * losses[0]
        raise ExerciseFailed(
            f"training_step: {result.message}. "
            + ("The loss did not move at all: are the gradients zeroed *after* backward and "
               "before the step (which wipes them), or is optimizer.step() missing?" if flat
               else "The loss fell but not far enough: is the loss the next-token loss "
                    "(logits[:, :-1] against tokens[:, 1:])?"))
    passed("training_step", result.message)


def check_first_occurrence(fn: Any, model: Any = None) -> None:
    """``fn(tokens [pos]) -> bool [pos]``: True where a token appears for the first time in its
    window; position 0 (BOS) is never a first occurrence."""
    tokens = torch.tensor([0, 5, 7, 5, 9, 7, 7, 2])
    got = call(fn, tokens.clone(), name="first_occurrence")
    expected = torch.tensor([False, True, True, False, True, False, False, True])
    with_bos = expected.clone()
    with_bos[0] = True
    mistakes = [(with_bos, "BOS (position 0) is not a token of the text: mark it False"),
                (~expected & (torch.arange(8) > 0), "these are the repeats; mark the first "
                                                    "occurrences True"),
                (torch.tensor([False, True, True, True, True, True, False, True]),
                 "compare each token with every earlier one, not only the one before it")]
    compare(got, expected, "first_occurrence", axes=("pos",), mistakes=mistakes)
    passed("first_occurrence", "BOS is never a first occurrence")
