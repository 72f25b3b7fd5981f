"""Planted wrong solutions of notebook 05's exercises (tests/test_exercises.py)."""

PLANTED = {
    "last_token_of_each_word": """
def last_token_of_each_word(token_spans, word_spans):
    first = [-1] * len(word_spans)
    for t, (start, end) in enumerate(token_spans):
        for w, (word_start, word_end) in enumerate(word_spans):
            if word_start <= start < word_end and first[w] < 0:
                first[w] = t                                              # the first piece
    return first
""",
    "standardise": """
def standardise(train, test):
    return ((train - train.mean(0)) / train.std(0),
            (test - test.mean(0)) / test.std(0))                          # test's own statistics
""",
    "probe_accuracy": """
def probe_accuracy(x_train, y_train, x_test, y_test, n_classes):
    majority = torch.bincount(y_train, minlength=n_classes).argmax()
    return float((y_test == majority).float().mean())                     # no probe at all
""",
    "control_labels": """
def control_labels(word_types, labels, seed):
    rng = np.random.default_rng(seed)
    return [str(rng.choice(labels)) for _ in word_types]                  # per word, not per type
""",
}
