"""Checks that catch a broken model or a broken evaluation (the CMU Advanced NLP lecture on
debugging NLP models), and a slice analysis of a model's errors.

- :func:`check_batched_loss`: a padded batch (left or right padding, with an attention mask)
  must give every sequence the loss it gets alone.
- :func:`check_generation_score`: the log-probabilities a decoder records while generating
  must equal the scores of the finished sequence under the loss code.
- :func:`check_overfit_tiny`: a tiny model of the course architecture must drive its loss on a
  handful of sequences to about zero, or the training loop is broken.
- :func:`loss_by_slice`: every token's loss with its slices (frequency, position, repeat,
  part of speech), grouped means, a bar chart, and the worst tokens with their context.

Each check takes the piece of code it checks as an argument (``batch_losses=``, ``scorer=``,
``step=``), defaulting to the library's correct version, so a notebook can plant a bug and
watch the check catch it. Each returns a :class:`CheckResult` that says whether it passed,
by how much it missed, and where.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.checks import check_batched_loss
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=1)), device="cpu")
>>> result = check_batched_loss(model, ["The cat sat on the mat.", "A dog."], padding_side="left")
>>> result.passed, result.max_difference < 1e-3
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int

from interp_lib import validate
from interp_lib.generation import generate_with_log_probs
from interp_lib.inputs import padded_batch, to_tokens
from interp_lib.logprobs import next_token_log_probs, next_token_loss
from interp_lib.tiny_models import tiny_neox_config
from interp_lib.validate import check_model

__all__ = [
    "CheckResult",
    "LossSlices",
    "check_batched_loss",
    "check_generation_score",
    "check_overfit_tiny",
    "correct_step",
    "loss_by_slice",
    "padded_sequence_losses",
    "token_log_probs",
]


# ---------------------------------------------------------------- results


@dataclass
class CheckResult:
    """The outcome of one check. ``expected`` and ``got`` are the two computations compared
    (one value per sequence or per step); ``worst`` is the index where they differ most."""

    name: str
    passed: bool
    max_difference: float
    tolerance: float
    worst: int | None
    expected: list[float]
    got: list[float]
    message: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"[{verdict}] {self.name}: {self.message}"

    def to_frame(self):
        import pandas as pd

        n = max(len(self.expected), len(self.got))
        pad = [float("nan")] * n
        expected = (self.expected + pad)[:n]
        got = (self.got + pad)[:n]
        return pd.DataFrame({"expected": expected, "got": got,
                             "difference": np.abs(np.subtract(got, expected))})


def _result(name: str, expected: Sequence[float], got: Sequence[float], tolerance: float,
            what: str, **extra: Any) -> CheckResult:
    expected, got = [float(x) for x in expected], [float(x) for x in got]
    if len(expected) != len(got):
        return CheckResult(name, False, float("inf"), tolerance, None, expected, got,
                           f"{len(got)} {what} where {len(expected)} were expected", extra)
    diffs = np.abs(np.subtract(got, expected))
    worst = int(np.nanargmax(diffs)) if len(diffs) else None
    biggest = float(diffs.max()) if len(diffs) else 0.0
    if np.isnan(diffs).any():
        biggest = float("inf")
    passed = biggest <= tolerance
    message = (f"largest difference {biggest:.2e} (tolerance {tolerance:g})"
               + ("" if passed else f", at {what[:-1] if what.endswith('s') else what} {worst}"))
    return CheckResult(name, passed, biggest, tolerance, worst, expected, got, message, extra)


def _check_texts(texts: Any) -> list[str]:
    return validate.texts(texts, "texts", min_count=2)


# ---------------------------------------------------------------- batched loss


def token_log_probs(model: Any, tokens: Int[torch.Tensor, "batch pos"]
                    ) -> Float[torch.Tensor, "batch pred"]:
    """Log-probability of each token given the ones before it: ``[batch, pos - 1]`` (the
    first token, BOS, is not predicted)."""
    tokens = to_tokens(model, tokens, name="tokens")
    with torch.no_grad():
        return next_token_log_probs(model(tokens, return_type="logits"), tokens)


def padded_sequence_losses(model: Any, texts: Sequence[str], padding_side: str = "right"
                           ) -> Float[torch.Tensor, "batch"]:  # noqa: F821
    """The correct batched computation: each text's summed loss (nats) from one padded batch,
    with the attention mask passed to the model and padded targets left out."""
    tokens, mask = padded_batch(model, texts, padding_side)
    with torch.no_grad():
        logits = model(tokens, attention_mask=mask, return_type="logits")
    return next_token_loss(logits, tokens, mask).sum(-1).cpu()


def check_batched_loss(
    model: Any,
    texts: Sequence[str],
    *,
    padding_side: str = "right",
    batch_losses: Callable[[Any, Sequence[str], str], torch.Tensor] | None = None,
    tolerance: float = 1e-3,
) -> CheckResult:
    """Each text's loss (summed over its tokens, nats) computed alone must equal its loss in
    a padded batch, computed by ``batch_losses(model, texts, padding_side)`` (default
    :func:`padded_sequence_losses`). Padding without an attention mask, counting padded
    targets, or a shifted BOS make them differ; the result names the sequence."""
    check_model(model)
    texts = _check_texts(texts)
    validate.choice(padding_side, "padding_side", ("left", "right"))
    tolerance = validate.finite_float(tolerance, "tolerance", nonnegative=True)
    if batch_losses is not None:
        validate.function(batch_losses, "batch_losses", "(model, texts, padding_side) -> [batch]")
    # BOS explicitly: TransformerLens's default (cfg.default_prepend_bos) differs by model
    alone = [float(-token_log_probs(
        model, model.to_tokens(t, prepend_bos=True, truncate=False)).sum()) for t in texts]
    batched = (batch_losses or padded_sequence_losses)(model, texts, padding_side)
    batched = torch.as_tensor(batched).flatten().tolist()
    return _result(f"batched loss ({padding_side} padding)", alone, batched, tolerance,
                   "sequences")


# ---------------------------------------------------------------- generation score


def check_generation_score(
    model: Any,
    prompt: str,
    max_new_tokens: int = 20,
    *,
    greedy: bool = True,
    seed: int = 0,
    scorer: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    tolerance: float = 1e-3,
) -> CheckResult:
    """Generate after ``prompt``, recording each step's log-prob, then score the finished
    sequence with ``scorer(model, tokens) -> [1, pos - 1] log-probs`` (default
    :func:`token_log_probs`): the scores of the generated tokens must equal the recorded
    ones. An off-by-one in the targets or a forgotten BOS in the scorer make them differ."""
    check_model(model)
    tolerance = validate.finite_float(tolerance, "tolerance", nonnegative=True)
    if scorer is not None:
        validate.function(scorer, "scorer", "(model, tokens) -> [1, pos - 1] log-probs")
    tokens, recorded = generate_with_log_probs(model, prompt, max_new_tokens, greedy=greedy,
                                               seed=seed)
    scores = (scorer or token_log_probs)(model, tokens)
    scores = torch.as_tensor(scores).flatten()
    got = scores[-max_new_tokens:].tolist() if len(scores) >= max_new_tokens else scores.tolist()
    text = model.to_string(tokens[0, -max_new_tokens:])
    return _result("generation score", recorded, got, tolerance, "steps",
                   generated=text, tokens=tokens.cpu())


# ---------------------------------------------------------------- overfitting a tiny model


def correct_step(model: Any, optimizer: torch.optim.Optimizer,
                 tokens: Int[torch.Tensor, "batch pos"]) -> float:
    """One correct training step of a Hugging Face causal LM: next-token loss, zero the
    gradients, backward, step. Returns the loss before the step."""
    logits = model(tokens).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def tiny_course_architecture(vocab_size: int, *, d_model: int = 64, n_layers: int = 2,
                             n_heads: int = 4, n_ctx: int = 64, seed: int = 0):
    """A random-init ``GPTNeoXForCausalLM`` with the course model's architecture (partial
    rotary, sequential residual, tied embeddings) at a tiny size, built in memory."""
    from transformers import GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = tiny_neox_config(vocab_size, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
                              n_ctx=n_ctx, hidden_dropout=0.0, attention_dropout=0.0)
    return GPTNeoXForCausalLM(config)


def check_overfit_tiny(
    model: Any,
    texts: Sequence[str],
    *,
    steps: int = 200,
    lr: float = 1e-2,
    target_loss: float = 0.05,
    step: Callable[[Any, torch.optim.Optimizer, torch.Tensor], float] | None = None,
    length: int = 32,
    seed: int = 0,
) -> CheckResult:
    """Train a tiny random model of the course architecture (with ``model``'s tokenizer) on
    ``texts`` (a handful, each cut to ``length`` tokens) for ``steps`` steps of ``step``
    (default :func:`correct_step`, Adam). A correct training loop memorises them: the last
    loss (on every target after the first, which follows BOS in every sequence and so is
    ambiguous) must be below ``target_loss``. ``expected``/``got`` hold 0 and the final loss;
    ``extra["losses"]`` the whole training curve."""
    check_model(model)
    texts = _check_texts(texts)
    steps = validate.positive_int(steps, "steps")
    lr = validate.finite_float(lr, "lr", positive=True)
    target_loss = validate.finite_float(target_loss, "target_loss", positive=True)
    length = validate.int_in_range(length, "length", 4, model.cfg.n_ctx)
    validate.nonnegative_int(seed, "seed")
    if step is not None:
        validate.function(step, "step", "(model, optimizer, tokens) -> float")
    rows = [model.to_tokens(t, truncate=False)[0, :length].cpu() for t in texts]
    width = min(len(r) for r in rows)
    if width < 4:
        raise ValueError("every text needs at least 3 tokens after BOS")
    tokens = torch.stack([r[:width] for r in rows])
    tiny = tiny_course_architecture(model.cfg.d_vocab, n_ctx=max(64, width), seed=seed)
    tiny.train()
    optimizer = torch.optim.Adam(tiny.parameters(), lr=lr)
    losses = []
    with torch.enable_grad():
        for _ in range(steps):
            losses.append(float((step or correct_step)(tiny, optimizer, tokens)))
    with torch.no_grad():
        tiny.eval()
        logits = tiny(tokens).logits
        # from the second target on: the first is predicted from BOS alone, the same for every
        # sequence, so with n sequences its loss cannot fall below log(n)
        final = float(torch.nn.functional.cross_entropy(
            logits[:, 1:-1].reshape(-1, logits.shape[-1]), tokens[:, 2:].reshape(-1)))
    result = _result(f"overfit {len(texts)} sequences in {steps} steps", [0.0], [final],
                     target_loss, "runs", losses=losses, start_loss=losses[0])
    result.message = (f"loss {losses[0]:.3f} -> {final:.4f} (must end below {target_loss:g})")
    return result


# ---------------------------------------------------------------- loss by slice


FREQUENCY_BUCKETS = ((0, "unseen"), (1, "1-9"), (10, "10-99"), (100, "100-999"),
                     (1000, "1000+"))
POSITION_BUCKETS = ((1, "1-7"), (8, "8-31"), (32, "32-127"), (128, "128+"))


def _bucket(value: int, buckets: Sequence[tuple[int, str]]) -> str:
    label = buckets[0][1]
    for low, name in buckets:
        if value >= low:
            label = name
    return label


@dataclass
class LossSlices:
    """Per-token losses with their slices; ``frame`` has one row per predicted token."""

    frame: Any  # pandas.DataFrame
    slices: list[str]

    def by(self, slice_name: str):
        """Mean loss, accuracy and count per value of one slice (buckets in their order)."""
        validate.choice(slice_name, "slice_name", self.slices)
        grouped = self.frame.groupby(slice_name, sort=True, observed=True)
        table = grouped.agg(tokens=("loss", "size"), mean_loss=("loss", "mean"),
                            accuracy=("correct", "mean")).reset_index()
        return table

    def figure(self, slice_name: str, title: str | None = None):
        """A bar chart of the mean loss per value of one slice, with token counts."""
        from interp_lib.plotting import bar

        table = self.by(slice_name)
        label = slice_name.replace("_", " ")
        return bar(table[slice_name].astype(str), table["mean_loss"].to_numpy(),
                   text=[f"n={n}" for n in table["tokens"]],
                   title=title or f"Mean loss by {label}", x_title=label,
                   y_title="mean loss (nats)")

    def worst(self, k: int = 10):
        """The ``k`` tokens with the highest loss, each with the tokens before it (as many as
        :func:`loss_by_slice` was given as ``context``) and the model's top guess, for
        reading."""
        k = validate.int_in_range(k, "k", 1, len(self.frame))
        rows = self.frame.nlargest(k, "loss")
        return rows[["window", "position", "context", "token", "guess", "loss", *[
            s for s in self.slices if s not in ("position_bucket",)]]].reset_index(drop=True)


def loss_by_slice(
    model: Any,
    windows: Int[torch.Tensor, "window pos"],
    *,
    reference_text: str | None = None,
    pos_tags: bool | None = None,
    context: int = 8,
    batch_size: int = 8,
) -> LossSlices:
    """Every predicted token's loss in ``windows`` (from :func:`interp_lib.data.token_windows`)
    with its slices: ``frequency`` (how often the token occurs in ``reference_text``; default
    the course's held-out sample text when shipped, else the windows), ``position_bucket``,
    ``repeat`` (first occurrence in its window or a repeat) and, when spaCy is installed
    (``pos_tags=None``: use it if available), ``pos`` (the coarse part of speech of the word
    the token belongs to)."""
    import pandas as pd

    from interp_lib.tagging import spacy_available

    check_model(model)
    validate.nonnegative_int(context, "context")
    batch_size = validate.positive_int(batch_size, "batch_size")
    if pos_tags is not None:
        validate.flag(pos_tags, "pos_tags")
    if reference_text is not None and (not isinstance(reference_text, str)
                                       or not reference_text.strip()):
        raise ValueError("reference_text must be a non-empty string or None")
    windows = to_tokens(model, windows, name="windows")
    if windows.shape[1] < 2:
        raise ValueError("windows need at least 2 tokens (BOS and one to predict)")
    if pos_tags is None:
        pos_tags = spacy_available()
    log_probs, guesses = [], []
    with torch.no_grad():
        for chunk in windows.split(batch_size):
            logits = model(chunk, return_type="logits")
            log_probs.append(next_token_log_probs(logits, chunk).cpu())
            guesses.append(logits[:, :-1].argmax(-1).cpu())
    log_probs, guesses = torch.cat(log_probs), torch.cat(guesses)
    ids = windows.cpu()
    if reference_text is None:
        from interp_lib.data import sample_text

        try:
            reference_text = sample_text()
        except FileNotFoundError:
            reference_text = None
    if reference_text is None:
        counts = torch.bincount(ids[:, 1:].flatten(), minlength=model.cfg.d_vocab)
    else:
        ref = torch.tensor(model.tokenizer(reference_text)["input_ids"])
        counts = torch.bincount(ref, minlength=model.cfg.d_vocab)
    used = sorted(set(ids.flatten().tolist()) | set(guesses.flatten().tolist()))
    decode = dict(zip(used, _token_strings(model.tokenizer, used), strict=True))
    records = []
    for w in range(ids.shape[0]):
        seen: set[int] = set()
        row = ids[w].tolist()
        pos_of = _pos_tags_of_window(model, row) if pos_tags else None
        for p in range(1, len(row)):
            token = row[p]
            records.append({
                "window": w, "position": p, "token": decode[token],
                "guess": decode[int(guesses[w, p - 1])],
                "context": "".join(decode[t] for t in row[max(1, p - context): p]),
                "loss": -float(log_probs[w, p - 1]),
                "correct": bool(guesses[w, p - 1] == token),
                "frequency": _bucket(int(counts[token]), FREQUENCY_BUCKETS),
                "position_bucket": _bucket(p, POSITION_BUCKETS),
                "repeat": "repeat" if token in seen else "first occurrence",
                **({"pos": pos_of[p]} if pos_of else {}),
            })
            seen.add(token)
    frame = pd.DataFrame.from_records(records)
    order = {"frequency": [b for _, b in FREQUENCY_BUCKETS],
             "position_bucket": [b for _, b in POSITION_BUCKETS]}
    for name, values in order.items():
        frame[name] = pd.Categorical(frame[name], categories=values, ordered=True)
    slices = ["frequency", "position_bucket", "repeat"] + (["pos"] if pos_tags else [])
    return LossSlices(frame, slices)


def _token_strings(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each id's text; an id the tokenizer does not have (a model whose vocabulary is padded
    past its tokenizer's) is named as such rather than decoded to something else."""
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return [f"<id {i}: not in the tokenizer>" if piece is None
            else tokenizer.convert_tokens_to_string([piece]) for i, piece in zip(ids, pieces,
                                                                                 strict=True)]


def _pos_tags_of_window(model: Any, row: list[int]) -> list[str]:
    """Coarse POS of the word each token of a BOS-led window belongs to (``"-"`` for BOS and
    tokens outside any word)."""
    from interp_lib.tagging import tag_sentences, token_word_index

    pieces = [model.tokenizer.decode([t]) for t in row[1:]]
    text = "".join(pieces)
    if not text.strip():
        return ["-"] * len(row)
    spans, start = [], 0
    for piece in pieces:
        begin = start
        while begin < start + len(piece) and text[begin].isspace():
            begin += 1
        spans.append((begin, start + len(piece)))
        start += len(piece)
    tagged = tag_sentences([text], cache_dir="")[0]
    index = token_word_index(spans, tagged.spans)
    return ["-"] + [tagged.pos[i] if i >= 0 else "-" for i in index]
