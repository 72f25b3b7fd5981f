"""Planted wrong solutions of notebook 04's exercises (tests/test_exercises.py)."""

PLANTED = {
    "composition_score": """
def composition_score(w_a, w_b):
    return torch.linalg.matrix_norm(w_b @ w_a) / (torch.linalg.matrix_norm(w_a)
                                                  * torch.linalg.matrix_norm(w_b))  # B A
""",
    "k_composition_factors": """
def k_composition_factors(tokens_q, tokens_k, W_V_A, W_O_A, W_Q_B, W_K_B):
    return tokens_q @ W_Q_B, (tokens_k @ W_K_B).T                         # no OV of head A
""",
    "diagonal_top1": """
def diagonal_top1(left, right, batch_size):
    dense = left @ right
    return float((dense.argmax(0) == torch.arange(dense.shape[0])).float().mean())  # columns
""",
    "ov_circuit_factors": """
def ov_circuit_factors(tokens_in, W_V, W_O, W_U):
    return tokens_in @ W_O.T, W_V.T @ W_U                                 # V and O swapped
""",
    "copying_score": """
def copying_score(matrix):
    eigenvalues = torch.linalg.eigvals(matrix.double())
    return float(eigenvalues.sum().abs() / eigenvalues.abs().sum())       # |sum|, not real part
""",
}
