"""The course's data, in one place: held-out text, probe and topic sentences, repeated tokens.

- :func:`sample_text` and :func:`token_windows`: the held-out English sample shipped with the
  course model, and consecutive windows of its tokens.
- :func:`probe_sentences` (2000 sentences) and :func:`topic_sentences` (``"sea"`` and
  ``"state"`` sentences), shipped in this folder (made by ``scripts/make_probe_sentences.py``
  from held-out documents of the course model's corpus: public-domain State of the Union
  addresses and *Moby-Dick*).
- :func:`repeated_tokens`: BOS + ``n`` random tokens + the same ``n`` again (ARENA 1.2's test
  bed for induction heads); :func:`repeat_period` reads ``n`` back and refuses anything else.

Everything is text or token ids, so it works whichever model is loaded.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.data import repeat_period, repeated_tokens, token_windows
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=1)), device="cpu")
>>> windows = token_windows(model, "the cat sat on the mat " * 40, n_windows=3, length=16)
>>> windows.shape, bool((windows[:, 0] == model.tokenizer.bos_token_id).all())
(torch.Size([3, 16]), True)
>>> repeat_period(repeated_tokens(model, n=5, batch=2))
5
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int

from interp_lib import validate
from interp_lib.validate import check_model

__all__ = [
    "NotEnoughTextError",
    "probe_sentences",
    "repeat_period",
    "repeated_tokens",
    "sample_text",
    "token_windows",
    "topic_sentences",
]

_HERE = Path(__file__).resolve().parent


def sample_text() -> str:
    """The held-out English sample shipped with the course model (public domain; never seen in
    its training). Works whichever model is loaded: it is only text."""
    from interp_lib.models import course_model_dir

    path = course_model_dir() / "heldout_sample.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: this copy of interp_lib ships no course model. Reinstall the "
            "course package (`pip install -e .` in the checkout) or pass your own text."
        )
    return path.read_text(encoding="utf-8")


class NotEnoughTextError(ValueError):
    """The text has fewer tokens than the windows asked for; ``available`` says how many
    windows it does have."""

    def __init__(self, message: str, available: int):
        super().__init__(message)
        self.available = available


def token_windows(
    model: Any, text: str, n_windows: int, length: int
) -> Int[torch.Tensor, "window length"]:
    """``n_windows`` consecutive, non-overlapping windows of ``text``'s tokens, each BOS +
    ``length - 1`` tokens. Raises :class:`NotEnoughTextError` (with ``.available``) if the
    text is too short for that many."""
    check_model(model)
    n_windows = validate.positive_int(n_windows, "n_windows")
    length = validate.int_in_range(length, "length", 2, model.cfg.n_ctx)
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty (or only whitespace)")
    ids = model.tokenizer(text)["input_ids"]
    bos = model.tokenizer.bos_token_id
    if ids and ids[0] == bos:
        ids = ids[1:]
    width = length - 1
    available = len(ids) // width
    if available < n_windows:
        raise NotEnoughTextError(
            f"the text has {len(ids)} tokens: enough for {available} windows of {length}, "
            f"not n_windows={n_windows}; ask for fewer or shorter windows", available)
    body = torch.tensor(ids[: n_windows * width]).reshape(n_windows, width)
    windows = torch.cat([torch.full((n_windows, 1), bos), body], dim=1)
    return windows.to(model.cfg.device)


def _read_lines(name: str) -> list[str]:
    path = _HERE / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the course package "
                                "(`pip install -e .` in the checkout)")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def probe_sentences(n: int | None = None) -> list[str]:
    """The first ``n`` (default all 2000) shipped probe sentences."""
    lines = _read_lines("probe_sentences.txt")
    if n is not None:
        lines = lines[: validate.positive_int(n, "n")]
    return lines


def topic_sentences() -> dict[str, list[str]]:
    """The shipped sentences by topic: ``{"sea": [...], "state": [...]}`` (*Moby-Dick* and the
    State of the Union addresses, held out from the course model's training; 220 each)."""
    out: dict[str, list[str]] = {}
    for line in _read_lines("topic_sentences.tsv"):
        topic, sentence = line.split("\t", 1)
        out.setdefault(topic, []).append(sentence)
    return out


def _bos_id(model: Any) -> int:
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    if bos is None:
        raise ValueError(
            "the model's tokenizer has no BOS token; repeated_tokens needs one to start each "
            "sequence (pass your own token tensor to the scoring functions instead)"
        )
    return int(bos)


def repeated_tokens(
    model: Any, n: int = 50, batch: int = 8, seed: int = 0
) -> Int[torch.Tensor, "batch seq"]:
    """``batch`` sequences of BOS + ``n`` random tokens + the same ``n`` tokens again.

    Tokens are drawn uniformly from the tokenizer's vocabulary, leaving out special tokens,
    with a ``torch.Generator`` seeded by ``seed`` (same seed, same tokens, on any device).
    The result has ``2 * n + 1`` positions and lives on the model's device.
    """
    check_model(model)
    n = validate.positive_int(n, "n")
    batch = validate.positive_int(batch, "batch")
    validate.nonnegative_int(seed, "seed")
    if 2 * n + 1 > model.cfg.n_ctx:
        raise ValueError(
            f"n={n}: 2 * n + 1 = {2 * n + 1} tokens exceed the model's context of "
            f"{model.cfg.n_ctx}; use n <= {(model.cfg.n_ctx - 1) // 2}"
        )
    bos = _bos_id(model)
    size = min(model.cfg.d_vocab, len(model.tokenizer))
    allowed = torch.ones(size, dtype=torch.bool)
    special = [i for i in model.tokenizer.all_special_ids if i is not None and 0 <= i < size]
    allowed[special + [bos]] = False
    candidates = allowed.nonzero()[:, 0]
    gen = torch.Generator().manual_seed(seed)
    half = candidates[torch.randint(len(candidates), (batch, n), generator=gen)]
    tokens = torch.cat([torch.full((batch, 1), bos), half, half], dim=1)
    return tokens.to(model.cfg.device)


def repeat_period(tokens: Int[torch.Tensor, "batch seq"]) -> int:
    """``n`` of BOS + ``n`` tokens + the same ``n`` tokens; anything else is refused."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        raise TypeError("tokens must be a [batch, seq] token tensor from repeated_tokens")
    length = tokens.shape[1]
    n = (length - 1) // 2
    if length < 3 or length % 2 == 0 or not torch.equal(tokens[:, 1: n + 1], tokens[:, n + 1:]):
        raise ValueError(
            "tokens are not BOS + n tokens + the same n tokens (shape "
            f"{list(tokens.shape)}); make them with repeated_tokens(model, n, batch)"
        )
    return n
