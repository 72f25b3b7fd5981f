"""Sparse autoencoders (interp_lib.sae): identities (an exact dictionary reconstructs exactly and
recovers all the loss, TopK keeps exactly k, planted dead latents are counted), agreement with
plain TransformerLens caches and hooks, with the straightforward loops in interp_lib.reference
and with EleutherAI's sparsify, the toy model of superposition, and a clear error for every bad
argument."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from interp_lib import reference
from interp_lib.hooks import attached_hooks, hook_name
from interp_lib.sae import (
    SHIPPED_DIR,
    Activations,
    SaeTrainer,
    SparseAutoencoder,
    SwapPairs,
    collect_activations,
    direct_logit_effect,
    evaluate_sae,
    feature_attribution,
    feature_recovery,
    features_vs_neurons,
    fraction_of_variance_unexplained,
    intervene,
    load_sae,
    logit_effects,
    shipped_card,
    shipped_sites,
    swap_pairs,
    text_windows,
    toy_forward,
    train_sae,
    train_toy_models,
    training_text,
    unit_activations,
)
from interp_lib.validate import ModelMismatchError, model_signature


def _tokens(model, n=6, length=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, model.cfg.d_vocab, (n, length), generator=gen)
    tokens[:, 0] = model.tokenizer.bos_token_id
    return tokens


def _random_sae(model, site, d_sae=48, k=6, seed=0):
    width = model.cfg.d_mlp if "mlp.hook" in site else model.cfg.d_model
    return SparseAutoencoder(width, d_sae, k, site=site, signature=model_signature(model),
                             seed=seed)


def _exact_sae(model, site):
    sae = SparseAutoencoder.from_directions(torch.eye(model.cfg.d_model), site=site)
    sae.signature = model_signature(model)
    return sae


# ---------------------------------------------------------------- the dictionary itself


def test_topk_keeps_exactly_k_and_matches_the_pre_activations():
    sae = SparseAutoencoder(16, 64, 5, seed=1)
    with torch.no_grad():
        sae.encoder.bias.fill_(10.0)  # every pre-activation positive: exactly k survive
    x = torch.randn(30, 16)
    latents = sae.encode(x)
    assert torch.equal((latents != 0).sum(-1), torch.full((30,), 5))
    pre = sae.pre_activations(x)
    kept = latents != 0
    assert torch.allclose(latents[kept], pre[kept])
    # the kept ones are the k largest
    threshold = pre.topk(5, dim=-1).values[:, -1:]
    assert bool((pre[kept].reshape(30, 5) >= threshold).all())
    values, indices = sae.encode_topk(x)
    assert torch.allclose(latents.gather(-1, indices), values)


def test_topk_never_keeps_a_negative_pre_activation():
    sae = SparseAutoencoder(8, 32, 20, seed=0)
    with torch.no_grad():
        sae.encoder.bias.fill_(-2.0)  # most pre-activations negative: fewer than k survive
    latents = sae.encode(torch.randn(50, 8))
    assert bool((latents >= 0).all()) and bool(((latents > 0).sum(-1) < 20).any())


def test_a_dictionary_with_one_latent_per_true_direction_reconstructs_exactly():
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(3)))
    sae = SparseAutoencoder.from_directions(q)
    x = torch.randn(40, 12) * 3
    assert torch.allclose(sae(x), x, atol=1e-5)
    assert float(fraction_of_variance_unexplained(x, sae(x))) < 1e-10
    recovery = feature_recovery(sae, q)
    assert torch.allclose(recovery.cosine, torch.ones(12), atol=1e-5)


def test_fvu_is_zero_for_a_perfect_fit_and_one_for_the_mean():
    x = torch.randn(100, 7)
    assert float(fraction_of_variance_unexplained(x, x)) == 0.0
    mean = x.mean(0).expand_as(x)
    assert math.isclose(float(fraction_of_variance_unexplained(x, mean)), 1.0, rel_tol=1e-6)


def test_relu_sae_is_dense_relu_and_topk_with_k_equal_d_sae_is_the_same():
    relu = SparseAutoencoder(8, 16, activation="relu", seed=2)
    topk = SparseAutoencoder(8, 16, 16, seed=2)
    x = torch.randn(10, 8)
    assert torch.allclose(relu.encode(x), torch.relu(relu.pre_activations(x)))
    assert torch.allclose(relu.encode(x), topk.encode(x))


def test_save_and_load_round_trip(tmp_path):
    sae = SparseAutoencoder(8, 24, 3, site="blocks.0.hook_resid_pre", signature=(1, 2, 8, 4, 9),
                            info={"note": "x"}, seed=4)
    folder = sae.save(tmp_path / "sae")
    back = SparseAutoencoder.load(folder)
    for name, value in sae.state_dict().items():
        assert torch.equal(value, back.state_dict()[name])
    assert (back.k, back.site, back.signature, back.info) == (3, sae.site, sae.signature,
                                                              {"note": "x"})
    half = SparseAutoencoder.load(sae.save(tmp_path / "half", dtype=torch.float16))
    assert half.W_dec.dtype == torch.float32
    assert torch.allclose(half.W_dec, sae.W_dec, atol=1e-3)
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["num_latents"] == 24 and cfg["k"] == 3 and cfg["d_in"] == 8


# ---------------------------------------------------------------- agreement with sparsify

sparsify_missing = importlib.util.find_spec("sparsify") is None


@pytest.mark.skipif(sparsify_missing, reason="eai-sparsify is not installed (dev extra)")
def test_a_saved_sae_loads_in_sparsify_and_computes_the_same(tmp_path):
    from sparsify import SparseCoder

    sae = SparseAutoencoder(16, 64, 4, seed=5)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.encoder.bias.normal_(0, 0.1)
    theirs = SparseCoder.load_from_disk(sae.save(tmp_path / "s"))
    x = torch.randn(33, 16)
    out = theirs(x)
    assert torch.allclose(out.sae_out, sae(x), atol=1e-5)
    values, indices = sae.encode_topk(x)
    mine = torch.zeros(33, 64).scatter_(-1, indices, values)
    ref = torch.zeros(33, 64).scatter_(-1, out.latent_indices, out.latent_acts)
    assert torch.allclose(mine, ref, atol=1e-6)
    assert math.isclose(float(out.fvu.detach()), float(fraction_of_variance_unexplained(x, sae(x))),
                        rel_tol=1e-5)


@pytest.mark.skipif(sparsify_missing, reason="eai-sparsify is not installed (dev extra)")
@pytest.mark.parametrize("n_dead", [3, 40])
def test_the_auxk_loss_and_the_decoder_gradient_projection_match_sparsify(tmp_path, n_dead):
    from sparsify import SparseCoder

    sae = SparseAutoencoder(16, 64, 4, seed=6)
    theirs = SparseCoder.load_from_disk(sae.save(tmp_path / "s"))
    x = torch.randn(50, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[torch.randperm(64, generator=torch.Generator().manual_seed(0))[:n_dead]] = True
    trainer = SaeTrainer(sae, total_steps=10)
    terms = trainer.losses(x, dead)
    out = theirs(x, dead_mask=dead)
    assert math.isclose(float(terms["fvu"].detach()), float(out.fvu.detach()), rel_tol=1e-5)
    assert math.isclose(float(terms["extra"].detach()), float(out.auxk_loss.detach()),
                        rel_tol=1e-4)
    # one step's decoder gradient, with its component along each row removed
    (terms["fvu"] + terms["extra"]).backward()
    (out.fvu + out.auxk_loss).backward()
    theirs.remove_gradient_parallel_to_decoder_directions()
    grad = sae.W_dec.grad - (sae.W_dec.grad * sae.W_dec).sum(-1, keepdim=True) * sae.W_dec
    assert torch.allclose(grad, theirs.W_dec.grad, atol=1e-5)


# ---------------------------------------------------------------- training


def test_training_lowers_the_fvu_keeps_decoder_rows_unit_norm_and_is_seeded():
    gen = torch.Generator().manual_seed(0)
    dictionary = torch.randn(40, 10, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    codes = torch.rand(3000, 40, generator=gen) * (torch.rand(3000, 40, generator=gen) < 0.05)
    data = codes @ dictionary
    before = torch.is_grad_enabled()
    sae, log = train_sae(data, d_sae=64, k=4, epochs=8, batch_size=128, seed=1)
    first, last = log.history[0]["fvu"], log.history[-1]["fvu"]
    assert last < 0.5 * first
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    again, _ = train_sae(data, d_sae=64, k=4, epochs=8, batch_size=128, seed=1)
    assert torch.equal(again.W_dec, sae.W_dec)
    assert log.tokens == log.steps * 128 and log.tokens_per_second > 0
    assert torch.is_grad_enabled() == before  # training leaves autograd as it found it


def test_the_relu_l1_variant_trains_to_a_sparse_code():
    gen = torch.Generator().manual_seed(1)
    dictionary = torch.randn(30, 8, generator=gen)
    codes = torch.rand(2000, 30, generator=gen) * (torch.rand(2000, 30, generator=gen) < 0.05)
    data = codes @ dictionary
    sae, log = train_sae(data, d_sae=48, activation="relu", l1_coefficient=0.5, epochs=4,
                         batch_size=200, seed=0)
    l0 = float((sae.encode(data) > 0).sum(-1).float().mean())
    assert l0 < 0.5 * 48
    assert log.history[-1]["fvu"] < log.history[0]["fvu"]


def test_dead_latents_are_counted_on_a_planted_case(tiny_model):
    site = hook_name("resid_pre", 1)
    sae = _random_sae(tiny_model, site, d_sae=40, k=4)
    planted = [3, 17, 29]
    with torch.no_grad():
        sae.encoder.weight[planted] = 0.0
        sae.encoder.bias[planted] = -1.0  # pre-activation -1 on every input: never fires
    metrics = evaluate_sae(tiny_model, sae, _tokens(tiny_model))
    dead = (metrics.frequency == 0).nonzero()[:, 0].tolist()
    assert set(planted) <= set(dead)
    # the counts agree with a direct count on the collected activations
    acts = collect_activations(tiny_model, _tokens(tiny_model), site)
    fired = (sae.encode(acts[site]) > 0).any(0)
    assert metrics.dead_fraction == pytest.approx(float((~fired).float().mean()))
    trainer = SaeTrainer(sae, total_steps=5, dead_after_tokens=20)
    for _ in range(3):
        trainer.step(acts[site][:30])
    assert set(planted) <= set(trainer.dead().nonzero()[:, 0].tolist())
    assert not bool(trainer.dead()[trainer.tokens_since_fired == 0].any())


# ---------------------------------------------------------------- activations


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_neox"])
def test_collected_activations_equal_a_full_cache(request, fixture):
    model = request.getfixturevalue(fixture)
    tokens = _tokens(model)
    sites = [hook_name("resid_pre", 1), hook_name("mlp_out", 0), hook_name("mlp_post", 0)]
    acts = collect_activations(model, tokens, sites, batch_size=4)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    for site in sites:
        expected = cache[site][:, 1:].reshape(-1, cache[site].shape[-1])
        assert torch.allclose(acts[site], expected, atol=1e-5), site
    window, pos = acts.location(torch.tensor([0, 11, 12]))
    assert window.tolist() == [0, 1, 1] and pos.tolist() == [1, 1, 2]
    loop = reference.collect_activations_loop(model, tokens, sites)
    for site in sites:
        assert torch.allclose(acts[site], loop[site], atol=1e-5)


def test_activations_go_to_disk_when_over_budget(tiny_model, tmp_path):
    tokens = _tokens(tiny_model)
    site = hook_name("resid_pre", 1)
    with pytest.raises(ValueError, match="budget_mb"):
        collect_activations(tiny_model, tokens, site, budget_mb=0.001)
    on_disk = collect_activations(tiny_model, tokens, site, budget_mb=0.001, path=tmp_path)
    in_memory = collect_activations(tiny_model, tokens, site)
    assert on_disk.path == tmp_path and (tmp_path / f"{site}.npy").is_file()
    assert torch.allclose(on_disk[site], in_memory[site])
    half = collect_activations(tiny_model, tokens, site, dtype=torch.float16)
    assert half[site].dtype == torch.float16 and half.nbytes * 2 == in_memory.nbytes


def test_training_on_activations_takes_the_site_and_the_model_shape(tiny_model):
    site = hook_name("resid_pre", 1)
    acts = collect_activations(tiny_model, _tokens(tiny_model, n=20), site)
    sae, _ = train_sae(acts, d_sae=32, k=4, batch_size=64)
    assert sae.site == site and sae.signature == model_signature(tiny_model)


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_neox"])
@pytest.mark.parametrize("site", ["resid_pre", "mlp_out"])
def test_an_exact_dictionary_recovers_all_the_loss(request, fixture, site):
    model = request.getfixturevalue(fixture)
    name = hook_name(site, 1)
    metrics = evaluate_sae(model, _exact_sae(model, name), _tokens(model), batch_size=4)
    assert metrics.fvu < 1e-9
    assert metrics.loss_sae == pytest.approx(metrics.loss_clean, abs=1e-5)
    assert metrics.loss_recovered == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("site", ["resid_pre", "mlp_out"])
def test_metrics_agree_with_hooks_and_the_collected_activations(tiny_neox, site):
    model, name = tiny_neox, hook_name(site, 1)
    tokens = _tokens(model)
    sae = _random_sae(model, name)
    metrics = evaluate_sae(model, sae, tokens, batch_size=4)

    def replace(value):
        def hook(act, hook=None):
            out = act.clone()
            out[:, 1:] = value(act[:, 1:])
            return out
        return hook

    with torch.no_grad():
        clean = float(model(tokens, return_type="loss"))
        spliced = float(model.run_with_hooks(tokens, return_type="loss",
                                             fwd_hooks=[(name, replace(sae))]))
        zero = float(model.run_with_hooks(tokens, return_type="loss",
                                          fwd_hooks=[(name, replace(torch.zeros_like))]))
    assert (metrics.loss_clean, metrics.loss_sae, metrics.loss_zero) == pytest.approx(
        (clean, spliced, zero), abs=1e-4)
    x = collect_activations(model, tokens, name)[name]
    assert metrics.fvu == pytest.approx(float(fraction_of_variance_unexplained(x, sae(x))),
                                        rel=1e-4)
    assert metrics.l0 == pytest.approx(float((sae.encode(x) > 0).sum(-1).float().mean()))
    assert attached_hooks(model) == {}


# ---------------------------------------------------------------- reading features


def test_unit_activations_agree_with_the_whole_matrix(tiny_model):
    tokens = _tokens(tiny_model, n=7)
    sae = _random_sae(tiny_model, hook_name("resid_pre", 1))
    for source in (sae, hook_name("mlp_post", 0)):
        ours = unit_activations(tiny_model, tokens, source, top=5, batch_size=3)
        naive = reference.unit_activations_naive(tiny_model, tokens, source, top=5)
        assert torch.allclose(ours.top_values, naive.top_values, atol=1e-5)
        assert torch.allclose(ours.frequency, naive.frequency)
        assert torch.allclose(ours.mean, naive.mean, atol=1e-5)
    unit = int(ours.frequency.argmax())
    window, pos = ours.location(unit)
    values = ours.values_on(tiny_model, tokens[window], unit)
    assert torch.allclose(values[torch.arange(len(pos)), pos], ours.top_values[unit], atol=1e-5)
    view = ours.contexts(tiny_model, unit, n=3)
    assert len(view.rows) == 3 and "⟦" in str(view) and "<span" in view._repr_html_()


def test_token_share_is_one_for_a_unit_that_fires_on_one_token(tiny_model):
    tokens = _tokens(tiny_model, n=8)
    tokens[:, 5] = 7  # token 7 at position 5 of every window, and nowhere else
    tokens[tokens == 7] = 8
    tokens[:, 5] = 7
    direction = tiny_model.W_E.detach()[7]
    sae = SparseAutoencoder(tiny_model.cfg.d_model, 2, 1, site=hook_name("resid_pre", 0),
                            signature=model_signature(tiny_model))
    with torch.no_grad():  # resid_pre 0 is the embedding (+ position): a latent for token 7
        sae.encoder.weight.copy_(torch.stack([direction, -direction]))
        sae.encoder.bias.fill_(-0.9 * float(direction.pow(2).sum()))
        sae.b_dec.zero_()
    stats = unit_activations(tiny_model, tokens, sae, top=5)
    assert float(stats.token_share(0)) == 1.0
    assert torch.equal(stats.top_tokens(0), torch.full((5,), 7))


def test_logit_effects_are_the_first_order_change_of_the_logits(tiny_neox):
    model = tiny_neox
    site = hook_name("resid_post", model.cfg.n_layers - 1)
    sae = _random_sae(model, site)
    tokens = _tokens(model, n=2)
    eps = 1e-3

    def push(act, hook=None):
        return act + eps * sae.W_dec.detach()[5]

    with torch.no_grad():
        clean = model(tokens)
        pushed = model.run_with_hooks(tokens, fwd_hooks=[(site, push)])
    change = ((pushed - clean) / eps)[0, 3]               # one position: effect / LN scale
    change = change - change.mean()
    row = direct_logit_effect(model, sae.W_dec.detach()[5])
    row = row - row.mean()
    cosine = float(change @ row / (change.norm() * row.norm()))
    assert cosine > 0.999
    # the kept top tokens are the top of the full row, and every latent is there
    effects = logit_effects(model, sae, top=4, batch_size=7)
    assert effects.features == list(range(sae.d_sae))
    full = direct_logit_effect(model, sae.W_dec.detach())
    assert torch.equal(effects.top_promoted(), full.argmax(-1))
    assert torch.allclose(effects.promoted_values, full.topk(4, dim=-1).values, atol=1e-5)
    assert torch.allclose(effects.suppressed_values, -(-full).topk(4, dim=-1).values, atol=1e-5)
    promoted = effects.promoted(5, 3)
    assert [v for _, v in promoted] == sorted([v for _, v in promoted], reverse=True)
    assert promoted[0][0] == model.tokenizer.decode([int(full[5].argmax())])
    two = logit_effects(model, sae, [0, 5], top=3)
    assert torch.equal(two.promoted_ids[1], effects.promoted_ids[5, :3])


def test_ablating_a_feature_matches_a_hand_written_hook(tiny_model):
    site = hook_name("resid_pre", 1)
    sae = _random_sae(tiny_model, site)
    tokens = _tokens(tiny_model, n=4)
    x = collect_activations(tiny_model, tokens, site)[site]
    feature = int((sae.encode(x) > 0).sum(0).argmax())
    effect = intervene(tiny_model, sae, tokens, feature)

    def ablate(act, hook=None):
        a = sae.encode(act)[..., feature]
        a[:, 0] = 0.0
        return act - a[..., None] * sae.W_dec.detach()[feature]

    with torch.no_grad():
        clean = tiny_model(tokens).log_softmax(-1)
        edited = tiny_model.run_with_hooks(tokens, fwd_hooks=[(site, ablate)]).log_softmax(-1)
        active = sae.encode(torch.cat([torch.zeros_like(x[:1]).expand(4, -1)[:, None],
                                       x.reshape(4, -1, x.shape[-1])], 1))[..., feature] > 0
    active[:, 0] = False
    mask = active[:, :-1]
    kl = (clean.exp() * (clean - edited)).sum(-1)[:, :-1][mask]
    assert effect.n_positions == int(mask.sum())
    assert effect.kl == pytest.approx(float(kl.mean()), rel=1e-4)
    never = intervene(tiny_model, sae, tokens, feature, clamp=0.0)
    assert never.n_positions == tokens.shape[0] * (tokens.shape[1] - 2)
    assert attached_hooks(tiny_model) == {}


def test_attribution_is_exact_on_a_linear_path(tiny_model):
    """mlp_out L -> resid_post L is the identity plus resid_mid; with a downstream latent that is
    linear (ReLU SAE, always positive) gradient x activation equals the ablation effect."""
    up_site, down_site = hook_name("mlp_out", 1), hook_name("resid_post", 1)
    upstream = _random_sae(tiny_model, up_site, d_sae=32, k=4, seed=1)
    downstream = SparseAutoencoder(tiny_model.cfg.d_model, 8, activation="relu",
                                   site=down_site, signature=model_signature(tiny_model), seed=2)
    with torch.no_grad():
        downstream.encoder.bias.fill_(30.0)  # latent 0 positive everywhere: linear in its input
    result = feature_attribution(tiny_model, upstream, downstream, _tokens(tiny_model), 0,
                                 check=4)
    assert len(result.checked) == 4
    for _, attribution, ablation in result.checked:
        assert attribution == pytest.approx(ablation, rel=1e-3, abs=1e-3)
    assert attached_hooks(tiny_model) == {}
    assert all(p.grad is None for p in tiny_model.parameters())


def test_attribution_is_the_derivative_through_attention(tiny_neox):
    """Through attention and an MLP the attribution is first order: shrinking one upstream
    latent by a small fraction eps changes the downstream activation by eps x attribution."""
    model = tiny_neox
    up = _random_sae(model, hook_name("mlp_out", 0), d_sae=32, k=4, seed=3)
    down = _random_sae(model, hook_name("resid_post", 1), d_sae=32, k=4, seed=4)
    tokens = _tokens(model)
    x = collect_activations(model, tokens, down.site)[down.site]
    feature = int((down.encode(x) > 0).sum(0).argmax())
    result = feature_attribution(model, up, down, tokens, feature, check=0)
    latent, attribution = result.top(1)[0]
    eps = 1e-2

    def total(scale):
        def shrink(act, hook=None):
            a = up.encode(act)[..., latent]
            a[:, 0] = 0.0
            return act - (1 - scale) * a[..., None] * up.W_dec.detach()[latent]

        seen = {}
        with torch.no_grad(), model.hooks(fwd_hooks=[(up.site, shrink), (
                down.site, lambda act, hook: seen.setdefault("y", act))]):
            model(tokens)
            return float(down.encode(seen["y"][:, 1:])[..., feature].double().sum())

    assert (total(1.0) - total(1.0 - eps)) / eps == pytest.approx(attribution, rel=0.05)


def test_features_vs_neurons_agrees_with_the_loop_and_its_identities(tiny_neox):
    model = tiny_neox
    site = hook_name("mlp_out", 0)
    tokens = _tokens(model, n=24, length=10, seed=5)
    pairs = swap_pairs(model, tokens, length=8, n_pairs=8)
    assert len(pairs) > 2
    assert bool((pairs.clean_answer != pairs.corrupted_answer).all())
    assert torch.equal(pairs.clean[:, :-1], pairs.corrupted[:, :-1])
    exact = _exact_sae(model, site)
    ks = [1, 3, model.cfg.d_model, model.cfg.d_mlp]
    ours = features_vs_neurons(model, exact, pairs, ks=ks)
    # every neuron patched is the whole MLP output; so is every latent of an exact dictionary
    assert float(ours.neuron_effect[-1]) == pytest.approx(1.0, abs=1e-4)
    assert float(ours.feature_effect[-1]) == pytest.approx(1.0, abs=1e-4)
    loop = reference.features_vs_neurons_loop(model, exact, pairs, ks=ks)
    assert torch.allclose(ours.feature_effect, loop.feature_effect, atol=1e-4)
    assert torch.allclose(ours.neuron_effect, loop.neuron_effect, atol=1e-4)
    assert attached_hooks(model) == {}


# ---------------------------------------------------------------- the toy model


def test_sparse_toy_features_go_into_superposition_and_an_sae_recovers_them():
    toy = train_toy_models(5, 2, (1.0, 0.03), importance=0.9, steps=1500, seed=0)
    per_dim = toy.features_per_dimension()
    assert float(per_dim[0]) == 1.0                  # dense: one feature per dimension
    assert int(toy.represented()[1].sum()) == 5      # sparse: all five, in two dimensions
    hidden = toy.hidden_activations(1, 16000, seed=1)
    sae, _ = train_sae(hidden, d_sae=20, k=1, epochs=10, batch_size=256, seed=0)
    recovery = feature_recovery(sae, toy.W[1])
    assert bool((recovery.cosine >= 0.9).all()), recovery.cosine
    # the toy forward pass is the one documented
    x = toy.sample(3, seed=2)
    expected = torch.relu(torch.einsum("ihf,ihg,big->bif", toy.W, toy.W, x) + toy.b)
    assert torch.allclose(toy_forward(toy.W, toy.b, x), expected, atol=1e-6)
    # a pentagon: dimensionality 2/5 for each feature
    assert torch.allclose(toy.dimensionality()[1], torch.full((5,), 0.4), atol=0.05)


# ---------------------------------------------------------------- the shipped SAEs


@pytest.mark.skipif(not shipped_sites(), reason="no SAE shipped in this copy")
def test_the_shipped_saes_match_their_card_and_stay_small():
    card = shipped_card()
    assert set(card["saes"]) == set(shipped_sites())
    total = sum(p.stat().st_size for p in SHIPPED_DIR.rglob("*") if p.is_file())
    assert total <= 5 * 2**20
    for site, entry in card["saes"].items():
        sae = load_sae(site)
        assert sae.site == site and sae.d_sae == entry["training"]["d_sae"]
        assert entry["metrics"]["l0"] <= sae.k
    assert (SHIPPED_DIR / "SAE_CARD.md").is_file()


@pytest.mark.skipif(not shipped_sites(), reason="no SAE shipped in this copy")
def test_a_shipped_sae_refuses_another_model(tiny_model):
    with pytest.raises(ModelMismatchError):
        load_sae(shipped_sites()[0], model=tiny_model)


def test_training_text_is_disjoint_from_the_held_out_sample():
    pytest.importorskip("interp_lib.data")
    from interp_lib.data import sample_text

    try:
        held_out = sample_text()
    except FileNotFoundError:
        pytest.skip("the course model is not shipped in this copy")
    text = training_text()
    sentences = [s for s in text.split(". ") if len(s) > 60]
    assert sentences and not any(s in held_out for s in sentences[:200])


def test_text_windows_takes_every_whole_window(tiny_model):
    windows = text_windows(tiny_model, "the cat sat on the mat. " * 30, length=16)
    assert windows.shape[1] == 16 and windows.shape[0] >= 2
    assert text_windows(tiny_model, "the cat sat on the mat. " * 30, 16, n_windows=2).shape == \
        (2, 16)


# ---------------------------------------------------------------- bad arguments


def test_bad_arguments_are_refused_with_their_names(tiny_model, tiny_neox):
    site = hook_name("resid_pre", 1)
    sae = _random_sae(tiny_model, site)
    tokens = _tokens(tiny_model)
    cases = [
        (lambda: SparseAutoencoder(0, 8, 2), ValueError, "d_in"),
        (lambda: SparseAutoencoder(8, 8, None), ValueError, "needs k"),
        (lambda: SparseAutoencoder(8, 8, 9), ValueError, "k must be"),
        (lambda: SparseAutoencoder(8, 8, 2, activation="gelu"), ValueError, "activation"),
        (lambda: SparseAutoencoder(8, 8, 2, activation="relu"), ValueError, "k is for"),
        (lambda: SparseAutoencoder(8, 8, 2, site=3), TypeError, "site"),
        (lambda: fraction_of_variance_unexplained(torch.ones(3, 2), torch.ones(3, 2)),
         ValueError, "no variance"),
        (lambda: fraction_of_variance_unexplained(torch.randn(3, 2), torch.ones(2, 2)),
         ValueError, "reconstruction"),
        (lambda: fraction_of_variance_unexplained(torch.tensor([[float("nan"), 1.0]]),
                                                  torch.ones(1, 2)), ValueError, "x has"),
        (lambda: collect_activations("gpt2", tokens, site), TypeError, "load_model"),
        (lambda: collect_activations(tiny_model, tokens, "blocks.9.hook_resid_pre"),
         ValueError, "sites"),
        (lambda: collect_activations(tiny_model, tokens, []), ValueError, "sites is empty"),
        (lambda: collect_activations(tiny_model, tokens, [site, site]), ValueError, "twice"),
        (lambda: collect_activations(tiny_model, tokens, site, batch_size=0), ValueError,
         "batch_size"),
        (lambda: collect_activations(tiny_model, tokens, site, budget_mb=float("inf")),
         ValueError, "budget_mb"),
        (lambda: collect_activations(tiny_model, tokens.float(), site), TypeError, "integer"),
        (lambda: collect_activations(tiny_model, tokens[:, :1], site), ValueError, "2 positions"),
        (lambda: train_sae(torch.randn(10, 4), d_sae=0, k=1), ValueError, "d_sae"),
        (lambda: train_sae(torch.randn(10, 4), d_sae=8, k=1, batch_size=50), ValueError,
         "batch_size"),
        (lambda: train_sae(torch.full((10, 4), float("nan")), d_sae=8, k=1), ValueError,
         "data"),
        (lambda: train_sae(torch.randn(10, 4), d_sae=8, k=1, epochs=0), ValueError, "epochs"),
        (lambda: evaluate_sae(tiny_model, "sae", tokens), TypeError, "SparseAutoencoder"),
        (lambda: evaluate_sae(tiny_model, SparseAutoencoder(64, 8, 2), tokens), ValueError,
         "no site"),
        (lambda: evaluate_sae(tiny_model, SparseAutoencoder(32, 8, 2, site=site), tokens),
         ValueError, "width"),
        (lambda: evaluate_sae(tiny_model, SparseAutoencoder(64, 8, 2, site=site,
                                                            signature=(9, 9, 64, 9, 9)),
                              tokens), ModelMismatchError, "sae"),
        (lambda: evaluate_sae(tiny_model, sae, tokens, dense_threshold=1.5), ValueError,
         "dense_threshold"),
        (lambda: unit_activations(tiny_model, tokens, 3), TypeError, "source"),
        (lambda: unit_activations(tiny_model, tokens, sae, top=0), ValueError, "top"),
        (lambda: logit_effects(tiny_model, sae, []), TypeError, "features"),
        (lambda: logit_effects(tiny_model, sae, [0], top=0), ValueError, "top"),
        (lambda: direct_logit_effect(tiny_model, torch.ones(3)), ValueError, "d_model"),
        (lambda: logit_effects(tiny_model, sae, [999]), ValueError, "features"),
        (lambda: logit_effects(tiny_model, _random_sae(tiny_model, hook_name("mlp_post", 0)),
                               [0]), ValueError, "residual stream"),
        (lambda: intervene(tiny_model, sae, tokens, -1), ValueError, "feature"),
        (lambda: intervene(tiny_model, sae, tokens, 0, clamp=float("nan")), ValueError,
         "clamp"),
        (lambda: feature_attribution(tiny_model, sae, sae, tokens, 0), ValueError,
         "must come before"),
        (lambda: feature_attribution(tiny_model, sae, _random_sae(tiny_model,
                                                                   hook_name("resid_post", 1)),
                                     tokens, 0, check=-1), ValueError, "check"),
        (lambda: swap_pairs(tiny_model, tokens, length=1), ValueError, "length"),
        (lambda: swap_pairs(tiny_model, tokens[:1], length=4), ValueError, "at least 2"),
        (lambda: features_vs_neurons(tiny_model, sae, None), ValueError, "hook_mlp_out"),
        (lambda: features_vs_neurons(tiny_model, _random_sae(tiny_model, hook_name("mlp_out", 0)),
                                     "pairs"), TypeError, "SwapPairs"),
        (lambda: train_toy_models(5, 5), ValueError, "n_hidden"),
        (lambda: train_toy_models(5, 2, (0.5, 1.5)), ValueError, "feature_probability"),
        (lambda: train_toy_models(5, 2, 0.5), TypeError, "feature_probability"),
        (lambda: train_toy_models(5, 2, importance=torch.ones(4)), ValueError, "importance"),
        (lambda: feature_recovery(sae, torch.ones(3, 2)), ValueError, "true_directions"),
        (lambda: load_sae("blocks.7.hook_resid_pre"), ValueError, "no SAE ships"),
        (lambda: load_sae(3), TypeError, "site"),
    ]
    for make, kind, words in cases:
        with pytest.raises(kind, match=words):
            make()
    good = SwapPairs(tokens[:2], tokens[:2], torch.tensor([1, 2]), torch.tensor([3, 4]))
    mlp_sae = _random_sae(tiny_model, hook_name("mlp_out", 0))
    with pytest.raises(ValueError, match="ks"):
        features_vs_neurons(tiny_model, mlp_sae, good, ks=[0])
    with pytest.raises(TypeError, match="ks"):
        features_vs_neurons(tiny_model, mlp_sae, good, ks=3)
    acts = Activations({site: torch.zeros(4, 64)}, tokens[:2, :3], True, (1,))
    with pytest.raises(KeyError, match="no activations"):
        acts["blocks.0.hook_mlp_out"]
    with pytest.raises(ValueError, match="rows"):
        acts.location(torch.tensor([9]))


def test_the_smaller_pieces_refuse_bad_arguments(tiny_model, tmp_path):
    site = hook_name("resid_pre", 1)
    sae = _random_sae(tiny_model, site)
    stats = unit_activations(tiny_model, _tokens(tiny_model, n=2), sae, top=3)
    cases = [
        (lambda: SparseAutoencoder.from_directions(torch.zeros(4, 2)), ValueError, "zero column"),
        (lambda: SparseAutoencoder.from_directions(torch.ones(4)), ValueError, "directions"),
        (lambda: sae.save(tmp_path / "x", dtype=torch.int8), ValueError, "dtype"),
        (lambda: sae.save(3), TypeError, "path"),
        (lambda: SparseAutoencoder.load(tmp_path / "missing"), FileNotFoundError, "no SAE"),
        (lambda: SaeTrainer(sae, total_steps=0), ValueError, "total_steps"),
        (lambda: SaeTrainer(sae, total_steps=5, lr=-1.0), ValueError, "lr"),
        (lambda: SaeTrainer(sae, total_steps=5).step(torch.zeros(4, 3)), ValueError, "x must"),
        (lambda: SaeTrainer("sae", total_steps=5), TypeError, "SparseAutoencoder"),
        (lambda: stats.contexts(tiny_model, 0, n=0), ValueError, "n must"),
        (lambda: stats.contexts(tiny_model, 10**6), ValueError, "unit"),
        (lambda: stats.values_on(tiny_model, _tokens(tiny_model), []), ValueError, "unit"),
        (lambda: stats.values_on(tiny_model, _tokens(tiny_model), 0, batch_size=0), ValueError,
         "batch_size"),
        (lambda: text_windows(tiny_model, "the cat", length=1), ValueError, "length"),
        (lambda: text_windows("model", "the cat"), TypeError, "load_model"),
        (lambda: toy_forward(torch.zeros(2, 2, 5), torch.zeros(2, 4), torch.zeros(3, 2, 5)),
         ValueError, "b must"),
        (lambda: toy_forward(torch.zeros(2, 2, 5), torch.zeros(2, 5), torch.zeros(3, 5)),
         ValueError, "x must"),
        (lambda: SparseAutoencoder(4, 8, activation="relu").encode_topk(torch.zeros(2, 4)),
         ValueError, "TopK"),
    ]
    for make, kind, words in cases:
        with pytest.raises(kind, match=words):
            make()


def test_toy_results_refuse_bad_arguments():
    toy = train_toy_models(4, 2, (0.5,), steps=5)
    with pytest.raises(ValueError, match="x must have shape"):
        toy.reconstruct(torch.zeros(3, 2, 4))
    with pytest.raises(ValueError, match="instance"):
        toy.hidden_activations(3, 10)
    with pytest.raises(ValueError, match="threshold"):
        toy.represented(-1.0)
    wide = train_toy_models(6, 3, (0.5,), steps=5)
    with pytest.raises(ValueError, match="2-dimensional"):
        wide.directions_figure()


# ---------------------------------------------------------------- figures


def test_result_figures_draw(tiny_model):
    from interp_lib.plotting import directions, histogram

    toy = train_toy_models(5, 2, (1.0, 0.1), steps=20)
    assert len(toy.directions_figure().data) == 2 * 5
    assert len(toy.features_per_dimension_figure().data) == 1
    assert len(toy.to_frame()) == 2
    metrics = evaluate_sae(tiny_model, _random_sae(tiny_model, hook_name("resid_pre", 1)),
                           _tokens(tiny_model))
    assert metrics.density_figure().data[0].type == "histogram"
    assert list(metrics.to_frame()["metric"])[:3] == ["n_tokens", "l0", "fvu"]
    assert len(histogram({"a": [1.0, 2.0], "b": [2.0, 3.0]}, bins=4).data) == 2
    with pytest.raises(ValueError, match="finite"):
        histogram([1.0, float("nan")])
    with pytest.raises(ValueError, match="bins"):
        histogram([1.0, 2.0], bins=0)
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        directions({"a": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="labels"):
        directions({"a": torch.zeros(3, 2)}, labels=["x"])


def test_a_baseline_reuses_the_clean_and_zero_losses(tiny_neox):
    tokens = _tokens(tiny_neox)
    for site in (hook_name("resid_pre", 1), hook_name("mlp_out", 0)):
        first = evaluate_sae(tiny_neox, _random_sae(tiny_neox, site, seed=0), tokens)
        other = _random_sae(tiny_neox, site, seed=1)
        full = evaluate_sae(tiny_neox, other, tokens)
        reused = evaluate_sae(tiny_neox, other, tokens, baseline=first)
        assert reused.as_dict() == pytest.approx(full.as_dict(), abs=1e-5)
        with pytest.raises(ValueError, match="other tokens"):
            evaluate_sae(tiny_neox, other, tokens[:3], baseline=first)
    with pytest.raises(TypeError, match="baseline"):
        evaluate_sae(tiny_neox, other, tokens, baseline={"loss_clean": 1.0})


def test_an_intervention_reports_every_tokens_change(tiny_model):
    site = hook_name("resid_pre", 1)
    sae = _random_sae(tiny_model, site)
    effect = intervene(tiny_model, sae, _tokens(tiny_model, n=3), 0, clamp=5.0)
    assert effect.logprob_change.shape == (tiny_model.cfg.d_vocab,)
    most = int(effect.logprob_change.argmin())
    assert effect.rank_lowered(most) == 0
    assert effect.lowered[0][1] == pytest.approx(float(effect.logprob_change[most]), abs=1e-6)


def test_the_training_scripts_command_reproduces_its_arguments():
    import importlib.util
    import shlex
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_sae.py"
    spec = importlib.util.spec_from_file_location("train_sae_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    import argparse

    defaults = argparse.Namespace(**script.DEFAULTS, out=str(script.ROOT / "interp_lib" /
                                                            "sae_model"), threads=None)
    assert script.command(defaults) == "python scripts/train_sae.py"
    changed = argparse.Namespace(**dict(vars(defaults), epochs=3, resid_k=16, threads=1))
    words = shlex.split(script.command(changed))
    assert words[words.index("--epochs") + 1] == "3" and words[words.index("--resid-k") + 1] \
        == "16" and words[words.index("--threads") + 1] == "1"
    if shipped_sites():
        card = script.card(shipped_card())
        for site, entry in shipped_card()["saes"].items():
            assert f"`{site}`" in card and f"{entry['metrics']['fvu']:.4f}" in card
