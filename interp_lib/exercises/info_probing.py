"""Checks for notebook 10 (probing beyond accuracy).

>>> import math
>>> from interp_lib.exercises.info_probing import check_compression
>>> def compression(online_bits, n_examples, n_classes):
...     return n_examples * math.log2(n_classes) / online_bits
>>> check_compression(compression)
✔ compression: correct (3 sites, 500 labels of 4 classes: uniform code 1000 bits)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from interp_lib.exercises import ExerciseFailed, call, compare, expect, passed
from interp_lib.fitting import fit_logistic
from interp_lib.info_probing import mi_1d, online_codelength, prior_cross_entropy

__all__ = ["L2", "MAX_ITER", "check_bayesian_information", "check_compression",
           "check_online_code_length", "check_project_out", "check_sliced_mi"]

#: The probe settings the exercises use (and the library's defaults).
L2, MAX_ITER = 1e-2, 100
LN2 = math.log(2.0)


def _planted_classes(n: int = 240, d: int = 6, k: int = 3, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised features of ``k`` Gaussian classes that overlap a little."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=gen) * 1.5
    y = torch.randint(k, (n,), generator=gen)
    x = centres[y] + torch.randn(n, d, generator=gen)
    return (x - x.mean(0)) / x.std(0), y


def _scalar(got: Any, what: str) -> torch.Tensor:
    if isinstance(got, tuple | list):
        raise ExerciseFailed(f"{what}: return one number, got a {type(got).__name__}")
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        raise ExerciseFailed(f"{what}: return one number (the total), got a tensor of shape "
                             f"{list(got.shape)}")
    return torch.as_tensor(float(got) if not isinstance(got, torch.Tensor) else got)


def check_online_code_length(fn: Any, model: Any = None) -> None:
    """``fn(x [n, d], y [n], n_classes, ends) -> bits``: the online code length of the
    labels, the first block with the uniform code and each later block with a logistic probe
    (``fit_logistic(..., l2=1e-2, max_iter=100)``) trained on the examples before it."""
    x, y = _planted_classes()
    k, ends = 3, [3, 10, 30, 80, 160, 240]
    got = _scalar(call(fn, x.clone(), y.clone(), k, list(ends), name="online_code_length"),
                  "online_code_length")
    blocks = online_codelength(x[None], y, k, ends, l2=L2, max_iter=MAX_ITER)[0]
    expected = blocks.sum()
    first = ends[0] * math.log2(k)

    def peeking() -> torch.Tensor:  # each block coded by a probe that was trained on it
        total = torch.tensor(first)
        for start, end in zip(ends[:-1], ends[1:], strict=True):
            w, b = fit_logistic(x[None, :end], y[:end], k, L2, MAX_ITER)
            lp = (x[start:end] @ w[0] + b[0]).log_softmax(-1)
            total = total - lp.gather(-1, y[start:end, None]).sum() / LN2
        return total

    mistakes = [
        (expected - first, f"the first block is missing: its {ends[0]} labels cost "
                           f"{ends[0]} x log2({k}) = {first:.2f} bits with the uniform code"),
        (expected * LN2, "these are nats: divide the negative log-likelihood by log(2) for bits"),
        (blocks[1:].sum() * LN2 + first, "the blocks after the first are in nats: divide by "
                                         "log(2)"),
        (torch.tensor(len(y) * math.log2(k)), "that is the uniform code of every label: train "
                                              "a probe on the examples before each block"),
        (peeking(), "each block was coded by a probe that had already seen it; train on "
                    "x[:start] and code x[start:end] (the receiver cannot know the labels yet)"),
        (expected / len(y), "you returned bits per label; return the total"),
    ]
    compare(got, expected, "online_code_length", atol=0.05, rtol=2e-3, mistakes=mistakes)
    passed("online_code_length", f"{float(expected):.1f} bits for {len(y)} labels of {k} "
                                 f"classes; the uniform code needs {len(y) * math.log2(k):.1f}")


def check_compression(fn: Any, model: Any = None) -> None:
    """``fn(online_bits [site], n_examples, n_classes) -> [site]``: the compression of each
    site's online code, uniform code length / online code length."""
    bits = torch.tensor([400.0, 250.0, 900.0])
    n, k = 500, 4
    got = call(fn, bits.clone(), n, k, name="compression")
    uniform = n * math.log2(k)
    mistakes = [(bits / uniform, "upside down: compression is uniform / online, above 1 when "
                                 "the representation helps"),
                (n * math.log(k) / bits, "the uniform code is n x log2(K) bits (log base 2, "
                                         "like the online code)"),
                (n * k / bits, "the uniform code costs log2(K) bits per label, not K"),
                (uniform - bits, "a ratio, not a difference: uniform / online")]
    compare(got, uniform / bits, "compression", axes=("site",), mistakes=mistakes)
    passed("compression", f"3 sites, {n} labels of {k} classes: uniform code {uniform:.0f} bits")


def check_bayesian_information(fn: Any, model: Any = None) -> None:
    """``fn(y_train [n], y_test [m], test_log_probs [m, n_classes], n_classes) -> bits``:
    ``H(X) - H(X | R)`` per test label, the prior an add-one (Laplace) estimate from
    ``y_train`` and the probe's ``test_log_probs`` in nats."""
    gen = torch.Generator().manual_seed(3)
    k = 4
    y_train = torch.tensor([0] * 9 + [1] * 5 + [2] * 2)          # class 3 never seen
    y_test = torch.randint(k, (40,), generator=gen)
    y_test[:3] = 3
    logits = torch.randn(40, k, generator=gen)
    logits[torch.arange(40), y_test] += 1.5
    log_probs = logits.log_softmax(-1)
    got = call(fn, y_train.clone(), y_test.clone(), log_probs.clone(), k,
               name="bayesian_information")
    if isinstance(got, torch.Tensor | float) and not math.isfinite(float(torch.as_tensor(got)
                                                                         .sum())):
        raise ExerciseFailed("bayesian_information: your value is infinite: class 3 never "
                             "occurs in y_train, so the plain frequency gives it probability "
                             "0; add one to every class's count (Laplace smoothing)")
    got = _scalar(got, "bayesian_information")
    conditional = float(-log_probs.gather(-1, y_test[:, None]).mean() / LN2)
    expected = prior_cross_entropy(y_train, y_test, k, 1.0) - conditional
    leak = prior_cross_entropy(y_test, y_test, k, 1.0) - conditional
    mistakes = [
        (leak, "your prior was estimated from y_test; the agent has only seen y_train"),
        (math.log2(k) - conditional, "that prior is uniform; estimate it from y_train's "
                                     "counts (plus one each)"),
        (expected * LN2, "these are nats; the course measures information in bits here"),
        (prior_cross_entropy(y_train, y_test, k, 1.0) - conditional * LN2,
         "the probe's cross-entropy is in nats (the log-probs are natural logs): divide it by "
         "log(2)"),
    ]
    compare(got, torch.tensor(expected), "bayesian_information", atol=1e-4, mistakes=mistakes)
    passed("bayesian_information", f"{expected:.3f} bits, with a class the prior never saw")


def check_sliced_mi(fn: Any, model: Any = None) -> None:
    """``fn(x [n, d], y [n], directions [k, d], mi_1d) -> (mean, stderr)``: project ``x``
    on each direction made unit-length, estimate each projection's MI with ``mi_1d(z [k, n],
    y) -> [k]``, return their mean and its standard error (``std / sqrt(k)``)."""
    gen = torch.Generator().manual_seed(5)
    n, d, k = 400, 5, 24
    y = torch.randint(2, (n,), generator=gen)
    x = torch.randn(n, d, generator=gen)
    x[:, 0] += 2.5 * y
    directions = torch.randn(k, d, generator=gen) * torch.rand(k, 1, generator=gen) * 3
    calls = []

    def estimator(z, labels):
        calls.append(tuple(z.shape))
        return mi_1d(z, labels)

    out = call(fn, x.clone(), y.clone(), directions.clone(), estimator, name="sliced_mi")
    expect(isinstance(out, tuple | list) and len(out) == 2,
           "sliced_mi must return two numbers: (mean, standard error)")
    unit = directions / directions.norm(dim=1, keepdim=True)
    values = mi_1d(unit @ x.T, y)
    mean, std = values.mean(), values.std()
    raw = mi_1d(x.T[: min(k, d)], y)
    mistakes = [(raw.mean(), "you estimated the MI of x's own coordinates; project x on the "
                             "random directions first (directions @ x.T)")]
    compare(_scalar(out[0], "sliced_mi mean"), mean, "sliced_mi mean", atol=1e-5,
            mistakes=mistakes)
    compare(_scalar(out[1], "sliced_mi stderr"), std / math.sqrt(k), "sliced_mi stderr",
            atol=1e-6, mistakes=[
                (std, "that is the standard deviation of the projections' MI; the standard "
                      "error of their mean divides it by sqrt(k)"),
                (values.std(correction=0) / math.sqrt(k),
                 "use the sample standard deviation (torch's default, divided by k - 1)")])
    expect(calls and calls[0][0] == k, f"sliced_mi: call mi_1d once with all {k} projections "
                                       f"as rows ([k, n]); it got shape {calls[:1]}")
    passed("sliced_mi", f"{k} projections: {float(mean):.3f} ± {float(std) / math.sqrt(k):.3f} "
                        "nats")


def check_project_out(fn: Any, model: Any = None) -> None:
    """``fn(x [n, d], directions [k, d]) -> [n, d]``: ``x`` with everything in the span of
    ``directions`` (not orthogonal, not unit-length) removed."""
    gen = torch.Generator().manual_seed(9)
    n, d = 30, 6
    x = torch.randn(n, d, generator=gen)
    directions = torch.randn(2, d, generator=gen)
    directions[1] += 1.5 * directions[0]                 # far from orthogonal
    got = call(fn, x.clone(), directions.clone(), name="project_out")
    q, _ = torch.linalg.qr(directions.T)                 # [d, k], orthonormal columns
    expected = x - x @ q @ q.T
    sequential, unnormalised = x.clone(), x.clone()
    for v in directions:
        u = v / v.norm()
        sequential = sequential - (sequential @ u)[:, None] * u
    for v in directions:
        unnormalised = unnormalised - (unnormalised @ v)[:, None] * v
    first = directions[0] / directions[0].norm()
    mistakes = [
        (x @ q @ q.T, "that is the projection *onto* the directions; subtract it from x"),
        (sequential, "the directions are not orthogonal: removing them one after the other "
                     "leaves part of the first one; orthonormalise them first "
                     "(torch.linalg.qr(directions.T))"),
        (unnormalised, "the directions are not unit-length: normalise (and orthonormalise) "
                       "them before projecting"),
        (x - (x @ first)[:, None] * first, "only the first direction was removed"),
    ]
    compare(got, expected, "project_out", axes=("n", "d"), atol=1e-4, mistakes=mistakes)
    left = float((torch.as_tensor(got) @ directions.T).abs().max())
    expect(left < 1e-3, f"project_out: your result still has {left:.3g} along a direction")
    passed("project_out", f"{n} vectors in {d} dimensions, 2 directions that are not orthogonal")
