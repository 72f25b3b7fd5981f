"""interp_lib.patching: the batched MLP sweep against the loop, identities of patching and
tracing, agreement with hand-written hooks and with TransformerLens's patching."""

from __future__ import annotations

import pytest
import torch

from interp_lib.data import repeated_tokens
from interp_lib.metrics import answer_prob_metric, logit_diff_metric
from interp_lib.patching import (
    PATCH_KINDS,
    TRACE_SITES,
    activation_patching,
    causal_trace,
    mlp_position_patching,
    subject_positions,
)
from interp_lib.reference import activation_patching_tl, mlp_position_patching_loop

PROMPT = "Mary gave the book to John because he asked"
SUBJECT = "Mary gave"


@pytest.fixture(params=["tiny_model", "tiny_neox"])
def model(request):
    return request.getfixturevalue(request.param)


def test_batched_mlp_sweep_equals_the_loop(model):
    tokens = repeated_tokens(model, n=6, batch=2, seed=5)
    fast = mlp_position_patching(model, tokens, max_rows=5)  # uneven chunks of positions
    slow = mlp_position_patching_loop(model, tokens)
    torch.testing.assert_close(fast.values, slow.values, atol=1e-4, rtol=0)
    assert fast.col_labels == [str(p) for p in range(7, 13)]
    assert fast.values.abs().max() > 0


@pytest.mark.parametrize("save", ["gpt2", "neox"])
def test_resumed_mlp_sweep_equals_the_loop_on_three_layers(save, tmp_path):
    """Copies join in the middle (3 layers), layers out of order and repeated, one copy per
    run (max_rows = batch) and several per run."""
    from interp_lib import load_model
    from interp_lib.tiny_models import save_tiny_gpt2, save_tiny_neox

    writer = save_tiny_gpt2 if save == "gpt2" else save_tiny_neox
    model = load_model(str(writer(tmp_path, n_layers=3)), device="cpu")
    tokens = repeated_tokens(model, n=5, batch=2, seed=3)
    slow = mlp_position_patching_loop(model, tokens, layers=[2, 0, 1, 2])
    for max_rows in (2, 5, 64):
        fast = mlp_position_patching(model, tokens, layers=[2, 0, 1, 2], max_rows=max_rows)
        torch.testing.assert_close(fast.values, slow.values, atol=1e-4, rtol=0)
        assert fast.row_labels == ["2", "0", "1", "2"]
    assert slow.values.abs().max() > 0


def test_mlp_sweep_falls_back_to_whole_forwards_where_runs_cannot_be_resumed(tiny_neox,
                                                                              monkeypatch):
    import interp_lib.patching as patching
    from interp_lib.resume import record_run

    def unresumable(*args, **kwargs):
        run = record_run(*args, **kwargs)
        run.resumable, run.reason = False, "planted"
        return run

    monkeypatch.setattr(patching, "record_run", unresumable)
    tokens = repeated_tokens(tiny_neox, n=4, batch=2, seed=1)
    fast = mlp_position_patching(tiny_neox, tokens, max_rows=3)
    slow = mlp_position_patching_loop(tiny_neox, tokens)
    torch.testing.assert_close(fast.values, slow.values, atol=1e-4, rtol=0)


def test_mlp_sweep_on_a_subset_of_layers_matches_the_full_grid(tiny_model):
    tokens = repeated_tokens(tiny_model, n=5, batch=2)
    full = mlp_position_patching(tiny_model, tokens)
    last = mlp_position_patching(tiny_model, tokens, layers=[-1])
    torch.testing.assert_close(last.values[0], full.values[-1], atol=1e-6, rtol=0)


def _clean_corrupted(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, model.cfg.d_vocab, (2, 7), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2:4] = torch.randint(1, model.cfg.d_vocab, (2, 2), generator=gen)
    return clean, corrupted


@pytest.mark.parametrize("save", ["gpt2", "neox"])
@pytest.mark.parametrize("kind", PATCH_KINDS)
def test_resumed_activation_patching_equals_transformer_lens(save, kind, tmp_path):
    """Every kind, on three layers (copies join in the middle), with one copy per run
    (max_rows = batch) and several: the values of TransformerLens's get_act_patch_*."""
    from interp_lib import load_model
    from interp_lib.tiny_models import save_tiny_gpt2, save_tiny_neox

    writer = save_tiny_gpt2 if save == "gpt2" else save_tiny_neox
    model = load_model(str(writer(tmp_path, n_layers=3)), device="cpu")
    clean, corrupted = _clean_corrupted(model)
    metric = logit_diff_metric(5, 9)
    expected = activation_patching_tl(model, clean, corrupted, metric, kind=kind)
    for max_rows in (2, 5, 64):
        grid = activation_patching(model, clean, corrupted, metric, kind=kind, normalise=False,
                                   max_rows=max_rows)
        torch.testing.assert_close(grid.values, expected, atol=1e-4, rtol=0)
    assert (expected - expected.flatten()[0]).abs().max() > 1e-3  # the cells differ


def test_activation_patching_falls_back_to_transformer_lens_where_runs_cannot_be_resumed(
        tiny_neox, monkeypatch):
    import interp_lib.patching as patching
    from interp_lib.resume import record_run

    def unresumable(*args, **kwargs):
        run = record_run(*args, **kwargs)
        run.resumable, run.reason = False, "planted"
        return run

    calls = []
    original = patching._tl_patchers

    def counted():
        calls.append(1)
        return original()

    monkeypatch.setattr(patching, "record_run", unresumable)
    monkeypatch.setattr(patching, "_tl_patchers", counted)
    clean, corrupted = _clean_corrupted(tiny_neox, seed=2)
    metric = logit_diff_metric(3, 4)
    for kind in ("resid_pre", "head_out"):
        grid = activation_patching(tiny_neox, clean, corrupted, metric, kind=kind,
                                   normalise=False)
        expected = activation_patching_tl(tiny_neox, clean, corrupted, metric, kind=kind)
        torch.testing.assert_close(grid.values, expected, atol=1e-5, rtol=0)
    assert len(calls) == 2


def test_patching_an_mlp_cell_with_its_own_activation_changes_nothing(tiny_model):
    tokens = repeated_tokens(tiny_model, n=4, batch=2)
    name = "blocks.0.hook_mlp_out"
    with torch.no_grad():
        _, cache = tiny_model.run_with_cache(tokens, names_filter=name)
        clean = tiny_model(tokens)

        def self_patch(out, hook=None):
            out = out.clone()
            out[:, 6] = cache[name][:, 6]
            return out

        with tiny_model.hooks(fwd_hooks=[(name, self_patch)]):
            patched = tiny_model(tokens)
    torch.testing.assert_close(patched, clean, atol=0, rtol=0)


@pytest.mark.parametrize("kind", PATCH_KINDS)
def test_patching_clean_into_itself_changes_nothing(tiny_model, kind):
    tokens = tiny_model.to_tokens(PROMPT)
    metric = logit_diff_metric(5, 9)
    grid = activation_patching(tiny_model, tokens, tokens, metric, kind=kind, normalise=False)
    assert grid.baseline == pytest.approx(grid.reference)
    torch.testing.assert_close(grid.values, torch.full(grid.shape, grid.reference), atol=1e-5,
                               rtol=0)


def test_resid_patching_agrees_with_a_hand_written_hook(model):
    clean = model.to_tokens("Mary gave the book to John")
    corrupted = model.to_tokens("John gave the book to Mary")
    assert clean.shape == corrupted.shape
    metric = logit_diff_metric(11, 17)
    grid = activation_patching(model, clean, corrupted, metric, kind="resid_pre")
    layer, pos = model.cfg.n_layers - 1, clean.shape[1] - 2
    name = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        _, cache = model.run_with_cache(clean, names_filter=name)

        def patch(resid, hook=None):
            resid = resid.clone()
            resid[:, pos] = cache[name][:, pos]
            return resid

        with model.hooks(fwd_hooks=[(name, patch)]):
            value = metric(model(corrupted), corrupted).item()
    expected = (value - grid.baseline) / (grid.reference - grid.baseline)
    assert grid.values[layer, pos].item() == pytest.approx(expected, abs=1e-4)
    # patching the whole residual stream at layer 0 at every position restores the clean run
    assert grid.values[0].shape[0] == clean.shape[1]


def test_subject_positions_cover_the_subject(model):
    positions = subject_positions(model, PROMPT, SUBJECT)
    tokens = model.to_tokens(PROMPT)[0]
    text = model.tokenizer.decode(tokens[positions])
    assert SUBJECT in text and positions == list(range(positions[0], positions[-1] + 1))
    later = subject_positions(model, PROMPT, "John")
    assert min(later) > max(positions)


def test_causal_trace_identities(model):
    trace = causal_trace(model, PROMPT, SUBJECT, samples=3, max_rows=20)
    n_pos = model.to_tokens(PROMPT).shape[1]
    assert trace.grid.shape == (model.cfg.n_layers, n_pos)
    # restoring the last layer's output at the last position restores the clean prediction
    assert trace.grid.values[-1, -1].item() == pytest.approx(trace.clean_prob, rel=1e-4)
    assert trace.corrupted_prob != pytest.approx(trace.clean_prob, rel=1e-6)
    assert all(label.endswith(" *") for label in
               [trace.grid.col_labels[p] for p in trace.subject])
    quiet = causal_trace(model, PROMPT, SUBJECT, noise=0.0, samples=2)
    torch.testing.assert_close(quiet.grid.values, torch.full(quiet.grid.shape, quiet.clean_prob),
                               atol=1e-6, rtol=1e-5)
    assert trace.figure().data[0].z.shape == (n_pos, model.cfg.n_layers)


@pytest.mark.parametrize("save", ["gpt2", "neox"])
def test_resumed_causal_trace_equals_whole_forwards(save, tmp_path, monkeypatch):
    """Every site, three layers, layers out of order and repeated, uneven chunks: the resumed
    trace equals the one that runs a whole noisy forward per cell."""
    import interp_lib.patching as patching
    from interp_lib import load_model
    from interp_lib.resume import record_run
    from interp_lib.tiny_models import save_tiny_gpt2, save_tiny_neox

    writer = save_tiny_gpt2 if save == "gpt2" else save_tiny_neox
    model = load_model(str(writer(tmp_path, n_layers=3)), device="cpu")
    layers = [2, 0, 1, 2]
    resumed = {site: causal_trace(model, PROMPT, SUBJECT, site=site, samples=3, layers=layers,
                                  max_rows=7) for site in TRACE_SITES}

    def unresumable(*args, **kwargs):
        run = record_run(*args, **kwargs)
        run.resumable, run.reason = False, "planted"
        return run

    monkeypatch.setattr(patching, "record_run", unresumable)
    for site, trace in resumed.items():
        whole = causal_trace(model, PROMPT, SUBJECT, site=site, samples=3, layers=layers,
                             max_rows=7)
        assert whole.corrupted_prob == pytest.approx(trace.corrupted_prob, rel=1e-5)
        torch.testing.assert_close(trace.grid.values, whole.grid.values, atol=1e-6, rtol=1e-4)
        assert trace.grid.row_labels == ["2", "0", "1", "2"]
    assert (whole.grid.values.max() - whole.grid.values.min()) > 1e-6


def test_causal_trace_cells_equal_single_runs(tiny_model):
    """A few cells recomputed one by one with plain hooks and the same noise draws."""
    samples, seed = 3, 7
    trace = causal_trace(tiny_model, PROMPT, SUBJECT, samples=samples, seed=seed,
                         site="mlp_out", max_rows=7)
    tokens = tiny_model.to_tokens(PROMPT)
    subj = trace.subject
    scale = 3.0 * tiny_model.W_E.float().std().item()
    draws = torch.randn(samples, len(subj), tiny_model.cfg.d_model,
                        generator=torch.Generator().manual_seed(seed)) * scale
    answer = tiny_model.tokenizer(trace.answer, add_special_tokens=False)["input_ids"][0]
    metric = answer_prob_metric(answer)
    for layer, pos in [(0, subj[-1]), (1, tokens.shape[1] - 1), (1, 0)]:
        name = f"blocks.{layer}.hook_mlp_out"
        with torch.no_grad():
            _, cache = tiny_model.run_with_cache(tokens, names_filter=name)
            probs = []
            for s in range(samples):
                def noisy(embed, hook=None, s=s):
                    embed = embed.clone()
                    embed[0, subj] += draws[s]
                    return embed

                def restore(out, hook=None, pos=pos, clean=cache[name]):
                    out = out.clone()
                    out[0, pos] = clean[0, pos]
                    return out

                with tiny_model.hooks(fwd_hooks=[("hook_embed", noisy), (name, restore)]):
                    probs.append(metric(tiny_model(tokens), tokens).item())
        assert trace.grid.values[layer, pos].item() == pytest.approx(sum(probs) / samples,
                                                                      rel=1e-4, abs=1e-7)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda m: causal_trace(m, PROMPT, "Paris"), ValueError, "does not occur"),
    (lambda m: causal_trace(m, PROMPT, SUBJECT, site="embed"), ValueError, "site must be one of"),
    (lambda m: causal_trace(m, PROMPT, SUBJECT, answer=" the book to"), ValueError,
     "single-token"),
    (lambda m: causal_trace(m, PROMPT, SUBJECT, samples=0), ValueError, "samples"),
    (lambda m: causal_trace(m, PROMPT, SUBJECT, layers=[9]), ValueError, "out of range"),
    (lambda m: activation_patching(m, PROMPT, "Mary", logit_diff_metric(1, 2)), ValueError,
     "same shape"),
    (lambda m: activation_patching(m, PROMPT, PROMPT, logit_diff_metric(1, 2), kind="qk"),
     ValueError, "kind must be one of"),
    (lambda m: activation_patching(m, PROMPT, PROMPT, logit_diff_metric(1, 2)), ValueError,
     "undefined"),
    (lambda m: activation_patching(m, PROMPT, PROMPT, logit_diff_metric(1, 2), max_rows=0),
     ValueError, "max_rows"),
    (lambda m: mlp_position_patching(m, m.to_tokens(PROMPT)), ValueError, "repeated_tokens"),
    (lambda m: mlp_position_patching(m, repeated_tokens(m, n=3, batch=1), max_rows=0),
     ValueError, "max_rows"),
])
def test_clear_errors(tiny_model, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_model)
