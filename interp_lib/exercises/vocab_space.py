"""Checks for notebook 09 (reading weights and gradients in the vocabulary).

>>> import torch
>>> from interp_lib.exercises.vocab_space import check_top_neurons
>>> def top_neurons(post, W_out, k):
...     return (post.abs() * W_out.norm(dim=-1)).topk(k).indices
>>> check_top_neurons(top_neurons)
✔ top_neurons: correct (planted activations and value vectors)
"""

from __future__ import annotations

from typing import Any

import torch

from interp_lib.circuits import copying_scores, token_representations
from interp_lib.exercises import ExerciseFailed, call, compare, expect, passed
from interp_lib.hooks import hook_name
from interp_lib.vocab_space import backward_lens, mlp_sub_updates, mlp_weight, value_tokens

__all__ = ["check_gradient_factors", "check_ov_top_tokens", "check_shift_tokens",
           "check_top_neurons", "check_value_top_tokens"]

_TEXT = "The Congress of the United States shall provide for the payment of the public debt."


def _ids(got: Any, what: str, shape: tuple[int, ...], axes: tuple[str, ...]) -> torch.Tensor:
    """``got`` as a long tensor of ``shape``, or a message in the exercise's terms."""
    if got is None:
        raise ExerciseFailed(f"{what}: your function returned None; did you forget `return`?")
    if hasattr(got, "indices") and not isinstance(got, torch.Tensor):
        raise ExerciseFailed(f"{what}: you returned the whole topk result; return its "
                             "`.indices` (the token ids)")
    try:
        got = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError):
        raise ExerciseFailed(f"{what}: expected a tensor of token ids, got "
                             f"{type(got).__name__}") from None
    if got.is_floating_point():
        raise ExerciseFailed(f"{what}: these are floats; return the *ids* (topk's `.indices`), "
                             "not the scores (`.values`)")
    if tuple(got.shape) != shape:
        named = "[" + ", ".join(f"{a}={s}" for a, s in zip(axes, shape, strict=True)) + "]"
        hint = ("; the axes look swapped" if sorted(got.shape) == sorted(shape) and got.ndim > 1
                else "")
        raise ExerciseFailed(f"{what}: expected shape {named}, got {list(got.shape)}{hint}")
    return got.long().cpu()


def _same_ids(got: torch.Tensor, expected: torch.Tensor, what: str,
              mistakes: list[tuple[torch.Tensor, str]], decode,
              scores: torch.Tensor | None = None) -> None:
    """Token ids compared row by row, known mistakes first, then a set-vs-order diagnosis.
    With ``scores`` (``[..., n]``, what the ids rank), ids whose scores equal the expected
    ones to float rounding pass too: near-ties may come out in another order."""
    if torch.equal(got, expected):
        return
    if scores is not None and bool(((got >= 0) & (got < scores.shape[-1])).all()):
        table = scores.detach().double().cpu().reshape(-1, scores.shape[-1])
        mine = table.gather(1, got.reshape(table.shape[0], -1))
        right = table.gather(1, expected.reshape(table.shape[0], -1))
        if torch.allclose(mine, right, rtol=1e-5, atol=1e-6 * float(table.abs().max())):
            return
    for wrong, message in mistakes:
        if torch.equal(got, wrong.long().cpu()):
            raise ExerciseFailed(f"{what}: {message}")
    rows_g, rows_e = got.reshape(-1, got.shape[-1]), expected.reshape(-1, expected.shape[-1])
    same_sets = all(set(a.tolist()) == set(b.tolist()) for a, b in zip(rows_g, rows_e,
                                                                       strict=True))
    if same_sets:
        raise ExerciseFailed(f"{what}: the right tokens in the wrong order: sort them best "
                             "first (torch.topk does)")
    bad = next(i for i, (a, b) in enumerate(zip(rows_g, rows_e, strict=True))
               if not torch.equal(a, b))
    shown = ", ".join(repr(decode(i)) for i in rows_e[bad, :4].tolist())
    mine = ", ".join(repr(decode(i)) for i in rows_g[bad, :4].tolist())
    where = f" (row {bad})" if rows_g.shape[0] > 1 else ""
    raise ExerciseFailed(f"{what}{where}: expected tokens starting {shown}; yours start {mine}")


def _decoder(model: Any):
    tokenizer = getattr(model, "tokenizer", None)
    return (lambda i: tokenizer.decode([int(i)])) if tokenizer is not None else str


# ---------------------------------------------------------------- 9.1 values


def check_value_top_tokens(fn: Any, model: Any) -> None:
    """``fn(model, layer, neuron, k) -> [k]``: the ids of the ``k`` tokens neuron ``neuron``
    of layer ``layer`` promotes most: the largest entries of its value vector (its row of
    ``W_out``) times the unembedding, best first."""
    k = 10
    norms = model.W_out[-1].detach().norm(dim=-1)
    cases = [(model.cfg.n_layers - 1, int(norms.argmax())), (0, 3 % model.cfg.d_mlp)]
    w_u, w_e = model.W_U.detach(), model.W_E.detach()
    decode = _decoder(model)
    for layer, neuron in cases:
        got = call(fn, model, layer, neuron, k, name="value_top_tokens", model=model)
        got = _ids(got, f"value_top_tokens(layer={layer}, neuron={neuron})", (k,), ("k",))
        found = value_tokens(model, layer, neuron, k=k)
        value = model.W_out[layer, neuron].detach()
        key = model.W_in[layer, :, neuron].detach()
        mistakes = [
            (found.suppressed.ids[0], "these are the tokens it *suppresses* (the smallest "
                                      "entries); take the largest"),
            (((key - key.mean()) @ w_u).topk(k).indices,
             "that is the neuron's *key* (its column of W_in, what it reads); the value is its "
             "row of W_out, what it writes"),
            (((value - value.mean()) @ w_e.T).topk(k).indices,
             "project with the unembedding W_U (what the logits read), not the embedding W_E"),
        ]
        if layer > 0:
            other = model.W_out[layer - 1, neuron].detach()
            mistakes.append((((other - other.mean()) @ w_u).topk(k).indices,
                             "that is the neuron of the layer before: W_out[layer] is this "
                             "layer's"))
        _same_ids(got, found.promoted.ids[0], f"value_top_tokens(layer={layer}, "
                                              f"neuron={neuron})", mistakes, decode,
                  scores=(value - value.mean()) @ w_u)
    layer, neuron = cases[0]
    shown = ", ".join(repr(t) for t in value_tokens(model, layer, neuron, k=4).promoted.tokens[0])
    passed("value_top_tokens", f"neuron {layer}.{neuron} promotes {shown}")


# ---------------------------------------------------------------- 9.2 sub-updates


def _planted_sub_updates() -> tuple[torch.Tensor, torch.Tensor]:
    """Activations and value vectors whose rankings by |a|·‖v‖, by a, by |a|, by a·‖v‖ and
    by ‖v‖ all differ."""
    post = torch.tensor([0.5, 3.0, -2.5, 0.13, 1.0, 0.0, 2.0, -0.1])
    norms = torch.tensor([4.0, 0.2, 1.0, 9.0, 1.1, 1.0, 0.45, 1.0])
    gen = torch.Generator().manual_seed(9)
    directions = torch.randn(8, 6, generator=gen)
    return post, directions / directions.norm(dim=-1, keepdim=True) * norms[:, None]


def check_top_neurons(fn: Any, model: Any = None) -> None:
    """``fn(post [d_mlp], W_out [d_mlp, d_model], k) -> [k]``: the ``k`` neurons whose
    sub-updates ``post[j] * W_out[j]`` are largest (``|post[j]| · ‖W_out[j]‖``), largest
    first."""
    post, w_out = _planted_sub_updates()
    k = 3
    got = _ids(call(fn, post.clone(), w_out.clone(), k, name="top_neurons"),
               "top_neurons", (k,), ("k",))
    norms = w_out.norm(dim=-1)
    mistakes = [
        (post.topk(k).indices, "you ranked by the activation alone; a neuron with a short value "
                               "vector writes little: multiply by ‖W_out[j]‖"),
        (post.abs().topk(k).indices, "you ranked by |activation| alone; multiply by the value "
                                     "vector's length ‖W_out[j]‖"),
        ((post * norms).topk(k).indices, "a negative activation subtracts its value vector, "
                                         "which is a large update too: rank by the magnitude "
                                         "|post[j]| · ‖W_out[j]‖"),
        (norms.topk(k).indices, "you ranked by the value vectors' lengths alone; an inactive "
                                "neuron writes nothing: multiply by |post[j]|"),
    ]
    _same_ids(got, (post.abs() * norms).topk(k).indices, "top_neurons (planted)", mistakes, str)
    detail = "planted activations and value vectors"
    if model is not None:
        layer = model.cfg.n_layers - 1
        tokens = model.to_tokens(_TEXT)
        position = tokens.shape[1] // 2
        sub = mlp_sub_updates(model, tokens, layer, top=10, k=3)
        got = _ids(call(fn, sub.activations[position].clone(), sub.value_vectors.clone(), 10,
                        name="top_neurons"), "top_neurons on the model", (10,), ("k",))
        size = sub.activations[position].abs() * sub.value_vectors.norm(dim=-1)
        _same_ids(got, sub.top_neurons[position], f"top_neurons at position {position} of "
                                                  f"layer {layer}", [], str, scores=size)
        detail += f"; at position {position}: {sub.describe(position, 1, 3)[0]}"
    passed("top_neurons", detail)


# ---------------------------------------------------------------- 9.3 a head's OV


def check_ov_top_tokens(fn: Any, model: Any) -> None:
    """``fn(tokens_in [n, d_model], W_V [d_model, d_head], W_O [d_head, d_model], W_U
    [d_model, vocab], k) -> [n, k]``: for each row (a token as the head sees it), the ``k``
    tokens whose logits the head raises most when it attends to that token: the largest
    entries of ``tokens_in W_V W_O W_U``, row by row."""
    copying = copying_scores(model, embedding="normalized").values
    layer, head = divmod(int(copying.flatten().argmax()), model.cfg.n_heads)
    reps = token_representations(model, "normalized")
    ids = model.to_tokens(_TEXT, prepend_bos=False)[0, :6].cpu()
    tokens_in = reps.at(layer)[ids]
    w_v, w_o = model.W_V[layer, head].detach(), model.W_O[layer, head].detach()
    w_u = model.W_U.detach()
    k = 5
    got = call(fn, tokens_in.clone(), w_v.clone(), w_o.clone(), w_u.clone(), k,
               name="ov_top_tokens")
    got = _ids(got, "ov_top_tokens", (len(ids), k), ("token", "k"))
    rows = tokens_in @ w_v @ w_o @ w_u
    expected = rows.topk(k, dim=-1).indices
    mistakes = [(rows.topk(k, dim=-1, largest=False).indices,
                 "these are the tokens the head *suppresses* (the smallest entries)")]
    _same_ids(got, expected, f"ov_top_tokens (head {layer}.{head})", mistakes, _decoder(model),
              scores=rows)
    own = float((expected[:, 0] == ids).float().mean())
    passed("ov_top_tokens", f"head {layer}.{head}, the most copying: {own:.0%} of these "
                            "tokens promote themselves first")


# ---------------------------------------------------------------- 9.4 gradient factors


def _reference_passes(model: Any, tokens: torch.Tensor, layer: int) -> dict[str, torch.Tensor]:
    """What the usual mistakes would give: the residual before the norm, the gradient after
    the nonlinearity."""
    store: dict[str, torch.Tensor] = {}

    def keep(act, hook):
        store[hook.name] = act

    names = [hook_name("resid_mid", layer), hook_name("mlp_post", layer)]
    with torch.enable_grad(), model.hooks(fwd_hooks=[(n, keep) for n in names]):
        loss = model(tokens, return_type="loss")
        grad_post, = torch.autograd.grad(loss, [store[names[1]]])
    return {"resid_mid": store[names[0]][0].detach(), "grad_post": grad_post[0].detach()}


def check_gradient_factors(fn: Any, model: Any) -> None:
    """``fn(model, tokens [1, pos], layer) -> (x [pos, d_model], delta [pos, d_mlp])``: the
    rank-one factors of layer ``layer``'s ``W_in`` gradient under the mean next-token loss:
    ``x`` the MLP's input (``mlp.hook_in``), ``delta`` the loss's gradient at ``mlp.hook_pre``,
    so that ``x.T @ delta`` is autograd's ``∂loss/∂W_in``."""
    tokens = model.to_tokens(_TEXT)
    lens = backward_lens(model, tokens)
    for layer in sorted({0, model.cfg.n_layers - 1}):
        out = call(fn, model, tokens, layer, name="gradient_factors", model=model)
        model.zero_grad(set_to_none=True)
        expect(isinstance(out, tuple | list) and len(out) == 2,
               "gradient_factors must return two tensors (x, delta)")
        x, delta = out
        what = f"gradient_factors(layer={layer})"
        wrong = _reference_passes(model, tokens, layer)
        compare(x, lens.inputs[layer], f"{what}: x", axes=("pos", "d_model"), atol=1e-5,
                rtol=1e-4, mistakes=[(wrong["resid_mid"], "that is the residual stream before "
                                      "the LayerNorm; W_in multiplies the MLP's normalised "
                                      "input (mlp.hook_in)")])
        scale = max(float(lens.grad_pre[layer].abs().max()), 1e-12)
        compare(delta, lens.grad_pre[layer], f"{what}: delta", axes=("pos", "d_mlp"),
                atol=1e-4 * scale, rtol=1e-4,
                mistakes=[(wrong["grad_post"], "that is the gradient at hook_post, after the "
                           "nonlinearity; W_in's output is hook_pre (before it)")])
        weight = mlp_weight(model, layer, "W_in")
        with torch.enable_grad():
            loss = model(tokens, return_type="loss")
            grad, = torch.autograd.grad(loss, [weight.parameter])
        expected = weight.as_model_layout(grad).detach()
        mine = torch.as_tensor(x).detach().float().T @ torch.as_tensor(delta).detach().float()
        compare(mine, expected, f"{what}: x.T @ delta vs autograd's gradient",
                axes=("d_model", "d_mlp"), atol=1e-4 * float(expected.abs().max()), rtol=1e-4)
    passed("gradient_factors", f"x.T @ delta equals autograd's W_in gradient; "
                               f"{lens.n_positions} positions, rank "
                               f"{lens.rank(0, 'W_in')} at layer 0")


# ---------------------------------------------------------------- 9.5 the shift


def check_shift_tokens(fn: Any, model: Any) -> None:
    """``fn(grad_out [pos, d_model], W_U [d_model, vocab], k) -> [pos, k]``: at each position,
    the ``k`` tokens a gradient-descent step would make the MLP write more of: the largest
    entries of ``-grad_out[i] @ W_U``."""
    tokens = model.to_tokens(_TEXT)
    target = int(tokens[0, 4])
    lens = backward_lens(model, tokens, target)
    found = lens.projections(model, k=5)
    layer = 0
    grad_out = lens.grad_out[layer]
    w_u = model.W_U.detach()
    got = _ids(call(fn, grad_out.clone(), w_u.clone(), 5, name="shift_tokens"),
               "shift_tokens", (lens.n_positions, 5), ("pos", "k"))
    centred = grad_out - grad_out.mean(-1, keepdim=True)
    mistakes = [((centred @ w_u).topk(5, dim=-1).indices,
                 "the minus sign is missing: the gradient points uphill, and a training step "
                 "moves the weights *against* it (project -grad_out)"),
                ((centred @ w_u).abs().topk(5, dim=-1).indices,
                 "you ranked by |projection|; the sign matters: take the largest entries of "
                 "-grad_out @ W_U")]
    _same_ids(got, found.shift_ids[layer], "shift_tokens", mistakes, _decoder(model),
              scores=-(centred @ w_u))
    rank = int(found.target_ranks[layer, -1])
    passed("shift_tokens", f"layer {layer}: the target {_decoder(model)(target)!r} ranks "
                           f"{rank} in the shift at the last position")
