"""Model editing (``interp_lib.editing``, notebook 11).

- ``key_covariance``: the MLP keys' second moment ``E[k kᵀ]`` of one layer over the shipped
  probe sentences, in padded batches of similar-length rows whose forward stops after the
  layer, each batch's ``kᵀk`` added to a running sum, vs ``key_covariance_naive`` (every row
  through the whole model on its own, every key of the text kept in one ``[tokens, d_mlp]``
  matrix, multiplied out at the end). The difference is the largest entry difference relative
  to the largest entry.
- ``value_optimisation``: ROME's search for ``v*`` (Adam on a vector added to the MLP output
  at the subject's last token; negative log-likelihood over the prefixed prompts plus the KL
  term), all prompts in one padded forward per step, vs ``optimise_value_loop`` (one forward
  per prompt per step). The difference is the largest entry difference of ``v*`` relative to
  its largest entry.
"""

from __future__ import annotations


def pairings(model, quick, Pairing, max_abs):
    from interp_lib import editing
    from interp_lib.data import probe_sentences
    from interp_lib.reference import key_covariance_naive, optimise_value_loop

    cfg = model.cfg
    big = cfg.n_layers * cfg.d_model >= 4096
    layer = (cfg.n_layers - 1) // 2  # not the last: the subject's position must reach the output
    texts = probe_sentences(40 if quick else (300 if big else 1000))
    n_tokens = sum(len(model.tokenizer(t)["input_ids"]) for t in texts)

    def relative(a, b):
        return max_abs(a, b) / float(b.abs().max())

    fact = editing.Fact("The ship", "{} sailed from the", " harbour")
    prefixes = ["", "Whales were seen. "] if quick else editing.context_prefixes(model, seed=0)
    steps = 3 if quick else 20
    value_kwargs = dict(prefixes=prefixes, steps=steps, at="subject_last")
    sizes = f"{len(texts)} sentences ({n_tokens} tokens), d_mlp {cfg.d_mlp}"
    return [
        Pairing("key_covariance", "key_covariance (chunked, stops after the layer)",
                "key_covariance_naive (every key kept, whole forward per row)", sizes,
                lambda: editing.key_covariance(model, layer, texts),
                lambda: key_covariance_naive(model, layer, texts),
                lambda a, b: relative(a.second_moment, b.second_moment), 1e-5,
                "max rel diff"),
        Pairing("value_optimisation", "optimise_value (all prompts in one forward)",
                "optimise_value_loop (one forward per prompt)",
                f"{len(prefixes)} prompts x {steps} steps",
                lambda: editing.optimise_value(model, fact, " sea", layer, **value_kwargs),
                lambda: optimise_value_loop(model, fact, " sea", layer, **value_kwargs),
                lambda a, b: relative(a.value, b.value), 1e-3, "max rel diff"),
    ]
