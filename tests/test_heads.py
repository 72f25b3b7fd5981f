"""interp_lib.heads: scores checked against planted patterns, a per-head loop and
TransformerLens's head detector; repeated tokens and ablation checked against plain torch."""

from __future__ import annotations

import pytest
import torch

from interp_lib.data import repeated_tokens
from interp_lib.heads import (
    SCORE_KINDS,
    attention_view,
    head_patterns,
    head_scores,
    repeat_performance,
)
from interp_lib.hooks import zero_ablation
from interp_lib.reference import head_scores_loop

TEXTS = [
    "The cat sat on the mat and the cat sat on the mat again",
    "Mary gave the book to John and Mary gave the pen to John too",
]


def test_repeated_tokens_are_seeded_repeats_without_special_tokens(tiny_model):
    tokens = repeated_tokens(tiny_model, n=12, batch=5, seed=3)
    assert tokens.shape == (5, 25)
    assert torch.equal(tokens[:, 1:13], tokens[:, 13:])
    bos = tiny_model.tokenizer.bos_token_id
    assert (tokens[:, 0] == bos).all() and not (tokens[:, 1:] == bos).any()
    assert torch.equal(tokens, repeated_tokens(tiny_model, n=12, batch=5, seed=3))
    assert not torch.equal(tokens, repeated_tokens(tiny_model, n=12, batch=5, seed=4))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"n": 0}, ValueError, "n must be a positive int"),
    ({"batch": 0}, ValueError, "batch must be a positive int"),
    ({"n": 2.5}, TypeError, "n must be a positive int"),
    ({"n": 64}, ValueError, "exceed the model's context"),
])
def test_repeated_tokens_rejects_bad_sizes(tiny_model, kwargs, error, match):
    with pytest.raises(error, match=match):
        repeated_tokens(tiny_model, **kwargs)


def test_batched_scores_equal_the_per_head_loop(tiny_model):
    tokens = repeated_tokens(tiny_model, n=9, batch=3, seed=1)
    fast = head_scores(tiny_model, tokens, batch_size=2)
    slow = head_scores_loop(tiny_model, tokens)
    assert fast.kinds == list(SCORE_KINDS)
    for kind in SCORE_KINDS:
        torch.testing.assert_close(fast[kind], slow[kind], atol=1e-6, rtol=0)
        assert fast.queries[kind] == slow.queries[kind]
    assert fast.queries["induction"] == 3 * 9  # the second copy of each sequence
    assert fast.queries["previous_token"] == 3 * 18


def test_scores_agree_with_transformer_lens_detector(tiny_model):
    """TransformerLens divides the same attention mass by every query position."""
    from transformer_lens.head_detector import detect_head

    for text in TEXTS:
        ours = head_scores(tiny_model, text)
        for kind in ("previous_token", "duplicate_token", "induction"):
            theirs = detect_head(tiny_model, text, f"{kind}_head")
            torch.testing.assert_close(ours.mass[kind] / ours.positions, theirs.float(),
                                       atol=1e-6, rtol=0)


def _planted(layer_patterns):
    """Hooks that overwrite chosen heads' patterns with given ``[q, k]`` patterns."""
    hooks = []
    for (layer, head), make in layer_patterns.items():
        def hook(pattern, hook, head=head, make=make):
            pattern = pattern.clone()
            pattern[:, head] = make(pattern.shape[-1]).to(pattern)
            return pattern
        hooks.append((f"blocks.{layer}.attn.hook_pattern", hook))
    return hooks


def test_planted_heads_score_one_and_are_detected(tiny_model):
    n = 10
    tokens = repeated_tokens(tiny_model, n=n, batch=4, seed=2)

    def previous(seq):
        p = torch.zeros(seq, seq)
        p[0, 0] = 1
        p[torch.arange(1, seq), torch.arange(seq - 1)] = 1
        return p

    def induction(seq):
        p = previous(seq)
        q = torch.arange(n + 1, seq)
        p[q] = 0
        p[q, q - n + 1] = 1
        return p

    def sink(seq):
        p = torch.zeros(seq, seq)
        p[:, 0] = 1
        return p

    hooks = _planted({(0, 1): previous, (1, 2): induction, (1, 0): sink})
    with tiny_model.hooks(fwd_hooks=hooks):
        scores = head_scores(tiny_model, tokens)
        assert repeat_performance(tiny_model, tokens).n == n
    assert scores["previous_token"][0, 1] == pytest.approx(1.0)
    assert scores["induction"][1, 2] == pytest.approx(1.0)
    assert scores["first_token"][1, 0] == pytest.approx(1.0)
    assert scores["entropy"][1, 0] == pytest.approx(0.0, abs=1e-6)
    assert scores.detect("previous_token", 0.9) == ["0.1"]
    assert scores.detect("induction", 0.9) == ["1.2"]
    assert scores.top("first_token", 1)[0][0] == "1.0"
    for kind in ("induction", "previous_token", "duplicate_token", "current_token", "first_token"):
        assert ((scores[kind] >= 0) & (scores[kind] <= 1 + 1e-6)).all()
    # and without the plant, the random model has no such head
    assert head_scores(tiny_model, tokens)["induction"].max() < 0.5


def test_result_labels_frame_and_heatmap(tiny_model):
    scores = head_scores(tiny_model, repeated_tokens(tiny_model, n=6, batch=2))
    frame = scores.to_frame()
    cfg = tiny_model.cfg
    assert len(frame) == cfg.n_layers * cfg.n_heads
    assert list(frame["name"][:2]) == ["0.0", "0.1"]
    row = frame.set_index("name").loc[f"{cfg.n_layers - 1}.{cfg.n_heads - 1}"]
    assert row["induction"] == pytest.approx(float(scores["induction"][-1, -1]))
    fig = scores.heatmap("induction")
    assert fig.data[0].z.shape == (cfg.n_layers, cfg.n_heads)
    with pytest.raises(ValueError, match="kind must be one of"):
        scores["copying"]


def test_head_scores_rejects_bad_inputs(tiny_model):
    with pytest.raises(ValueError, match="unknown or no score kinds"):
        head_scores(tiny_model, TEXTS[0], kinds=["nonsense"])
    with pytest.raises(ValueError, match="different lengths"):
        head_scores(tiny_model, ["a b c", "a much longer sentence than the other one"])
    with pytest.raises(ValueError, match="exceeds the model's context"):
        head_scores(tiny_model, torch.zeros(1, tiny_model.cfg.n_ctx + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        head_scores(tiny_model, [])
    with pytest.raises(TypeError, match="integer tensor"):
        head_scores(tiny_model, torch.zeros(1, 4))


def test_repeat_performance_matches_plain_log_softmax(tiny_model):
    tokens = repeated_tokens(tiny_model, n=8, batch=3, seed=5)
    result = repeat_performance(tiny_model, tokens, batch_size=2)
    with torch.no_grad():
        logits = tiny_model(tokens)[:, :-1]
    expected = logits.log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
    torch.testing.assert_close(result.log_probs, expected, atol=1e-5, rtol=0)
    assert result.first_half_loss == pytest.approx(-float(expected[:, :8].mean()), abs=1e-5)
    assert result.second_half_loss == pytest.approx(-float(expected[:, 8:].mean()), abs=1e-5)
    frame = result.to_frame()
    assert list(frame["half"].unique()) == ["first", "second"] and len(frame) == 16
    with pytest.raises(ValueError, match="not BOS \\+ n tokens"):
        repeat_performance(tiny_model, torch.randint(1, 100, (2, 9)))


def test_zero_ablation_matches_a_manual_hook_and_is_removed(tiny_model):
    tokens = repeated_tokens(tiny_model, n=8, batch=2, seed=6)

    def manual(z, hook):
        z = z.clone()
        z[:, :, 3] = 0
        return z

    with torch.no_grad():
        expected = tiny_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", manual)])
        plain = tiny_model(tokens)
        with zero_ablation(tiny_model, ["1.3"]) as names:
            ablated = tiny_model(tokens)
        assert names == ["1.3"]
        torch.testing.assert_close(ablated, expected)
        assert not torch.allclose(ablated, plain)
        with pytest.raises(RuntimeError), zero_ablation(tiny_model, "0.0"):
            raise RuntimeError("boom")
        torch.testing.assert_close(tiny_model(tokens), plain)  # every hook removed
    result = repeat_performance(tiny_model, tokens, ablate=["1.3"])
    assert result.ablated == ["1.3"]
    with pytest.raises(ValueError, match="out of range"):
        repeat_performance(tiny_model, tokens, ablate=["1.99"])


def test_patterns_and_view(tiny_model):
    patterns = head_patterns(tiny_model, TEXTS[0], ["0.1", (1, 2)])
    seq = tiny_model.to_tokens(TEXTS[0]).shape[1]
    assert patterns.shape == (2, seq, seq)
    torch.testing.assert_close(patterns.sum(-1), torch.ones(2, seq))
    _, cache = tiny_model.run_with_cache(TEXTS[0])
    torch.testing.assert_close(patterns[1], cache["pattern", 1][0, 2].cpu())
    view = attention_view(tiny_model, TEXTS[0], ["0.1", "1.2"], mode="cdn")
    assert '"attentionHeadNames": ["0.1", "1.2"]' in view.html
    with pytest.raises(ValueError, match="not of the form"):
        head_patterns(tiny_model, TEXTS[0], ["1-2"])
