"""Planted wrong solutions of notebook 06's exercises (tests/test_exercises.py)."""

PLANTED = {
    "mean_activation_difference": """
def mean_activation_difference(pos_acts, pos_mask, neg_acts, neg_mask):
    return pos_acts.mean((0, 1)) - neg_acts.mean((0, 1))                  # pads counted
""",
    "add_vector_hook": """
def add_vector_hook(vector, coefficient):
    def hook(resid, hook=None):
        resid = resid.clone()
        resid[:, -1] += coefficient * vector.to(resid.device, resid.dtype)  # last position only
        return resid
    return hook
""",
    "distinct_bigram_fraction": """
def distinct_bigram_fraction(tokens):
    return len(set(tokens)) / len(tokens)                                 # unigrams
""",
    "probe_direction": """
def probe_direction(weights, std):
    raw = weights[:, 1] - weights[:, 0]                                   # standardised space
    return raw / raw.norm()
""",
}
