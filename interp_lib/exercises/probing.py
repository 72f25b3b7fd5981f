"""Checks for notebook 05 (grammar probes).

>>> from interp_lib.exercises.probing import check_last_token_of_each_word
>>> def last_token_of_each_word(token_spans, word_spans):
...     last = [-1] * len(word_spans)
...     for t, (start, end) in enumerate(token_spans):
...         for w, (ws, we) in enumerate(word_spans):
...             if ws <= start < we:
...                 last[w] = t
...     return last
>>> check_last_token_of_each_word(last_token_of_each_word)
✔ last_token_of_each_word: correct (a word split into three pieces, and one with no token)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from interp_lib.exercises import ExerciseFailed, call, compare, expect, passed
from interp_lib.fitting import Standardiser, fit_logistic, predict

__all__ = ["check_control_labels", "check_last_token_of_each_word", "check_probe_accuracy",
           "check_standardise"]


def check_last_token_of_each_word(fn: Any, model: Any = None) -> None:
    """``fn(token_spans, word_spans) -> list[int]``: for each word (a ``(start, end)``
    character span), the index of the *last* token whose first character lies inside it (-1
    when no token does). In a left-to-right model the last piece is the first to have seen
    the whole word."""
    # "The unbelievable cat." -> tokens: The | un | believ | able | cat | .
    token_spans = [(0, 3), (4, 6), (6, 12), (12, 16), (17, 20), (20, 21)]
    word_spans = [(0, 3), (4, 16), (17, 20), (20, 21), (22, 25)]
    got = call(fn, token_spans, word_spans, name="last_token_of_each_word")
    expected = torch.tensor([0, 3, 4, 5, -1])
    mistakes = [(torch.tensor([0, 1, 4, 5, -1]),
                 "you took each word's *first* token; take its last (\"able\", not \"un\")"),
                (torch.tensor([0, 3, 4, 5, 5]),
                 "a word no token starts in must get -1 (the last word here has no token)")]
    compare(torch.as_tensor(list(got)) if isinstance(got, list | tuple) else got, expected,
            "last_token_of_each_word", axes=("word",), mistakes=mistakes)
    passed("last_token_of_each_word", "a word split into three pieces, and one with no token")


def check_control_labels(fn: Any, model: Any = None) -> None:
    """``fn(word_types list[str], labels list[str], seed) -> list[str]``: Hewitt & Liang's
    control task: every word type gets *one* label, drawn at random from the distribution of
    ``labels``; the same type always gets the same label."""
    words = ("the cat sat on the mat and the dog sat on the rug while a cat ran to the door "
             "and a dog ran to the cat").split()
    tags = {"the": "DET", "a": "DET", "cat": "NOUN", "mat": "NOUN", "dog": "NOUN",
            "rug": "NOUN", "door": "NOUN", "sat": "VERB", "ran": "VERB", "on": "ADP",
            "to": "ADP", "and": "CCONJ", "while": "SCONJ"}
    labels = [tags[w] for w in words]
    got = call(fn, list(words), list(labels), 0, name="control_labels")
    if isinstance(got, np.ndarray | torch.Tensor):
        got = list(got.tolist())
    expect(isinstance(got, list) and len(got) == len(words),
           f"control_labels must return one label per word ({len(words)}), got "
           f"{type(got).__name__} of length {len(got) if hasattr(got, '__len__') else '?'}")
    by_type: dict[str, set] = {}
    for word, label in zip(words, got, strict=True):
        by_type.setdefault(word, set()).add(label)
    mixed = sorted(w for w, s in by_type.items() if len(s) > 1)
    if mixed:
        raise ExerciseFailed(f"control_labels: the word type {mixed[0]!r} got different labels "
                             f"{sorted(by_type[mixed[0]])}; draw one label per *type* and reuse it")
    alien = sorted(set(got) - set(labels))
    if alien:
        raise ExerciseFailed(f"control_labels: {alien[0]!r} is not one of the task's labels; draw "
                             "from the labels you were given")
    if got == labels:
        raise ExerciseFailed("control_labels: you returned the real labels; the control task "
                             "replaces them with random ones")
    # drawn from the distribution: over many seeds, label frequencies follow the types' draws
    counts = Counter()
    for seed in range(60):
        drawn = call(fn, list(words), list(labels), seed, name="control_labels")
        drawn = list(drawn.tolist()) if hasattr(drawn, "tolist") else list(drawn)
        counts.update(dict(zip(words, drawn, strict=True)).values())
    total = sum(counts.values())
    share = {k: v / total for k, v in counts.items()}
    target = {k: v / len(labels) for k, v in Counter(labels).items()}
    off = max(abs(share.get(k, 0.0) - p) for k, p in target.items())
    expect(len(share) > 1, "control_labels: every type got the same label whatever the seed; "
                           "draw each type's label at random")
    expect(off < 0.12, f"control_labels: over 60 seeds your labels' frequencies differ from "
                       f"the task's by up to {off:.2f}; draw them with the task's label "
                       "frequencies (e.g. rng.choice(values, p=counts / counts.sum()))")
    passed("control_labels", "one label per type, drawn from the task's distribution")


def check_standardise(fn: Any, model: Any = None) -> None:
    """``fn(train [n, d], test [m, d]) -> (train_z, test_z)``: both centred and scaled with
    the *training* mean and standard deviation (the test set is never looked at)."""
    gen = torch.Generator().manual_seed(7)
    train = torch.randn(50, 4, generator=gen) * 3 + 5
    test = torch.randn(20, 4, generator=gen) * 2 - 1
    out = call(fn, train.clone(), test.clone(), name="standardise")
    expect(isinstance(out, tuple | list) and len(out) == 2,
           "standardise must return (train_z, test_z)")
    train_z, test_z = out
    scaler = Standardiser.fit(train[None])
    compare(train_z, scaler(train[None])[0], "train_z", axes=("n", "d"), atol=1e-4, rtol=1e-3)
    leak = (test - test.mean(0)) / test.std(0)
    compare(test_z, scaler(test[None])[0], "test_z", axes=("n", "d"), atol=1e-4, rtol=1e-3,
            mistakes=[(leak, "you standardised the test set with its own statistics; use the "
                             "training mean and std (a probe must not see the test set)")])
    passed("standardise", "training statistics for both")


def check_probe_accuracy(fn: Any, model: Any = None) -> None:
    """``fn(x_train [n, d], y_train [n], x_test [m, d], y_test [m], n_classes) -> float``:
    train a linear (logistic) probe on the training set and return its accuracy on the test
    set."""
    gen = torch.Generator().manual_seed(8)
    n_classes, d = 4, 12
    centres = torch.randn(n_classes, d, generator=gen) * 1.2
    y = torch.randint(n_classes, (600,), generator=gen)
    x = centres[y] + torch.randn(600, d, generator=gen)
    x_train, y_train, x_test, y_test = x[:400], y[:400], x[400:], y[400:]
    got = call(fn, x_train, y_train, x_test, y_test, n_classes, name="probe_accuracy")
    got = float(torch.as_tensor(got))
    scaler = Standardiser.fit(x_train[None])
    w, b = fit_logistic(scaler(x_train[None]), y_train, n_classes, 1e-3, 100)
    reference = float((predict(scaler(x_test[None]), w, b)[0] == y_test).float().mean())
    majority = float((y_test == Counter(y_train.tolist()).most_common(1)[0][0]).float().mean())
    expect(0 <= got <= 1, f"probe_accuracy: an accuracy is a share in [0, 1], got {got:.4g}")
    expect(abs(got - majority) > 1e-6 or reference - majority < 0.05,
           f"probe_accuracy: {got:.3f} is what always predicting the most frequent class "
           "gets; is your probe trained (and used) at all?")
    expect(got >= reference - 0.04,
           f"probe_accuracy: your probe reaches {got:.3f} on the test set, a logistic probe "
           f"reaches {reference:.3f}; train longer, standardise the features, or check that "
           "you score the test set")
    # the test labels replaced by random ones: a probe that never saw them scores about chance
    shuffled = torch.randint(n_classes, y_test.shape, generator=gen)
    blind = float(torch.as_tensor(call(fn, x_train, y_train, x_test, shuffled, n_classes,
                                       name="probe_accuracy")))
    expect(blind < 1 / n_classes + 0.15,
           f"probe_accuracy: with random test labels your probe still scores {blind:.2f} "
           f"(chance is {1 / n_classes:.2f}): it learned from the test set; train on x_train "
           "and y_train only")
    passed("probe_accuracy", f"{got:.3f} on planted data (logistic reference {reference:.3f}, "
                             f"majority {majority:.3f})")
