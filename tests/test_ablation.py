"""interp_lib.ablation: the batched sweep against the per-head loop and the heads module's
ablation, identities of mean/resample ablation, mask gradients against finite differences,
pruning invariants, and Spearman against scipy."""

from __future__ import annotations

import pytest
import torch

from interp_lib.ablation import (
    head_ablation,
    head_importance,
    prune_heads,
    rank_correlation,
)
from interp_lib.data import repeated_tokens
from interp_lib.figures import pruning_figure
from interp_lib.hooks import masked_heads, zero_ablation
from interp_lib.metrics import logit_diff_metric, loss_metric
from interp_lib.reference import head_ablation_loop


@pytest.fixture(params=["tiny_model", "tiny_neox"])
def model(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_batched_ablation_equals_the_per_head_loop(model, method):
    tokens = repeated_tokens(model, n=7, batch=3, seed=2)
    fast = head_ablation(model, tokens, method=method, max_rows=7)  # forces uneven chunks
    slow = head_ablation_loop(model, tokens, method=method)
    torch.testing.assert_close(fast.values, slow.values, atol=1e-5, rtol=0)
    assert fast.baseline == pytest.approx(slow.baseline)
    assert fast.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert fast.values.abs().max() > 0  # the heads do something, so the check can fail


@pytest.mark.parametrize("save", ["gpt2", "neox"])
def test_resumed_ablation_equals_the_loop_on_three_layers(save, tmp_path):
    """Copies of three layers join one stacked run at their own layers; chunks that start
    mid-layer (max_rows 5 with batch 1), one head per run, and everything in one run."""
    from interp_lib import load_model
    from interp_lib.tiny_models import save_tiny_gpt2, save_tiny_neox

    writer = save_tiny_gpt2 if save == "gpt2" else save_tiny_neox
    model = load_model(str(writer(tmp_path, n_layers=3)), device="cpu")
    tokens = repeated_tokens(model, n=6, batch=1, seed=4)
    reference = repeated_tokens(model, n=6, batch=3, seed=5)
    for method in ("zero", "mean"):
        slow = head_ablation_loop(model, tokens, method=method, reference=reference)
        for max_rows in (1, 5, 64):
            fast = head_ablation(model, tokens, method=method, reference=reference,
                                 max_rows=max_rows)
            torch.testing.assert_close(fast.values, slow.values, atol=1e-4, rtol=0)
        assert slow.values.abs().max() > 0


def test_ablation_falls_back_to_whole_forwards_where_runs_cannot_be_resumed(tiny_neox,
                                                                             monkeypatch):
    import interp_lib.ablation as ablation
    from interp_lib.resume import record_run

    def unresumable(*args, **kwargs):
        run = record_run(*args, **kwargs)
        run.resumable, run.reason = False, "planted"
        return run

    monkeypatch.setattr(ablation, "record_run", unresumable)
    tokens = repeated_tokens(tiny_neox, n=5, batch=2, seed=2)
    fast = head_ablation(tiny_neox, tokens, max_rows=6)
    torch.testing.assert_close(fast.values, head_ablation_loop(tiny_neox, tokens).values,
                               atol=1e-4, rtol=0)


def test_zero_ablation_agrees_with_the_heads_module(tiny_model):
    tokens = repeated_tokens(tiny_model, n=6, batch=2, seed=0)
    metric = logit_diff_metric(5, 9)
    grid = head_ablation(tiny_model, tokens, metric)
    with torch.no_grad():
        clean = metric(tiny_model(tokens), tokens).mean()
        with zero_ablation(tiny_model, ["1.2"]):
            ablated = metric(tiny_model(tokens), tokens).mean()
    assert grid.values[1, 2].item() == pytest.approx((ablated - clean).item(), abs=1e-5)
    assert grid.baseline == pytest.approx(clean.item(), abs=1e-6)


def test_mean_and_resample_of_identical_examples_change_nothing(tiny_model):
    tokens = repeated_tokens(tiny_model, n=5, batch=1, seed=1).repeat(3, 1)
    for method in ("mean", "resample"):
        grid = head_ablation(tiny_model, tokens, method=method)
        assert grid.values.abs().max() < 1e-5, method


def test_masked_heads_identity_and_zero_mask(tiny_model):
    tokens = repeated_tokens(tiny_model, n=5, batch=2)
    cfg = tiny_model.cfg
    with torch.no_grad():
        clean = tiny_model(tokens)
        with masked_heads(tiny_model, torch.ones(cfg.n_layers, cfg.n_heads)):
            same = tiny_model(tokens)
        mask = torch.ones(cfg.n_layers, cfg.n_heads)
        mask[0, 3] = 0
        with masked_heads(tiny_model, mask):
            masked = tiny_model(tokens)
        with zero_ablation(tiny_model, ["0.3"]):
            zeroed = tiny_model(tokens)
    torch.testing.assert_close(same, clean, atol=0, rtol=0)
    torch.testing.assert_close(masked, zeroed, atol=1e-6, rtol=0)


def test_importance_equals_finite_differences_per_example(model):
    tokens = repeated_tokens(model, n=5, batch=2, seed=4)
    metric = loss_metric()
    grad = head_importance(model, tokens, metric, normalise=False, batch_size=1).values
    cfg, eps = model.cfg, 1e-2
    expected = torch.zeros(cfg.n_layers, cfg.n_heads)
    for row in tokens.split(1):
        for layer in range(cfg.n_layers):
            for head in range(cfg.n_heads):
                values = []
                for sign in (1, -1):
                    mask = torch.ones(cfg.n_layers, cfg.n_heads)
                    mask[layer, head] += sign * eps
                    with torch.no_grad(), masked_heads(model, mask):
                        values.append(metric(model(row), row).item())
                expected[layer, head] += abs(values[0] - values[1]) / (2 * eps) / len(tokens)
    torch.testing.assert_close(grad, expected, atol=2e-4, rtol=2e-2)
    normalised = head_importance(model, tokens, metric, batch_size=2).values
    torch.testing.assert_close(normalised.norm(dim=1), torch.ones(cfg.n_layers))
    torch.testing.assert_close(normalised, grad / grad.norm(dim=1, keepdim=True), atol=1e-5,
                               rtol=1e-4)


def test_importance_of_removed_heads_is_zero(tiny_model):
    tokens = repeated_tokens(tiny_model, n=5, batch=2)
    base = torch.ones(tiny_model.cfg.n_layers, tiny_model.cfg.n_heads)
    base[1, 0] = 0
    importance = head_importance(tiny_model, tokens, base_mask=base, normalise=False)
    assert importance.values[1, 0] == 0
    assert (importance.values[base == 1] > 0).all()


def test_pruning_removes_nested_sets_down_to_nothing(tiny_model):
    tokens = repeated_tokens(tiny_model, n=5, batch=2)
    total = tiny_model.cfg.n_layers * tiny_model.cfg.n_heads
    for order in ("importance", "random"):
        curve = prune_heads(tiny_model, tokens, step=0.25, order=order, seed=3)
        assert curve.fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
        kept = [int(m.sum()) for m in curve.masks]
        assert kept == [total, 6, 4, 2, 0]
        for before, after in zip(curve.masks, curve.masks[1:], strict=False):
            assert bool((after <= before).all())
        with torch.no_grad():
            clean = loss_metric()(tiny_model(tokens), tokens).mean().item()
        assert curve.values[0] == pytest.approx(clean, abs=1e-6)
    first = prune_heads(tiny_model, tokens, step=0.25)
    importance = head_importance(tiny_model, tokens).values.flatten()
    removed = (first.masks[1].flatten() == 0).nonzero()[:, 0]
    assert set(removed.tolist()) == set(torch.argsort(importance)[:2].tolist())
    fig = pruning_figure(first, prune_heads(tiny_model, tokens, step=0.25, order="random"))
    assert len(fig.data) == 2
    assert first.map_figure(0.5).data[0].z.sum() == 4


def test_rank_correlation_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    b[0, :3] = 1.0  # ties
    assert rank_correlation(a, b) == pytest.approx(stats.spearmanr(a.flatten(), b.flatten())[0])
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda m, t: head_ablation(m, t, method="noise"), ValueError, "method must be one of"),
    (lambda m, t: head_ablation(m, t, metric="loss"), TypeError, "metric must be a function"),
    (lambda m, t: head_ablation(m, t, method="mean", reference=t[:, :5]), ValueError,
     "same length"),
    (lambda m, t: head_ablation(m, t[:1], method="resample"), ValueError, "at least 2"),
    (lambda m, t: head_importance(m, t, base_mask=torch.ones(3, 3)), ValueError, "shape"),
    (lambda m, t: prune_heads(m, t, step=0), ValueError, "step must be a positive number"),
    (lambda m, t: prune_heads(m, t, order="size"), ValueError, "order"),
    (lambda m, t: rank_correlation(torch.zeros(2), torch.zeros(3)), ValueError, "shapes differ"),
])
def test_clear_errors(tiny_model, call, error, match):
    tokens = repeated_tokens(tiny_model, n=4, batch=2)
    with pytest.raises(error, match=match):
        call(tiny_model, tokens)


def test_head_importance_works_with_gradients_switched_off(tiny_model):
    # notebooks run with torch.set_grad_enabled(False): the mask must still reach the graph
    tokens = repeated_tokens(tiny_model, n=5, batch=2)
    on = head_importance(tiny_model, tokens)
    with torch.no_grad():
        off = head_importance(tiny_model, tokens)
    torch.testing.assert_close(on.values, off.values)
    assert float(off.values.abs().sum()) > 0
