"""interp_lib.attribution: the components sum to the logit (biases included) on both
architectures, agree with TransformerLens's decompose_resid + apply_ln_to_stack, and a planted
head that writes a token is found."""

from __future__ import annotations

import pytest
import torch

from interp_lib.attribution import logit_attribution
from interp_lib.data import repeated_tokens

TEXT = "The cat sat on the mat and the dog sat on the rug"


@pytest.fixture(params=["tiny_model", "tiny_neox"])
def model(request):
    return request.getfixturevalue(request.param)


def test_components_sum_to_the_logit_of_the_next_token(model):
    dla = logit_attribution(model, TEXT)
    cells = dla.positions
    assert cells[:, :-1].all() and not cells[:, -1].any()
    tokens = model.to_tokens(TEXT)
    logits = model(tokens)[0, :-1].gather(-1, tokens[0, 1:, None])[:, 0]
    torch.testing.assert_close(dla.logits[0, :-1], logits.float(), rtol=0, atol=1e-5)
    gap = (dla.total()[cells] - dla.logits[cells]).abs().max()
    assert gap < 1e-4 * max(1.0, float(dla.logits[cells].abs().max()))
    n = model.cfg.n_layers * (model.cfg.n_heads + 2) + 2
    assert len(dla.components) == n + ("pos_embed" in dla.components)


def test_logit_difference_and_one_answer_per_example(model):
    tokens = repeated_tokens(model, n=6, batch=3, seed=1)
    right, wrong = tokens[:, 2], tokens[:, 3]
    dla = logit_attribution(model, tokens, target=right, wrong=wrong)
    assert dla.positions[:, -1].all() and not dla.positions[:, :-1].any()
    logits = model(tokens)[:, -1]
    expected = logits.gather(-1, right[:, None])[:, 0] - logits.gather(-1, wrong[:, None])[:, 0]
    torch.testing.assert_close(dla.logits[:, -1], expected.float(), rtol=0, atol=1e-5)
    torch.testing.assert_close(dla.total()[:, -1], expected.float(), rtol=1e-4, atol=1e-4)


def test_agrees_with_transformerlens_decompose_resid(tiny_model):
    model = tiny_model
    tokens = model.to_tokens(TEXT)
    ours = logit_attribution(model, tokens)
    model.set_use_attn_result(True)
    try:
        _, cache = model.run_with_cache(tokens)
        stack, labels = cache.get_full_resid_decomposition(expand_neurons=False,
                                                           return_labels=True)
        scaled = cache.apply_ln_to_stack(stack, layer=-1)       # [component, batch, pos, d]
    finally:
        model.set_use_attn_result(False)
    target = tokens[0, 1:]
    theirs = torch.einsum("cpd,dp->cp", scaled[:, 0, :-1], model.W_U[:, target])
    for label, row in zip(labels, theirs, strict=True):
        name = {"embed": "embed", "pos_embed": "pos_embed"}.get(label)
        if label.startswith("L") and "H" in label:
            layer, head = label[1:].split("H")
            name = f"{layer}.{head}"
        elif label.endswith("_mlp_out"):
            name = f"{label.split('_')[0]} mlp"
        if name is None:
            continue
        got = ours.values[ours.components.index(name), 0, :-1]
        torch.testing.assert_close(got, row.float(), rtol=1e-4, atol=1e-5)


def test_a_planted_head_that_writes_a_token_gets_the_credit(tiny_model):
    model = tiny_model
    tokens = model.to_tokens(TEXT)
    target = int(tokens[0, 3])
    # head 1.2's output, set by a hook, writes (as much as its W_O allows) the target's
    # unembedding direction, strongly
    w_o = model.W_O[1, 2].detach()                        # [d_head, d_model]
    u = model.W_U[:, target].detach()
    u = u - u.mean()
    z_star = torch.linalg.lstsq(w_o.T, u[:, None]).solution[:, 0]
    z_star = 200 * z_star / (z_star @ w_o @ u).abs().clamp_min(1e-6)

    def hook(z, hook=None):
        z = z.clone()
        z[..., 2, :] = z_star
        return z

    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", hook)]):
        dla = logit_attribution(model, tokens, target=torch.full((1,), target))
    assert dla.top(1)[0][0] == "1.2"
    assert dla.heads().top(1)[0][:2] == ("1", "2")
    cells = dla.positions
    torch.testing.assert_close(dla.total()[cells], dla.logits[cells], rtol=1e-4, atol=1e-3)


def test_bad_targets_are_refused(tiny_model):
    with pytest.raises(ValueError, match="target has 2 ids for a batch of 1"):
        logit_attribution(tiny_model, TEXT, target=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="target ids must lie"):
        logit_attribution(tiny_model, TEXT, target=10**6)
    with pytest.raises(TypeError, match="model"):
        logit_attribution("gpt2", TEXT)
