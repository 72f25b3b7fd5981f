"""Steering: changing what a model does by adding vectors to its activations (after the CMU
Advanced NLP lecture "Debugging and Understanding NLP Models").

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
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.generation import generate
>>> from interp_lib.steering import steering_hooks
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

from interp_lib import validate
from interp_lib.fitting import Standardiser, fit_logistic, predict
from interp_lib.generation import generate, generate_with_log_probs
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import by_layer, hook_name, only, shift_heads_hook
from interp_lib.inputs import check_layer, head_name, padded_batch, to_tokens
from interp_lib.logprobs import next_token_loss
from interp_lib.validate import check_model

__all__ = [
    "HeadProbes",
    "LatentVector",
    "SteeringSweep",
    "contrastive_vector",
    "decode_latent",
    "fit_latent_vector",
    "head_probes",
    "iti_hooks",
    "steering_hooks",
    "steering_sweep",
    "token_set_log_prob",
]

Hooks = list[tuple[str, Callable]]


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

    return [(hook_name("resid_pre", layer), hook)]


def _check_positions(positions: str) -> str:
    if positions not in ("first", "all"):
        raise ValueError(f"positions must be 'first' or 'all', got {positions!r}")
    return positions


def decode_latent(model: Any, vector: torch.Tensor, layer: int, n_tokens: int, *,
                  positions: str = "all") -> str:
    """Greedy decoding of ``n_tokens`` from BOS alone with ``vector`` added at ``layer``."""
    check_model(model)
    layer = check_layer(layer, model.cfg)
    _check_positions(positions)
    vector = validate.finite_tensor(vector, "vector", shape=(model.cfg.d_model,), dims="[d_model]")
    validate.positive_int(n_tokens, "n_tokens")
    return generate(model, _bos(model), n_tokens, hooks=_latent_hook(layer, vector, positions))


def _bos(model: Any) -> torch.Tensor:
    return torch.tensor([[model.tokenizer.bos_token_id]], device=model.cfg.device)


def _reproduces(model: Any, logits: torch.Tensor, target_ids: torch.Tensor, layer: int,
                vector: torch.Tensor, positions: str) -> bool:
    """Whether greedy decoding from BOS with ``vector`` gives exactly ``target_ids``: first the
    teacher-forced argmax (free: ``logits`` are the step's own), then the decoding itself."""
    if not bool((logits.argmax(-1) == target_ids).all()):
        return False
    hooks = _latent_hook(layer, vector.detach(), positions)
    decoded, _ = generate_with_log_probs(model, _bos(model), len(target_ids), hooks=hooks)
    return decoded[0, 1:].tolist() == target_ids.tolist()


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
    vector is checked, and optimisation stops at the first exact reproduction of the target by
    greedy decoding (``steps`` records when). Greedy decoding reproduces the target exactly
    when the teacher-forced argmax is the target's next token at every position; the next
    step's forward computes those logits anyway, so a check costs nothing unless it passes,
    and then the greedy decoding itself confirms it."""
    check_model(model)
    cfg = model.cfg
    layer = max(1, cfg.n_layers // 2 - 1) if layer is None else check_layer(layer, cfg)
    _check_positions(positions)
    if not isinstance(target, str) or not target.strip():
        raise ValueError("target must be a non-empty string")
    steps = validate.positive_int(steps, "steps")
    lr = validate.finite_float(lr, "lr", positive=True)
    check_every = validate.positive_int(check_every, "check_every")
    validate.nonnegative_int(seed, "seed")
    ids = model.to_tokens(target, prepend_bos=False, truncate=False)[0].tolist()
    if len(ids) + 1 > cfg.n_ctx:
        raise ValueError(f"the target has {len(ids)} tokens; the context is {cfg.n_ctx}")
    bos = model.tokenizer.bos_token_id
    tokens = torch.tensor([[bos, *ids]], device=cfg.device)
    gen = torch.Generator().manual_seed(seed)
    vector = (torch.randn(cfg.d_model, generator=gen) * 1e-3).to(cfg.device).requires_grad_(True)
    optimizer = torch.optim.Adam([vector], lr=lr)
    losses: list[float] = []
    found: int | None = None
    target_ids = tokens[0, 1:]
    for step in range(steps + 1):  # the forward of step s also checks the vector of step s - 1
        with torch.enable_grad(), model.hooks(fwd_hooks=_latent_hook(layer, vector, positions)):
            logits = model(tokens, return_type="logits")[0, :-1]
            loss = torch.nn.functional.cross_entropy(logits.float(), target_ids)
        if ((step > 0 and step % check_every == 0) or step == steps) and _reproduces(
                model, logits.detach(), target_ids, layer, vector, positions):
            found = step
            break
        if step == steps:
            break
        # the gradient of the vector only: the model's weights get none (nothing is
        # accumulated in their .grad, and no time is spent on it)
        (vector.grad,) = torch.autograd.grad(loss, [vector])
        optimizer.step()
        losses.append(loss.item())
    return LatentVector(vector.detach(), layer, positions, target, ids, found, losses)


# ---------------------------------------------------------------- contrastive steering


@torch.no_grad()
def _mean_resid(model: Any, texts: Sequence[str], layers: Sequence[int],
                batch_size: int = 32) -> torch.Tensor:
    """Mean residual stream (over the texts' real tokens after BOS) at each layer:
    ``[layer, d_model]``; texts run in right-padded batches."""
    names = [hook_name("resid_pre", la) for la in layers]
    total = torch.zeros(len(layers), model.cfg.d_model, dtype=torch.float64)
    count = 0
    for tokens, mask in _padded_batches(model, texts, batch_size):
        _, cache = model.run_with_cache(tokens, attention_mask=mask,
                                        names_filter=only(*names),
                                        stop_at_layer=max(layers) + 1)
        real = mask[:, 1:, None].double()  # every real token after BOS
        for i, name in enumerate(names):
            total[i] += (cache[name][:, 1:].double() * real).sum((0, 1)).cpu()
        count += int(real.sum())
    return (total / max(count, 1)).float()


def _padded_batches(model: Any, texts: Sequence[str], batch_size: int):
    """:func:`~interp_lib.inputs.padded_batch` of the texts, ``batch_size`` at a time."""
    for start in range(0, len(texts), batch_size):
        yield padded_batch(model, texts[start: start + batch_size])


def contrastive_vector(
    model: Any,
    positive: str | Sequence[str],
    negative: str | Sequence[str],
    layer: int | Sequence[int],
) -> Float[torch.Tensor, "*layer d_model"]:
    """Mean residual stream of the ``positive`` prompts minus that of the ``negative`` ones
    at ``blocks.{layer}.hook_resid_pre`` (a list of layers gives ``[layer, d_model]``). With one
    prompt on each side this is the classic "activation addition" pair."""
    check_model(model)
    many = not isinstance(layer, int)
    if many and not isinstance(layer, Sequence):
        raise TypeError(f"layer must be an int or a list of ints, got {type(layer).__name__}")
    layers = [check_layer(la, model.cfg) for la in (layer if many else [layer])]
    if not layers:
        raise ValueError("layer is an empty list: give at least one layer")
    pos = validate.texts(positive, "positive", allow_single=True)
    neg = validate.texts(negative, "negative", allow_single=True)
    vector = _mean_resid(model, pos, layers) - _mean_resid(model, neg, layers)
    return vector if many else vector[0]


def steering_hooks(model: Any, layer: int, vector: torch.Tensor, coefficient: float) -> Hooks:
    """Hooks that add ``coefficient * vector`` to the residual stream entering ``layer`` at
    every position (use with :func:`generate` or ``model.hooks``)."""
    check_model(model)
    layer = check_layer(layer, model.cfg)
    vector = validate.finite_tensor(vector, "vector", shape=(model.cfg.d_model,),
                                    dims="[d_model]").float()
    coefficient = validate.finite_float(coefficient, "coefficient")
    added = (coefficient * vector).to(model.cfg.device)

    def hook(resid, hook=None):
        return resid + added.to(resid.dtype)

    return [(hook_name("resid_pre", layer), hook)]


def token_set_log_prob(model: Any, words: Sequence[str]) -> Callable:
    """A measure for :func:`steering_sweep`: the log of the total probability the model puts on
    the first tokens of ``words`` (e.g. ``[" whale", " sea"]``), averaged over positions."""
    check_model(model)
    words = validate.texts(words, "words")
    ids = sorted({model.to_tokens(w, prepend_bos=False, truncate=False)[0, 0].item()
                  for w in words})
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
        from interp_lib.plotting import line_panels

        effect_title = f"effect: change in {self.measure}"
        loss_title = "loss on neutral text (nats)"
        panels = {
            effect_title: {f"layer {la}": self.effect[i] for i, la in enumerate(self.layers)},
            loss_title: {f"layer {la}": self.loss[i] for i, la in enumerate(self.layers)},
        }
        return line_panels(self.coefficients, panels, x_title="coefficient",
                           hlines={loss_title: {self.base_loss: "unsteered"}})


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
    check_model(model)
    if isinstance(layers, int) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a list of layers, got {type(layers).__name__}")
    if isinstance(coefficients, int | float) or not isinstance(coefficients, Sequence):
        raise TypeError("coefficients must be a list of numbers, got "
                        f"{type(coefficients).__name__}")
    layers = [check_layer(la, model.cfg) for la in layers]
    if not layers or not coefficients:
        raise ValueError("give at least one layer and one coefficient")
    coefs = torch.tensor([validate.finite_float(c, "coefficients") for c in coefficients])
    vectors = validate.finite_tensor(vectors, "vectors", shape=(len(layers), model.cfg.d_model),
                                     dims="[len(layers), d_model]").float()
    validate.function(measure, "measure", "(log_probs, tokens) -> [batch]")
    tokens = to_tokens(model, neutral, name="neutral")
    batch = tokens.shape[0]
    stacked = tokens.repeat(len(coefs), 1)

    def evaluate(rows, hooks):
        """Mean loss and measure per group of ``batch`` rows."""
        with model.hooks(fwd_hooks=hooks):
            logits = model(rows, return_type="logits")
        nll = next_token_loss(logits, rows).mean(-1)
        score = measure(logits[:, :-1].float().log_softmax(-1), rows)
        return (nll.reshape(-1, batch).mean(1).cpu(), score.reshape(-1, batch).mean(1).cpu())

    base_loss, base_score = evaluate(tokens, [])  # unsteered: the neutral batch once
    effect = torch.zeros(len(layers), len(coefs))
    loss = torch.zeros(len(layers), len(coefs))
    per_row = coefs.repeat_interleave(batch).to(model.cfg.device)
    for i, layer in enumerate(layers):
        added = per_row[:, None, None] * vectors[i].to(model.cfg.device)

        def hook(resid, hook=None, added=added):
            return resid + added.to(resid.dtype)

        loss[i], score = evaluate(stacked, [(hook_name("resid_pre", layer), hook)])
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
        """The ``k`` heads with the best held-out accuracy, best first."""
        k = validate.int_in_range(k, "k", 1, len(self.names))
        order = torch.argsort(self.accuracy.flatten(), descending=True, stable=True)[:k]
        return [self.names[int(i)] for i in order]

    def grid(self) -> LabelledGrid:
        """The held-out accuracy as a labelled ``[layer, head]`` grid."""
        return LabelledGrid.layer_head(self.accuracy, "held-out probe accuracy")

    def to_frame(self):
        """One row per head: name, layer, head, accuracy and the spread along its direction."""
        frame = self.grid().to_frame()
        frame.insert(0, "name", self.names)
        frame["std"] = self.std.flatten().numpy()
        return frame

    def heatmap(self, title: str | None = None):
        """The ``[layer, head]`` accuracy heatmap."""
        return self.grid().heatmap(title, zmid=None)


@torch.no_grad()
def _last_token_z(model: Any, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """``hook_z`` of every head at each text's last token: ``[text, layer, head, d_head]``;
    texts run in right-padded batches."""
    names = [hook_name("z", la) for la in range(model.cfg.n_layers)]
    rows = []
    for tokens, mask in _padded_batches(model, texts, batch_size):
        _, cache = model.run_with_cache(tokens, attention_mask=mask,
                                        names_filter=only(*names))
        last = mask.sum(1) - 1
        at = torch.arange(len(tokens), device=tokens.device)
        rows.append(torch.stack([cache[n][at, last] for n in names], 1).float().cpu())
    return torch.cat(rows)


def head_probes(model: Any, positive: Sequence[str], negative: Sequence[str], *,
                test_fraction: float = 0.25, l2: float = 1e-2, seed: int = 0) -> HeadProbes:
    """Train one logistic probe per head (all heads as one batched model) to tell
    ``positive`` from ``negative`` texts by the head's output at the last token; accuracy on a
    held-out ``test_fraction`` of each set."""
    check_model(model)
    positive = validate.texts(positive, "positive", min_count=4)
    negative = validate.texts(negative, "negative", min_count=4)
    test_fraction = validate.fraction(test_fraction, "test_fraction")
    l2 = validate.finite_float(l2, "l2", nonnegative=True)
    validate.nonnegative_int(seed, "seed")
    cfg = model.cfg
    z = _last_token_z(model, positive + negative)           # [n, L, H, d]
    y = torch.tensor([1] * len(positive) + [0] * len(negative))
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=gen)
    n_test = max(2, int(round(test_fraction * len(y))))
    test, train = order[:n_test], order[n_test:]
    x = z.reshape(len(y), cfg.n_layers * cfg.n_heads, cfg.d_head).transpose(0, 1)  # [LH, n, d]
    scaler = Standardiser.fit(x[:, train], min_std=1e-6)
    w, b = fit_logistic(scaler(x[:, train]), y[train], 2, l2, 100)
    accuracy = (predict(scaler(x[:, test]), w, b) == y[test]).float().mean(1)
    # the direction in the head's own (unstandardised) space that raises the positive logit
    direction = (w[..., 1] - w[..., 0]) / scaler.std
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    spread = torch.einsum("hnd,hd->hn", x, direction).std(1)
    shape = (cfg.n_layers, cfg.n_heads)
    return HeadProbes(accuracy.reshape(shape), direction.reshape(*shape, cfg.d_head),
                      spread.reshape(shape),
                      [head_name(la, h) for la in range(cfg.n_layers) for h in range(cfg.n_heads)])


def iti_hooks(model: Any, probes: HeadProbes, heads: Sequence[Any] | str, alpha: float) -> Hooks:
    """Hooks that shift each given head's output (``hook_z``) at every position by
    ``alpha * std * direction`` of its probe (Li et al. 2023)."""
    check_model(model)
    if not isinstance(probes, HeadProbes):
        raise TypeError(f"probes must be HeadProbes from head_probes, got {type(probes).__name__}")
    if probes.accuracy.shape != (model.cfg.n_layers, model.cfg.n_heads) or \
            probes.directions.shape[-1] != model.cfg.d_head:
        raise ValueError(f"probes were trained on a model of other sizes "
                         f"({list(probes.directions.shape)} vs this model's "
                         f"[{model.cfg.n_layers}, {model.cfg.n_heads}, {model.cfg.d_head}]); "
                         "train them with this model")
    alpha = validate.finite_float(alpha, "alpha")
    hooks = []
    for layer, heads_here in by_layer(model, heads).items():
        shift = torch.zeros(model.cfg.n_heads, model.cfg.d_head)
        for head in heads_here:
            shift[head] = alpha * probes.std[layer, head] * probes.directions[layer, head]
        hooks.append((hook_name("z", layer), shift_heads_hook(shift.to(model.cfg.device))))
    return hooks
