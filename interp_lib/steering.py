"""Steering: changing what a model does by adding vectors to its activations (seed 001).

- **Latent steering vectors** (Subramani et al. 2022): :func:`fit_latent_vector` optimises one
  ``d_model`` vector, added to the residual stream at one layer, so that the *frozen* model
  greedily decodes a target sentence from BOS; :func:`decode_latent` decodes from any vector
  (interpolations, vector arithmetic).
- **Contrastive steering** (activation addition): :func:`contrastive_vector` is the difference
  of the mean residual streams of two prompt sets at a layer; :func:`steering_hooks` adds
  ``coefficient x vector`` at every position; :func:`steering_sweep` measures, for every
  (layer, coefficient) in batched forward passes, the intended effect and the loss on neutral
  text (fluency).
- **Probe-direction intervention** (inference-time intervention, Li et al. 2023):
  :func:`head_probes` trains a logistic probe per head for a binary attribute; :func:`iti_hooks`
  shifts the outputs of the top K heads by ``alpha x`` the standard deviation along their
  probe directions.

:func:`generate` decodes with any of these hooks applied, seeded and deterministic; every
function that adds hooks removes them on exit, also on error.

>>> import tempfile, torch
>>> from interp_lib import load_model
>>> from interp_lib.testing import save_tiny_gpt2
>>> from interp_lib.steering import generate, steering_hooks
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> vector = torch.randn(model.cfg.d_model)
>>> plain = generate(model, "The cat", 5)
>>> steered = generate(model, "The cat", 5, hooks=steering_hooks(model, 1, vector, 20.0))
>>> len(model.hook_dict["blocks.1.hook_resid_pre"].fwd_hooks)  # no hook left behind
0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int

from interp_lib.inputs import check_layer, head_name, parse_heads, to_tokens

__all__ = [
    "HeadProbes",
    "LatentVector",
    "SteeringSweep",
    "contrastive_vector",
    "decode_latent",
    "fit_latent_vector",
    "generate",
    "head_probes",
    "iti_hooks",
    "steering_hooks",
    "steering_sweep",
    "token_set_log_prob",
    "topic_sentences",
]

_RESID = "blocks.{}.hook_resid_pre"
_Z = "blocks.{}.attn.hook_z"
Hooks = list[tuple[str, Callable]]


def topic_sentences() -> dict[str, list[str]]:
    """The shipped sentences by topic: ``{"sea": [...], "state": [...]}`` (*Moby-Dick* and the
    State of the Union addresses, held out from the course model's training; 220 each)."""
    from pathlib import Path

    path = Path(__file__).resolve().parent / "data" / "topic_sentences.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the course package")
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            topic, sentence = line.split("\t", 1)
            out.setdefault(topic, []).append(sentence)
    return out


# ---------------------------------------------------------------- generation


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
    """The text the model adds to ``prompt`` with ``hooks`` (``[(hook name, fn)]``) active;
    greedy or sampled with a seeded generator, so the same call gives the same text. The
    hooks are removed afterwards, also when generation raises."""
    tokens = _generate_tokens(model, prompt, max_new_tokens, hooks, greedy=greedy,
                              temperature=temperature, seed=seed)
    return model.to_string(tokens[0, -max_new_tokens:])


def _generate_tokens(model: Any, prompt: Any, max_new_tokens: int, hooks: Hooks | None,
                     **decoding: Any) -> torch.Tensor:
    """Prompt and generated tokens ``[1, pos]`` with ``hooks`` active (removed on exit)."""
    from interp_lib.checks import generate_with_log_probs

    with model.hooks(fwd_hooks=list(hooks or [])):
        tokens, _ = generate_with_log_probs(model, prompt, max_new_tokens, **decoding)
    return tokens


# ---------------------------------------------------------------- latent steering vectors


@dataclass
class LatentVector:
    """A latent steering vector for one target: added to ``blocks.{layer}.hook_resid_pre``
    at ``positions`` (``"first"``: BOS only; ``"all"``). ``steps`` is the number of optimiser
    steps after which greedy decoding first reproduced the target (None: never, within the
    budget); ``losses`` the teacher-forced loss per step."""

    vector: Float[torch.Tensor, "d_model"]  # noqa: F821 - a jaxtyping dimension
    layer: int
    positions: str
    target: str
    target_tokens: list[int]
    steps: int | None
    losses: list[float] = field(default_factory=list)

    @property
    def recovered(self) -> bool:
        return self.steps is not None


def _latent_hook(layer: int, vector: torch.Tensor, positions: str) -> Hooks:
    def hook(resid, hook=None):
        if positions == "first":
            added = torch.zeros_like(resid)
            added[:, 0] = vector.to(resid.dtype)
            return resid + added
        return resid + vector.to(resid.dtype)

    return [(_RESID.format(layer), hook)]


def _check_positions(positions: str) -> str:
    if positions not in ("first", "all"):
        raise ValueError(f"positions must be 'first' or 'all', got {positions!r}")
    return positions


def decode_latent(model: Any, vector: torch.Tensor, layer: int, n_tokens: int, *,
                  positions: str = "all") -> str:
    """Greedy decoding of ``n_tokens`` from BOS alone with ``vector`` added at ``layer``."""
    layer = check_layer(layer, model.cfg)
    _check_positions(positions)
    return generate(model, _bos(model), n_tokens, hooks=_latent_hook(layer, vector, positions))


def _bos(model: Any) -> torch.Tensor:
    return torch.tensor([[model.tokenizer.bos_token_id]], device=model.cfg.device)


def fit_latent_vector(
    model: Any,
    target: str,
    *,
    layer: int | None = None,
    positions: str = "all",
    steps: int = 300,
    lr: float = 0.1,
    check_every: int = 10,
    seed: int = 0,
) -> LatentVector:
    """Optimise one vector so the frozen model greedily decodes ``target`` from BOS.

    The vector (zero-initialised plus a little seeded noise) is added to the residual stream
    at ``layer`` (default ``n_layers // 2 - 1``, just before the middle; at least 1) at
    ``positions`` (``"all"``, or ``"first"``: BOS only, which recovers fewer sentences); Adam
    minimises the teacher-forced loss of the target's tokens. Every ``check_every`` steps the
    model decodes greedily; optimisation stops at the first exact reproduction (``steps``
    records when)."""
    cfg = model.cfg
    layer = max(1, cfg.n_layers // 2 - 1) if layer is None else check_layer(layer, cfg)
    _check_positions(positions)
    if not isinstance(target, str) or not target.strip():
        raise ValueError("target must be a non-empty string")
    ids = model.to_tokens(target, prepend_bos=False)[0].tolist()
    if len(ids) + 1 > cfg.n_ctx:
        raise ValueError(f"the target has {len(ids)} tokens; the context is {cfg.n_ctx}")
    bos = model.tokenizer.bos_token_id
    tokens = torch.tensor([[bos, *ids]], device=cfg.device)
    gen = torch.Generator().manual_seed(seed)
    vector = (torch.randn(cfg.d_model, generator=gen) * 1e-3).to(cfg.device).requires_grad_(True)
    optimizer = torch.optim.Adam([vector], lr=lr)
    losses: list[float] = []
    found: int | None = None
    for step in range(1, steps + 1):
        with torch.enable_grad(), model.hooks(fwd_hooks=_latent_hook(layer, vector, positions)):
            logits = model(tokens, return_type="logits")[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits.float(), tokens[0, 1:])
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % check_every == 0 or step == steps:
            hooks = _latent_hook(layer, vector.detach(), positions)
            decoded = _generate_tokens(model, _bos(model), len(ids), hooks)[0, 1:].tolist()
            if decoded == ids:
                found = step
                break
    return LatentVector(vector.detach(), layer, positions, target, ids, found, losses)


# ---------------------------------------------------------------- contrastive steering


@torch.no_grad()
def _mean_resid(model: Any, texts: Sequence[str], layers: Sequence[int],
                batch_size: int = 32) -> torch.Tensor:
    """Mean residual stream (over the texts' real tokens after BOS) at each layer:
    ``[layer, d_model]``; texts run in right-padded batches."""
    names = [_RESID.format(la) for la in layers]
    total = torch.zeros(len(layers), model.cfg.d_model, dtype=torch.float64)
    count = 0
    for tokens, mask in _padded_batches(model, texts, batch_size):
        _, cache = model.run_with_cache(tokens, attention_mask=mask,
                                        names_filter=lambda n: n in names,
                                        stop_at_layer=max(layers) + 1)
        real = mask[:, 1:, None].double()  # every real token after BOS
        for i, name in enumerate(names):
            total[i] += (cache[name][:, 1:].double() * real).sum((0, 1)).cpu()
        count += int(real.sum())
    return (total / max(count, 1)).float()


def _padded_batches(model: Any, texts: Sequence[str], batch_size: int):
    """``(tokens, attention_mask)`` of the texts with BOS, right-padded, ``batch_size`` at a
    time, on the model's device."""
    from interp_lib.inputs import pad_rows

    rows = [to_tokens(model, text, prepend_bos=True)[0] for text in texts]
    for start in range(0, len(rows), batch_size):
        tokens, mask = pad_rows(rows[start: start + batch_size], model.tokenizer.bos_token_id)
        yield tokens.to(model.cfg.device), mask.to(model.cfg.device)


def contrastive_vector(
    model: Any,
    positive: str | Sequence[str],
    negative: str | Sequence[str],
    layer: int | Sequence[int],
) -> Float[torch.Tensor, "*layer d_model"]:
    """Mean residual stream of the ``positive`` prompts minus that of the ``negative`` ones
    at ``blocks.{layer}.hook_resid_pre`` (a list of layers gives ``[layer, d_model]``). With one
    prompt on each side this is the classic "activation addition" pair."""
    many = not isinstance(layer, int)
    layers = [check_layer(la, model.cfg) for la in (layer if many else [layer])]
    pos = [positive] if isinstance(positive, str) else list(positive)
    neg = [negative] if isinstance(negative, str) else list(negative)
    if not pos or not neg or any(not t.strip() for t in [*pos, *neg]):
        raise ValueError("give at least one non-empty prompt on each side")
    vector = _mean_resid(model, pos, layers) - _mean_resid(model, neg, layers)
    return vector if many else vector[0]


def steering_hooks(model: Any, layer: int, vector: torch.Tensor, coefficient: float) -> Hooks:
    """Hooks that add ``coefficient * vector`` to the residual stream entering ``layer`` at
    every position (use with :func:`generate` or ``model.hooks``)."""
    layer = check_layer(layer, model.cfg)
    vector = torch.as_tensor(vector, dtype=torch.float32)
    if vector.shape != (model.cfg.d_model,):
        raise ValueError(f"vector must have shape [{model.cfg.d_model}], got {tuple(vector.shape)}")
    added = (coefficient * vector).to(model.cfg.device)

    def hook(resid, hook=None):
        return resid + added.to(resid.dtype)

    return [(_RESID.format(layer), hook)]


def token_set_log_prob(model: Any, words: Sequence[str]) -> Callable:
    """A measure for :func:`steering_sweep`: the log of the total probability the model puts on
    the first tokens of ``words`` (e.g. ``[" whale", " sea"]``), averaged over positions."""
    ids = sorted({model.to_tokens(w, prepend_bos=False)[0, 0].item() for w in words})
    if not ids:
        raise ValueError("words is empty")
    index = torch.tensor(ids)

    def measure(log_probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return log_probs[..., index.to(log_probs.device)].logsumexp(-1).mean(-1)

    measure.__name__ = f"log P({', '.join(words[:3])}{', ...' if len(words) > 3 else ''})"
    return measure


@dataclass
class SteeringSweep:
    """``effect[layer, coef]`` (the measure, minus its unsteered value) and ``loss[layer, coef]``
    (mean next-token loss on the neutral text, nats) for every layer and coefficient."""

    layers: list[int]
    coefficients: list[float]
    effect: torch.Tensor
    loss: torch.Tensor
    base_loss: float
    base_measure: float
    measure: str

    def to_frame(self):
        import pandas as pd

        rows = [{"layer": la, "coefficient": c, "effect": float(self.effect[i, j]),
                 "loss": float(self.loss[i, j]),
                 "loss_increase": float(self.loss[i, j]) - self.base_loss}
                for i, la in enumerate(self.layers) for j, c in enumerate(self.coefficients)]
        return pd.DataFrame(rows)

    def figure(self):
        """Effect and loss against the coefficient, one line per layer."""
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=2, subplot_titles=(
            f"effect: change in {self.measure}", "loss on neutral text (nats)"))
        for i, layer in enumerate(self.layers):
            for col, values in ((1, self.effect[i]), (2, self.loss[i])):
                fig.add_scatter(x=self.coefficients, y=values.tolist(), mode="lines+markers",
                                name=f"layer {layer}", legendgroup=str(layer),
                                showlegend=col == 1, row=1, col=col)
        fig.add_hline(y=self.base_loss, line_dash="dot", row=1, col=2,
                      annotation_text="unsteered")
        fig.update_xaxes(title_text="coefficient")
        return fig


@torch.no_grad()
def steering_sweep(
    model: Any,
    vectors: Float[torch.Tensor, "layer d_model"],
    layers: Sequence[int],
    coefficients: Sequence[float],
    neutral: Int[torch.Tensor, "batch pos"],
    measure: Callable,
) -> SteeringSweep:
    """Every (layer, coefficient) at once per layer: the neutral batch is repeated once per
    coefficient and each copy gets its own ``coefficient * vectors[layer]`` in one forward
    pass. ``measure(log_probs [batch, pos, vocab], tokens) -> [batch]`` scores the intended
    effect (e.g. :func:`token_set_log_prob`)."""
    layers = [check_layer(la, model.cfg) for la in layers]
    coefs = torch.tensor([float(c) for c in coefficients])
    if len(coefs) == 0 or not layers:
        raise ValueError("give at least one layer and one coefficient")
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    if vectors.shape != (len(layers), model.cfg.d_model):
        raise ValueError(f"vectors must be [len(layers), d_model] = [{len(layers)}, "
                         f"{model.cfg.d_model}], got {tuple(vectors.shape)}")
    tokens = to_tokens(model, neutral)
    batch = tokens.shape[0]
    stacked = tokens.repeat(len(coefs), 1)

    def evaluate(rows, hooks):
        """Mean loss and measure per group of ``batch`` rows."""
        with model.hooks(fwd_hooks=hooks):
            log_probs = model(rows, return_type="logits").float().log_softmax(-1)
        nll = -log_probs[:, :-1].gather(-1, rows[:, 1:, None])[..., 0].mean(-1)
        score = measure(log_probs[:, :-1], rows)
        return (nll.reshape(-1, batch).mean(1).cpu(), score.reshape(-1, batch).mean(1).cpu())

    base_loss, base_score = evaluate(tokens, [])  # unsteered: the neutral batch once
    effect = torch.zeros(len(layers), len(coefs))
    loss = torch.zeros(len(layers), len(coefs))
    per_row = coefs.repeat_interleave(batch).to(model.cfg.device)
    for i, layer in enumerate(layers):
        added = per_row[:, None, None] * vectors[i].to(model.cfg.device)

        def hook(resid, hook=None, added=added):
            return resid + added.to(resid.dtype)

        loss[i], score = evaluate(stacked, [(_RESID.format(layer), hook)])
        effect[i] = score - base_score[0]
    return SteeringSweep(layers, coefs.tolist(), effect, loss, float(base_loss[0]),
                         float(base_score[0]), getattr(measure, "__name__", "measure"))


# ---------------------------------------------------------------- probe-direction intervention


@dataclass
class HeadProbes:
    """A logistic probe per head for a binary attribute, on each head's output ``hook_z`` at
    the last token: ``accuracy[layer, head]`` on held-out texts, ``directions[layer, head]``
    (unit vectors in ``d_head`` space pointing towards the positive class) and ``std[layer,
    head]`` (standard deviation of the activations along them)."""

    accuracy: Float[torch.Tensor, "layer head"]
    directions: Float[torch.Tensor, "layer head d_head"]
    std: Float[torch.Tensor, "layer head"]
    names: list[str]

    def top(self, k: int) -> list[str]:
        order = torch.argsort(self.accuracy.flatten(), descending=True, stable=True)[:k]
        return [self.names[int(i)] for i in order]


@torch.no_grad()
def _last_token_z(model: Any, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """``hook_z`` of every head at each text's last token: ``[text, layer, head, d_head]``;
    texts run in right-padded batches."""
    names = [_Z.format(la) for la in range(model.cfg.n_layers)]
    rows = []
    for tokens, mask in _padded_batches(model, texts, batch_size):
        _, cache = model.run_with_cache(tokens, attention_mask=mask,
                                        names_filter=lambda n: n in names)
        last = mask.sum(1) - 1
        at = torch.arange(len(tokens), device=tokens.device)
        rows.append(torch.stack([cache[n][at, last] for n in names], 1).float().cpu())
    return torch.cat(rows)


def head_probes(model: Any, positive: Sequence[str], negative: Sequence[str], *,
                test_fraction: float = 0.25, l2: float = 1e-2, seed: int = 0) -> HeadProbes:
    """Train one logistic probe per head (all heads as one batched model) to tell
    ``positive`` from ``negative`` texts by the head's output at the last token; accuracy on a
    held-out ``test_fraction`` of each set."""
    from interp_lib.probes import _fit_logistic

    positive, negative = list(positive), list(negative)
    if len(positive) < 4 or len(negative) < 4:
        raise ValueError("give at least 4 texts per class")
    cfg = model.cfg
    z = _last_token_z(model, positive + negative)           # [n, L, H, d]
    y = torch.tensor([1] * len(positive) + [0] * len(negative))
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=gen)
    n_test = max(2, int(round(test_fraction * len(y))))
    test, train = order[:n_test], order[n_test:]
    x = z.reshape(len(y), cfg.n_layers * cfg.n_heads, cfg.d_head).transpose(0, 1)  # [LH, n, d]
    mean = x[:, train].mean(1, keepdim=True)
    std = x[:, train].std(1, keepdim=True).clamp_min(1e-6)
    w, b = _fit_logistic((x[:, train] - mean) / std, y[train], 2, l2, 100)
    logits = torch.baddbmm(b[:, None], (x[:, test] - mean) / std, w)
    accuracy = (logits.argmax(-1) == y[test]).float().mean(1)
    # the direction in the head's own (unstandardised) space that raises the positive logit
    direction = (w[..., 1] - w[..., 0]) / std[:, 0]
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    spread = torch.einsum("hnd,hd->hn", x, direction).std(1)
    shape = (cfg.n_layers, cfg.n_heads)
    return HeadProbes(accuracy.reshape(shape), direction.reshape(*shape, cfg.d_head),
                      spread.reshape(shape),
                      [head_name(la, h) for la in range(cfg.n_layers) for h in range(cfg.n_heads)])


def iti_hooks(model: Any, probes: HeadProbes, heads: Sequence[Any] | str, alpha: float) -> Hooks:
    """Hooks that shift each given head's output (``hook_z``) at every position by
    ``alpha * std * direction`` of its probe (Li et al. 2023)."""
    pairs = parse_heads(heads, model.cfg)
    by_layer: dict[int, list[int]] = {}
    for layer, head in pairs:
        by_layer.setdefault(layer, []).append(head)
    hooks = []
    for layer, heads_here in sorted(by_layer.items()):
        shift = torch.zeros(model.cfg.n_heads, model.cfg.d_head)
        for head in heads_here:
            shift[head] = alpha * probes.std[layer, head] * probes.directions[layer, head]
        shift = shift.to(model.cfg.device)

        def hook(z, hook=None, shift=shift):
            return z + shift.to(z.dtype)

        hooks.append((_Z.format(layer), hook))
    return hooks
