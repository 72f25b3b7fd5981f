"""Decoding, seeded and with hooks: what checks and steering generate with.

:func:`generate_with_log_probs` decodes token by token (greedy, or sampled with a seeded
generator) and records the log-probability the model gave each chosen token;
:func:`generate` returns only the new text. Both take ``hooks`` (``[(hook name, fn)]``),
attached for the whole generation and removed afterwards, also when it raises.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.generation import generate_with_log_probs
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=1)), device="cpu")
>>> tokens, log_probs = generate_with_log_probs(model, "The cat", 4)
>>> tokens.shape[1] - len(log_probs) == model.to_tokens("The cat").shape[1]
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Int

from interp_lib import validate
from interp_lib.inputs import to_tokens
from interp_lib.validate import check_model

__all__ = ["generate", "generate_with_log_probs"]

Hooks = list[tuple[str, Callable]]


def _check_hooks(hooks: Any) -> Hooks:
    if hooks is None:
        return []
    if isinstance(hooks, tuple) and len(hooks) == 2 and isinstance(hooks[0], str):
        raise TypeError("hooks must be a list of (hook name, function) pairs; wrap the single "
                        "pair in a list")
    hooks = list(hooks)
    for i, pair in enumerate(hooks):
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], str)
                and callable(pair[1])):
            raise TypeError(f"hooks[{i}] must be a (hook name, function) pair, got {pair!r}")
    return hooks


def generate_with_log_probs(
    model: Any,
    prompt: str | Int[torch.Tensor, "1 pos"],
    max_new_tokens: int = 20,
    *,
    greedy: bool = True,
    temperature: float = 1.0,
    seed: int = 0,
    hooks: Hooks | None = None,
) -> tuple[Int[torch.Tensor, "1 pos"], list[float]]:
    """Decode ``max_new_tokens`` tokens after ``prompt`` and record the log-probability the
    model gave each chosen token (at temperature 1, whatever the sampling temperature).
    Returns all tokens ``[1, prompt + new]`` and those log-probs. A text prompt gets BOS in
    front, whatever the model's default; a prompt that does not fit the context together with
    the new tokens is refused (nothing is cut)."""
    check_model(model)
    max_new_tokens = validate.positive_int(max_new_tokens, "max_new_tokens")
    validate.flag(greedy, "greedy")
    temperature = validate.finite_float(temperature, "temperature", positive=True)
    validate.nonnegative_int(seed, "seed")
    hooks = _check_hooks(hooks)
    tokens = to_tokens(model, prompt, prepend_bos=True, name="prompt")
    if tokens.shape[0] != 1:
        raise ValueError(f"prompt: give one prompt, got a batch of {tokens.shape[0]}")
    if tokens.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise ValueError(
            f"prompt ({tokens.shape[1]} tokens) + max_new_tokens {max_new_tokens} exceed the "
            f"context of {model.cfg.n_ctx}; ask for fewer tokens or shorten the prompt")
    gen = torch.Generator().manual_seed(seed)
    recorded = []
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for _ in range(max_new_tokens):
            log_probs = model(tokens, return_type="logits")[0, -1].float().log_softmax(-1).cpu()
            if greedy:
                choice = int(log_probs.argmax())
            else:
                choice = int(torch.multinomial((log_probs / temperature).softmax(-1), 1,
                                               generator=gen))
            recorded.append(float(log_probs[choice]))
            tokens = torch.cat([tokens, torch.tensor([[choice]], device=tokens.device)], 1)
    return tokens, recorded


def generate(
    model: Any,
    prompt: str | Int[torch.Tensor, "1 pos"],
    max_new_tokens: int = 20,
    *,
    hooks: Hooks | None = None,
    greedy: bool = True,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """The text the model adds to ``prompt`` with ``hooks`` active (greedy, or sampled with a
    seeded generator: the same call gives the same text)."""
    tokens, _ = generate_with_log_probs(model, prompt, max_new_tokens, greedy=greedy,
                                        temperature=temperature, seed=seed, hooks=hooks)
    return model.to_string(tokens[0, -max_new_tokens:])
