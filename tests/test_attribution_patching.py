"""interp_lib.attribution_patching: exact on a model made linear (fixed norms and patterns,
identity MLP activation), first-order agreement with exact patching for a tiny patch, the
same labels as exact patching, exact head-input patching against a loop, the AtP* fix exact
where the rest of the model is linear and better than AtP on a saturated head, and errors."""

from __future__ import annotations

import contextlib

import pytest
import torch

from interp_lib import load_model
from interp_lib.attribution_patching import (
    ATP_KINDS,
    AttributionPatching,
    agreement,
    attribution_patching,
    head_input_patching,
    side_by_side,
)
from interp_lib.metrics import logit_diff_metric
from interp_lib.patching import PATCH_KINDS, activation_patching
from interp_lib.tiny_models import save_tiny_gpt2, save_tiny_neox


@pytest.fixture(params=["tiny_model", "tiny_neox"])
def model(request):
    return request.getfixturevalue(request.param)


def _pair(model, n_pos=8, seed=0, differ=(2, 5)):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, model.cfg.d_vocab, (2, n_pos), generator=gen)
    clean[:, 0] = model.tokenizer.bos_token_id
    corrupted = clean.clone()
    for p in differ:
        corrupted[:, p] = torch.randint(1, model.cfg.d_vocab, (2,), generator=gen)
    return clean, corrupted


def _metric(model, clean):
    """Logit difference of two tokens the clean run ranks differently at the last position."""
    with torch.no_grad():
        last = model(clean)[0, -1]
    return logit_diff_metric(int(last.argmax()), int(last.argmin()))


def _exact(model, clean, corrupted, metric, kind, normalise):
    if kind in PATCH_KINDS:
        return activation_patching(model, clean, corrupted, metric, kind=kind,
                                   normalise=normalise)
    return head_input_patching(model, clean, corrupted, metric, site=ATP_KINDS[kind],
                               normalise=normalise)


@contextlib.contextmanager
def _linear(model, tokens, free_pattern_layer=None):
    """Make ``model`` affine in its embeddings: every norm's scale and every attention pattern
    (except at ``free_pattern_layer``) fixed at their values on ``tokens``, and the MLP
    activation the identity. Attached as hooks, so patching and AtP both see it."""
    kept = {}
    with torch.no_grad():
        _, fixed = model.run_with_cache(tokens, names_filter=lambda n: n.endswith(
            ("hook_scale", "hook_pattern")))

    def constant(act, hook=None):
        """The recorded value, cut to the rows and positions a resumed run holds."""
        value = fixed[hook.name]
        value = value.repeat(act.shape[0] // value.shape[0], *([1] * (value.ndim - 1)))
        if value.ndim == 4:  # pattern [batch, head, query, key]: the last queries
            return value[:, :, value.shape[2] - act.shape[2]:].clone().to(act.dtype)
        return value[:, value.shape[1] - act.shape[1]:].clone().to(act.dtype)

    def keep_pre(layer):
        def hook(act, hook=None):
            kept[layer] = act
            return act
        return hook

    def identity(layer):
        def hook(act, hook=None):
            return kept[layer]
        return hook

    hooks = [(name, constant) for name in fixed.keys() if name.endswith("hook_scale")]
    for layer in range(model.cfg.n_layers):
        if layer != free_pattern_layer:
            hooks.append((f"blocks.{layer}.attn.hook_pattern", constant))
        hooks.append((f"blocks.{layer}.mlp.hook_pre", keep_pre(layer)))
        hooks.append((f"blocks.{layer}.mlp.hook_post", identity(layer)))
    with model.hooks(fwd_hooks=hooks):
        yield


# freezing LayerNorm's scale by a hook is the point here: TransformerLens says it recomputes
# the norm from the hooked values, which is what this linear model needs
@pytest.mark.filterwarnings("ignore:A forward hook edited hook_scale")
def test_on_a_linear_model_atp_is_exact(model):
    clean, corrupted = _pair(model, seed=1)
    metric = _metric(model, clean)
    with _linear(model, clean):
        atp = attribution_patching(model, clean, corrupted, metric, normalise=False)
        for kind in ATP_KINDS:
            exact = _exact(model, clean, corrupted, metric, kind, normalise=False)
            estimate = atp.grid(kind)
            assert estimate.shape == exact.shape
            change = exact.values - atp.corrupted_value
            if kind not in ("head_q", "head_k"):  # fixed patterns: queries and keys do nothing
                assert change.abs().max() > 1e-3, kind
            torch.testing.assert_close(estimate.values, exact.values, atol=2e-4, rtol=1e-4,
                                       msg=kind)


@pytest.mark.parametrize("kind", list(ATP_KINDS))
def test_a_tiny_patch_agrees_to_first_order(tiny_model, kind):
    """Corrupted = clean embeddings moved a fraction t of the way to other tokens': the error
    of the estimate is second order, so its share of the effect shrinks with t (queries and
    keys of a random model's near-uniform attention move the metric by so little that float32
    rounding sets their error: for them only the bound is checked)."""
    model = tiny_model
    clean, other = _pair(model, seed=2)
    metric = _metric(model, clean)
    with torch.no_grad():
        clean_embed = model.run_with_cache(clean, names_filter=lambda n: n == "hook_embed"
                                           )[1]["hook_embed"]
    relative = []
    for t in (0.2, 0.1):
        def towards(embed, hook=None, t=t):
            return clean_embed + t * (embed - clean_embed)

        with model.hooks(fwd_hooks=[("hook_embed", towards)]):
            atp = attribution_patching(model, clean, other, metric, kinds=kind,
                                       normalise=False)
            exact = _exact(model, clean, other, metric, kind, normalise=False)
        change = exact.values - atp.corrupted_value
        error = (atp.grid(kind).values - exact.values).abs().max()
        relative.append(float(error / change.abs().max()))
    assert relative[1] < 0.1, relative
    if kind not in ("head_q", "head_k"):
        assert relative[1] < 0.75 * relative[0], relative  # halving t about halves the share


def test_grids_carry_the_labels_of_exact_patching(model):
    clean, corrupted = _pair(model, seed=3)
    metric = _metric(model, clean)
    atp = attribution_patching(model, clean, corrupted, metric)
    assert isinstance(atp, AttributionPatching) and atp.method == "atp"
    for kind in PATCH_KINDS:
        exact = activation_patching(model, clean, corrupted, metric, kind=kind)
        got = atp.grid(kind)
        assert got.row_labels == exact.row_labels and got.col_labels == exact.col_labels, kind
        assert (got.row_title, got.col_title) == (exact.row_title, exact.col_title)
        assert got.baseline == pytest.approx(exact.baseline, abs=1e-4)
        assert got.reference == pytest.approx(exact.reference, abs=1e-4)
        summary = agreement(got, exact, k=3)
        assert -1 <= summary.correlation <= 1 and 0 <= summary.top_k_overlap <= 1
    frame = atp.to_frame()
    assert set(frame["kind"]) == set(ATP_KINDS)
    assert len(frame) == sum(g.values.numel() for g in atp.grids.values())


def test_resid_pre_at_layer_0_position_sums_to_the_whole_patch(model):
    """Identity: the corrupted run's first residual stream is a function of the embeddings
    alone, so patching all of layer 0's positions at once is the clean run; AtP's cells of
    resid_pre layer 0 sum to its linear estimate of that, which with normalise is the
    estimate of 1 along a straight path: checked here against the gradient directly."""
    clean, corrupted = _pair(model, seed=4)
    metric = _metric(model, clean)
    atp = attribution_patching(model, clean, corrupted, metric, kinds="resid_pre",
                               normalise=False)
    names = "blocks.0.hook_resid_pre"
    _, clean_cache = model.run_with_cache(clean, names_filter=lambda n: n == names)
    store = {}

    def leaf(act, hook=None):
        store["a"] = act.detach().requires_grad_(True)
        return store["a"]

    with model.hooks(fwd_hooks=[(names, leaf)]):
        value = metric(model(corrupted), corrupted).mean()
    grad, = torch.autograd.grad(value, store["a"])
    by_hand = ((clean_cache[names] - store["a"].detach()) * grad).sum((0, 2))
    torch.testing.assert_close(atp.grid("resid_pre").values[0] - atp.corrupted_value, by_hand,
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("save", ["gpt2", "neox"])
@pytest.mark.parametrize("site", ["q", "k", "v"])
def test_head_input_patching_equals_a_loop(save, site, tmp_path):
    writer = save_tiny_gpt2 if save == "gpt2" else save_tiny_neox
    model = load_model(str(writer(tmp_path, n_layers=3)), device="cpu")
    for layer in range(3):  # sharper attention, so that queries and keys matter
        _saturate(model, layer, 100.0)
    clean, corrupted = _pair(model, seed=5)
    metric = _metric(model, clean)
    fast = head_input_patching(model, clean, corrupted, metric, site=site, normalise=False,
                               max_rows=6)  # uneven chunks, copies joining at three layers
    _, cache = model.run_with_cache(clean, names_filter=lambda n: n.endswith(f"hook_{site}"))
    slow = torch.empty(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_{site}"
        for head in range(model.cfg.n_heads):
            def put(act, hook=None, head=head, name=name):
                act = act.clone()
                act[:, :, head] = cache[name][:, :, head]
                return act

            with torch.no_grad(), model.hooks(fwd_hooks=[(name, put)]):
                slow[layer, head] = metric(model(corrupted), corrupted).mean()
    torch.testing.assert_close(fast.values, slow, atol=1e-4, rtol=0)
    assert (slow - fast.baseline).abs().max() > 2e-3


def _saturate(model, layer, factor):
    """Scale the query weights of ``layer`` by ``factor`` (in place; returns an undo)."""
    attn = model.blocks[layer].attn
    weights = [p for n, p in attn.named_parameters() if n.split(".")[0] == "q"]
    assert weights, [n for n, _ in attn.named_parameters()]
    saved = [w.detach().clone() for w in weights]
    with torch.no_grad():
        for w in weights:
            w.mul_(factor)

    def undo():
        with torch.no_grad():
            for w, s in zip(weights, saved, strict=True):
                w.copy_(s)
    return undo


@pytest.mark.parametrize("kind", ["head_q", "head_k"])
def test_atp_star_is_exact_where_the_rest_is_linear_and_beats_atp_when_saturated(kind,
                                                                                 tmp_path):
    """Only the last layer's pattern is free and the rest is linear: AtP*'s recomputed
    pattern makes its estimate exact for that layer's queries and keys. With that layer's
    queries scaled up (and so its softmax saturated), plain AtP misses by far more."""
    model = load_model(str(save_tiny_gpt2(tmp_path, n_layers=2)), device="cpu")
    last = model.cfg.n_layers - 1
    clean, corrupted = _pair(model, seed=6, differ=(1, 2, 3, 4, 5, 6))
    metric = _metric(model, clean)
    undo = _saturate(model, last, 1000.0)
    try:
        with _linear(model, clean, free_pattern_layer=last):
            exact = _exact(model, clean, corrupted, metric, kind, normalise=False)
            star = attribution_patching(model, clean, corrupted, metric, kinds=kind,
                                        method="atp*", normalise=False)
            plain = attribution_patching(model, clean, corrupted, metric, kinds=kind,
                                         normalise=False)
            with torch.no_grad():
                _, cache = model.run_with_cache(corrupted, names_filter=lambda n: n.endswith(
                    f"{last}.attn.hook_pattern"))
    finally:
        undo()
    top = cache[f"blocks.{last}.attn.hook_pattern"][:, :, 2:].max(-1).values
    assert float(top.mean()) > 0.9  # saturated: most queries put > 90% on one key
    change = (exact.values[last] - star.corrupted_value).abs().max()
    assert change > 1e-3
    star_error = (star.grid(kind).values[last] - exact.values[last]).abs().max()
    plain_error = (plain.grid(kind).values[last] - exact.values[last]).abs().max()
    assert star_error < 1e-3 * max(1.0, float(change)), (star_error, change)
    assert plain_error > 10 * star_error and plain_error > 0.05 * change


def test_atp_star_changes_only_queries_and_keys(tiny_neox):
    clean, corrupted = _pair(tiny_neox, seed=7)
    metric = _metric(tiny_neox, clean)
    plain = attribution_patching(tiny_neox, clean, corrupted, metric)
    star = attribution_patching(tiny_neox, clean, corrupted, metric, method="atp*")
    for kind in ATP_KINDS:
        same = torch.allclose(plain.grid(kind).values, star.grid(kind).values, atol=1e-6)
        assert same == (kind not in ("head_q", "head_k")), kind


def test_agreement_identities():
    from interp_lib.grid import LabelledGrid

    values = torch.tensor([[0.0, 1.0, -3.0], [2.0, 0.5, 0.1]])
    exact = LabelledGrid.layer_head(values, "exact")
    same = agreement(exact, exact, k=2)
    assert same.correlation == pytest.approx(1.0) and same.rank_correlation == pytest.approx(1.0)
    assert same.top_k_overlap == 1.0
    flipped = agreement(LabelledGrid.layer_head(-values, "estimate"), exact, k=2)
    assert flipped.correlation == pytest.approx(-1.0)
    assert flipped.top_k_overlap == 1.0  # by size
    assert flipped.worst[:2] == ("0", "2")
    from scipy.stats import pearsonr, spearmanr

    other = values + torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.4, -0.6]])
    got = agreement(LabelledGrid.layer_head(other, "estimate"), exact, k=3)
    assert got.correlation == pytest.approx(pearsonr(other.flatten(), values.flatten())[0])
    assert got.rank_correlation == pytest.approx(
        spearmanr(other.flatten(), values.flatten())[0])
    assert "correlation" in got.summary()


def test_figures(tiny_model):
    clean, corrupted = _pair(tiny_model, seed=8)
    metric = _metric(tiny_model, clean)
    atp = attribution_patching(tiny_model, clean, corrupted, metric, kinds=["mlp_out",
                                                                             "head_out"])
    exact = activation_patching(tiny_model, clean, corrupted, metric, kind="mlp_out")
    fig = atp.figure("mlp_out", exact)
    assert len(fig.data) == 2
    assert atp.figure("head_out").data
    with pytest.raises(ValueError, match="same cells"):
        atp.figure("head_out", exact)
    with pytest.raises(ValueError, match="one title per grid"):
        side_by_side([exact], ["a", "b"])


def test_bad_arguments(tiny_model, tiny_neox):
    model = tiny_model
    clean, corrupted = _pair(model, seed=9)
    metric = _metric(model, clean)
    with pytest.raises(TypeError, match="model"):
        attribution_patching("gpt2", clean, corrupted, metric)
    with pytest.raises(TypeError, match="metric"):
        attribution_patching(model, clean, corrupted, "logit diff")
    with pytest.raises(ValueError, match="method"):
        attribution_patching(model, clean, corrupted, metric, method="atp**")
    with pytest.raises(ValueError, match="kinds"):
        attribution_patching(model, clean, corrupted, metric, kinds="resid_post")
    with pytest.raises(TypeError, match="kinds"):
        attribution_patching(model, clean, corrupted, metric, kinds=3)
    with pytest.raises(TypeError, match="normalise"):
        attribution_patching(model, clean, corrupted, metric, normalise="yes")
    with pytest.raises(ValueError, match="same shape"):
        attribution_patching(model, clean, corrupted[:, :-1], metric)
    with pytest.raises(ValueError, match="corrupted"):
        attribution_patching(model, clean, torch.full_like(clean, 10**6), metric)
    with pytest.raises(ValueError, match="undefined"):
        attribution_patching(model, clean, clean, metric)
    with pytest.raises(ValueError, match="site"):
        head_input_patching(model, clean, corrupted, metric, site="z")
    with pytest.raises(ValueError, match="max_rows"):
        head_input_patching(model, clean, corrupted, metric, max_rows=0)
    with pytest.raises(ValueError, match="undefined"):
        head_input_patching(model, clean, clean, metric)
    atp = attribution_patching(model, clean, corrupted, metric, kinds="head_out")
    with pytest.raises(ValueError, match="kind"):
        atp.grid("mlp_out")
    exact = activation_patching(model, clean, corrupted, metric, kind="head_out")
    with pytest.raises(ValueError, match="k"):
        agreement(atp.grid("head_out"), exact, k=0)
    with pytest.raises(TypeError, match="LabelledGrid"):
        agreement(atp.grid("head_out"), exact.values)
    from interp_lib.grid import LabelledGrid

    nan = LabelledGrid.layer_head(exact.values * float("nan"), "broken")
    with pytest.raises(ValueError, match="estimate"):
        agreement(nan, exact)
    neox_exact = activation_patching(tiny_neox, *_pair(tiny_neox, seed=9),
                                     _metric(tiny_neox, _pair(tiny_neox, seed=9)[0]),
                                     kind="resid_pre")
    with pytest.raises(ValueError, match="same cells"):
        agreement(atp.grid("head_out"), neox_exact)


def test_one_backward_equals_one_backward_per_kind_and_layer(model):
    from interp_lib.reference import attribution_patching_loop

    clean, corrupted = _pair(model, seed=10)
    metric = _metric(model, clean)
    atp = attribution_patching(model, clean, corrupted, metric, normalise=False)
    loop = attribution_patching_loop(model, clean, corrupted, metric, list(ATP_KINDS))
    for kind in ATP_KINDS:
        torch.testing.assert_close(atp.grid(kind).values - atp.corrupted_value, loop[kind],
                                   atol=1e-5, rtol=1e-4, msg=kind)
    assert loop["resid_pre"].abs().max() > 1e-3
