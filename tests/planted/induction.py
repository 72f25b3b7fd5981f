"""Planted wrong solutions of notebook 02's exercises (tests/test_exercises.py)."""

PLANTED = {
    "induction_scores": """
def induction_scores(pattern, n):
    q = torch.arange(n + 1, 2 * n + 1)
    return pattern[..., q, q - n].mean((0, -1))                           # duplicate-token
""",
    "previous_token_scores": """
def previous_token_scores(pattern):
    return pattern.diagonal(offset=0, dim1=-2, dim2=-1).mean((0, -1))     # current token
""",
    "zero_head_hook": """
def zero_head_hook(head):
    def hook(z, hook=None):
        z = z.clone()
        z[:, head] = 0.0                                                  # a position
        return z
    return hook
""",
    "ablation_cost": """
def ablation_cost(model, tokens, heads):
    hooks = []
    for name in heads:
        layer, head = map(int, name.split("."))
        def hook(z, hook=None, head=head):
            z[:, :, head] = 0.0
            return z
        model.add_hook(f"blocks.{layer}.attn.hook_z", hook)               # never removed
    return float(model(tokens, return_type="loss"))
""",
    "head_logit_attribution": """
def head_logit_attribution(z, W_O, W_U, scale, tokens):
    n = (tokens.shape[1] - 1) // 2
    writes = torch.einsum("bphe,hed->bphd", z, W_O)                       # no scale
    directions = W_U[:, tokens[:, 1:]].permute(1, 2, 0)
    contributions = torch.einsum("bphd,bpd->bph", writes[:, :-1], directions)
    return contributions[:, n: 2 * n].mean((0, 1))
""",
}
