"""Text for experiments: the held-out sample shipped with the course model, cut into windows.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.testing import save_tiny_gpt2
>>> from interp_lib.text import token_windows
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=1)), device="cpu")
>>> windows = token_windows(model, "the cat sat on the mat " * 40, n_windows=3, length=16)
>>> windows.shape, bool((windows[:, 0] == model.tokenizer.bos_token_id).all())
(torch.Size([3, 16]), True)
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Int

__all__ = ["sample_text", "token_windows"]


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


def token_windows(
    model: Any, text: str, n_windows: int, length: int
) -> Int[torch.Tensor, "window length"]:
    """``n_windows`` consecutive, non-overlapping windows of ``text``'s tokens, each BOS +
    ``length - 1`` tokens. Raises if the text is too short for that many."""
    for value, what in ((n_windows, "n_windows"), (length, "length")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive int, got {value!r}")
    if length < 2:
        raise ValueError("length must be at least 2 (BOS and one token)")
    if length > model.cfg.n_ctx:
        raise ValueError(f"length {length} exceeds the model's context of {model.cfg.n_ctx}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is empty")
    ids = model.tokenizer(text)["input_ids"]
    bos = model.tokenizer.bos_token_id
    if ids and ids[0] == bos:
        ids = ids[1:]
    width = length - 1
    available = len(ids) // width
    if available < n_windows:
        raise ValueError(
            f"the text has {len(ids)} tokens: enough for {available} windows of {length}, "
            f"not {n_windows}; ask for fewer or shorter windows"
        )
    body = torch.tensor(ids[: n_windows * width]).reshape(n_windows, width)
    windows = torch.cat([torch.full((n_windows, 1), bos), body], dim=1)
    return windows.to(model.cfg.device)
