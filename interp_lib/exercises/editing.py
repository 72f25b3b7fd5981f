"""Checks for notebook 11 (model editing: ROME, measured).

>>> import torch
>>> from interp_lib.exercises.editing import check_rank_one_update
>>> def rank_one_update(W, C, k, v):
...     c_inv_k = torch.linalg.solve(C, k)
...     return W + torch.outer(c_inv_k, v - k @ W) / (k @ c_inv_k)
>>> check_rank_one_update(rank_one_update)
✔ rank_one_update: correct (a planted 12 x 5 memory: k @ W' = v, rank-one change)
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from interp_lib import editing
from interp_lib.exercises import call, compare, expect, passed
from interp_lib.hooks import hook_name
from interp_lib.validate import model_signature

__all__ = ["check_neighbourhood_score", "check_ngram_entropy", "check_object_log_prob",
           "check_rank_one_update", "check_subject_key"]

_PROMPTS = ("The ship sailed from the harbour at dawn with forty men",
            "Congress shall consider the treaty and the tariff",
            "Whales were seen off the coast, and the sailors counted them")


def _positions(model: Any) -> list[int]:
    """One position inside each prompt (neither BOS nor the last token)."""
    return [min(3, len(model.to_tokens(p)[0]) - 2) + i for i, p in enumerate(_PROMPTS)]


def check_subject_key(fn: Any, model: Any) -> None:
    """``fn(model, prompts, positions, layer) -> [d_mlp]``: the mean over the prompts of layer
    ``layer``'s MLP hidden activation (``hook_post``) at ``positions[i]`` of prompt ``i``
    (positions in ``model.to_tokens(prompt)``, BOS included)."""
    positions = _positions(model)
    n_layers = model.cfg.n_layers
    layers = sorted({n_layers // 2, 0})
    names = [hook_name(site, la) for la in range(n_layers) for site in ("mlp_post", "mlp_pre")]
    caches = []
    with torch.no_grad():
        for prompt in _PROMPTS:
            _, cache = model.run_with_cache(prompt, names_filter=lambda n: n in names)
            caches.append(cache)

    def mean_at(site: str, layer: int, shift: int = 0, last: bool = False) -> torch.Tensor:
        rows = []
        for cache, pos in zip(caches, positions, strict=True):
            act = cache[hook_name(site, layer)][0]
            rows.append(act[-1] if last else act[pos + shift])
        return torch.stack(rows).mean(0)

    for layer in layers:
        got = call(fn, model, list(_PROMPTS), list(positions), layer, name="subject_key",
                   model=model)
        expected = mean_at("mlp_post", layer)
        mistakes = [
            (mean_at("mlp_pre", layer),
             "you read hook_pre, the MLP's input to its nonlinearity; the key is the hidden "
             f"activation after it, blocks.{layer}.mlp.hook_post"),
            (mean_at("mlp_post", layer, last=True),
             "you read each prompt's last token; read the position given for each prompt"),
            (mean_at("mlp_post", layer, shift=-1),
             "off by one: you read the token before the position given (positions count BOS)"),
            (mean_at("mlp_post", layer, shift=1),
             "off by one: you read the token after the position given (positions count BOS)"),
            (caches[0][hook_name("mlp_post", layer)][0, positions[0]],
             "that is the first prompt's key alone; average the keys of every prompt"),
        ]
        mistakes += [(mean_at("mlp_post", other), f"that is layer {other}'s key, not layer "
                                                   f"{layer}'s") for other in range(n_layers)
                     if other != layer]
        scale = float(expected.abs().max()) or 1.0
        compare(got, expected, f"subject_key(layer={layer})", axes=("d_mlp",),
                atol=1e-4 * scale, rtol=1e-4, mistakes=mistakes)
    passed("subject_key", f"{len(_PROMPTS)} prompts at layers {layers}")


def _planted_memory(d_in: int, d_out: int, seed: int, rank: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    if rank is None:
        keys = torch.randn(4 * d_in, d_in, generator=gen, dtype=torch.float64).abs()
        c = keys.T @ keys / len(keys)
        k = keys[0]
    else:  # a cheap positive-definite C at the model's size
        q = torch.randn(d_in, rank, generator=gen, dtype=torch.float64)
        c = q @ q.T / rank + 0.1 * torch.eye(d_in, dtype=torch.float64)
        k = torch.randn(d_in, generator=gen, dtype=torch.float64).abs()
    v = torch.randn(d_out, generator=gen, dtype=torch.float64)
    return c, k, v


def check_rank_one_update(fn: Any, model: Any = None) -> None:
    """``fn(W [d_mlp, d_model], C [d_mlp, d_mlp], k [d_mlp], v [d_model]) -> W'``: ROME's
    update ``W' = W + (C⁻¹ k)(v − k W)ᵀ / (kᵀ C⁻¹ k)``, so that ``k @ W' = v``."""
    cases = [("a planted 12 x 5 memory", torch.randn(12, 5, generator=torch.Generator()
                                                     .manual_seed(0), dtype=torch.float64),
              *_planted_memory(12, 5, 1))]
    if model is not None:
        layer = model.cfg.n_layers // 2
        w = model.W_out[layer].detach().double()
        cases.append((f"W_out[{layer}] of the model", w, *_planted_memory(*w.shape, 2, rank=16)))
    for label, w, c, k, v in cases:
        got = call(fn, w.clone(), c.clone(), k.clone(), v.clone(), name="rank_one_update")
        c_inv_k = torch.linalg.solve(c, k)
        residual = v - k @ w
        expected = w + torch.outer(c_inv_k, residual) / (k @ c_inv_k)
        c_k = c @ k
        mistakes = [
            (w + torch.outer(k, residual) / (k @ k),
             "you changed W along k itself (the plain least-norm update); ROME's direction is "
             "C⁻¹ k, which spares the key directions other inputs use: torch.linalg.solve(C, k)"),
            (w + torch.outer(c_k, residual) / (k @ c_k),
             "you multiplied k by C; the direction is C⁻¹ k (solve C x = k)"),
            (expected - w, "you returned the change Δ; return the new matrix W + Δ"),
            (w + torch.outer(c_inv_k, v) / (k @ c_inv_k),
             "add only what is missing: the update carries v − k W, not v"),
            (w + torch.outer(c_inv_k, residual),
             "the division by kᵀ C⁻¹ k is missing, so k @ W' is not v"),
        ]
        scale = float(expected.abs().max()) or 1.0
        compare(got, expected, f"rank_one_update on {label}", axes=("d_mlp", "d_model"),
                atol=1e-6 * scale, rtol=1e-5, mistakes=mistakes)
        got = torch.as_tensor(got).double()
        expect(torch.allclose(k @ got, v, atol=1e-6 * (float(v.abs().max()) + 1)),
               "rank_one_update: k @ W' must equal v")
    passed("rank_one_update", f"{cases[-1][0]}: k @ W' = v, rank-one change")


def check_object_log_prob(fn: Any, model: Any) -> None:
    """``fn(model, prompt, obj) -> scalar``: the mean log-probability per token of ``obj``'s
    tokens right after ``prompt`` (teacher forcing)."""
    prompt = "The ship sailed from the"
    lengths = []
    for obj in (" coast at dawn", " harbour"):
        got = call(fn, model, prompt, obj, name="object_log_prob", model=model)
        expected = editing.object_log_probs(model, [prompt], [obj])[0, 0]
        p = model.to_tokens(prompt)[0].tolist()
        o = model.tokenizer(obj, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = model(torch.tensor([p + o], device=model.cfg.device))[0].float() \
                .log_softmax(-1).cpu()
        each = torch.stack([lp[len(p) - 1 + j, t] for j, t in enumerate(o)])
        mistakes = [(lp[len(p) - 1, o[0]],
                     "you scored only the object's first token; average over all its tokens, "
                     "each given the ones before it")] if len(o) > 1 else []
        mistakes += [
            (each.exp().mean(), "those are probabilities; return the mean log-probability"),
            (each.exp().prod(), "that is the probability of the whole object; return the mean "
                                "log-probability per token"),
        ]
        if len(o) > 1:
            mistakes.append((torch.stack([lp[min(len(p) + j, lp.shape[0] - 1), t]
                                          for j, t in enumerate(o)]).mean(),
                             "off by one: the logits at position i predict token i + 1, so "
                             "the object's token j is scored at position len(prompt) - 1 + j"))
        compare(got, expected, f"object_log_prob({prompt!r}, {obj!r})", atol=1e-4,
                mistakes=mistakes)
        expect(float(torch.as_tensor(got).detach()) <= 0,
               "object_log_prob: a log-probability is <= 0")
        lengths.append(len(o))
    passed("object_log_prob", f"objects of {lengths[0]} and {lengths[1]} tokens after "
                              f"{prompt!r}")


_NEIGHBOURS = ("The ship sailed from the", "Congress shall consider the",
               "Whales were seen off the", "The president spoke to", "She opened the")


def _planted_edit(model: Any, prompts: list[str], answers: list[str], new: str):
    """A change of the last layer's MLP output matrix that pushes ``new`` after the prompts
    whose keys are most like their mean, scaled so that some prompts keep their answer and
    some do not (the score is then neither 0 nor 1 where possible)."""
    layer = model.cfg.n_layers - 1
    name = hook_name("mlp_post", layer)
    keys = []
    with torch.no_grad():
        for p in prompts:
            _, cache = model.run_with_cache(p, names_filter=name)
            keys.append(cache[name][0, -1].float().cpu())
    u = torch.stack(keys)[:3].mean(0)
    u = u / u.norm().pow(2)
    new_id = model.tokenizer(new, add_special_tokens=False)["input_ids"][0]
    direction = model.W_U[:, new_id].detach().float().cpu()
    direction = direction - direction.mean()
    direction = direction / direction.norm()
    best = None
    for scale in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
        edit = editing.FineTuneEdit("a planted edit", layer, model_signature(model),
                                    editing.Fact("x", "{}", " y"), new,
                                    torch.outer(u, direction) * scale, None, [])
        score = _score(model, edit, prompts, answers, new)
        if 0 < score < 1:
            return edit, score
        if best is None and score < 1:
            best = (edit, score)
    if best is None:
        raise RuntimeError("the check could not build an edit that changes a neighbour")
    return best


def _score(model: Any, edit: Any, prompts: list[str], answers: list[str], new: str) -> float:
    with edit.applied(model):
        lp = editing.object_log_probs(model, prompts, sorted({*answers, new}))
    objects = sorted({*answers, new})
    own = torch.tensor([float(lp[i, objects.index(a)]) for i, a in enumerate(answers)])
    other = lp[:, objects.index(new)]
    return float((own > other).float().mean())


def check_neighbourhood_score(fn: Any, model: Any) -> None:
    """``fn(model, edit, prompts, answers, new_object) -> float``: with ``edit`` applied, the
    fraction of ``prompts`` whose own answer (``answers[i]``) is still more likely than
    ``new_object`` (mean log-probability per token); the model must come back unedited."""
    prompts = list(_NEIGHBOURS)

    def round_trips(token: int) -> bool:
        text = model.tokenizer.decode([token])
        return model.tokenizer(text, add_special_tokens=False)["input_ids"] == [token]

    with torch.no_grad():
        ranked = [model(p)[0, -1].argsort(descending=True).tolist() for p in prompts]
    tops = [next(t for t in order if round_trips(t)) for order in ranked]
    answers = [model.tokenizer.decode([t]) for t in tops]
    vocab = [t for t in range(min(model.cfg.d_vocab, len(model.tokenizer))) if t not in tops
             and model.tokenizer.decode([t]).startswith(" ")
             and len(model.tokenizer.decode([t]).strip()) > 2 and round_trips(t)]
    new = model.tokenizer.decode([vocab[len(vocab) // 3]])
    lp = editing.object_log_probs(model, prompts, sorted({*answers, new}))
    objects = sorted({*answers, new})
    unedited = float(sum(float(lp[i, objects.index(a)]) > float(lp[i, objects.index(new)])
                         for i, a in enumerate(answers))) / len(prompts)
    edit, expected = _planted_edit(model, prompts, answers, new)
    weight = editing.mlp_output_weight(model, edit.layer)
    saved = weight.parameter.detach().clone()
    try:
        got = call(fn, model, edit, prompts, answers, new, name="neighbourhood_score",
                   model=model)
        left_edited = not torch.equal(weight.parameter.detach(), saved)
    finally:
        with torch.no_grad():
            weight.parameter.copy_(saved)
    expect(not left_edited, "neighbourhood_score left the edit in the model (the check has "
                            "restored the weights); apply it with `with edit.applied(model):`, "
                            "which restores them on exit")
    mistakes = [(torch.tensor(unedited),
                 "that is the unedited model's score: measure inside `with "
                 "edit.applied(model):`"),
                (torch.tensor(1 - expected),
                 "you counted the prompts where the new object wins; specificity counts those "
                 "that keep their own answer")]
    compare(torch.as_tensor(got, dtype=torch.float64).reshape(()),
            torch.tensor(expected, dtype=torch.float64), "neighbourhood_score", atol=1e-6,
            mistakes=mistakes)
    passed("neighbourhood_score", f"{round(expected * len(prompts))} of {len(prompts)} "
                                  f"prompts keep their answer under a planted edit")


_TEXTS = ("the cat sat on the mat and the cat sat on the mat",
          "One, two, three! Four five six; seven: eight.",
          "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.")


def check_ngram_entropy(fn: Any, model: Any = None) -> None:
    """``fn(text) -> float``: the mean of (2/3) × the bigram entropy and (4/3) × the trigram
    entropy of ``text``'s words (``re.findall(r"\\w+|[^\\w\\s]", text)``), in bits."""
    got = torch.tensor([float(call(fn, t, name="ngram_entropy")) for t in _TEXTS],
                       dtype=torch.float64)
    expected = torch.tensor([editing.ngram_entropy(t) for t in _TEXTS], dtype=torch.float64)

    def plain(text: str, words_of, weights=(2 / 3, 4 / 3)) -> float:
        words = words_of(text)
        out = []
        for n, w in zip((2, 3), weights, strict=True):
            grams: dict = {}
            for i in range(len(words) - n + 1):
                grams[tuple(words[i: i + n])] = grams.get(tuple(words[i: i + n]), 0) + 1
            total = sum(grams.values())
            out.append(w * -sum(c / total * math.log2(c / total) for c in grams.values()))
        return sum(out) / 2

    mistakes = [
        (expected * math.log(2), "those are nats; the paper's entropies are in bits (log2)"),
        (torch.tensor([plain(t, lambda s: re.findall(r"\w+|[^\w\s]", s), (1.0, 1.0))
                       for t in _TEXTS]),
         "weight the bigram entropy by 2/3 and the trigram entropy by 4/3 before averaging"),
        (torch.tensor([plain(t, str.split) for t in _TEXTS]),
         "split the words with re.findall(r\"\\w+|[^\\w\\s]\", text): each punctuation mark "
         "is a word of its own"),
    ]
    compare(got, expected, "ngram_entropy", axes=("text",), atol=1e-6, mistakes=mistakes)
    passed("ngram_entropy", f"{len(_TEXTS)} texts, a repetitive one included")
