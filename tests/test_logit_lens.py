"""interp_lib.logit_lens and lens_figures: identities, agreement with TransformerLens's
logit_lens and with plain torch on the Hugging Face hidden states, dataset mode vs the naive
full-vocabulary version, figures and errors."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from interp_lib.figures.lens import (
    dataset_figure,
    first_stable_figure,
    lens_heatmap,
    lens_widget,
    strided_sites,
)
from interp_lib.logit_lens import (
    METRICS,
    lens_dataset,
    logit_lens,
    site_names,
)
from interp_lib.reference import lens_dataset_naive

TEXTS = ["The cat sat on the mat and the dog slept by the door",
         "Mary gave the book to John because he had asked for it"]


@pytest.fixture(scope="module")
def model3(tmp_path_factory):
    from interp_lib import load_model
    from interp_lib.tiny_models import save_tiny_gpt2

    path = save_tiny_gpt2(tmp_path_factory.mktemp("lens"), n_layers=3, seed=1)
    # give the final norm a non-trivial affine map, so the decoders and the folding differ
    hf = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        hf.transformer.ln_f.weight.uniform_(0.5, 1.5)
        hf.transformer.ln_f.bias.normal_(0, 0.2)
    hf.save_pretrained(path)
    return load_model(str(path), device="cpu"), path


@pytest.fixture(scope="module")
def lens(model3):
    model, _ = model3
    return logit_lens(model, _tokens(model), include_mid=False, chunk_size=7)


def _tokens(model):
    """The two texts as one batch, cut to the shorter one's length."""
    rows = [model.to_tokens(t)[0] for t in TEXTS]
    n = min(len(r) for r in rows)
    return torch.stack([r[:n] for r in rows])


def test_last_row_reproduces_the_models_log_probs(model3, lens):
    model, _ = model3
    tokens = lens.tokens
    with torch.no_grad():
        log_probs = model(tokens).float().log_softmax(-1)
    expected = -log_probs[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    assert (lens.next_loss[-1, :, :-1] - expected).abs().max() < 1e-4
    top = log_probs.topk(5, dim=-1)
    assert (lens.top_probs[-1] - top.values.exp()).abs().max() < 1e-4
    assert torch.equal(lens.top1[-1], log_probs.argmax(-1))


def test_identities_and_conventions(lens):
    assert lens.sites == ["input", "1_pre", "2_pre", "final"]
    assert lens.kl_to_final[-1].abs().max() < 1e-5       # KL(final || final) = 0
    assert lens.kl_to_input[0].abs().max() < 1e-5        # KL(input || input) = 0
    assert (lens.kl_to_final >= -1e-5).all()
    for name in ("final_top1_rank", "input_rank"):
        assert lens.metric(name).min() >= 1               # 1-based ranks
    assert (lens.final_top1_rank[-1] == 1).all()
    assert (lens.next_rank[:, :, :-1] >= 1).all() and (lens.next_rank[:, :, -1] == 0).all()
    assert torch.isnan(lens.next_prob[:, :, -1]).all()
    # rank 1 exactly where the site's top-1 is the token
    nxt = lens.tokens[:, 1:]
    assert torch.equal(lens.next_rank[:, :, :-1] == 1, lens.top1[:, :, :-1] == nxt[None])
    frame = lens.to_frame()
    assert len(frame) == 4 * 2 * lens.tokens.shape[1]
    assert set(METRICS) <= set(frame.columns)


def test_ranks_and_top1_agree_with_transformer_lens(model3, lens):
    from transformer_lens.tools.analysis.logit_lens import logit_lens as tl_logit_lens

    model, _ = model3
    tokens = lens.tokens
    theirs = tl_logit_lens(model, tokens[:, :-1], positions=None, targets=tokens[:, 1:])
    # TransformerLens counts ranks from 0; ours from 1
    assert torch.equal(theirs.rank_trajectory() + 1, lens.next_rank[:, :, :-1])
    top = tl_logit_lens(model, tokens, positions=None, top_k=1)
    assert torch.equal(top.readout.top_ids[..., 0], lens.top1)


def test_kl_agrees_with_plain_torch_on_hugging_face_hidden_states(model3, lens):
    _, path = model3
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        out = hf(lens.tokens, output_hidden_states=True)
        # hidden_states[i] is the input of block i; the last one already went through ln_f
        inner = [hf.lm_head(hf.transformer.ln_f(h)) for h in out.hidden_states[:-1]]
    log_probs = torch.stack([*inner, out.logits]).float().log_softmax(-1)
    final, first = log_probs[-1], log_probs[0]
    kl_final = (final.exp() * (final - log_probs)).sum(-1)
    kl_input = (first.exp() * (first - log_probs)).sum(-1)
    assert (kl_final - lens.kl_to_final).abs().max() < 1e-4
    assert (kl_input - lens.kl_to_input).abs().max() < 1e-4
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    assert (entropy - lens.entropy).abs().max() < 1e-4


def test_original_decoder_is_parameter_free_norm_and_transposed_embedding(model3):
    model, path = model3
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    original = logit_lens(model, TEXTS[0], decoder="original")
    tokens = original.tokens
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states[1]  # input of block 1
        x = torch.nn.functional.layer_norm(hidden, (hidden.shape[-1],), eps=1e-5)
        log_probs = (x @ hf.transformer.wte.weight.T).log_softmax(-1)
    assert torch.equal(original.top1[1], log_probs.argmax(-1))
    expected = -log_probs[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    assert (original.next_loss[1, :, :-1] - expected).abs().max() < 1e-4
    standard = logit_lens(model, TEXTS[0])
    assert (original.next_loss[1] - standard.next_loss[1]).nan_to_num().abs().max() > 1e-3


def test_mid_sites(model3):
    model, _ = model3
    lens = logit_lens(model, TEXTS[0], include_mid=True)
    assert lens.sites == site_names(3, include_mid=True)
    assert lens.top1.shape[0] == 7


def test_dataset_mode_equals_naive_and_the_cell_means(model3, lens):
    model, _ = model3
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, model.cfg.d_vocab, (9, 24), generator=gen)
    fast = lens_dataset(model, tokens, batch_size=4, chunk_size=19)
    naive = lens_dataset_naive(model, tokens)
    for name in ("mean_kl_to_final", "mean_loss", "agreement_with_final", "mean_entropy"):
        torch.testing.assert_close(getattr(fast, name), getattr(naive, name), atol=1e-4, rtol=0)
    assert torch.equal(fast.first_stable, naive.first_stable)
    assert fast.n_positions == 9 * 23 and int(fast.first_stable.sum()) == fast.n_positions
    cells = logit_lens(model, tokens)
    torch.testing.assert_close(fast.mean_kl_to_final, cells.kl_to_final[:, :, :-1].mean((1, 2)),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.mean_loss, cells.next_loss[:, :, :-1].mean((1, 2)),
                               atol=1e-5, rtol=0)
    assert fast.agreement_with_final[-1] == 1.0
    assert len(fast.to_frame()) == 4


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"decoder": "tuned"}, ValueError, "decoder must be one of"),
    ({"top_k": 0}, ValueError, "top_k must be a positive int"),
    ({"chunk_size": 0}, ValueError, "chunk_size must be a positive int"),
    ({"include_mid": "yes"}, TypeError, "include_mid"),
])
def test_bad_arguments_are_refused(model3, kwargs, error, match):
    model, _ = model3
    with pytest.raises(error, match=match):
        logit_lens(model, TEXTS[0], **kwargs)


def test_bad_inputs_are_refused(model3, lens):
    model, _ = model3
    with pytest.raises(ValueError, match="empty"):
        logit_lens(model, "")
    with pytest.raises(ValueError, match="exceeds the model's context"):
        logit_lens(model, torch.ones(1, model.cfg.n_ctx + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="metric must be one of"):
        lens.metric("surprise")
    with pytest.raises(ValueError, match="unknown site"):
        lens.site_index("9_pre")
    with pytest.raises(ValueError, match="window"):
        lens_heatmap(lens, window=(5, 2))
    with pytest.raises(ValueError, match="stride"):
        lens_heatmap(lens, stride=0)
    with pytest.raises(ValueError, match="batch 5 out of range"):
        lens_heatmap(lens, batch=5)


def test_heatmap_marks_boxes_window_and_stride(lens):
    fig = lens_heatmap(lens, "next_rank", batch=1, window=(2, 9))
    assert fig.data[0].z.shape == (4, 7)
    agree = (lens.top1[:, 1, 2:9] == lens.final_top1[:, 1, 2:9]).sum().item()
    assert len(fig.layout.shapes) == agree
    hits = (lens.top1[:, 1, 2:9] == lens.tokens[1, 3:10][None]).sum().item()
    assert len(fig.data[1].x) == hits
    assert "log₁₀" in fig.data[0].colorbar.title.text
    assert "KL(final ‖ site)" in lens_heatmap(lens).data[0].colorbar.title.text
    strided = lens_heatmap(lens, stride=2)
    assert list(strided.layout.yaxis.ticktext) == ["input", "2_pre", "final"]
    assert strided_sites(4, 2) == [0, 2, 3]


def test_dataset_figures_and_widget(model3, lens):
    model, _ = model3
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, model.cfg.d_vocab, (3, 12), generator=gen)
    standard = lens_dataset(model, tokens)
    original = lens_dataset(model, tokens, decoder="original")
    fig = dataset_figure(standard, original)
    assert len(fig.data) == 6
    assert len(first_stable_figure(standard).data[0].x) >= 1
    box = lens_widget(lens, window=6)
    metric, compare = box.children[0].children
    assert "KL(final ‖ site)" in box.figure.data[0].colorbar.title.text
    compare.value = "metric"
    metric.value = "entropy"
    assert box.figure.data[0].colorbar.title.text == "entropy, nats"
    start = box.children[1].children[0]
    start.value = 3
    assert box.figure.layout.xaxis.ticktext[0] == lens.str_tokens[0][3].replace(" ", "·")[:12]


@pytest.mark.parametrize("name", ["model3", "tiny_neox"])
def test_dataset_decoder_equals_transformer_lens_logit_readout(request, name):
    """Dataset mode reads logits directly (final norm, W_U, b_U); TransformerLens's
    logit_readout must give the same numbers."""
    from transformer_lens.tools.analysis.logit_lens import logit_readout

    from interp_lib.logit_lens import _readout_logits

    model = request.getfixturevalue(name)
    model = model[0] if isinstance(model, tuple) else model
    torch.manual_seed(0)
    vectors = torch.randn(3, 5, model.cfg.d_model) * 4
    with torch.no_grad():
        ours = _readout_logits(model, vectors)
        theirs = logit_readout(model, vectors, return_type="logits").values
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
