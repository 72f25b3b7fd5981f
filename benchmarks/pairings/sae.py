"""Sparse autoencoders (interp_lib.sae, notebook 08): each sweep against its straightforward
version.

- ``sae_activations``: two sites' activations over token windows, chunked with
  ``names_filter`` and ``stop_at_layer`` into preallocated tensors, vs one full forward pass per
  window caching everything (``collect_activations_loop``).
- ``sae_training``: collect once, then train on the cache for several epochs, vs computing the
  activations again for every step (``train_sae_loop``: one forward pass and one optimiser step
  per batch of windows); the difference is the gap in held-out FVU; tokens/s is tokens trained
  on over seconds (in ``sizes``: the tokens).
- ``sae_matmul_floor``: the training steps on the cache vs the dense matmuls those steps do
  (encoder forward, its weight gradient and its input gradient), alone: the ratio is the share
  of the matmul floor the training reaches; the difference is the relative gap between the
  FLOPs torch counts in one training step and the floor's count.
- ``sae_unit_activations``: every latent's frequency and top activations, batch by batch, vs
  one ``[token, latent]`` matrix of all the text (``unit_activations_naive``).
- ``features_vs_neurons``: patching k features vs k neurons for all pairs and ks in stacked
  passes vs one pair, one k and one kind per forward pass (``features_vs_neurons_loop``).
"""

from __future__ import annotations


def pairings(model, quick, Pairing, max_abs):
    import torch

    from interp_lib.data import sample_text
    from interp_lib.hooks import hook_name
    from interp_lib.reference import (
        collect_activations_loop,
        features_vs_neurons_loop,
        train_sae_loop,
        unit_activations_naive,
    )
    from interp_lib.sae import (
        SaeTrainer,
        SparseAutoencoder,
        collect_activations,
        features_vs_neurons,
        fraction_of_variance_unexplained,
        swap_pairs,
        text_windows,
        train_sae,
        training_text,
        unit_activations,
    )
    from interp_lib.validate import model_signature

    cfg = model.cfg
    resid, mlp = hook_name("resid_pre", cfg.n_layers // 2), hook_name("mlp_out", 0)
    big = cfg.n_layers * cfg.d_model >= 4096
    length = 32 if quick else 128
    n_windows = 8 if quick else (48 if big else 128)
    windows = text_windows(model, training_text(), length, n_windows)
    try:
        held_text = sample_text()
    except FileNotFoundError:
        held_text = training_text()[::-1]
    held = text_windows(model, held_text, length, 4 if quick else 16)
    d_sae, k = (4 if quick else 8) * cfg.d_model, 8 if quick else 32
    per_step = 2 if quick else 8                      # windows per step in the loop
    epochs = 2 if quick else 3
    rows = per_step * (length - 1)
    n_tokens = windows.shape[0] * (length - 1)

    def acts_diff(ours, loop):
        return max(max_abs(ours[s], loop[s]) for s in (resid, mlp))

    def trained_by_cache():
        acts = collect_activations(model, windows, resid)
        return train_sae(acts, d_sae=d_sae, k=k, epochs=epochs, batch_size=rows, seed=0)[0]

    def trained_by_loop():
        return train_sae_loop(model, windows, resid, d_sae=d_sae, k=k, epochs=epochs,
                              windows_per_step=per_step, seed=0)

    held_acts = collect_activations(model, held, resid)[resid]

    def fvu_gap(a, b):
        with torch.no_grad():
            return abs(float(fraction_of_variance_unexplained(held_acts, a(held_acts)))
                       - float(fraction_of_variance_unexplained(held_acts, b(held_acts))))

    # the matmul floor: the steps on the cache against their dense matmuls alone
    cache = collect_activations(model, windows, resid)[resid]
    steps = max(1, (epochs * n_tokens) // rows)

    def train_steps():
        sae = SparseAutoencoder(cfg.d_model, d_sae, k, site=resid,
                                signature=model_signature(model), seed=0)
        trainer = SaeTrainer(sae, total_steps=steps, dead_after_tokens=10**9)
        for i in range(steps):
            start = (i * rows) % (n_tokens - rows + 1)
            trainer.step(cache[start:start + rows])
        return trainer

    w = torch.randn(d_sae, cfg.d_model)

    def floor_matmuls():
        for i in range(steps):
            start = (i * rows) % (n_tokens - rows + 1)
            x = cache[start:start + rows]
            pre = x @ w.T                                   # encoder forward
            _ = pre.T @ x                                   # weight gradient
            _ = pre @ w                                     # input gradient (b_dec)
        return 3 * 2 * rows * cfg.d_model * d_sae         # FLOPs per step

    def flop_gap(trainer, floor_flops):
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            trainer.step(cache[:rows])
        counted = counter.get_total_flops()
        return abs(counted - floor_flops) / floor_flops

    sae_resid = SparseAutoencoder(cfg.d_model, d_sae, k, site=resid,
                                  signature=model_signature(model), seed=1)

    def units_diff(a, b):
        return max(max_abs(a.top_values, b.top_values), max_abs(a.frequency, b.frequency))

    sae_mlp = SparseAutoencoder(cfg.d_model, d_sae, k, site=mlp,
                                signature=model_signature(model), seed=2)
    pool = text_windows(model, held_text, 24 if not quick else 12, None)
    pairs = swap_pairs(model, pool, length=pool.shape[1], n_pairs=8 if quick else 48)
    ks = (1, 4, 16) if quick else (1, 2, 4, 8, 16, 32)

    def effects_diff(a, b):
        return max(max_abs(a.feature_effect, b.feature_effect),
                   max_abs(a.neuron_effect, b.neuron_effect))

    flops = 3 * 2 * rows * cfg.d_model * d_sae * steps
    return [
        Pairing("sae_activations", "collect_activations (2 sites, chunked)",
                "collect_activations_loop (full cache per window)",
                f"{windows.shape[0]} x {length} tokens, 2 sites",
                lambda: collect_activations(model, windows, [resid, mlp]),
                lambda: collect_activations_loop(model, windows, [resid, mlp]), acts_diff,
                1e-4),
        Pairing("sae_training", "collect once + train_sae on the cache",
                "train_sae_loop (a forward pass per step)",
                f"{n_tokens} tokens x {epochs} epochs, {d_sae} latents, k={k}",
                trained_by_cache, trained_by_loop, fvu_gap, 0.1 if quick else 0.05,
                "held-out FVU gap"),
        Pairing("sae_matmul_floor", "SaeTrainer.step on the cache",
                "the steps' dense matmuls alone",
                f"{steps} steps of {rows} rows, {flops / 1e9:.2f} GFLOP",
                train_steps, floor_matmuls, flop_gap, 0.05, "FLOP count gap"),
        Pairing("sae_unit_activations", "unit_activations (batched top-k)",
                "unit_activations_naive (whole [token, latent] matrix)",
                f"{held.shape[0]} x {length} tokens, {d_sae} latents",
                lambda: unit_activations(model, held, sae_resid, batch_size=4),
                lambda: unit_activations_naive(model, held, sae_resid), units_diff, 1e-4),
        Pairing("features_vs_neurons", "features_vs_neurons (stacked)",
                "features_vs_neurons_loop (a pass per pair, k, kind)",
                f"{len(pairs)} pairs x {len(ks)} ks",
                lambda: features_vs_neurons(model, sae_mlp, pairs, ks=ks),
                lambda: features_vs_neurons_loop(model, sae_mlp, pairs, ks=ks), effects_diff,
                1e-3),
    ]
