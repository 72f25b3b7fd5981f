"""interp_lib.resume: a resumed run equals the full forward (GPT-2 and GPT-NeoX, every start
block and several positions, copies joining at their own blocks), hooks fire in the resumed
blocks only and see positions from the resume point, a patched resumed run equals the patched
full forward, TransformerLens's own start_at_layer runs the blocks below it, and bad
arguments are refused."""

from __future__ import annotations

import pytest
import torch

from interp_lib import load_model
from interp_lib.metrics import loss_metric
from interp_lib.resume import copies_at, record_run, resume_metric
from interp_lib.tiny_models import save_tiny_gpt2, save_tiny_neox


@pytest.fixture(scope="module", params=["gpt2", "neox"])
def model3(request, tmp_path_factory):
    """Three layers, so that copies can join in the middle."""
    save = save_tiny_gpt2 if request.param == "gpt2" else save_tiny_neox
    return load_model(str(save(tmp_path_factory.mktemp(request.param), n_layers=3)),
                      device="cpu")


def _tokens(model, batch=2, n_pos=11, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, model.cfg.d_vocab, (batch, n_pos), generator=gen)
    tokens[:, 0] = model.tokenizer.bos_token_id
    return tokens


def _per_position_loss(logits, tokens):
    """The metric [batch] is a sum of per-position terms, so every position is compared."""
    lp = logits[:, :-1].float().log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
    return -(lp * torch.arange(1, lp.shape[1] + 1)).sum(-1)


@torch.no_grad()
def test_resumed_runs_equal_the_full_forward(model3):
    tokens = _tokens(model3)
    run = record_run(model3, tokens)
    assert run.resumable, run.reason
    full = model3(tokens)
    torch.testing.assert_close(run.logits, full, atol=0, rtol=0)  # recording changes nothing
    expected = _per_position_loss(full, tokens)
    for starts in ([0], [1], [2], [0, 1, 2], [1, 1, 2], [2, 2]):
        for position in (0, 1, 5, 10):
            got = resume_metric(model3, run, _per_position_loss, starts, position=position)
            assert got.shape == (len(starts), 2)
            torch.testing.assert_close(got, expected.expand(len(starts), 2), atol=1e-4,
                                       rtol=1e-5)


@torch.no_grad()
def test_a_patched_resumed_run_equals_the_patched_full_forward(model3):
    """Two copies join at blocks 1 and 2 at position 6; each patches its own MLP output at its
    first position, and each equals a full forward with the same patch."""
    tokens, position = _tokens(model3, seed=3), 6
    names = [f"blocks.{la}.hook_mlp_out" for la in range(3)]
    run = record_run(model3, tokens, names_filter=lambda n: n in names)
    source = run.cache[names[0]][:, 2]  # some other position's MLP output
    seen = {}

    def patch(layer, copy):
        def hook(out, hook=None):
            seen[layer] = tuple(out.shape)
            out = out.clone()
            view = out.view(copies_at(starts, layer), 2, *out.shape[1:])
            view[copy, :, 0] = source
            return out
        return hook

    starts = [1, 2]
    hooks = [(names[1], patch(1, 0)), (names[2], patch(2, 1))]
    got = resume_metric(model3, run, loss_metric(), starts, position=position, fwd_hooks=hooks)
    assert seen == {1: (2, 11 - position, model3.cfg.d_model),
                    2: (4, 11 - position, model3.cfg.d_model)}  # copies joined, positions cut
    for copy, layer in enumerate(starts):
        def full_patch(out, hook=None):
            out = out.clone()
            out[:, position] = source
            return out
        with model3.hooks(fwd_hooks=[(names[layer], full_patch)]):
            want = loss_metric()(model3(tokens), tokens)
        torch.testing.assert_close(got[copy], want, atol=1e-4, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:hooks.*gated-off")
@torch.no_grad()
def test_only_the_resumed_blocks_run(model3):
    tokens = _tokens(model3)
    run = record_run(model3, tokens)
    fired = []

    def spy(act, hook):
        fired.append(hook.name)

    resume_metric(model3, run, loss_metric(), [2], position=4,
                  fwd_hooks=[(lambda name: name.startswith(("blocks.", "hook_embed")), spy)])
    assert fired and all(name.startswith("blocks.2.") for name in fired)


@pytest.mark.filterwarnings("ignore:hooks.*gated-off")
@torch.no_grad()
def test_transformer_lens_start_at_layer_still_runs_the_blocks_below(model3):
    """What the resumed runs are for: the bridge's own start_at_layer computes block 0 anyway
    (its hooks fire) and only swaps the residual in at the start block."""
    tokens = _tokens(model3)
    _, cache = model3.run_with_cache(tokens, names_filter="blocks.2.hook_resid_pre")
    fired = []

    def spy(act, hook):
        fired.append(hook.name)

    with model3.hooks(fwd_hooks=[(lambda name: name.startswith("blocks.0."), spy)]):
        out = model3(cache["blocks.2.hook_resid_pre"], start_at_layer=2)
    assert any(name.startswith("blocks.0.") for name in fired)
    torch.testing.assert_close(out, model3(tokens), atol=1e-4, rtol=1e-5)


def test_copies_at_counts_the_copies_present():
    assert [copies_at([0, 1, 1, 3], layer) for layer in range(4)] == [1, 3, 3, 4]


@torch.no_grad()
def test_a_run_that_cannot_be_resumed_says_so(tiny_model, monkeypatch):
    import interp_lib.resume as resume

    monkeypatch.setattr(resume, "_cut", lambda *a, **k: (_ for _ in ()).throw(
        resume._UnknownArgument("a block argument of shape [7]")))
    run = record_run(tiny_model, _tokens(tiny_model))
    assert not run.resumable and "cannot cut" in run.reason
    with pytest.raises(ValueError, match="cannot be resumed"):
        resume_metric(tiny_model, run, loss_metric(), [1])


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda m, r: record_run("gpt2", r.tokens), TypeError, "load_model"),
    (lambda m, r: record_run(m, r.tokens, names_filter="x"), TypeError, "names_filter"),
    (lambda m, r: resume_metric(m, "run", loss_metric(), [0]), TypeError, "RecordedRun"),
    (lambda m, r: resume_metric(m, r, None, [0]), TypeError, "metric"),
    (lambda m, r: resume_metric(m, r, loss_metric(), []), ValueError, "starts is empty"),
    (lambda m, r: resume_metric(m, r, loss_metric(), 1), TypeError, "starts"),
    (lambda m, r: resume_metric(m, r, loss_metric(), [1, 0]), ValueError, "sorted"),
    (lambda m, r: resume_metric(m, r, loss_metric(), [5]), ValueError, "out of range"),
    (lambda m, r: resume_metric(m, r, loss_metric(), [0], position=11), ValueError, "position"),
    (lambda m, r: resume_metric(m, r, loss_metric(), [0], position=1.5), TypeError, "position"),
    (lambda m, r: resume_metric(m, r, loss_metric(), [0], logit_budget=0), ValueError,
     "logit_budget"),
    (lambda m, r: r.residual(3), ValueError, "layer"),
])
def test_clear_errors(tiny_model, call, error, match):
    run = record_run(tiny_model, _tokens(tiny_model))
    with pytest.raises(error, match=match):
        call(tiny_model, run)


def test_a_run_of_another_model_is_refused(tiny_model, tiny_neox, tmp_path):
    other = load_model(str(save_tiny_gpt2(tmp_path, n_layers=3)), device="cpu")
    run = record_run(other, _tokens(other))
    from interp_lib.validate import ModelMismatchError

    with pytest.raises(ModelMismatchError, match="recorded run"):
        resume_metric(tiny_model, run, loss_metric(), [0])
