"""Planted wrong solutions of notebook 08's exercises (tests/test_exercises.py)."""

PLANTED = {
    "toy_forward": """
def toy_forward(W, b, x):
    hidden = torch.einsum("ihf,bif->bih", W, x)
    return torch.relu(torch.einsum("ihf,bih->bif", W, hidden)) + b      # bias after the ReLU
""",
    "topk_encode": """
def topk_encode(x, W_enc, b_enc, b_dec, k):
    pre = torch.relu(x @ W_enc.T + b_enc)                                 # b_dec not subtracted
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values)
""",
    "fvu": """
def fvu(x, x_hat):
    return (x - x_hat).pow(2).sum() / x.pow(2).sum()                      # not centred
""",
    "loss_recovered": """
def loss_recovered(model, tokens, sae):
    def splice(act, hook):
        return sae(act)                                                   # BOS replaced too
    def zero(act, hook):
        return torch.zeros_like(act)
    clean = model(tokens, return_type="loss")
    spliced = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(sae.site, splice)])
    zeroed = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(sae.site, zero)])
    return (zeroed - spliced) / (zeroed - clean)
""",
    "logit_effect": """
def logit_effect(sae, feature, W_U):
    return sae.W_enc[feature] @ W_U                                       # the encoder's row
""",
}
