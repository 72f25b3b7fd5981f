"""interp_lib.hooks: zero-ablating a head's hook_z removes the whole head (the same as zeroing
its slice before the output projection in the plain Hugging Face model), the mask and shift
hooks against plain arithmetic, and no hook is ever left behind."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from interp_lib.hooks import (
    ablated_heads,
    attached_hooks,
    copy_heads_hook,
    hook_name,
    masked_heads,
    zero_ablation,
)


@pytest.mark.parametrize("which", ["tiny_model_dir", "tiny_neox_dir"])
def test_zero_ablation_equals_zeroing_the_head_in_hugging_face(which, request):
    from interp_lib import load_model

    path = request.getfixturevalue(which)
    model = load_model(str(path), device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    tokens = model.to_tokens("The cat sat on the mat and the dog sat on the rug")
    layer, head = 1, 2
    with torch.no_grad(), zero_ablation(model, [f"{layer}.{head}"]):
        ours = model(tokens, return_type="loss")
    d_head = model.cfg.d_head
    block = hf.transformer.h[layer].attn.c_proj if hasattr(hf, "transformer") else \
        hf.gpt_neox.layers[layer].attention.dense

    def pre(module, args):
        x = args[0].clone()
        x[..., head * d_head:(head + 1) * d_head] = 0.0
        return (x, *args[1:])

    handle = block.register_forward_pre_hook(pre)
    try:
        with torch.no_grad():
            theirs = hf(tokens, labels=tokens).loss
    finally:
        handle.remove()
    with torch.no_grad():
        clean = hf(tokens, labels=tokens).loss
    assert abs(float(ours) - float(theirs)) < 1e-4
    assert abs(float(theirs) - float(clean)) > 1e-4  # the head mattered at all


def test_masks_scale_and_contexts_clean_up(tiny_model):
    cfg = tiny_model.cfg
    tokens = tiny_model.to_tokens("one two three four five")
    mask = torch.ones(cfg.n_layers, cfg.n_heads)
    mask[0, 1] = 0.0
    with torch.no_grad():
        with masked_heads(tiny_model, mask):
            masked = tiny_model(tokens)
        with zero_ablation(tiny_model, ["0.1"]):
            zeroed = tiny_model(tokens)
        half = torch.ones_like(mask)
        half[0, 1] = 0.5
        with masked_heads(tiny_model, half):
            halved = tiny_model(tokens)
    torch.testing.assert_close(masked, zeroed)
    assert not torch.allclose(halved, zeroed)
    assert attached_hooks(tiny_model) == {}
    with pytest.raises(RuntimeError), ablated_heads(tiny_model, ["1.0"]):
        assert attached_hooks(tiny_model) == {hook_name("z", 1): 1}
        raise RuntimeError("boom")
    assert attached_hooks(tiny_model) == {}


def test_mean_values_replace_the_head(tiny_model):
    tokens = tiny_model.to_tokens("one two three four five")
    name = hook_name("z", 1)
    _, cache = tiny_model.run_with_cache(tokens, names_filter=name)
    values = torch.zeros_like(cache[name])
    values[..., 3, :] = 7.0
    seen = {}
    with ablated_heads(tiny_model, ["1.3"], values={1: values}):
        tiny_model.run_with_hooks(tokens, fwd_hooks=[
            (name, lambda z, hook: seen.setdefault("z", z.clone()))])
    assert torch.all(seen["z"][..., 3, :] == 7.0)
    torch.testing.assert_close(seen["z"][..., :3, :], cache[name][..., :3, :])


def test_copy_heads_hook_edits_one_head_per_listed_copy():
    z = torch.randn(3 * 2, 5, 4, 8)  # 3 copies of a batch of 2
    values = torch.randn(2, 5, 4, 8)
    out = copy_heads_hook([0, 2, 2], [1, 0, 3], 3, values)(z).view(3, 2, 5, 4, 8)
    expected = z.clone().view(3, 2, 5, 4, 8)
    expected[0, :, :, 1], expected[2, :, :, 0], expected[2, :, :, 3] = (
        values[:, :, 1], values[:, :, 0], values[:, :, 3])
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    zeroed = copy_heads_hook([1], [2], 3)(z).view(3, 2, 5, 4, 8)
    assert torch.all(zeroed[1, :, :, 2] == 0) and torch.equal(zeroed[0], z.view(3, 2, 5, 4, 8)[0])
    with pytest.raises(ValueError, match="one head per listed copy"):
        copy_heads_hook([0, 1], [2], 3)


def test_bad_masks_and_names_are_refused(tiny_model):
    with pytest.raises(ValueError, match="mask must have shape"):
        with masked_heads(tiny_model, torch.ones(3)):
            pass
    with pytest.raises(ValueError, match="NaN"):
        with masked_heads(tiny_model, torch.full((2, 4), float("nan"))):
            pass
    with pytest.raises(ValueError, match="site must be one of"):
        hook_name("nonsense", 0)
    with pytest.raises(TypeError, match="expected a model"):
        with zero_ablation("gpt2", ["0.0"]):
            pass
