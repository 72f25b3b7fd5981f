"""Planted wrong solutions of notebook 09's exercises (tests/test_exercises.py)."""

PLANTED = {
    "value_top_tokens": """
def value_top_tokens(model, layer, neuron, k):
    key = model.W_in[layer, :, neuron]                                   # the key, not the value
    return ((key - key.mean()) @ model.W_U).topk(k).indices
""",
    "top_neurons": """
def top_neurons(post, W_out, k):
    return post.topk(k).indices                                          # value norms left out
""",
    "ov_top_tokens": """
def ov_top_tokens(tokens_in, W_V, W_O, W_U, k):
    return (tokens_in @ W_V @ W_O @ W_U).topk(k, dim=-1, largest=False).indices  # suppressed
""",
    "gradient_factors": """
def gradient_factors(model, tokens, layer):
    saved = {}
    def keep(act, hook):
        saved[hook.name] = act
    names = [f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.mlp.hook_post"]  # after the GELU
    with torch.enable_grad(), model.hooks(fwd_hooks=[(name, keep) for name in names]):
        loss = model(tokens, return_type="loss")
        delta, = torch.autograd.grad(loss, [saved[names[1]]])
    return saved[names[0]][0].detach(), delta[0]
""",
    "shift_tokens": """
def shift_tokens(grad_out, W_U, k):
    return (grad_out @ W_U).topk(k, dim=-1).indices                      # the minus is missing
""",
}
