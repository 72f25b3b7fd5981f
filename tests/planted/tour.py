"""Planted wrong solutions of notebook 00's exercises (tests/test_exercises.py)."""

PLANTED = {
    "next_token_loss": """
def next_token_loss(logits, tokens):
    return -logits.log_softmax(-1).gather(-1, tokens[..., None]).mean()   # no shift
""",
    "residual_from_components": """
def residual_from_components(cache, n_layers):
    total = cache["hook_embed"]
    for layer in range(n_layers - 1):                                     # last layer missing
        total = total + cache["attn_out", layer] + cache["mlp_out", layer]
    return total
""",
    "logits_from_residual": """
def logits_from_residual(resid, W_U, b_U, eps):
    x = resid - resid.mean(-1, keepdim=True)
    return x / x.std(-1, keepdim=True) @ W_U + b_U                        # unbiased std, no eps
""",
    "mlp_ablated_loss": """
def mlp_ablated_loss(model, tokens, layer):
    model.add_hook(f"blocks.{layer}.hook_mlp_out", lambda out, hook: out * 0)  # never removed
    return model(tokens, return_type="loss")
""",
    "attention_entropy": """
def attention_entropy(pattern):
    return -(pattern * pattern.clamp_min(1e-30).log()).sum(-1).mean(-1)   # query 0 included
""",
}
