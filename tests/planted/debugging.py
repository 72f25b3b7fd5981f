"""Planted wrong solutions of notebook 07's exercises (tests/test_exercises.py)."""

PLANTED = {
    "padded_sequence_losses": """
def padded_sequence_losses(model, texts, padding_side):
    from interp_lib.inputs import padded_batch
    tokens, mask = padded_batch(model, texts, padding_side)
    logits = model(tokens, return_type="logits")                          # no attention mask
    log_probs = logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
    return -(log_probs * (mask[:, 1:] * mask[:, :-1])).sum(-1)
""",
    "score_tokens": """
def score_tokens(model, tokens):
    logits = model(tokens, return_type="logits")
    return logits[:, :-1].log_softmax(-1).gather(-1, tokens[:, :-1, None])[..., 0]  # off by one
""",
    "training_step": """
def training_step(tiny_model, optimizer, tokens):
    logits = tiny_model(tokens).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    loss.backward()
    optimizer.zero_grad()                                                 # wipes the gradients
    optimizer.step()
    return loss.item()
""",
    "first_occurrence": """
def first_occurrence(tokens):
    seen, out = set(), []
    for t in tokens.tolist():
        out.append(t not in seen)
        seen.add(t)
    return torch.tensor(out)                                              # BOS counted
""",
}
