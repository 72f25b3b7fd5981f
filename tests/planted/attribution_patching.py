"""Planted wrong solutions of notebook 12's exercises (tests/test_exercises.py)."""

PLANTED = {
    "metric_and_gradients": """
def metric_and_gradients(model, tokens, metric, names):
    acts = {}

    def keep(name):
        def hook(act, hook):
            acts[name] = act.detach().requires_grad_(True)
            return acts[name]
        return hook

    with torch.enable_grad(), model.hooks(fwd_hooks=[(n, keep(n)) for n in names]):
        value = metric(model(tokens), tokens).sum()                        # summed, not mean
        grads = torch.autograd.grad(value, [acts[n] for n in names])
    return value.item(), {n: acts[n].detach() for n in names}, dict(zip(names, grads))
""",
    "atp_per_position": """
def atp_per_position(clean_act, corrupt_act, grad):
    return ((corrupt_act - clean_act) * grad).sum(dim=(0, 2))             # sign flipped
""",
    "top_k_overlap": """
def top_k_overlap(estimate, exact, k):
    top_est = set(estimate.flatten().topk(k).indices.tolist())            # signed, not by size
    top_exact = set(exact.flatten().topk(k).indices.tolist())
    return len(top_est & top_exact) / k
""",
    "recomputed_pattern_estimate": """
def recomputed_pattern_estimate(patched_scores, scores, grad_pattern):
    change = patched_scores.softmax(-2) - scores.softmax(-2)               # over the queries
    return (change.nan_to_num() * grad_pattern).sum(dim=(0, 2, 3))
""",
}
