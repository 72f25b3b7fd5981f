"""Session-wide test setup, run once in pytest's main process (before xdist workers start,
so they and the notebook kernels they launch inherit the environment it sets).

The notebooks' model is chosen here as ``python -m tools.course`` chooses it and passed to
every kernel through ``INTERP_MODEL``: offline, with no course model shipped and gpt2-small not
cached, that is a tiny random-init GPT-2 in a temporary directory. Heavy notebook cells run at
their small CI size (``INTERP_FAST=1``). pytest's header says what was chosen.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_model_line: list[str] = []


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # workers inherit what the main process exported
    from tools.course import prepare_environment

    os.environ.setdefault("INTERP_CIRCUITSVIS_MODE", "once")
    os.environ.setdefault("INTERP_FAST", "1")
    build = Path(tempfile.mkdtemp(prefix="interp-course-tests-"))
    _model_line.append(prepare_environment(build))


def pytest_report_header(config):
    return [f"course notebooks: {line}" for line in _model_line]
