"""What every notebook's setup cell calls: renderers, seeds, and where we are running.

>>> from interp_lib.notebook import fast_mode
>>> isinstance(fast_mode(), bool)
True
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["NotebookEnv", "SETUP_CELL", "colab_badge", "fast_mode", "setup_notebook", "sized"]

FAST_ENV = "INTERP_FAST"
#: GitHub owner/name of the course repository (Colab badges and the Colab install use it).
REPOSITORY = "interp-course/interp-course"

#: The first code cell of every notebook (tests/test_notebooks_format.py checks each one).
SETUP_CELL = f"""\
# Setup, the same in every notebook. In Colab: install the course package from its repository,
# nothing else (Colab keeps its own torch and numpy). On your machine, `make course` (or
# `python scripts/install.py`) in the checkout has installed it already.
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("interp_lib") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "interp-course @ git+https://github.com/{REPOSITORY}"], check=True)

import interp_lib

env = interp_lib.setup_notebook(seed=0)"""


def colab_badge(notebook_path: str) -> str:
    """Markdown for the "Open in Colab" badge of a notebook at ``notebook_path`` in the repo."""
    url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/{notebook_path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


#: The course model's shape: the sizes a notebook names are for it, on a CPU.
COURSE_SHAPE = {"n_layers": 4, "d_model": 256, "d_vocab": 8192}


def _cost(cfg: Any, per: str) -> float:
    if per == "vocab":   # decoding every site over the vocabulary (the logit lens)
        return cfg.n_layers * cfg.d_model * cfg.d_vocab
    if per == "forward":  # one forward pass: the blocks and the unembedding
        return cfg.n_layers * 12 * cfg.d_model ** 2 + cfg.d_model * cfg.d_vocab
    raise ValueError(f"per must be 'forward' or 'vocab', got {per!r}")


def sized(full: int, fast: int, model: Any, *, per: str = "forward", minimum: int = 1
          ) -> tuple[int, str]:
    """How many items (windows, sentences, sequences) a heavy cell uses, and a note saying
    why: ``fast`` in fast mode (``INTERP_FAST=1``), else ``full``; on a model that costs more
    per item than the course model (GPT-2 small: about 20x per forward pass on a CPU) the
    count shrinks in proportion, and on a GPU it stays at ``full``. The note goes into the
    notebook's printed line, so a reader knows which sizes ran.

    >>> class Cfg: n_layers, d_model, d_vocab, device = 4, 256, 8192, "cpu"
    >>> class Model: cfg = Cfg
    >>> sized(64, 16, Model)[0] in (16, 64)
    True
    """
    cfg = model.cfg
    if fast_mode():
        return fast, f"{fast} (fast mode; {full} in a full run)"
    if str(getattr(cfg, "device", "cpu")).startswith("cuda"):
        return full, f"{full} (full size, GPU)"
    ratio = _cost(cfg, per) / _cost(type("C", (), COURSE_SHAPE), per)
    if ratio <= 1.5:
        return full, f"{full} (full size)"
    n = max(minimum, int(round(full / ratio)))
    return n, f"{n} (full size {full}, scaled down {ratio:.0f}x for this model's size on a CPU)"


def fast_mode() -> bool:
    """True when ``INTERP_FAST=1``: heavy cells use smaller sizes (CI sets it) and say so."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class NotebookEnv:
    """Where a notebook runs, as :func:`setup_notebook` found it."""

    colab: bool
    plotly_renderer: str
    circuitsvis_mode: str
    fast: bool
    seed: int

    def summary(self) -> str:
        place = "Colab" if self.colab else "local kernel"
        return (
            f"[interp_lib] {place}; plotly renderer: {self.plotly_renderer}; "
            f"circuitsvis: {self.circuitsvis_mode}; fast mode: {self.fast}; seed: {self.seed}"
        )


def setup_notebook(seed: int = 0, *, grad: bool = False, quiet: bool = False) -> NotebookEnv:
    """Configure plotly and circuitsvis for this place, seed the RNGs, set autograd.

    Args:
        seed: seeds ``random``, numpy and torch.
        grad: whether torch records gradients (off by default: most cells only read
            activations; notebooks that need gradients turn it on where they do).
        quiet: do not print the one-line summary.
    """
    import numpy as np
    import torch

    from interp_lib.plotting import configure_plotly
    from interp_lib.vis import choose_mode

    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_grad_enabled(grad)
    env = NotebookEnv(
        colab="google.colab" in sys.modules,
        plotly_renderer=configure_plotly(),
        circuitsvis_mode=choose_mode(),
        fast=fast_mode(),
        seed=seed,
    )
    if not quiet:
        print(env.summary())
    return env
