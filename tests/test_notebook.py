"""setup_notebook, and the format every course notebook must keep."""

import json
import re
from pathlib import Path

import pytest
import torch

from interp_lib.notebook import SETUP_CELL, colab_badge, fast_mode, setup_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


def test_setup_seeds_and_sets_autograd(capsys):
    before = torch.is_grad_enabled()
    try:
        env = setup_notebook(seed=3)
        a = torch.rand(3)
        assert not torch.is_grad_enabled()
        setup_notebook(seed=3, grad=True, quiet=True)
        assert torch.equal(a, torch.rand(3))
        assert torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(before)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "circuitsvis" in out
    assert env.seed == 3 and env.circuitsvis_mode in ("cdn", "once", "inline")


def test_setup_rejects_a_non_integer_seed():
    with pytest.raises(TypeError, match="seed"):
        setup_notebook(seed="0")


def test_fast_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("INTERP_FAST", "1")
    assert fast_mode()
    monkeypatch.setenv("INTERP_FAST", "0")
    assert not fast_mode()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_format(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), "name notebooks NN_topic.ipynb"
    cells = nb["cells"]
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown"
    assert colab_badge(f"notebooks/{path.name}") in first, "first cell: this notebook's badge"
    assert "What you will learn" in first
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "".join(code[0]["source"]) == SETUP_CELL, "first code cell: the standard setup cell"
    assert any("assert " in "".join(c["source"]) for c in code), "claims are checked by asserts"
    for cell in code:  # committed stripped (nbstripout)
        assert cell["outputs"] == [] and cell["execution_count"] is None
    assert "widgets" not in nb["metadata"]
