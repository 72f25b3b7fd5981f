"""Planted wrong solutions of notebook 10's exercises (tests/test_exercises.py)."""

PLANTED = {
    "online_code_length": """
def online_code_length(x, y, n_classes, ends):
    import math
    from interp_lib.fitting import fit_logistic
    bits = 0.0                                                   # first block forgotten
    for start, end in zip(ends[:-1], ends[1:]):
        w, b = fit_logistic(x[None, :start], y[:start], n_classes, l2=1e-2, max_iter=100)
        log_probs = (x[start:end] @ w[0] + b[0]).log_softmax(-1)
        bits = bits - log_probs.gather(-1, y[start:end, None]).sum() / math.log(2)
    return bits
""",
    "compression": """
def compression(online_bits, n_examples, n_classes):
    import math
    return online_bits / (n_examples * math.log2(n_classes))     # upside down
""",
    "bayesian_information": """
def bayesian_information(y_train, y_test, test_log_probs, n_classes):
    counts = torch.bincount(y_test, minlength=n_classes).double() + 1   # prior from the test set
    prior = -(counts / counts.sum()).log2()[y_test].mean()
    conditional = -test_log_probs.gather(-1, y_test[:, None]).mean() / np.log(2)
    return prior - conditional
""",
    "sliced_mi": """
def sliced_mi(x, y, directions, mi_1d):
    unit = directions / directions.norm(dim=1, keepdim=True)
    values = mi_1d(unit @ x.T, y)
    return values.mean(), values.std()                           # not the standard error
""",
    "project_out": """
def project_out(x, directions):
    for v in directions:                                         # not orthogonalised
        u = v / v.norm()
        x = x - (x @ u)[:, None] * u
    return x
""",
}
