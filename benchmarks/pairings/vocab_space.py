"""Benchmark pairings of interp_lib.vocab_space (notebook 09), loaded by benchmarks/run.py.

- ``backward_lens``: every MLP's W_in and W_out gradient factorised from one forward and one
  backward pass with hooks (ranks from the factors) vs autograd layer by layer (one forward
  and one backward pass per layer) and an SVD of each dense gradient; the difference is the
  largest gap relative to the gradient's largest entry.
- ``neuron_contexts``: every neuron's top contexts over the shipped text in chunks with a
  running top-k vs one pass over all of it and the whole ``[tokens, d_mlp]`` matrix.
- ``value_tokens``: every value vector's promoted and suppressed tokens in row batches vs
  the whole ``[neurons, d_vocab]`` product at once.
- ``top_token_pairs``: the largest entries of a head's full OV circuit in row batches of the
  factored matrix vs multiplying the rows out at once and sorting them.
"""

from __future__ import annotations


def pairings(model, quick, Pairing, max_abs):
    from interp_lib.circuits import full_ov_circuit
    from interp_lib.data import NotEnoughTextError, sample_text, token_windows
    from interp_lib.reference import (
        mlp_weight_gradients_autograd,
        neuron_contexts_naive,
        top_token_pairs_dense,
        value_tokens_dense,
    )
    from interp_lib.vocab_space import (
        WEIGHTS,
        backward_lens,
        neuron_contexts,
        top_token_pairs,
        value_tokens,
    )

    cfg = model.cfg
    big = cfg.n_layers * cfg.d_model >= 4096
    try:
        text = sample_text()
    except FileNotFoundError:  # no course model shipped: any English will do for timings
        text = ("The committee met again on Tuesday and the chairman read the report aloud. "
                "Whales were seen off the coast at dawn, and the sailors counted them twice. ")
    # the course model: every window of the shipped text; GPT-2 small's size: 24 of them
    n_windows, length = (4, 32) if quick else ((24, 128) if big else (None, 128))
    while True:
        try:
            windows = token_windows(model, text, n_windows=n_windows or 10_000, length=length)
            break
        except NotEnoughTextError as short:
            if n_windows is None and short.available >= 8:
                windows = token_windows(model, text, n_windows=short.available, length=length)
                break
            text = text + "\n" + text
    one = windows[:1, : 16 if quick else 64]
    layer = cfg.n_layers - 1

    def lens_run():
        lens = backward_lens(model, one)
        ranks = [lens.rank(la, w) for la in range(cfg.n_layers) for w in WEIGHTS]
        return lens, ranks

    def lens_diff(ours, ref):
        lens, _ = ours
        gaps = []
        for name in WEIGHTS:
            for la in range(cfg.n_layers):
                expected = ref[name][la]
                scale = max(float(expected.abs().max()), 1e-30)
                gaps.append(max_abs(lens.gradient(la, name).AB, expected) / scale)
        return max(gaps)

    def contexts_diff(ours, naive):
        return max_abs(ours.values, naive.values)

    def values_diff(ours, dense):
        return max(max_abs(ours.promoted.scores, dense.promoted.scores),
                   max_abs(ours.suppressed.scores, dense.suppressed.scores))

    neurons = None if not big else list(range(1024))
    circuit = full_ov_circuit(model, (layer, 0), embedding="normalized")
    rows = list(range(min(cfg.d_vocab, 256 if quick else (2048 if big else cfg.d_vocab))))

    def pairs_diff(ours, dense):
        return max_abs(ours.values, dense.values)

    n_neurons = cfg.d_mlp if neurons is None else len(neurons)
    return [
        Pairing("backward_lens", "backward_lens (1 forward + 1 backward, factored SVD)",
                "autograd per layer + dense SVD", f"{one.shape[1]} tokens x {cfg.n_layers} layers",
                lens_run, lambda: mlp_weight_gradients_autograd(model, one), lens_diff, 1e-4,
                "max rel diff", grad=True),
        Pairing("neuron_contexts", "neuron_contexts (chunks, running top-k)",
                "neuron_contexts_naive (whole [tokens, d_mlp])",
                f"{windows.shape[0]} x {windows.shape[1]} tokens, {cfg.d_mlp} neurons",
                lambda: neuron_contexts(model, windows, layer, k=10),
                lambda: neuron_contexts_naive(model, windows, layer, k=10), contexts_diff, 1e-5),
        Pairing("value_tokens", "value_tokens (row batches)", "value_tokens_dense",
                f"{n_neurons} neurons x {cfg.d_vocab}",
                lambda: value_tokens(model, layer, neurons, k=10),
                lambda: value_tokens_dense(model, layer, k=10, neurons=neurons), values_diff,
                1e-4),
        Pairing("top_token_pairs", "top_token_pairs (row batches)", "dense rows + sort",
                f"{len(rows)} rows x {cfg.d_vocab}",
                lambda: top_token_pairs(model, circuit, 20, rows=rows),
                lambda: top_token_pairs_dense(model, circuit, 20, rows=rows), pairs_diff, 1e-4),
    ]
