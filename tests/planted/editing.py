"""Planted wrong solutions of notebook 11's exercises (tests/test_exercises.py)."""

PLANTED = {
    "subject_key": """
def subject_key(model, prompts, positions, layer):
    keys = []
    for prompt, pos in zip(prompts, positions):
        name = f"blocks.{layer}.mlp.hook_pre"                       # before the nonlinearity
        _, cache = model.run_with_cache(prompt, names_filter=name)
        keys.append(cache[name][0, pos])
    return torch.stack(keys).mean(0)
""",
    "rank_one_update": """
def rank_one_update(W, C, k, v):
    return W + torch.outer(k, v - k @ W) / (k @ k)                   # no covariance
""",
    "object_log_prob": """
def object_log_prob(model, prompt, obj):
    prompt_ids = model.to_tokens(prompt)[0]
    obj_ids = model.tokenizer(obj, add_special_tokens=False)["input_ids"]
    tokens = torch.cat([prompt_ids, torch.tensor(obj_ids)])[None]
    log_probs = model(tokens)[0].log_softmax(-1)
    return log_probs[len(prompt_ids) - 1, obj_ids[0]]                # first token only
""",
    "neighbourhood_score": """
def neighbourhood_score(model, edit, prompts, answers, new_object):
    from interp_lib.editing import object_log_probs

    kept = []                                                        # the edit never applied
    for prompt, answer in zip(prompts, answers):
        own, new = object_log_probs(model, [prompt], [answer, new_object])[0]
        kept.append(float(own > new))
    return sum(kept) / len(kept)
""",
    "ngram_entropy": """
def ngram_entropy(text):
    import math
    import re

    words = re.findall(r"\\w+|[^\\w\\s]", text)
    terms = []
    for n, weight in ((2, 2 / 3), (3, 4 / 3)):
        grams = {}
        for i in range(len(words) - n + 1):
            grams[tuple(words[i:i + n])] = grams.get(tuple(words[i:i + n]), 0) + 1
        total = sum(grams.values())
        terms.append(weight * -sum(c / total * math.log(c / total) for c in grams.values()))
    return sum(terms) / len(terms)                                   # natural log: nats
""",
}
