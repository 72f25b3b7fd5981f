"""Planted wrong solutions of notebook 01's exercises (tests/test_exercises.py)."""

PLANTED = {
    "decode_site": """
def decode_site(resid, W_U, b_U, eps):
    return (resid @ W_U + b_U).log_softmax(-1)                            # no normalisation
""",
    "token_rank": """
def token_rank(log_probs, ids):
    chosen = log_probs.gather(-1, ids[:, None])
    return (log_probs > chosen).sum(-1)                                   # 0-based
""",
    "kl_divergence": """
def kl_divergence(p_log, q_log):
    return (q_log.exp() * (q_log - p_log)).sum(-1)                        # KL(Q || P)
""",
    "first_stable_site": """
def first_stable_site(agree):
    return agree.float().argmax(0)                                        # first agreement
""",
}
