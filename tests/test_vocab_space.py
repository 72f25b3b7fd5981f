"""Vocabulary-space readings (interp_lib.vocab_space): the identities (sub-updates sum to the
MLP's output, Σ x_iᵀ δ_i is autograd's gradient, its rank is at most n and 1 where only one
position matters), agreement with the dense references and with plain torch on the Hugging
Face modules, and clear errors for bad arguments."""

from __future__ import annotations

import pytest
import torch

from interp_lib import vocab_space as vs
from interp_lib.circuits import full_ov_circuit, full_qk_circuit, token_representations
from interp_lib.data import sample_text, token_windows
from interp_lib.hooks import attached_hooks, hook_name
from interp_lib.reference import (
    mlp_weight_gradients_autograd,
    neuron_contexts_naive,
    top_token_pairs_dense,
    value_tokens_dense,
)
from interp_lib.validate import ModelMismatchError

TEXT = "The ship sailed from the harbour at dawn with forty men and a cargo of oil."


@pytest.fixture(scope="module", params=["tiny_model", "tiny_neox"])
def model(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A tiny model of other sizes (one layer, d_model 32), for the wrong-model errors."""
    from interp_lib import load_model
    from interp_lib.tiny_models import save_tiny_gpt2

    path = save_tiny_gpt2(tmp_path_factory.mktemp("other"), n_layers=1, d_model=32)
    return load_model(str(path), device="cpu")


def _windows(model, n=6, length=24):
    text = " ".join([TEXT] * 40)
    return token_windows(model, text, n_windows=n, length=length)


def _centred(model, v):
    return v - v.mean(-1, keepdim=True)


# ---------------------------------------------------------------- projections and values


def test_projection_plus_bias_over_the_scale_is_the_models_logits(model):
    tokens = model.to_tokens(TEXT)
    last = hook_name("resid_post", model.cfg.n_layers - 1)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in (
            last, hook_name("ln_final_scale")))
    rebuilt = vs.vocab_projection(model, cache[last]) / cache[hook_name("ln_final_scale")] \
        + model.b_U.detach()
    torch.testing.assert_close(rebuilt, logits, rtol=1e-4, atol=1e-4)


def test_top_tokens_are_the_largest_and_smallest_entries(model):
    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(5, model.cfg.d_model, generator=gen)
    logits = _centred(model, vectors) @ model.W_U.detach()
    top = vs.top_tokens(model, vectors, k=4, batch_size=2)
    low = vs.top_tokens(model, vectors, k=4, largest=False)
    assert torch.equal(top.ids, logits.topk(4, dim=-1).indices)
    assert torch.equal(low.ids, logits.topk(4, dim=-1, largest=False).indices)
    torch.testing.assert_close(low.scores, logits.topk(4, dim=-1, largest=False).values)
    assert top.tokens[0][0] == model.tokenizer.decode([int(top.ids[0, 0])])
    assert len(top.to_frame()) == 20 and top.row(1)[0][1] == pytest.approx(float(top.scores[1, 0]))


def test_value_tokens_in_row_batches_equal_the_dense_product(model):
    layer = model.cfg.n_layers - 1
    ours = vs.value_tokens(model, layer, k=6, batch_size=37)
    dense = value_tokens_dense(model, layer, k=6)
    assert torch.equal(ours.promoted.ids, dense.promoted.ids)
    assert torch.equal(ours.suppressed.ids, dense.suppressed.ids)
    torch.testing.assert_close(ours.promoted.scores, dense.promoted.scores, rtol=1e-5, atol=1e-5)
    # one neuron by hand: its row of W_out through the unembedding
    row = model.W_out[layer, 3].detach()
    assert torch.equal(vs.value_tokens(model, layer, 3, k=6).promoted.ids[0],
                       (_centred(model, row) @ model.W_U.detach()).topk(6).indices)
    assert ours.describe(3).startswith(f"{layer}.3 promotes")
    assert list(ours.to_frame().columns)[:3] == ["layer", "neuron", "value_norm"]


def test_key_tokens_are_the_largest_pre_activations_from_the_token_alone(model):
    layer = model.cfg.n_layers - 1
    reps = token_representations(model, "normalized")
    neurons = [0, 5, 7]
    found = vs.key_tokens(model, layer, neurons, k=5, embedding=reps, batch_size=2)
    pre = reps.at(layer) @ model.W_in[layer].detach()[:, neurons] + model.b_in[layer, neurons]
    assert torch.equal(found.ids, pre.topk(5, dim=0).indices.T)


# ---------------------------------------------------------------- keys: top contexts


def test_chunked_contexts_equal_the_naive_full_matrix(model):
    windows = _windows(model)
    layer = model.cfg.n_layers - 1
    ours = vs.neuron_contexts(model, windows, layer, k=4, batch_size=2)
    naive = neuron_contexts_naive(model, windows, layer, k=4)
    torch.testing.assert_close(ours.values, naive.values, rtol=1e-5, atol=1e-6)
    distinct = (naive.values[:, :-1] - naive.values[:, 1:]).abs() > 1e-5
    same = (ours.window == naive.window) & (ours.position == naive.position)
    assert bool(same[:, :-1][distinct].all())
    assert not bool((windows[ours.window, ours.position] == model.tokenizer.bos_token_id).any())


def test_a_top_context_reproduces_its_activation(model):
    windows = _windows(model)
    layer = 0
    found = vs.neuron_contexts(model, windows, layer, neurons=[2, 9], k=3)
    name = hook_name("mlp_post", layer)
    for row, neuron in enumerate((2, 9)):
        w, p = int(found.window[row, 0]), int(found.position[row, 0])
        with torch.no_grad():
            _, cache = model.run_with_cache(windows[w: w + 1], names_filter=name)
        assert float(cache[name][0, p, neuron]) == pytest.approx(float(found.values[row, 0]),
                                                                 abs=1e-5)
    assert found.values.shape == (2, 3)
    assert bool((found.values[:, :-1] >= found.values[:, 1:]).all())
    assert "[" in found.examples(9)[0] and len(found.to_frame(2)) == 3


def test_key_value_agreement_counts_next_tokens_among_the_promoted(model):
    windows = _windows(model)
    layer = model.cfg.n_layers - 1
    contexts = vs.neuron_contexts(model, windows, layer, neurons=[1, 4], k=5)
    values = vs.value_tokens(model, layer, [1, 4], k=50)
    share = contexts.agreement(values)
    for row, neuron in enumerate((1, 4)):
        nxt = contexts.next_tokens(neuron)
        nxt = nxt[nxt >= 0]
        expected = sum(int(t) in values.promoted.ids[row].tolist() for t in nxt) / len(nxt)
        assert float(share[row]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same layer and neurons"):
        contexts.agreement(vs.value_tokens(model, layer, [1, 5]))


# ---------------------------------------------------------------- sub-updates


def test_sub_updates_sum_to_the_mlp_output_and_rank_by_their_size(model):
    layer = model.cfg.n_layers - 1
    sub = vs.mlp_sub_updates(model, TEXT, layer, top=6, k=5)
    assert sub.error() < 1e-5
    scores = sub.activations * model.W_out[layer].detach().norm(dim=-1)
    assert torch.equal(sub.top_neurons, scores.abs().topk(6, dim=-1).indices)
    # what one sub-update promotes: a_j W_out[j] through the unembedding, sign included
    for p in (1, sub.n_positions - 1):
        for r in range(6):
            j = int(sub.top_neurons[p, r])
            update = sub.activations[p, j] * model.W_out[layer, j].detach()
            expected = (_centred(model, update) @ model.W_U.detach()).topk(5).indices
            assert torch.equal(sub.promoted[p, r], expected)


def test_lens_gain_and_overlap_by_hand(model):
    layer = 0
    sub = vs.mlp_sub_updates(model, TEXT, layer, top=4, k=7)
    names = [hook_name("resid_mid", layer), hook_name("resid_post", layer)]
    with torch.no_grad():
        _, cache = model.run_with_cache(model.to_tokens(TEXT), names_filter=lambda n: n in names)
        lp = [(model.ln_final(cache[n]) @ model.W_U + model.b_U)[0].log_softmax(-1)
              for n in names]
    gain = (lp[1] - lp[0]).topk(7, dim=-1)
    assert torch.equal(sub.lens_gain_ids, gain.indices)
    hits, chance = sub.overlap()
    p = 3
    union = set(sub.promoted[p].flatten().tolist())
    assert int(hits[p]) == len(union & set(gain.indices[p].tolist()))
    assert float(chance[p]) == pytest.approx(len(union) * 7 / model.cfg.d_vocab)
    fig = sub.heatmap()
    assert fig.data[0].z.shape == (4, sub.n_positions)
    assert "promotes" in fig.data[0].customdata[0][0]


@pytest.fixture(scope="module")
def course():
    from interp_lib import course_model_available, load_model

    if not course_model_available():
        pytest.skip("the course model is not shipped in this copy")
    return load_model("course", device="cpu")


def test_on_the_course_model_top_neurons_promote_what_the_lens_gains(course):
    hits, chance = vs.mlp_sub_updates(course, TEXT, course.cfg.n_layers - 1).overlap()
    assert float(hits.float().mean()) > 5 * float(chance.mean())


# ---------------------------------------------------------------- heads in token space


def test_ov_and_qk_tokens_are_rows_of_the_full_circuits(model):
    head = f"{model.cfg.n_layers - 1}.1"
    ov = vs.ov_tokens(model, head, [3, 10, 200], k=5, embedding="normalized")
    dense = full_ov_circuit(model, head, embedding="normalized").AB
    assert torch.equal(ov.ids, dense[[3, 10, 200]].topk(5, dim=-1).indices)
    qk = vs.qk_tokens(model, head, [4], k=5, embedding="normalized")
    dense = full_qk_circuit(model, head, embedding="normalized").AB
    assert torch.equal(qk.ids, dense[[4]].topk(5, dim=-1).indices)
    word = model.to_str_tokens(TEXT, prepend_bos=False)[0]
    assert vs.ov_tokens(model, head, word, k=2, embedding="normalized").labels == [word]


def test_top_pairs_in_row_batches_equal_sorting_the_dense_circuit(model):
    circuit = full_ov_circuit(model, "0.0", embedding="normalized")
    ours = vs.top_token_pairs(model, circuit, k=12, batch_size=37)
    dense = top_token_pairs_dense(model, circuit, k=12)
    torch.testing.assert_close(ours.values, dense.values, rtol=1e-5, atol=1e-6)
    assert torch.equal(ours.rows * model.cfg.d_vocab + ours.cols,
                       dense.rows * model.cfg.d_vocab + dense.cols)
    some = vs.top_token_pairs(model, circuit, k=3, rows=[5, 6])
    assert set(some.rows.tolist()) <= {5, 6} and len(some.to_frame()) == 3


# ---------------------------------------------------------------- the backward lens


@pytest.mark.parametrize("target", [None, 7])
def test_factorised_gradients_equal_autograd_on_the_parameters(model, target):
    lens = vs.backward_lens(model, TEXT, target)
    tokens = model.to_tokens(TEXT)
    for layer in range(model.cfg.n_layers):
        for name in vs.WEIGHTS:
            weight = vs.mlp_weight(model, layer, name)
            with torch.enable_grad():
                logits = model(tokens)
                loss = (model(tokens, return_type="loss") if target is None
                        else -logits[0, -1].log_softmax(-1)[target])
                grad, = torch.autograd.grad(loss, [weight.parameter])
            expected = weight.as_model_layout(grad)
            torch.testing.assert_close(lens.gradient(layer, name).AB, expected, rtol=1e-4,
                                       atol=1e-4 * float(expected.abs().max()))
            assert lens.rank(layer, name) <= lens.n_positions
            assert lens.rank(layer, name) == int(torch.linalg.matrix_rank(expected))
    assert lens.loss == pytest.approx(float(loss.detach()), rel=1e-5)
    assert attached_hooks(model) == {}


def test_frozen_parameters_give_the_same_factors(model):
    lens = vs.backward_lens(model, TEXT, 4)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        frozen = vs.backward_lens(model, TEXT, 4)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    assert torch.equal(frozen.grad_pre, lens.grad_pre) and torch.equal(frozen.grad_out,
                                                                       lens.grad_out)


def test_rank_is_at_most_n_and_singular_values_match_the_dense_svd(model):
    text = "one two three"
    lens = vs.backward_lens(model, text)
    n = lens.n_positions
    assert n < model.cfg.d_model  # otherwise "rank <= n" would say nothing
    for layer in range(model.cfg.n_layers):
        dense = lens.gradient(layer, "W_in").AB.double()
        s = torch.linalg.svdvals(dense)
        assert int(torch.linalg.matrix_rank(dense.float())) <= n
        torch.testing.assert_close(lens.singular_values(layer, "W_in")[:n], s[:n],
                                   rtol=1e-5, atol=1e-6 * float(s[0]))
        # the last position predicts nothing the loss scores, and nothing reads it later
        assert bool((lens.grad_pre[layer, -1] == 0).all())
        assert lens.rank(layer, "W_in") <= n - 1 and lens.rank(layer, "W_out") <= n - 1


def test_a_target_at_one_position_leaves_later_positions_out(model):
    n = model.to_tokens(TEXT).shape[1]
    p = n // 2
    lens = vs.backward_lens(model, TEXT, target=11, position=p)
    assert lens.position == p and "position" in lens.what
    assert bool((lens.grad_out[:, p + 1:] == 0).all())
    assert bool((lens.grad_pre[:, p + 1:] == 0).all())
    assert bool((lens.grad_out[:, p].abs().sum(-1) > 0).all())
    # the last MLP writes only to its own position, and nothing reads it but the logits
    last = model.cfg.n_layers - 1
    assert bool((lens.grad_out[last, :p] == 0).all())
    assert lens.rank(last, "W_out") == 1 and lens.rank(last, "W_in") == 1
    assert lens.rank(0, "W_out") <= p + 1


def test_the_factors_equal_plain_torch_on_a_fresh_hugging_face_model(model, request):
    """The same text through the Hugging Face model loaded again on its own (no bridge, no
    folding): its MLP's VJPs are ours, its W_out gradient is ours (the gradient at the MLP's
    output has mean zero, so centring W_out changes nothing), and its W_in gradient is Σ
    (x γ + β)ᵀ δ with the LayerNorm's own weights γ, β."""
    from transformers import AutoModelForCausalLM

    path = request.getfixturevalue("tiny_model_dir" if "GPT2" in type(
        model.original_model).__name__ else "tiny_neox_dir")
    hf = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    tokens = model.to_tokens(TEXT)
    lens = vs.backward_lens(model, TEXT)
    blocks = hf.transformer.h if hasattr(hf, "transformer") else hf.gpt_neox.layers
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for layer, block in enumerate(blocks):
        first, second = (block.mlp.c_fc, block.mlp.c_proj) if hasattr(block.mlp, "c_fc") else (
            block.mlp.dense_h_to_4h, block.mlp.dense_4h_to_h)
        handles.append(first.register_forward_hook(
            lambda m, i, o, la=layer: seen.update({f"pre{la}": o})))
        handles.append(second.register_forward_hook(
            lambda m, i, o, la=layer: seen.update({f"out{la}": o})))
    try:
        with torch.enable_grad():
            loss = hf(input_ids=tokens, labels=tokens).loss
            names = [f"{s}{la}" for s in ("pre", "out") for la in range(len(blocks))]
            params = [p for block in blocks for p in (
                (block.mlp.c_fc.weight, block.mlp.c_proj.weight) if hasattr(block.mlp, "c_fc")
                else (block.mlp.dense_h_to_4h.weight, block.mlp.dense_4h_to_h.weight))]
            grads = torch.autograd.grad(loss, [seen[n] for n in names] + params)
    finally:
        for handle in handles:
            handle.remove()
    n_layers = len(blocks)
    assert float(loss.detach()) == pytest.approx(lens.loss, rel=1e-5)
    for layer, block in enumerate(blocks):
        torch.testing.assert_close(lens.grad_pre[layer], grads[layer][0], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(lens.grad_out[layer], grads[n_layers + layer][0],
                                   rtol=1e-4, atol=1e-7)
        conv = hasattr(block.mlp, "c_fc")
        g_in, g_out = grads[2 * n_layers + 2 * layer], grads[2 * n_layers + 2 * layer + 1]
        g_in, g_out = (g_in, g_out) if conv else (g_in.T, g_out.T)
        ln = block.ln_2 if conv else block.post_attention_layernorm
        x = lens.inputs[layer] * ln.weight.detach() + ln.bias.detach()
        torch.testing.assert_close(x.T @ lens.grad_pre[layer], g_in, rtol=1e-4,
                                   atol=1e-4 * float(g_in.abs().max()))
        torch.testing.assert_close(lens.gradient(layer, "W_out").AB, g_out, rtol=1e-4,
                                   atol=1e-4 * float(g_out.abs().max()))


def test_the_per_layer_autograd_reference_agrees(model):
    lens = vs.backward_lens(model, TEXT, target=3, position=-2)
    ref = mlp_weight_gradients_autograd(model, TEXT, 3, position=lens.position)
    for layer in range(model.cfg.n_layers):
        for name in vs.WEIGHTS:
            expected = ref[name][layer]
            torch.testing.assert_close(lens.gradient(layer, name).AB, expected, rtol=1e-4,
                                       atol=1e-4 * float(expected.abs().max()))
            assert lens.rank(layer, name) == int(ref[f"rank_{name}"][layer])


def test_projections_read_the_imprint_and_the_shift(model):
    target = 9
    lens = vs.backward_lens(model, TEXT, target)
    reps = token_representations(model)
    found = lens.projections(model, k=4, embedding=reps)
    layer, p = model.cfg.n_layers - 1, lens.n_positions - 1
    w_u = model.W_U.detach()
    shift = _centred(model, -lens.grad_out[layer, p]) @ w_u
    assert torch.equal(found.shift_ids[layer, p], shift.topk(4).indices)
    for la in range(model.cfg.n_layers):
        imprint = reps.at(la) @ lens.inputs[la, 2]
        assert torch.equal(found.imprint_ids[la, 2], imprint.topk(4).indices)
    assert int(found.target_ranks[layer, p]) == int((shift > shift[target]).sum()) + 1
    torch.testing.assert_close(found.shift_norms, lens.term_norms("W_out"))
    torch.testing.assert_close(found.shift_norms[layer, p],
                               torch.linalg.matrix_norm(torch.outer(lens.post[layer, p],
                                                                    lens.grad_out[layer, p])))
    fig = found.heatmap("shift")
    assert fig.data[0].z.shape == (model.cfg.n_layers, lens.n_positions)
    assert fig.data[0].text[layer][p] in {found.tokens("shift", layer)[p][0].replace(" ", "·"),
                                          fig.data[0].text[layer][p]}
    assert "target rank" in fig.data[0].customdata[layer][p]
    assert len(lens.to_frame()) == model.cfg.n_layers * lens.n_positions


def test_a_step_lowers_the_loss_by_the_first_order_amount_and_is_undone(model):
    lens = vs.backward_lens(model, TEXT, target=5)
    tokens = lens.tokens[None]
    before = {la: vs.mlp_weight(model, la, "W_out").parameter.detach().clone()
              for la in range(model.cfg.n_layers)}
    squared = sum(float(lens.gradient(la, w).AB.pow(2).sum())
                  for la in range(model.cfg.n_layers) for w in vs.WEIGHTS)
    lr = 1e-3 / squared * max(lens.loss, 1.0)
    with vs.stepped(model, lens, lr), torch.no_grad():
        after = float(-model(tokens)[0, -1].log_softmax(-1)[5])
    assert after < lens.loss
    assert (lens.loss - after) == pytest.approx(lr * squared, rel=0.05)
    for layer, value in before.items():
        assert torch.equal(vs.mlp_weight(model, layer, "W_out").parameter, value)
    with pytest.raises(RuntimeError), vs.stepped(model, lens, 1e-3, weights="W_in"):
        raise RuntimeError("inside")
    for layer, value in before.items():
        assert torch.equal(vs.mlp_weight(model, layer, "W_out").parameter, value)


def test_mlp_weight_is_the_forward_passes_parameter(model):
    for name, stacked in (("W_in", model.W_in), ("W_out", model.W_out)):
        weight = vs.mlp_weight(model, 1, name)
        assert torch.equal(weight.as_model_layout(weight.parameter), stacked[1])
        assert weight.parameter.is_leaf
    conv = "GPT2" in type(model.original_model).__name__
    assert vs.mlp_weight(model, 0, "W_in").transposed is not conv


def test_the_mlp_input_site_is_what_the_mlp_reads(model):
    assert hook_name("mlp_input", 1) == "blocks.1.mlp.hook_in"
    names = [hook_name("mlp_input", 1), hook_name("mlp_pre", 1)]
    with torch.no_grad():
        _, cache = model.run_with_cache(model.to_tokens(TEXT), names_filter=lambda n: n in names)
    torch.testing.assert_close(cache[names[0]] @ model.W_in[1] + model.b_in[1], cache[names[1]],
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- errors


def test_bad_arguments_raise_clear_errors(tiny_model, other_model):
    m = tiny_model
    top = m.cfg.n_layers - 1
    with pytest.raises(TypeError, match="load_model"):
        vs.value_tokens("gpt2", 0)
    with pytest.raises(ValueError, match="out of range"):
        vs.value_tokens(m, m.cfg.n_layers)
    with pytest.raises(TypeError, match="layer must be an int"):
        vs.value_tokens(m, 0.5)
    with pytest.raises(ValueError, match="neurons must lie"):
        vs.value_tokens(m, 0, [m.cfg.d_mlp])
    with pytest.raises(TypeError, match="neurons"):
        vs.value_tokens(m, 0, [1.5])
    with pytest.raises(ValueError, match="neurons is empty"):
        vs.value_tokens(m, 0, [])
    with pytest.raises(ValueError, match="k must be"):
        vs.value_tokens(m, 0, k=0)
    with pytest.raises(ValueError, match="k must be"):
        vs.value_tokens(m, 0, k=m.cfg.d_vocab + 1)
    with pytest.raises(TypeError, match="k must be"):
        vs.value_tokens(m, 0, k=True)
    with pytest.raises(ValueError, match="batch_size"):
        vs.value_tokens(m, 0, batch_size=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        vs.top_tokens(m, torch.full((m.cfg.d_model,), float("nan")))
    with pytest.raises(ValueError, match="d_model"):
        vs.vocab_projection(m, torch.ones(m.cfg.d_model + 1))
    with pytest.raises(TypeError, match="embedding"):
        vs.key_tokens(m, 0, [1], embedding=3)
    with pytest.raises(ValueError, match="embedding holds"):
        vs.key_tokens(m, 0, [1], embedding=token_representations(other_model, "raw"))
    windows = _windows(m)
    with pytest.raises(ValueError, match="k must be"):
        vs.neuron_contexts(m, windows, 0, k=windows.numel())
    with pytest.raises(ValueError, match="token ids must lie"):
        vs.neuron_contexts(m, windows + m.cfg.d_vocab, 0)
    with pytest.raises(ValueError, match="one text"):
        vs.mlp_sub_updates(m, windows[:2], 0)
    with pytest.raises(ValueError, match="top must be"):
        vs.mlp_sub_updates(m, TEXT, 0, top=m.cfg.d_mlp + 1)
    sub = vs.mlp_sub_updates(m, TEXT, 0)
    with pytest.raises(ValueError, match="position must be"):
        sub.describe(sub.n_positions)
    with pytest.raises(ValueError, match="sources: 'xyzzy whale' is"):
        vs.ov_tokens(m, "0.0", "xyzzy whale")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vs.ov_tokens(m, "0.0", [m.cfg.d_vocab])
    with pytest.raises(ValueError, match="head"):
        vs.qk_tokens(m, f"0.{m.cfg.n_heads}", [1])
    with pytest.raises(ValueError, match="d_vocab, d_vocab"):
        vs.top_token_pairs(m, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="rows must lie"):
        vs.top_token_pairs(m, full_ov_circuit(m, "0.0", embedding="raw"), rows=[-1])
    # the backward lens: targets, positions, weights
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vs.backward_lens(m, TEXT, target=m.cfg.d_vocab)
    with pytest.raises(ValueError, match="target: 'xyzzy whale' is"):
        vs.backward_lens(m, TEXT, target="xyzzy whale")
    with pytest.raises(TypeError, match="target"):
        vs.backward_lens(m, TEXT, target=2.0)
    n = m.to_tokens(TEXT).shape[1]
    with pytest.raises(ValueError, match="position must be"):
        vs.backward_lens(m, TEXT, target=3, position=n)
    with pytest.raises(ValueError, match="give a target too"):
        vs.backward_lens(m, TEXT, position=2)
    with pytest.raises(ValueError, match="one text"):
        vs.backward_lens(m, windows[:2])
    lens = vs.backward_lens(m, TEXT)
    with pytest.raises(ValueError, match="weight must be one of"):
        lens.gradient(0, "W_gate")
    with pytest.raises(ValueError, match="layer must be"):
        lens.factors(top + 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        lens.projections(m).heatmap("imprints")
    with pytest.raises(ModelMismatchError):
        lens.projections(other_model)
    with pytest.raises(ModelMismatchError):
        with vs.stepped(other_model, lens, 0.1):
            pass
    for lr in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="lr"):
            with vs.stepped(m, lens, lr):
                pass
    with pytest.raises(TypeError, match="BackwardLens"):
        with vs.stepped(m, "lens", 0.1):
            pass
    with pytest.raises(ValueError, match="weight must be one of"):
        vs.mlp_weight(m, 0, "W_O")
    assert attached_hooks(m) == {}


def test_the_shipped_text_gives_contexts_on_the_course_model(course):
    model = course
    windows = token_windows(model, sample_text(), n_windows=4, length=64)
    found = vs.neuron_contexts(model, windows, model.cfg.n_layers - 1, neurons=[0, 1], k=3)
    assert found.n_tokens == 4 * 63 and bool(torch.isfinite(found.values).all())
