"""interp_lib.circuits: factored circuits against dense products, composition scores against
TransformerLens and a dense per-pair loop, rotary rotations and the attention-score
decomposition against the model's own attention scores, copying scores against dense
eigenvalues."""

from __future__ import annotations

import math

import pytest
import torch

from interp_lib.circuits import (
    composition_baseline,
    composition_scores,
    copying_scores,
    decompose_attention_scores,
    diagonal_accuracy,
    full_ov_circuit,
    full_qk_circuit,
    k_composition_circuit,
    positional_scores,
    rotation_matrix,
    token_representations,
)
from interp_lib.data import repeated_tokens
from interp_lib.reference import composition_scores_loop

TEXT = "The cat sat on the mat and the dog sat on the cat by the door"


@pytest.fixture(params=["gpt2", "neox"])
def model(request, tiny_model, tiny_neox):
    return tiny_model if request.param == "gpt2" else tiny_neox


def _dense_rep(model, layer, embedding):
    """Token representations written out with plain torch, independently of the module."""
    w_e = model.W_E.detach().float()
    if embedding == "raw":
        return w_e
    if embedding == "effective" and layer > 0:
        bos = model.tokenizer.bos_token_id
        vocab = torch.arange(model.cfg.d_vocab)
        tokens = torch.stack([torch.full_like(vocab, bos), vocab], 1)
        _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
        w_e = cache["blocks.0.hook_resid_post"][:, 1].float()
    w_e = w_e - w_e.mean(-1, keepdim=True)
    return w_e / w_e.norm(dim=-1, keepdim=True) * math.sqrt(w_e.shape[-1])


@pytest.mark.parametrize("embedding", ["raw", "normalized", "effective"])
def test_factored_circuits_equal_dense_products_on_a_vocabulary_slice(model, embedding):
    cfg = model.cfg
    la, ha, lb, hb = 0, 1, cfg.n_layers - 1, 2
    e_a, e_b = _dense_rep(model, la, embedding), _dense_rep(model, lb, embedding)
    w_q, w_k, w_v, w_o = (w.detach().float() for w in (model.W_Q, model.W_K, model.W_V, model.W_O))
    rows = slice(0, 40)
    with torch.no_grad():
        dense_ov = e_b[rows] @ w_v[lb, hb] @ w_o[lb, hb] @ model.W_U.float()
        dense_qk = e_b[rows] @ w_q[lb, hb] @ w_k[lb, hb].T @ e_b.T
        moved = e_a @ w_v[la, ha] @ w_o[la, ha]
        dense_kc = e_b[rows] @ w_q[lb, hb] @ w_k[lb, hb].T @ moved.T
    ov = full_ov_circuit(model, (lb, hb), embedding=embedding)
    qk = full_qk_circuit(model, f"{lb}.{hb}", embedding=embedding)
    kc = k_composition_circuit(model, (la, ha), (lb, hb), embedding=embedding)
    for factored, dense in ((ov, dense_ov), (qk, dense_qk), (kc, dense_kc)):
        assert factored.shape == (cfg.d_vocab, cfg.d_vocab)
        got = factored.A[rows] @ factored.B
        torch.testing.assert_close(got, dense, rtol=1e-4, atol=1e-4 * float(dense.abs().max()))


def _dense_ranks(matrix: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's diagonal entry, ties counted against it (sort-based)."""
    order = matrix.argsort(dim=1, descending=True, stable=True)
    diag = matrix.diagonal()
    ties = (matrix == diag[:, None]).sum(1) - 1
    first = (order == torch.arange(len(matrix))[:, None]).float().argmax(1)
    ahead = (matrix > diag[:, None]).sum(1)
    assert (first >= ahead).all()  # the sort agrees with the count of larger entries
    return ahead + ties


def test_diagonal_accuracy_matches_the_dense_matrix_in_any_batch_size(tiny_model):
    circuit = k_composition_circuit(tiny_model, "0.0", "1.3")
    dense = (circuit.A @ circuit.B).detach()
    ranks = _dense_ranks(dense)
    for batch_size in (1, 7, 512, 10_000):
        acc = diagonal_accuracy(circuit, k=5, batch_size=batch_size)
        assert torch.equal(acc.ranks, ranks)
    acc = diagonal_accuracy(circuit, k=5)
    assert acc.top1 == pytest.approx(float((ranks == 0).float().mean()))
    assert acc.topk == pytest.approx(float((ranks < 5).float().mean()))
    rows = [3, 100, 7]
    assert torch.equal(diagonal_accuracy(circuit, rows=rows).ranks, ranks[rows])
    assert torch.equal(diagonal_accuracy(dense, rows=rows).ranks, ranks[rows])


def test_diagonal_accuracy_is_one_for_a_diagonal_matrix_and_zero_when_reversed():
    dense = torch.diag(torch.arange(1.0, 11.0)) + 0.01
    assert diagonal_accuracy(dense, k=1).top1 == 1.0
    assert diagonal_accuracy(-dense + 100, k=1).top1 == 0.0


@pytest.mark.parametrize("mode", ["Q", "K", "V"])
def test_composition_scores_agree_with_transformerlens_and_the_dense_loop(model, mode):
    ours = composition_scores(model, mode, baseline_samples=0)
    loop = composition_scores_loop(model, mode)
    theirs = model.all_composition_scores(mode).scores.detach()
    valid = ~ours.scores.isnan()
    layers = torch.arange(model.cfg.n_layers)
    expected = (layers[:, None, None, None] < layers[None, None, :, None]).expand_as(valid)
    assert torch.equal(valid, expected)
    assert torch.equal(valid, ~loop.scores.isnan())
    torch.testing.assert_close(ours.scores[valid], loop.scores[valid], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.scores[valid], theirs[valid].float(), rtol=1e-4, atol=1e-6)
    assert ((ours.scores[valid] >= 0) & (ours.scores[valid] <= 1)).all()


def test_composition_frame_top_and_lookup_are_consistent(tiny_model):
    scores = composition_scores(tiny_model, "K", baseline_samples=50)
    frame = scores.to_frame()
    n = tiny_model.cfg.n_heads
    pairs = sum(n * n for la in range(tiny_model.cfg.n_layers)
                for lb in range(la + 1, tiny_model.cfg.n_layers))
    assert len(frame) == pairs
    earlier, later, best = scores.top(1)[0]
    assert best == pytest.approx(float(frame["score"].max()))
    assert scores.score(earlier, later) == pytest.approx(best)
    assert frame["z"].iloc[0] == pytest.approx((best - scores.baseline_mean) / scores.baseline_std,
                                               rel=1e-4)
    assert scores.heatmap().data[0].z.shape == (n * tiny_model.cfg.n_layers,) * 2


def test_random_init_weights_compose_like_the_random_baseline(tiny_model):
    # the tiny model's weights are Gaussian draws: its scores should look like the baseline's
    base = composition_baseline(tiny_model, "K", samples=400, seed=1)
    assert base.shape == (400,) and ((base > 0) & (base < 1)).all()
    assert torch.equal(base, composition_baseline(tiny_model, "K", samples=400, seed=1))
    model_scores = composition_scores(tiny_model, "K", baseline_samples=0).scores
    values = model_scores[~model_scores.isnan()]
    assert abs(float(values.mean()) - float(base.mean())) < 4 * float(base.std())


def test_copying_scores_match_dense_eigenvalues(tiny_model):
    scores = copying_scores(tiny_model, embedding="normalized").values
    assert scores.shape == (tiny_model.cfg.n_layers, tiny_model.cfg.n_heads)
    for layer, head in ((0, 0), (1, 3)):
        dense = full_ov_circuit(tiny_model, (layer, head), embedding="normalized")
        eig = torch.linalg.eigvals((dense.A @ dense.B).double().detach())
        eig = eig[eig.abs().argsort(descending=True)[: tiny_model.cfg.d_head]]
        expected = float(eig.sum().real / eig.abs().sum())
        assert float(scores[layer, head]) == pytest.approx(expected, abs=1e-3)
    assert ((scores >= -1) & (scores <= 1)).all()


def test_effective_representation_is_the_residual_after_block_zero(tiny_neox):
    reps = token_representations(tiny_neox, "effective")
    for layer in (0, 1):
        torch.testing.assert_close(reps.at(layer), _dense_rep(tiny_neox, layer, "effective"),
                                   rtol=1e-4, atol=1e-4)
    norms = reps.at(1).norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, math.sqrt(tiny_neox.cfg.d_model)))


def test_rotation_matrix_reproduces_the_rotary_models_attention_scores(tiny_neox):
    tokens = tiny_neox.to_tokens(TEXT)
    layer, head = 1, 2
    names = [f"blocks.{layer}.attn.hook_{n}" for n in ("q", "k", "attn_scores")]
    _, cache = tiny_neox.run_with_cache(tokens, names_filter=lambda n: n in names)
    q, k = cache[names[0]][0, :, head], cache[names[1]][0, :, head]
    scores = cache[names[2]][0, head]
    seq = tokens.shape[1]
    for i in range(seq):
        for j in range(i + 1):
            expected = q[i] @ (k[j] @ rotation_matrix(tiny_neox, j - i)) / math.sqrt(
                tiny_neox.cfg.d_head)
            assert float(expected) == pytest.approx(float(scores[i, j]), abs=1e-4, rel=1e-4)
    assert not torch.allclose(rotation_matrix(tiny_neox, -3), torch.eye(tiny_neox.cfg.d_head))
    assert torch.equal(rotation_matrix(tiny_neox, 0), torch.eye(tiny_neox.cfg.d_head))


def test_rotation_is_the_identity_without_rotary(tiny_model):
    assert torch.equal(rotation_matrix(tiny_model, -5), torch.eye(tiny_model.cfg.d_head))


def test_qk_circuit_at_an_offset_scores_two_tokens_as_the_model_does(tiny_neox):
    # in layer 0 each residual is the token's embedding, so the model's score between a key
    # at position 1 and a query at position 3 is the normalized embeddings through the folded
    # W_Q, W_K (plus biases), rotated by offset -2; the circuit holds the bias-free part
    bos = tiny_neox.tokenizer.bos_token_id
    a, b = 40, 77
    tokens = torch.tensor([[bos, a, b, b]])
    name = "blocks.0.attn.hook_attn_scores"
    _, cache = tiny_neox.run_with_cache(tokens, names_filter=name)
    circuit = full_qk_circuit(tiny_neox, "0.1", offset=-2, embedding="normalized")
    # with biases the model adds terms the circuit leaves out; compare the content part
    w_e = token_representations(tiny_neox, "normalized").at(0)
    w_q, w_k = tiny_neox.W_Q[0, 1].detach(), tiny_neox.W_K[0, 1].detach()
    b_q, b_k = tiny_neox.b_Q[0, 1].detach(), tiny_neox.b_K[0, 1].detach()
    rot = rotation_matrix(tiny_neox, -2)
    q, k = w_e[b] @ w_q + b_q, w_e[a] @ w_k + b_k
    full = float(q @ (k @ rot)) / math.sqrt(tiny_neox.cfg.d_head)
    assert full == pytest.approx(float(cache[name][0, 1, 3, 1]), rel=1e-3, abs=1e-3)
    content = float(circuit.A[b] @ circuit.B[:, a])
    biasless = float((w_e[b] @ w_q) @ ((w_e[a] @ w_k) @ rot))
    assert content == pytest.approx(biasless, rel=1e-4, abs=1e-4)


def test_attention_decomposition_sums_to_the_models_scores(model):
    tokens = repeated_tokens(model, n=8, batch=2, seed=0)
    layer = model.cfg.n_layers - 1
    decomposition = decompose_attention_scores(model, tokens, (layer, 1))
    name = f"blocks.{layer}.attn.hook_attn_scores"
    _, cache = model.run_with_cache(tokens[:1], names_filter=name)
    seq = tokens.shape[1]
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    expected = cache[name][0, 1][causal]
    torch.testing.assert_close(decomposition.total()[causal], expected, rtol=1e-4,
                               atol=1e-4 * float(expected.abs().max()))
    n_sources = 1 + layer * (model.cfg.n_heads + 2) + 1
    assert decomposition.terms.shape == (n_sources, n_sources, seq, seq)
    assert decomposition.sources[0] == "embed" and decomposition.sources[-1] == "bias"
    frame = decomposition.to_frame(causal)
    assert len(frame) == n_sources ** 2
    assert float(frame["mean_score"].sum()) == pytest.approx(
        float(decomposition.total()[causal].mean()), rel=1e-3, abs=1e-3)


def test_positional_scores_match_the_models_own_rotation(tiny_neox):
    tokens = repeated_tokens(tiny_neox, n=10, batch=3, seed=2)
    got = positional_scores(tiny_neox, "1.2", tokens, max_offset=5)
    names = ["blocks.1.attn.hook_q", "blocks.1.attn.hook_k"]
    _, cache = tiny_neox.run_with_cache(tokens, names_filter=lambda n: n in names)
    q_mean = cache[names[0]][:, :, 2].mean((0, 1))
    k_mean = cache[names[1]][:, :, 2].mean((0, 1))
    # independent route: rotate both means to absolute positions with the model's cos/sin
    from interp_lib.circuits import _rotate

    name_cos, name_sin = "blocks.1.attn.hook_cos", "blocks.1.attn.hook_sin"
    _, trig = tiny_neox.run_with_cache(tokens[:1], names_filter=lambda n: n in (name_cos, name_sin))
    cos, sin = trig[name_cos][0], trig[name_sin][0]
    q_rot = _rotate(q_mean.expand(tokens.shape[1], -1), cos, sin, False)
    k_rot = _rotate(k_mean.expand(tokens.shape[1], -1), cos, sin, False)
    query = 12
    expected = torch.stack([q_rot[query] @ k_rot[query - d] for d in range(6)])
    torch.testing.assert_close(got, expected / math.sqrt(tiny_neox.cfg.d_head), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda m: k_composition_circuit(m, "1.0", "0.1"), ValueError, "earlier layer"),
    (lambda m: k_composition_circuit(m, "0.0", "1.9"), ValueError, "out of range"),
    (lambda m: full_ov_circuit(m, "0.0", embedding="learned"), ValueError, "embedding must"),
    (lambda m: full_qk_circuit(m, "1.0", offset=2), ValueError, "causal"),
    (lambda m: full_qk_circuit(m, "1.0", offset=1.5), TypeError, "int"),
    (lambda m: composition_scores(m, "O"), ValueError, "mode must"),
    (lambda m: composition_baseline(m, "K", samples=0), ValueError, "positive"),
    (lambda m: diagonal_accuracy(torch.zeros(3, 4)), ValueError, "square"),
    (lambda m: diagonal_accuracy(torch.zeros(3, 3), k=4), ValueError, "k must"),
    (lambda m: diagonal_accuracy(torch.zeros(3, 3), k=1, rows=[5]), ValueError, "row indices"),
    (lambda m: diagonal_accuracy([[1.0]]), TypeError, "FactoredMatrix"),
    (lambda m: positional_scores(m, "1.0", TEXT), ValueError, "rotary models"),
])
def test_clear_errors(tiny_model, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_model)


def test_positional_scores_checks_the_offset(tiny_neox):
    with pytest.raises(ValueError, match="max_offset"):
        positional_scores(tiny_neox, "1.0", TEXT, max_offset=0)
