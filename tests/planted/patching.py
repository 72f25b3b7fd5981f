"""Planted wrong solutions of notebook 03's exercises (tests/test_exercises.py)."""

PLANTED = {
    "mean_ablation_values": """
def mean_ablation_values(z):
    return z.mean((0, 1), keepdim=True).expand(1, *z.shape[1:])          # positions averaged too
""",
    "head_mask_importance": """
def head_mask_importance(model, tokens, metric):
    cfg = model.cfg
    mask = torch.ones(cfg.n_layers, cfg.n_heads, requires_grad=True)
    with torch.enable_grad():
        hooks = [(f"blocks.{la}.attn.hook_z",
                  lambda z, hook, row=mask[la]: z * row[None, None, :, None])
                 for la in range(cfg.n_layers)]
        with model.hooks(fwd_hooks=hooks):
            value = metric(model(tokens), tokens).mean()
        (grad,) = torch.autograd.grad(value, mask)
    return grad                                                           # signed, no abs
""",
    "logit_difference": """
def logit_difference(logits, right, wrong):
    first = logits[:, 0]                                                  # the first position
    return (first.gather(-1, right[:, None]) - first.gather(-1, wrong[:, None]))[:, 0]
""",
    "normalised_recovery": """
def normalised_recovery(patched, clean, corrupted):
    return (patched - clean) / (corrupted - clean)                        # distance from clean
""",
    "patch_position_hook": """
def patch_position_hook(clean_activation, position):
    def hook(activation, hook=None):
        return clean_activation.clone()                                  # every position
    return hook
""",
}
