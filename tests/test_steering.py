"""interp_lib.steering: exact recovery of a short sentence by a latent vector, hook cleanup
(also on error), determinism, the batched sweep against one run per coefficient, the
contrastive vector and the head probes against plain computations, and clear errors."""

from __future__ import annotations

import pytest
import torch

from interp_lib.data import topic_sentences
from interp_lib.generation import generate
from interp_lib.steering import (
    contrastive_vector,
    decode_latent,
    fit_latent_vector,
    head_probes,
    iti_hooks,
    steering_hooks,
    steering_sweep,
    token_set_log_prob,
)


def _no_hooks_left(model) -> bool:
    return all(not hp.fwd_hooks for hp in model.hook_dict.values())


@pytest.fixture(scope="module")
def course():
    from interp_lib import course_model_available, load_model

    if not course_model_available():
        pytest.skip("the course model is not shipped in this copy")
    return load_model("course", device="cpu")


def test_latent_vector_recovers_a_short_sentence_exactly(course):
    # a random-init model cannot: its logits are too flat for any vector to make one
    # sentence the greedy choice, so this runs on the shipped course model
    target = "The whale is white."
    result = fit_latent_vector(course, target, layer=1, steps=200)
    assert result.recovered, result.losses[-5:]
    assert result.steps <= 200 and len(result.losses) == result.steps
    decoded = decode_latent(course, result.vector, 1, len(result.target_tokens))
    assert decoded == course.to_string(torch.tensor(result.target_tokens))
    assert course.to_string(torch.tensor(result.target_tokens)) == target
    assert result.losses[-1] < result.losses[0]
    plain = decode_latent(course, torch.zeros_like(result.vector), 1, len(result.target_tokens))
    assert plain != decoded  # without the vector the model says something else
    assert _no_hooks_left(course)


@pytest.mark.parametrize("check_every", [7])
def test_latent_fit_stops_where_decoding_after_every_check_would(course, check_every):
    """The teacher-forced check equals greedy decoding: same stopping step, same vector."""
    from interp_lib.reference import fit_latent_vector_decoding

    target = "The sea was calm."
    fit = fit_latent_vector(course, target, layer=1, steps=120, check_every=check_every)
    vector, step = fit_latent_vector_decoding(course, target, layer=1, steps=120,
                                              check_every=check_every)
    assert fit.recovered and fit.steps == step
    torch.testing.assert_close(fit.vector, vector, atol=1e-5, rtol=0)


def test_latent_fit_that_never_recovers_runs_every_step_like_the_reference(tiny_model):
    from interp_lib.reference import fit_latent_vector_decoding

    fit = fit_latent_vector(tiny_model, "The cat sat", layer=1, steps=12, check_every=5)
    vector, step = fit_latent_vector_decoding(tiny_model, "The cat sat", layer=1, steps=12,
                                              check_every=5)
    assert not fit.recovered and step is None and len(fit.losses) == 12
    torch.testing.assert_close(fit.vector, vector, atol=1e-6, rtol=0)


def test_generation_is_deterministic_and_leaves_no_hooks(tiny_model):
    vector = torch.randn(tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    hooks = steering_hooks(tiny_model, 1, vector, 8.0)
    a = generate(tiny_model, "The cat", 8, hooks=hooks, greedy=False, seed=3)
    b = generate(tiny_model, "The cat", 8, hooks=hooks, greedy=False, seed=3)
    assert a == b
    assert _no_hooks_left(tiny_model)
    plain = generate(tiny_model, "The cat", 8, greedy=False, seed=3)
    assert plain != a  # the steering changed the text
    assert generate(tiny_model, "The cat", 8, greedy=False, seed=3) == plain


def test_hooks_are_removed_when_generation_raises(tiny_model):
    def broken(resid, hook=None):
        raise RuntimeError("broken hook")

    with pytest.raises(RuntimeError, match="broken hook"):
        generate(tiny_model, "The cat", 3, hooks=[("blocks.0.hook_resid_pre", broken)])
    assert _no_hooks_left(tiny_model)


def test_steering_hook_adds_the_scaled_vector(tiny_model):
    vector = torch.randn(tiny_model.cfg.d_model)
    tokens = tiny_model.to_tokens("The cat sat")
    name = "blocks.1.hook_resid_pre"
    _, clean = tiny_model.run_with_cache(tokens, names_filter=name)
    with tiny_model.hooks(fwd_hooks=steering_hooks(tiny_model, 1, vector, 2.5)):
        _, steered = tiny_model.run_with_cache(tokens, names_filter=name)
    torch.testing.assert_close(steered[name] - clean[name],
                               (2.5 * vector).expand_as(clean[name]), rtol=1e-5, atol=1e-5)


def test_contrastive_vector_is_the_difference_of_mean_residuals(tiny_model):
    positive, negative = ["The sea was calm", "A whale"], ["Congress met"]
    got = contrastive_vector(tiny_model, positive, negative, [0, 1])
    assert got.shape == (2, tiny_model.cfg.d_model)
    for i, layer in enumerate([0, 1]):
        name = f"blocks.{layer}.hook_resid_pre"

        def mean(texts, name=name):
            acts = []
            for t in texts:
                _, cache = tiny_model.run_with_cache(tiny_model.to_tokens(t, prepend_bos=True))
                acts.append(cache[name][0, 1:])
            return torch.cat(acts).mean(0)

        torch.testing.assert_close(got[i], mean(positive) - mean(negative), rtol=1e-4,
                                   atol=1e-5)
    single = contrastive_vector(tiny_model, "The sea", "Congress", 1)
    assert single.shape == (tiny_model.cfg.d_model,)


def test_sweep_matches_one_run_per_coefficient(tiny_model):
    vectors = torch.randn(2, tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(1))
    neutral = torch.stack([tiny_model.to_tokens("The cat sat on the mat")[0]] * 2)
    measure = token_set_log_prob(tiny_model, [" cat", " dog"])
    sweep = steering_sweep(tiny_model, vectors, [0, 1], [0.0, 1.0, 4.0], neutral, measure)
    assert sweep.effect.shape == sweep.loss.shape == (2, 3)
    assert sweep.effect[:, 0].abs().max() < 1e-4  # coefficient 0 changes nothing
    for i, layer in enumerate([0, 1]):
        for j, coef in enumerate([0.0, 1.0, 4.0]):
            hooks = steering_hooks(tiny_model, layer, vectors[i], coef)
            with torch.no_grad(), tiny_model.hooks(fwd_hooks=hooks):
                log_probs = tiny_model(neutral).float().log_softmax(-1)
            loss = -log_probs[:, :-1].gather(-1, neutral[:, 1:, None])[..., 0].mean()
            score = measure(log_probs[:, :-1], neutral).mean()
            assert float(sweep.loss[i, j]) == pytest.approx(float(loss), abs=1e-4)
            assert float(sweep.effect[i, j]) == pytest.approx(
                float(score) - sweep.base_measure, abs=1e-4)
    assert len(sweep.to_frame()) == 6
    assert _no_hooks_left(tiny_model)


def test_head_probes_separate_planted_classes_and_iti_shifts_along_the_direction(tiny_model):
    # two classes of texts that differ in their last word: some head can tell them apart
    positive = [f"The {w} saw the whale" for w in ("cat", "dog", "man", "boy", "girl", "king")]
    negative = [f"The {w} saw the Congress" for w in ("cat", "dog", "man", "boy", "girl", "king")]
    probes = head_probes(tiny_model, positive, negative, test_fraction=0.34)
    cfg = tiny_model.cfg
    assert probes.accuracy.shape == (cfg.n_layers, cfg.n_heads)
    assert float(probes.accuracy.max()) == 1.0
    norms = probes.directions.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=1e-4, atol=1e-4)
    top = probes.top(2)
    tokens = tiny_model.to_tokens("The dog saw the whale")
    layer, head = map(int, top[0].split("."))
    name = f"blocks.{layer}.attn.hook_z"
    _, clean = tiny_model.run_with_cache(tokens, names_filter=name)
    with tiny_model.hooks(fwd_hooks=iti_hooks(tiny_model, probes, top[:1], alpha=3.0)):
        _, shifted = tiny_model.run_with_cache(tokens, names_filter=name)
    delta = shifted[name][0, :, head] - clean[name][0, :, head]
    expected = 3.0 * probes.std[layer, head] * probes.directions[layer, head]
    torch.testing.assert_close(delta, expected.expand_as(delta), rtol=1e-4, atol=1e-5)
    others = [h for h in range(cfg.n_heads) if h != head]
    torch.testing.assert_close(shifted[name][0, :, others], clean[name][0, :, others])


def test_shipped_topic_sentences():
    topics = topic_sentences()
    assert set(topics) == {"sea", "state"} and len(topics["sea"]) == len(topics["state"]) >= 200


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda m: fit_latent_vector(m, ""), ValueError, "non-empty"),
    (lambda m: fit_latent_vector(m, "The cat", layer=7), ValueError, "out of range"),
    (lambda m: fit_latent_vector(m, "The cat", positions="middle"), ValueError, "positions"),
    (lambda m: steering_hooks(m, 0, torch.zeros(3), 1.0), ValueError, "shape"),
    (lambda m: contrastive_vector(m, [], ["x"], 0), ValueError, "positive is empty"),
    (lambda m: steering_sweep(m, torch.zeros(1, 64), [0], [], "The cat", lambda lp, t: lp),
     ValueError, "at least one"),
    (lambda m: head_probes(m, ["a"], ["b"]), ValueError, "at least 4"),
    (lambda m: generate(m, "The cat", 0), ValueError, "max_new_tokens"),
])
def test_clear_errors(tiny_model, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_model)
    assert _no_hooks_left(tiny_model)


def test_fitting_a_latent_vector_leaves_the_models_gradients_alone(tiny_model):
    for param in tiny_model.parameters():
        param.grad = None
    fit = fit_latent_vector(tiny_model, "The cat sat", steps=3, check_every=3)
    assert len(fit.losses) == 3 and fit.vector.shape == (tiny_model.cfg.d_model,)
    assert all(param.grad is None for param in tiny_model.parameters())
