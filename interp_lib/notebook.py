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

__all__ = ["NotebookEnv", "SETUP_CELL", "colab_badge", "fast_mode", "setup_notebook"]

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
