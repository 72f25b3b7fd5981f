"""Checks for notebook 04 (circuits from the weights).

>>> import torch
>>> from interp_lib.exercises.circuits import check_composition_score
>>> def composition_score(w_a, w_b):
...     return (w_a @ w_b).norm() / (w_a.norm() * w_b.norm())
>>> check_composition_score(composition_score)
✔ composition_score: correct (random and planted matrices)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.circuits import (
    diagonal_accuracy,
    full_ov_circuit,
    k_composition_circuit,
    token_representations,
)
from interp_lib.exercises import call, compare, expect, passed

__all__ = ["check_composition_score", "check_copying_score", "check_diagonal_top1",
           "check_k_composition_factors", "check_ov_circuit_factors"]


def check_composition_score(fn: Any, model: Any = None) -> None:
    """``fn(w_a [d, d], w_b [d, d]) -> scalar``: ``‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)``, the
    share of what head A writes that head B's matrix reads (A's output first)."""
    gen = torch.Generator().manual_seed(4)
    w_a = torch.randn(6, 2, generator=gen) @ torch.randn(2, 6, generator=gen)
    w_b = torch.randn(6, 2, generator=gen) @ torch.randn(2, 6, generator=gen)
    got = call(fn, w_a.clone(), w_b.clone(), name="composition_score")
    fro = torch.linalg.matrix_norm
    expected = fro(w_a @ w_b) / (fro(w_a) * fro(w_b))
    mistakes = [(fro(w_a @ w_b), "you did not normalise: divide by ‖W_A‖_F ‖W_B‖_F"),
                (fro(w_b @ w_a) / (fro(w_a) * fro(w_b)),
                 "the order is W_A W_B: the earlier head's output matrix on the left"),
                (torch.linalg.matrix_norm(w_a @ w_b, ord=2)
                 / (torch.linalg.matrix_norm(w_a, ord=2) * torch.linalg.matrix_norm(w_b, ord=2)),
                 "these are spectral norms; the score uses Frobenius norms")]
    compare(got, expected, "composition_score", mistakes=mistakes)
    # a planted pair: B reads exactly the subspace A writes -> composition 1 for rank one
    u, v = torch.randn(6, 1, generator=gen), torch.randn(6, 1, generator=gen)
    planted = call(fn, u @ v.T, v @ u.T, name="composition_score")
    compare(planted, torch.tensor(1.0), "composition_score of two rank-one matrices that "
                                        "line up", atol=1e-5)
    passed("composition_score", "random and planted matrices")


def check_diagonal_top1(fn: Any, model: Any = None) -> None:
    """``fn(left [n, r], right [r, n], batch_size) -> float``: the share of rows ``i`` of
    ``left @ right`` whose largest entry is on the diagonal (column ``i``), computing at most
    ``batch_size`` rows at a time."""
    gen = torch.Generator().manual_seed(5)
    n = 40
    left = torch.randn(n, 8, generator=gen)
    right = left.T + 0.8 * torch.randn(8, n, generator=gen)
    dense = left @ right
    expected = float((dense.argmax(1) == torch.arange(n)).float().mean())
    col = float((dense.argmax(0) == torch.arange(n)).float().mean())
    got = call(fn, left.clone(), right.clone(), 7, name="diagonal_top1")
    mistakes = [(col, "you took each *column's* maximum; the diagonal accuracy asks, for each "
                      "row (query token), whether its own column wins")]
    compare(got, torch.tensor(expected), "diagonal_top1", mistakes=mistakes)
    expect(0 < expected < 1, "the check's planted matrix is degenerate")
    if model is not None:
        circuit = full_ov_circuit(model, (model.cfg.n_layers - 1, 0), embedding="normalized")
        rows = min(model.cfg.d_vocab, 600)
        got = call(fn, circuit.A[:rows], circuit.B[:, :rows], 128, name="diagonal_top1")
        square = type(circuit)(circuit.A[:rows], circuit.B[:, :rows])
        compare(got, torch.tensor(diagonal_accuracy(square, k=1).top1),
                "diagonal_top1 on an OV circuit of the model")
    passed("diagonal_top1", f"planted {n} x {n} product in batches of 7")


def check_ov_circuit_factors(fn: Any, model: Any) -> None:
    """``fn(tokens_in [vocab, d_model], W_V [d_model, d_head], W_O [d_head, d_model], W_U
    [d_model, vocab]) -> (left [vocab, d_head], right [d_head, vocab])``: the factors of a
    head's full OV circuit ``tokens_in W_V W_O W_U`` (row = the token attended to, column =
    the logit it raises), never multiplied out."""
    reps = token_representations(model, "normalized")
    layer, head = model.cfg.n_layers - 1, 0
    w_v, w_o = model.W_V[layer, head].detach(), model.W_O[layer, head].detach()
    w_u = model.W_U.detach()
    out = call(fn, reps.at(layer), w_v, w_o, w_u, name="ov_circuit_factors")
    expect(isinstance(out, tuple | list) and len(out) == 2,
           "ov_circuit_factors must return two factors (left, right)")
    left, right = out
    circuit = full_ov_circuit(model, (layer, head), embedding=reps)
    compare(left, circuit.A, "left factor", axes=("vocab", "d_head"), atol=1e-4,
            mistakes=[(reps.at(layer) @ w_o.T, "the left factor is tokens_in @ W_V")])
    compare(right, circuit.B, "right factor", axes=("d_head", "vocab"), atol=1e-4)
    rows = slice(0, 50)
    compare(left[rows] @ right, circuit.A[rows] @ circuit.B, "left @ right on 50 rows",
            axes=("token", "vocab"), atol=1e-3, rtol=1e-3)
    passed("ov_circuit_factors", f"head {layer}.{head}, [{model.cfg.d_vocab}, "
                                 f"{model.cfg.d_head}] x [{model.cfg.d_head}, "
                                 f"{model.cfg.d_vocab}]")


def check_copying_score(fn: Any, model: Any = None) -> None:
    """``fn(matrix [d, d]) -> float``: ``Σλ / Σ|λ|`` over the (complex) eigenvalues, real
    part: 1 for a matrix that maps every direction to a positive multiple of itself."""
    gen = torch.Generator().manual_seed(6)
    m = torch.randn(5, 5, generator=gen)
    eig = torch.linalg.eigvals(m.double())
    expected = torch.tensor(float(eig.sum().real / eig.abs().sum()))
    got = call(fn, m.clone(), name="copying_score")
    singular = torch.linalg.svdvals(m.double())
    mistakes = [(torch.tensor(float(eig.sum().abs() / eig.abs().sum())),
                 "take the real part of Σλ, not its absolute value: a negative sum means the "
                 "head suppresses what it attends to"),
                (torch.tensor(float(singular.sum() / singular.sum())),
                 "singular values are never negative; use eigenvalues "
                 "(torch.linalg.eigvals)")]
    compare(got, expected, "copying_score", atol=1e-5, mistakes=mistakes)
    compare(call(fn, torch.eye(4) * 3, name="copying_score"), torch.tensor(1.0),
            "copying_score of 3 × identity", atol=1e-6)
    compare(call(fn, -torch.eye(4), name="copying_score"), torch.tensor(-1.0),
            "copying_score of minus the identity", atol=1e-6)
    passed("copying_score", "+1 for a copying matrix, -1 for a suppressing one")


def check_k_composition_factors(fn: Any, model: Any) -> None:
    """``fn(tokens_q [vocab, d_model], tokens_k [vocab, d_model], W_V_A, W_O_A, W_Q_B, W_K_B)
    -> (left [vocab, d_head], right [d_head, vocab])``: the K-composition circuit of head A
    into head B, ``tokens_q W_Q^B (tokens_k W_V^A W_O^A W_K^B)ᵀ`` (row = query token, column
    = the token *before* the key, which A moved there)."""
    reps = token_representations(model, "normalized")
    la, ha = 0, 0
    lb, hb = model.cfg.n_layers - 1, 1 % model.cfg.n_heads
    args = (reps.at(lb), reps.at(la), model.W_V[la, ha].detach(), model.W_O[la, ha].detach(),
            model.W_Q[lb, hb].detach(), model.W_K[lb, hb].detach())
    out = call(fn, *args, name="k_composition_factors")
    expect(isinstance(out, tuple | list) and len(out) == 2,
           "k_composition_factors must return two factors (left, right)")
    left, right = out
    circuit = k_composition_circuit(model, (la, ha), (lb, hb), embedding=reps)
    no_ov = args[1] @ args[5]
    compare(left, circuit.A, "left factor (queries)", axes=("vocab", "d_head"), atol=1e-4)
    compare(right, circuit.B, "right factor (keys)", axes=("d_head", "vocab"), atol=1e-4,
            rtol=1e-3, mistakes=[(no_ov.T, "the key side must pass through head A's OV "
                                           "circuit first: tokens_k W_V^A W_O^A W_K^B")])
    passed("k_composition_factors", f"{la}.{ha} -> {lb}.{hb}, equal to the library's factored "
                                    "circuit")
