"""Reference implementations: the straightforward version of every batched sweep.

Each function here computes what a library sweep computes, the obvious way: one forward pass
per cell, every activation cached, every vocabulary row at once. They are slow on purpose and
written independently of the sweeps (plain hooks and tensors, no shared private helpers), so
that the tests can check a sweep against its reference and ``benchmarks/run.py`` can time the
two side by side. Use the sweeps in analyses; use these to check them.

=====================================  ============================================================
reference                              library sweep
=====================================  ============================================================
:func:`head_scores_loop`               :func:`interp_lib.heads.head_scores`
:func:`head_ablation_loop`             :func:`interp_lib.ablation.head_ablation`
:func:`mlp_position_patching_loop`     :func:`interp_lib.patching.mlp_position_patching`
:func:`activation_patching_tl`         :func:`interp_lib.patching.activation_patching`
:func:`fit_latent_vector_decoding`     :func:`interp_lib.steering.fit_latent_vector`
:func:`composition_scores_loop`        :func:`interp_lib.circuits.composition_scores`
:func:`lens_dataset_naive`             :func:`interp_lib.logit_lens.lens_dataset`
:func:`mlp_weight_gradients_autograd`  :func:`interp_lib.vocab_space.backward_lens`
:func:`neuron_contexts_naive`          :func:`interp_lib.vocab_space.neuron_contexts`
:func:`value_tokens_dense`             :func:`interp_lib.vocab_space.value_tokens`
:func:`top_token_pairs_dense`          :func:`interp_lib.vocab_space.top_token_pairs`
:func:`key_covariance_naive`           :func:`interp_lib.editing.key_covariance`
:func:`optimise_value_loop`            :func:`interp_lib.editing.optimise_value`
:func:`collect_activations_loop`       :func:`interp_lib.sae.collect_activations`
:func:`unit_activations_naive`         :func:`interp_lib.sae.unit_activations`
:func:`features_vs_neurons_loop`       :func:`interp_lib.sae.features_vs_neurons`
:func:`train_sae_loop`                 :func:`interp_lib.sae.train_sae`
:func:`agreement_scores_loop`          :func:`interp_lib.info_probing.agreement_scores`
:func:`causal_number_probe_loop`       :func:`interp_lib.info_probing.causal_number_probe`
:func:`attribution_patching_loop`      :func:`interp_lib.attribution_patching.attribution_patching`
=====================================  ============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int

from interp_lib.ablation import ABLATION_METHODS, replacement_values
from interp_lib.circuits import MODES, CompositionScores
from interp_lib.grid import LabelledGrid
from interp_lib.heads import SCORE_KINDS, SHARE_KINDS, HeadScores
from interp_lib.hooks import hook_name
from interp_lib.inputs import check_layer, to_tokens
from interp_lib.logit_lens import DECODERS, LensDataset, site_names
from interp_lib.metrics import Metric, check_metric, loss_metric, metric_name
from interp_lib.patching import mlp_grid, mlp_setup
from interp_lib.validate import check_model, choice

__all__ = [
    "activation_patching_tl",
    "attribution_patching_loop",
    "collect_activations_loop",
    "agreement_scores_loop",
    "causal_number_probe_loop",
    "composition_scores_loop",
    "features_vs_neurons_loop",
    "fit_latent_vector_decoding",
    "head_ablation_loop",
    "head_scores_loop",
    "key_covariance_naive",
    "lens_dataset_naive",
    "mlp_position_patching_loop",
    "mlp_weight_gradients_autograd",
    "neuron_contexts_naive",
    "optimise_value_loop",
    "top_token_pairs_dense",
    "train_sae_loop",
    "unit_activations_naive",
    "value_tokens_dense",
]


@torch.no_grad()
def head_scores_loop(
    model: Any,
    inputs: str | Sequence[str] | Int[torch.Tensor, "batch seq"],
    *,
    kinds: Sequence[str] | None = None,
) -> HeadScores:
    """:func:`~interp_lib.heads.head_scores` one forward pass per sequence and per head,
    caching that layer's pattern and scoring the one head query by query (ARENA style)."""
    tokens = to_tokens(model, inputs)
    kinds = list(SCORE_KINDS) if kinds is None else [choice(k, "kinds", SCORE_KINDS)
                                                      for k in kinds]
    cfg = model.cfg
    sums = {kind: torch.zeros(cfg.n_layers, cfg.n_heads, dtype=torch.float64) for kind in kinds}
    counts = dict.fromkeys(kinds, 0)
    for row in tokens:
        toks = row.tolist()
        seq = len(toks)
        # the keys each share score counts, query by query
        keys = {kind: [[] for _ in range(seq)] for kind in SHARE_KINDS}
        for q in range(1, seq):
            keys["previous_token"][q] = [q - 1]
            keys["current_token"][q] = [q]
            keys["first_token"][q] = [0]
            keys["duplicate_token"][q] = [k for k in range(q) if toks[k] == toks[q]]
            keys["induction"][q] = [k for k in range(1, q + 1) if toks[k - 1] == toks[q]]
        for layer in range(cfg.n_layers):
            for head in range(cfg.n_heads):
                name = hook_name("pattern", layer)
                _, cache = model.run_with_cache(row[None], names_filter=name)
                p = cache[name][0, head].double().cpu()
                for kind in kinds:
                    if kind in SHARE_KINDS:
                        values = [p[q, keys[kind][q]].sum() for q in range(seq) if keys[kind][q]]
                    elif kind == "entropy":
                        values = [-(p[q, : q + 1] * p[q, : q + 1].clamp_min(1e-30).log()).sum()
                                  for q in range(1, seq)]
                    else:
                        values = []
                        for q in range(2, seq):
                            r = p[q, 1: q + 1] / p[q, 1: q + 1].sum()
                            values.append(-(r * r.clamp_min(1e-30).log()).sum())
                    sums[kind][layer, head] += float(sum(values))
                    if layer == 0 and head == 0:
                        counts[kind] += len(values)
    scores = {kind: (sums[kind] / counts[kind]).float() if counts[kind]
              else torch.full((cfg.n_layers, cfg.n_heads), float("nan")) for kind in kinds}
    return HeadScores(scores, {k: v.float() for k, v in sums.items()}, counts, tokens.numel(),
                      cfg.n_layers, cfg.n_heads)


@torch.no_grad()
def head_ablation_loop(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    metric: Metric | None = None,
    *,
    method: str = "zero",
    reference: Int[torch.Tensor, "ref pos"] | None = None,
    seed: int = 0,
) -> LabelledGrid:
    """:func:`~interp_lib.ablation.head_ablation` one forward pass per head."""
    metric = check_metric(metric, loss_metric())
    choice(method, "method", ABLATION_METHODS)
    tokens = to_tokens(model, tokens, name="tokens")
    cfg = model.cfg
    replacements = replacement_values(model, tokens, method, reference, seed)
    clean = metric(model(tokens), tokens).mean().item()
    effects = torch.empty(cfg.n_layers, cfg.n_heads)
    for layer in range(cfg.n_layers):
        for head in range(cfg.n_heads):
            def hook(z, hook=None, head=head, repl=replacements[layer]):
                z = z.clone()
                z[:, :, head] = 0.0 if repl is None else repl[:, :, head]
                return z
            with model.hooks(fwd_hooks=[(hook_name("z", layer), hook)]):
                effects[layer, head] = metric(model(tokens), tokens).mean().item() - clean
    return LabelledGrid.layer_head(effects, f"change in {metric_name(metric)} ({method} "
                                   "ablation)", clean)


@torch.no_grad()
def mlp_position_patching_loop(
    model: Any,
    tokens: Int[torch.Tensor, "batch pos"],
    metric: Metric | None = None,
    *,
    layers: list[int] | None = None,
) -> LabelledGrid:
    """:func:`~interp_lib.patching.mlp_position_patching` one forward pass per (layer,
    position), each layer with its own cache."""
    tokens, n, metric = mlp_setup(model, tokens, metric)
    layers = (list(range(model.cfg.n_layers)) if layers is None
              else [check_layer(la, model.cfg) for la in layers])
    clean = metric(model(tokens), tokens).float().mean().item()
    values = torch.empty(len(layers), n)
    for row, layer in enumerate(layers):
        name = hook_name("mlp_out", layer)
        _, cache = model.run_with_cache(tokens, names_filter=name)
        for col, p in enumerate(range(n + 1, 2 * n + 1)):
            def hook(out, hook=None, p=p, mlp=cache[name]):
                out = out.clone()
                out[:, p] = mlp[:, p - n]
                return out
            with model.hooks(fwd_hooks=[(name, hook)]):
                values[row, col] = metric(model(tokens), tokens).float().mean().item() - clean
    return mlp_grid(values, layers, n, metric, clean)


@torch.no_grad()
def activation_patching_tl(
    model: Any,
    clean: Int[torch.Tensor, "batch pos"],
    corrupted: Int[torch.Tensor, "batch pos"],
    metric: Metric,
    *,
    kind: str = "resid_pre",
) -> torch.Tensor:
    """:func:`~interp_lib.patching.activation_patching` unnormalised, by TransformerLens's own
    ``patching.get_act_patch_*``: one whole corrupted forward per cell. ``[layer, pos]`` or,
    for ``head_out``, ``[layer, head]``."""
    from transformer_lens import patching as tl

    patchers = {"resid_pre": (tl.get_act_patch_resid_pre, "hook_resid_pre"),
                "attn_out": (tl.get_act_patch_attn_out, "hook_attn_out"),
                "mlp_out": (tl.get_act_patch_mlp_out, "hook_mlp_out"),
                "head_out": (tl.get_act_patch_attn_head_out_all_pos, "attn.hook_z")}
    check_model(model)
    choice(kind, "kind", tuple(patchers))
    metric = check_metric(metric)
    clean, corrupted = to_tokens(model, clean, name="clean"), to_tokens(model, corrupted,
                                                                         name="corrupted")
    patcher, suffix = patchers[kind]
    model.eval()
    _, cache = model.run_with_cache(clean, names_filter=lambda n: n.endswith(suffix))
    return patcher(model, corrupted, cache,
                   lambda logits: metric(logits, corrupted).float().mean()).float().cpu()


def fit_latent_vector_decoding(model: Any, target: str, *, layer: int, steps: int = 300,
                               lr: float = 0.1, check_every: int = 10, seed: int = 0
                               ) -> tuple[torch.Tensor, int | None]:
    """:func:`~interp_lib.steering.fit_latent_vector` (``positions="all"``) that decodes
    greedily after every ``check_every``-th step, token by token with whole forwards: the
    vector and the step it first reproduced ``target`` (``None`` if never)."""
    check_model(model)
    layer = check_layer(layer, model.cfg)
    name = hook_name("resid_pre", layer)
    ids = model.to_tokens(target, prepend_bos=False)[0]
    bos = torch.tensor([[model.tokenizer.bos_token_id]], device=model.cfg.device)
    tokens = torch.cat([bos, ids[None].to(bos.device)], dim=1)
    gen = torch.Generator().manual_seed(seed)
    vector = (torch.randn(model.cfg.d_model, generator=gen) * 1e-3).to(model.cfg.device)
    vector.requires_grad_(True)
    optimizer = torch.optim.Adam([vector], lr=lr)

    def add(resid, hook=None):
        return resid + vector.to(resid.dtype)

    for step in range(1, steps + 1):
        with torch.enable_grad(), model.hooks(fwd_hooks=[(name, add)]):
            logits = model(tokens)[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits.float(), tokens[0, 1:])
            (vector.grad,) = torch.autograd.grad(loss, [vector])
        optimizer.step()
        if step % check_every == 0 or step == steps:
            decoded = bos
            with torch.no_grad(), model.hooks(fwd_hooks=[(name, add)]):
                for _ in range(len(ids)):
                    nxt = model(decoded)[:, -1].argmax(-1, keepdim=True)
                    decoded = torch.cat([decoded, nxt], dim=1)
            if decoded[0, 1:].tolist() == ids.tolist():
                return vector.detach(), step
    return vector.detach(), None


@torch.no_grad()
def composition_scores_loop(model: Any, mode: str) -> CompositionScores:
    """:func:`~interp_lib.circuits.composition_scores` pair by pair: multiply out the two
    ``[d_model, d_model]`` matrices and take Frobenius norms (ARENA's exercise)."""
    check_model(model)
    choice(mode, "mode", MODES)
    cfg = model.cfg
    w_v, w_o = model.W_V.detach().double(), model.W_O.detach().double()
    w_q, w_k = model.W_Q.detach().double(), model.W_K.detach().double()
    scores = torch.full((cfg.n_layers, cfg.n_heads, cfg.n_layers, cfg.n_heads), float("nan"))
    for la in range(cfg.n_layers):
        for ha in range(cfg.n_heads):
            w_a = w_v[la, ha] @ w_o[la, ha]
            for lb in range(la + 1, cfg.n_layers):
                for hb in range(cfg.n_heads):
                    if mode == "Q":
                        w_b = w_q[lb, hb] @ w_k[lb, hb].T
                    elif mode == "K":
                        w_b = w_k[lb, hb] @ w_q[lb, hb].T
                    else:
                        w_b = w_v[lb, hb] @ w_o[lb, hb]
                    scores[la, ha, lb, hb] = float(
                        torch.linalg.matrix_norm(w_a @ w_b)
                        / (torch.linalg.matrix_norm(w_a) * torch.linalg.matrix_norm(w_b)))
    return CompositionScores(scores, mode, None, cfg.n_layers, cfg.n_heads)


@torch.no_grad()
def lens_dataset_naive(
    model: Any, tokens: Int[torch.Tensor, "batch pos"], *, decoder: str = "standard"
) -> LensDataset:
    """:func:`~interp_lib.logit_lens.lens_dataset` with everything in memory: cache every
    activation, decode every site over the full vocabulary at once (``[sites, batch, pos,
    d_vocab]``), and find each position's first stable site with a loop."""
    choice(decoder, "decoder", DECODERS)
    tokens = to_tokens(model, tokens, name="tokens")
    logits, cache = model.run_with_cache(tokens)
    n_layers = model.cfg.n_layers
    names = [hook_name("resid_pre", la) for la in range(n_layers)]
    names.append(hook_name("resid_post", n_layers - 1))
    stack = torch.stack([cache[n] for n in names])[:, :, :-1]
    x = stack - stack.mean(-1, keepdim=True)
    x = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    if decoder == "standard":
        all_logits = x @ model.W_U + model.b_U
    else:  # the 2020 post: parameter-free normalisation, then the transposed embedding
        all_logits = x.float() @ model.W_E.float().T
    lp = all_logits.float().log_softmax(-1)                 # [site, b, pos-1, vocab]
    f = logits[:, :-1].float().log_softmax(-1)               # [b, pos-1, vocab]
    nxt = tokens[:, 1:]
    n_sites = lp.shape[0]
    agree = (lp.argmax(-1) == f.argmax(-1)[None]).reshape(n_sites, -1)
    first = torch.full((agree.shape[1],), n_sites, dtype=torch.long)
    for i in range(agree.shape[1]):
        for s in range(n_sites):
            if bool(agree[s:, i].all()):
                first[i] = s
                break
    return LensDataset(
        sites=site_names(n_layers), decoder=decoder,
        n_sequences=int(tokens.shape[0]), n_positions=int(nxt.numel()),
        mean_kl_to_final=(f.exp()[None] * (f[None] - lp)).sum(-1).mean((1, 2)).cpu(),
        mean_loss=(-lp.gather(-1, nxt[None, ..., None].expand(n_sites, -1, -1, 1))
                   ).mean((1, 2, 3)).cpu(),
        agreement_with_final=agree.float().mean(-1).cpu(),
        mean_entropy=(-(lp.exp() * lp).sum(-1)).mean((1, 2)).cpu(),
        first_stable=torch.bincount(first, minlength=n_sites + 1),
    )


# ---------------------------------------------------------------- vocabulary space


def mlp_weight_gradients_autograd(
    model: Any,
    inputs: str | Int[torch.Tensor, "1 pos"],
    target: int | None = None,
    *,
    position: int | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`~interp_lib.vocab_space.backward_lens` the straightforward way: for each layer,
    one forward and one backward pass with autograd on that layer's two MLP parameters, then
    a full SVD of each gradient for its rank. Returns ``{"W_in": [layer, d_model, d_mlp],
    "W_out": [layer, d_mlp, d_model], "rank_W_in": [layer], "rank_W_out": [layer]}`` (the
    layout of ``model.W_in`` / ``model.W_out``). The loss is the mean next-token loss, or
    ``-log p(target)`` at ``position`` (default the last) for a target id."""
    from interp_lib.vocab_space import mlp_weight

    tokens = to_tokens(model, inputs)
    out: dict[str, list[torch.Tensor]] = {"W_in": [], "W_out": [], "rank_W_in": [],
                                          "rank_W_out": []}
    for layer in range(model.cfg.n_layers):
        weights = [mlp_weight(model, layer, name) for name in ("W_in", "W_out")]
        with torch.enable_grad():
            logits = model(tokens)
            if target is None:
                lp = logits[:, :-1].float().log_softmax(-1)
                loss = -lp.gather(-1, tokens[:, 1:, None]).mean()
            else:
                p = tokens.shape[1] - 1 if position is None else position
                loss = -logits[0, p].float().log_softmax(-1)[int(target)]
            grads = torch.autograd.grad(loss, [w.parameter for w in weights])
        for weight, grad in zip(weights, grads, strict=True):
            dense = weight.as_model_layout(grad).detach().float()
            singular = torch.linalg.svd(dense, full_matrices=False).S
            tol = singular.max() * max(dense.shape) * torch.finfo(torch.float32).eps
            out[weight.name].append(dense.cpu())
            out[f"rank_{weight.name}"].append((singular > tol).sum().cpu())
    return {key: torch.stack(values) for key, values in out.items()}


@torch.no_grad()
def neuron_contexts_naive(
    model: Any,
    tokens: Int[torch.Tensor, "window pos"],
    layer: int,
    *,
    neurons: Sequence[int] | torch.Tensor | None = None,
    k: int = 10,
):
    """:func:`~interp_lib.vocab_space.neuron_contexts` with everything in memory: one
    forward pass over every window at once, the whole text's ``[tokens, d_mlp]`` activation
    matrix, and one top-``k`` per neuron."""
    from interp_lib.vocab_space import NeuronContexts

    tokens = to_tokens(model, tokens, name="tokens")
    layer = check_layer(layer, model.cfg)
    ids = (torch.arange(model.cfg.d_mlp) if neurons is None
           else torch.as_tensor(neurons, dtype=torch.long).flatten())
    name = hook_name("mlp_post", layer)
    _, cache = model.run_with_cache(tokens, names_filter=name)
    acts = cache[name][..., ids.to(model.cfg.device)].float()
    bos = model.tokenizer.bos_token_id
    if bos is not None:
        acts[tokens == bos] = float("-inf")
    n_pos = tokens.shape[1]
    matrix = acts.reshape(-1, len(ids))                           # [tokens, neuron]
    top = matrix.topk(k, dim=0)
    where = top.indices.T.cpu()
    readable = int((tokens != bos).sum()) if bos is not None else tokens.numel()
    return NeuronContexts(layer, ids, top.values.T.cpu(), where // n_pos, where % n_pos,
                          tokens.cpu(), readable, model.tokenizer)


@torch.no_grad()
def value_tokens_dense(model: Any, layer: int, *, k: int = 10,
                       neurons: Sequence[int] | torch.Tensor | None = None):
    """:func:`~interp_lib.vocab_space.value_tokens` with the whole ``[neurons, d_vocab]``
    product ``W_out[layer] @ W_U`` (default every neuron) in memory at once."""
    from interp_lib.vocab_space import NeuronTokens, TopTokens

    layer = check_layer(layer, model.cfg)
    ids = (torch.arange(model.cfg.d_mlp) if neurons is None
           else torch.as_tensor(neurons, dtype=torch.long).flatten())
    values = model.W_out[layer].detach().float()[ids]
    centred = values - values.mean(-1, keepdim=True)  # what the final LayerNorm sees
    if getattr(model.cfg, "normalization_type", "LN") not in ("LN", "LNPre"):
        centred = values
    logits = centred @ model.W_U.detach().float()
    top, low = logits.topk(k, dim=-1), logits.topk(k, dim=-1, largest=False)
    labels = [f"{layer}.{j}" for j in ids.tolist()]

    def tokens(ids):
        return [[model.tokenizer.decode([i]) for i in row] for row in ids.tolist()]

    return NeuronTokens(layer, ids,
                        TopTokens(top.indices.cpu(), top.values.cpu(), tokens(top.indices),
                                  labels, "direct logit effect"),
                        TopTokens(low.indices.cpu(), low.values.cpu(), tokens(low.indices),
                                  labels, "direct logit effect"),
                        values.norm(dim=-1).cpu())


@torch.no_grad()
def top_token_pairs_dense(model: Any, circuit: Any, k: int = 20, *,
                          rows: Sequence[int] | torch.Tensor | None = None):
    """:func:`~interp_lib.vocab_space.top_token_pairs` by multiplying the circuit's rows out
    at once (``[rows, d_vocab]`` in memory) and sorting all of it."""
    from interp_lib.vocab_space import TokenPairs

    vocab = model.cfg.d_vocab
    index = torch.arange(vocab) if rows is None else torch.as_tensor(rows).long().flatten()
    dense = circuit.A[index] @ circuit.B if hasattr(circuit, "A") else circuit[index]
    top = dense.float().flatten().topk(k)
    r, c = index[(top.indices // vocab).cpu()], (top.indices % vocab).cpu()
    return TokenPairs(r, c, top.values.cpu(), [model.tokenizer.decode([i]) for i in r.tolist()],
                      [model.tokenizer.decode([i]) for i in c.tolist()])


# ---------------------------------------------------------------- model editing (notebook 11)


@torch.no_grad()
def key_covariance_naive(model: Any, layer: int, texts: Sequence[str], *, length: int = 128):
    """:func:`~interp_lib.editing.key_covariance` the obvious way: cut each text into rows of
    ``length`` tokens (BOS first), run every row on its own through the whole model with
    ``run_with_cache``, keep every key (``hook_post``, BOS left out) of the whole text in one
    ``[tokens, d_mlp]`` matrix, and multiply it out at the end."""
    from interp_lib.editing import KeyStatistics
    from interp_lib.validate import model_signature

    check_model(model)
    layer = check_layer(layer, model.cfg)
    name = hook_name("mlp_post", layer)
    bos = model.tokenizer.bos_token_id
    keys = []
    for text in texts:
        ids = model.tokenizer(text)["input_ids"]
        if ids and ids[0] == bos:
            ids = ids[1:]
        for start in range(0, len(ids), length - 1):
            row = torch.tensor([[bos, *ids[start: start + length - 1]]], device=model.cfg.device)
            _, cache = model.run_with_cache(row, names_filter=name)
            keys.append(cache[name][0, 1:].double().cpu())
    everything = torch.cat(keys)
    return KeyStatistics(layer, everything.T @ everything / len(everything),
                         everything.mean(0), len(everything), model_signature(model))


def optimise_value_loop(
    model: Any,
    fact: Any,
    new_object: str,
    layer: int,
    *,
    prefixes: Sequence[str] = ("",),
    steps: int = 20,
    lr: float = 0.5,
    kl_weight: float = 0.0625,
    decay: float = 0.5,
    clamp: float = 4.0,
    kl_prompt: str | None = "{} is a",
    stop_loss: float = 0.05,
    at: str = "subject_last",
):
    """:func:`~interp_lib.editing.optimise_value` one prompt at a time: every step runs each
    rewriting prompt (prefix + prompt + the new object's first ``i`` tokens) through its own
    forward pass, unpadded, with ``δ`` added at its edit position, and the KL prompt through
    another, then sums the loss terms."""
    from interp_lib.editing import ValueSearch
    from interp_lib.patching import subject_positions

    check_model(model)
    layer = check_layer(layer, model.cfg)
    new_ids = model.tokenizer(new_object, add_special_tokens=False)["input_ids"]
    name = hook_name("mlp_out", layer)
    prompt = fact.template.replace("{}", fact.subject)
    cases = []  # (tokens, edit position, predicting position, target)
    for prefix in prefixes:
        base = model.to_tokens(prefix + prompt)[0].tolist()
        pos = len(base) - 1 if at == "last" else \
            subject_positions(model, prefix + prompt, fact.subject)[-1]
        for i, token in enumerate(new_ids):
            cases.append((torch.tensor([base + new_ids[:i]], device=model.cfg.device), pos,
                          len(base) + i - 1, token))
    kl_case = None
    if kl_prompt is not None and at == "subject_last":
        text = kl_prompt.replace("{}", fact.subject)
        kl_tokens = model.to_tokens(text)
        kl_case = (kl_tokens, subject_positions(model, text, fact.subject)[-1])

    def run(tokens, pos, delta=None):
        seen = {}

        def hook(out, hook=None):
            seen["out"] = out
            if delta is None:
                return out
            out = out.clone()
            out[0, pos] = out[0, pos] + delta
            return out

        with model.hooks(fwd_hooks=[(name, hook)]):
            logits = model(tokens)
        return logits, seen["out"]

    with torch.no_grad():
        _, out = run(cases[0][0], cases[0][1])
        initial = out[0, cases[0][1]].float().clone()
        kl_init = None
        if kl_case is not None:
            logits, _ = run(*kl_case)
            kl_init = logits[0, -1].float().log_softmax(-1)
    delta = torch.zeros(model.cfg.d_model, requires_grad=True)
    scale = float(initial.norm()) or 1.0
    optimiser = torch.optim.Adam([delta], lr=lr * scale / model.cfg.d_model ** 0.5)
    history = {k: [] for k in ("loss", "nll", "kl", "decay", "p_new")}
    with torch.enable_grad():
        for step in range(steps):
            optimiser.zero_grad()
            nll, p_new = 0.0, 0.0
            for tokens, pos, last, target in cases:
                logits, _ = run(tokens, pos, delta)
                lp = logits[0, last].float().log_softmax(-1)[target]
                nll = nll - lp / len(cases)
                p_new = p_new + lp.exp() / len(cases)
            kl = torch.zeros(())
            if kl_case is not None:
                logits, _ = run(*kl_case, delta)
                lp = logits[0, -1].float().log_softmax(-1)
                kl = (lp.exp() * (lp - kl_init)).sum()
            penalty = decay * delta.pow(2).sum() / scale**2
            loss = nll + kl_weight * kl + penalty
            for key, v in (("loss", loss), ("nll", nll), ("kl", kl), ("decay", penalty),
                           ("p_new", p_new)):
                history[key].append(float(v.detach()))
            if loss.item() < stop_loss or step == steps - 1:
                break
            loss.backward(inputs=[delta])
            optimiser.step()
            with torch.no_grad():
                norm = float(delta.norm())
                if norm > clamp * scale:
                    delta.mul_(clamp * scale / norm)
    delta = delta.detach()
    return ValueSearch(initial + delta, initial, history,
                       [model.to_string(t[0][1:]) for t, _, _, _ in cases])




# ---------------------------------------------------------------- sparse autoencoders
# (interp_lib.sae: collect_activations, unit_activations, features_vs_neurons, train_sae)


@torch.no_grad()
def collect_activations_loop(model: Any, tokens: Int[torch.Tensor, "window pos"],
                             sites: Sequence[str]) -> dict[str, torch.Tensor]:
    """:func:`interp_lib.sae.collect_activations` the obvious way: one forward pass per window
    caching every activation, the site's rows (BOS left out) concatenated at the end."""
    check_model(model)
    tokens = to_tokens(model, tokens, name="tokens")
    rows: dict[str, list[torch.Tensor]] = {site: [] for site in sites}
    for window in tokens:
        _, cache = model.run_with_cache(window[None])
        for site in sites:
            rows[site].append(cache[site][0, 1:].cpu())
    return {site: torch.cat(parts) for site, parts in rows.items()}


@torch.no_grad()
def unit_activations_naive(model: Any, tokens: Int[torch.Tensor, "window pos"], source: Any,
                           *, top: int = 20):
    """:func:`interp_lib.sae.unit_activations` with the whole ``[token, unit]`` matrix in
    memory: every window's activations at once, then one top-k over all tokens."""
    from interp_lib.sae import SparseAutoencoder, UnitActivations
    from interp_lib.validate import model_signature

    check_model(model)
    tokens = to_tokens(model, tokens, name="tokens")
    sae = source if isinstance(source, SparseAutoencoder) else None
    site = sae.site if sae is not None else source
    _, cache = model.run_with_cache(tokens)
    x = cache[site][:, 1:]
    acts = (sae.encode(x) if sae is not None else x).reshape(-1, x.shape[-1] if sae is None
                                                             else sae.d_sae).float().cpu()
    values, rows = acts.topk(min(top, acts.shape[0]), dim=0)
    return UnitActivations("naive", site, tokens.cpu(), (acts > 0).float().mean(0),
                           acts.mean(0), acts.max(0).values, values.T, rows.T,
                           model_signature(model), sae)


def features_vs_neurons_loop(model: Any, sae: Any, pairs: Any, *, ks: Sequence[int]):
    """:func:`interp_lib.sae.features_vs_neurons` one pair, one k and one kind at a time: per
    pair a forward and backward pass for the gradient at the MLP output, then one forward pass
    per (k, kind) with that pair's units patched."""
    from interp_lib.sae import PatchingComparison

    check_model(model)
    site = sae.site
    layer = int(site.split(".")[1])
    neuron_site = hook_name("mlp_post", layer)
    w_out = model.W_out[layer].detach()
    w_dec = sae.W_dec.detach()
    moved = torch.zeros(1 + 2 * len(ks), dtype=torch.float64)
    for i in range(pairs.clean.shape[0]):
        clean, corrupted = pairs.clean[i:i + 1], pairs.corrupted[i:i + 1]
        good, bad = int(pairs.clean_answer[i]), int(pairs.corrupted_answer[i])
        with torch.no_grad():
            _, cache = model.run_with_cache(corrupted)
        post_c, out_c = cache[neuron_site][0, -1], cache[site][0, -1]
        seen: dict[str, torch.Tensor] = {}

        def grab(act, hook=None, seen=seen):
            seen[hook.name] = act

        with torch.enable_grad():
            logits = model.run_with_hooks(clean, fwd_hooks=[(neuron_site, grab), (site, grab)])
            diff = logits[0, -1, good] - logits[0, -1, bad]
            (grad,) = torch.autograd.grad(diff, seen[site])
        grad = grad[0, -1]
        post, out = seen[neuron_site][0, -1].detach(), seen[site][0, -1].detach()
        f_delta = sae.encode(out_c) - sae.encode(out)
        n_delta = post_c - post
        f_order = torch.argsort(f_delta * (w_dec @ grad), stable=True)
        n_order = torch.argsort(n_delta * (w_out @ grad), stable=True)

        def patched(shift, clean=clean, good=good, bad=bad):
            def hook(act, hook=None):
                act = act.clone()
                act[0, -1] = act[0, -1] + shift
                return act
            with torch.no_grad():
                out_logits = model.run_with_hooks(clean, fwd_hooks=[(site, hook)])
            return float(out_logits[0, -1, good] - out_logits[0, -1, bad])

        base = float(diff.detach())
        moved[0] += base - patched(out_c - out)
        for j, k in enumerate(ks):
            fi, ni = f_order[:k], n_order[:k]
            moved[1 + 2 * j] += base - patched((f_delta[fi, None] * w_dec[fi]).sum(0))
            moved[2 + 2 * j] += base - patched((n_delta[ni, None] * w_out[ni]).sum(0))
    effects = (moved[1:] / moved[0]).reshape(len(ks), 2).float()
    return PatchingComparison(list(ks), effects[:, 0], effects[:, 1],
                              float(moved[0]) / pairs.clean.shape[0], pairs.clean.shape[0],
                              site, neuron_site, {})


def train_sae_loop(model: Any, tokens: Int[torch.Tensor, "window pos"], site: str, *,
                   d_sae: int, k: int, epochs: int = 1, windows_per_step: int = 8,
                   lr: float = 1e-3, seed: int = 0):
    """:func:`interp_lib.sae.train_sae` without a cache: every step runs the model on
    ``windows_per_step`` windows (a full forward pass) and takes one optimiser step on their
    activations, epoch after epoch."""
    from interp_lib.sae import SaeTrainer, SparseAutoencoder

    check_model(model)
    tokens = to_tokens(model, tokens, name="tokens")
    width = model.cfg.d_mlp if "mlp.hook" in site else model.cfg.d_model
    sae = SparseAutoencoder(width, d_sae, k, site=site, seed=seed)
    per_epoch = tokens.shape[0] // windows_per_step
    trainer = SaeTrainer(sae, total_steps=max(1, epochs * per_epoch), lr=lr,
                         dead_after_tokens=tokens.shape[0] * (tokens.shape[1] - 1))
    first = True
    for _ in range(epochs):
        for b in range(per_epoch):
            with torch.no_grad():
                _, cache = model.run_with_cache(
                    tokens[b * windows_per_step:(b + 1) * windows_per_step],
                    names_filter=lambda name: name == site)
            rows = cache[site][:, 1:].reshape(-1, width)
            if first:  # the decoder bias starts at the first batch's mean
                with torch.no_grad():
                    sae.b_dec.copy_(rows.mean(0))
                first = False
            trainer.step(rows)
    return sae.eval()


# ---------------------------------------------------------------- probing beyond accuracy (nb 10)


@torch.no_grad()
def agreement_scores_loop(model: Any, pairs: Any):
    """:func:`~interp_lib.info_probing.agreement_scores` one pair at a time: the prefix alone
    through the model, the full log-softmax at its last position, the two verbs' difference.
    Returns the margins (a numpy array, one per pair)."""
    import numpy as np

    check_model(model)
    margins = []
    for prefix, good, bad in zip(pairs.prefixes, pairs.good, pairs.bad, strict=True):
        log_probs = model(prefix[None].to(model.cfg.device))[0, -1].float().log_softmax(-1)
        margins.append(float(log_probs[int(good)] - log_probs[int(bad)]))
    return np.array(margins)


@torch.no_grad()
def causal_number_probe_loop(model: Any, pairs: Any, directions: Any,
                             tokens: Int[torch.Tensor, "batch pos"], random_bases: torch.Tensor,
                             *, split: str = "test"):
    """:func:`~interp_lib.info_probing.causal_number_probe` one variant, one site and one pair
    (or text) at a time, each change written out as its own hook; ``random_bases`` are the
    random directions to remove (``[n_random, k, d]``, from the library's result)."""
    import numpy as np

    from interp_lib.info_probing import CausalResult

    check_model(model)
    tokens = to_tokens(model, tokens, name="tokens")
    keep = [i for i in range(len(pairs.prefixes)) if split == "all" or pairs.split[i] == split]
    n_layers = model.cfg.n_layers
    names = [hook_name("resid_pre", la) for la in range(n_layers)]
    names.append(hook_name("resid_post", n_layers - 1))

    def scores(fwd_hooks):
        margins = []
        for i in keep:
            with model.hooks(fwd_hooks=fwd_hooks):
                lp = model(pairs.prefixes[i][None].to(model.cfg.device))[0, -1].float()
            lp = lp.log_softmax(-1)
            margins.append(float(lp[int(pairs.good[i])] - lp[int(pairs.bad[i])]))
        total, count = 0.0, 0
        for row in tokens:
            with model.hooks(fwd_hooks=fwd_hooks):
                lp = model(row[None])[0, :-1].float().log_softmax(-1)
            total += float(-lp.gather(-1, row[1:, None]).sum())
            count += len(row) - 1
        margins = np.array(margins)
        return float((margins > 0).mean()), float(margins.mean()), total / count

    def change(basis, centre, scale):
        def hook(x, hook=None):
            coef = (x - centre.to(x.dtype)) @ basis.T.to(x.dtype)
            return x - scale * coef @ basis.to(x.dtype)
        return hook

    clean = scores([])
    accuracy, margin, loss = [], [], []
    for s in range(len(directions.site_names)):
        variants = [change(directions.basis[s], directions.mean[s], 1.0),
                    change(directions.basis[s, :1], directions.midpoint[s], 2.0)]
        variants += [change(b, directions.mean[s], 1.0) for b in random_bases]
        measured = [scores([(names[s], hook)]) for hook in variants]
        accuracy.append([m[0] for m in measured])
        margin.append([m[1] for m in measured])
        loss.append([m[2] for m in measured])
    labels = ["number removed", "number flipped"] + [f"random {r + 1}"
                                                       for r in range(len(random_bases))]
    return CausalResult(list(directions.site_names), labels, np.array(accuracy),
                        np.array(margin), np.array(loss), clean[0], clean[1], clean[2],
                        int(directions.basis.shape[1]), len(keep),
                        int(tokens.shape[0] * (tokens.shape[1] - 1)), random_bases)


# ---------------------------------------------------------------- attribution patching (nb 12)


def attribution_patching_loop(
    model: Any,
    clean: Int[torch.Tensor, "batch pos"],
    corrupted: Int[torch.Tensor, "batch pos"],
    metric: Any,
    kinds: Sequence[str] = ("resid_pre", "attn_out", "mlp_out", "head_out"),
) -> dict[str, torch.Tensor]:
    """:func:`~interp_lib.attribution_patching.attribution_patching`'s plain AtP estimate,
    ``metric(patched) - metric(corrupted)`` (mean over the batch, not normalised), the
    straightforward way: for every kind and every layer, one clean forward for that one
    activation, one corrupted forward and one backward from that one activation's leaf, and
    the dot products cell by cell. ``{kind: [layer, position or head]}``."""
    from interp_lib.attribution_patching import ATP_KINDS

    cfg = model.cfg
    model.eval()
    out = {}
    for kind in kinds:
        choice(kind, "kinds", ATP_KINDS)
        rows = []
        for layer in range(cfg.n_layers):
            name = hook_name(ATP_KINDS[kind], layer)
            with torch.no_grad():
                _, cache = model.run_with_cache(clean, names_filter=lambda n, name=name: n == name)
            kept = {}

            def leaf(act, hook=None, kept=kept):
                kept["a"] = act.detach().requires_grad_(True)
                return kept["a"]

            with torch.enable_grad(), model.hooks(fwd_hooks=[(name, leaf)]):
                value = metric(model(corrupted), corrupted).float().mean()
                grad, = torch.autograd.grad(value, [kept["a"]])
            delta = cache[name].float() - kept["a"].detach().float()
            cells = []
            n_cols = cfg.n_heads if kind.startswith("head_") else clean.shape[1]
            for col in range(n_cols):
                if kind.startswith("head_"):
                    cells.append((delta[:, :, col] * grad[:, :, col].float()).sum())
                else:
                    cells.append((delta[:, col] * grad[:, col].float()).sum())
            rows.append(torch.stack(cells))
        out[kind] = torch.stack(rows)
    return out
