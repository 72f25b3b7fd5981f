"""Every exercise is checked, and every check can fail.

For each master notebook (``notebooks/NN_*.ipynb``): its exercises are found (a solution cell
between nbgrader's markers, followed by its check); each check must pass on the master's
solution and fail with its own message (an ``ExerciseFailed``, never another error) on the
student's stub and on a planted wrong solution, on the course model and on a tiny GPT-2. The
student versions in ``exercises/`` must be what ``tools.exercises`` writes from the masters.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import nbformat
import pytest

from interp_lib.exercises import PRELUDE, ExerciseFailed
from tools.exercises import BEGIN, exercises_of, student_version

ROOT = Path(__file__).resolve().parent.parent
MASTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = [ex for path in MASTERS for ex in exercises_of(nbformat.read(path, as_version=4),
                                                           path.name)]

PLANTED_DIR = Path(__file__).resolve().parent / "planted"


def _planted() -> dict[str, str]:
    """Planted wrong solutions, one file per notebook (``tests/planted/<module>.py``, each
    with a ``PLANTED = {function: source}`` dict): a likely mistake each check must catch."""
    found: dict[str, str] = {}
    for path in sorted(PLANTED_DIR.glob("*.py")):
        namespace: dict = {}
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)  # noqa: S102
        found.update(namespace["PLANTED"])
    return found


PLANTED = _planted()
_IMPORT = re.compile(r"from (interp_lib\.exercises\.\w+) import")


def _module(notebook: str):
    """The check module a master notebook imports its checks from."""
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    found = {m for c in nb.cells if c.cell_type == "code" for m in _IMPORT.findall(c.source)}
    assert len(found) == 1, f"{notebook}: import the checks from one interp_lib.exercises module"
    return importlib.import_module(found.pop())


def _define(source: str, name: str):
    namespace: dict = {}
    exec(compile(PRELUDE + source, f"<{name}>", "exec"), namespace)  # noqa: S102 - test code
    return namespace[name]


@pytest.fixture(params=["course", "tiny_model"])
def model(request):
    if request.param == "tiny_model":
        return request.getfixturevalue("tiny_model")
    from interp_lib import course_model_available, load_model

    if not course_model_available():
        pytest.skip("the course model is not shipped in this copy")
    return _course_model(load_model)


_CACHE: dict = {}


def _course_model(load_model):
    if "course" not in _CACHE:
        _CACHE["course"] = load_model("course", device="cpu")
    return _CACHE["course"]


@pytest.fixture(autouse=True)
def _gradients_off_as_in_a_notebook():
    """Notebooks run with gradients off (``setup_notebook``); so do the checks here."""
    import torch

    before = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    yield
    torch.set_grad_enabled(before)


def _ids(exercises):
    return [f"{ex.notebook[:2]}-{ex.function}" for ex in exercises]


def test_every_notebook_has_at_least_four_exercises_and_the_course_36():
    by_notebook: dict[str, int] = {}
    for ex in EXERCISES:
        by_notebook[ex.notebook] = by_notebook.get(ex.notebook, 0) + 1
    assert set(by_notebook) == {p.name for p in MASTERS}, "a notebook has no exercise"
    assert min(by_notebook.values()) >= 4, by_notebook
    assert len(EXERCISES) >= 36, len(EXERCISES)


@pytest.mark.parametrize("path", MASTERS, ids=[p.name for p in MASTERS])
def test_each_exercise_is_introduced_with_ratings_and_hints(path):
    nb = nbformat.read(path, as_version=4)
    for ex in exercises_of(nb, path.name):
        intro = next(c for c in reversed(nb.cells[: ex.solution_cell])
                     if c.cell_type == "markdown")
        text = intro.source
        assert re.search(r"### Exercise \d+\.\d+ · ", text), f"{ex.function}: a titled exercise"
        for field in ("**Difficulty**", "**Importance**", "**Time**"):
            assert field in text, f"{ex.function}: {field} missing"
        assert "<summary>Hint" in text, f"{ex.function}: at least one hint"
        assert f"`{ex.function}(" in text, f"{ex.function}: the prose names the function"


@pytest.mark.parametrize("ex", EXERCISES, ids=_ids(EXERCISES))
def test_the_solution_passes_its_check(ex, model, capsys):
    check = getattr(_module(ex.notebook), f"check_{ex.function}")
    check(_define(ex.solution, ex.function), model)
    assert "✔" in capsys.readouterr().out


@pytest.mark.parametrize("ex", EXERCISES, ids=_ids(EXERCISES))
def test_the_stub_fails_with_the_checks_own_message(ex, model):
    assert BEGIN not in ex.stub and "raise NotImplementedError()" in ex.stub
    check = getattr(_module(ex.notebook), f"check_{ex.function}")
    with pytest.raises(ExerciseFailed, match="is not written yet"):
        check(_define(ex.stub, ex.function), model)


@pytest.mark.parametrize("ex", EXERCISES, ids=_ids(EXERCISES))
def test_a_planted_wrong_solution_fails(ex, model):
    assert ex.function in PLANTED, f"plant a wrong solution of {ex.function} in PLANTED"
    check = getattr(_module(ex.notebook), f"check_{ex.function}")
    with pytest.raises(ExerciseFailed) as failure:
        check(_define(PLANTED[ex.function], ex.function), model)
    message = str(failure.value)
    assert "is not written yet" not in message and len(message) < 600
    from interp_lib.hooks import attached_hooks

    assert attached_hooks(model) == {}, "a check must leave no hook behind"


@pytest.mark.parametrize("path", MASTERS, ids=[p.name for p in MASTERS])
def test_student_versions_are_current(path):
    target = ROOT / "exercises" / path.name
    assert target.is_file(), f"run `python -m tools.exercises` to write {target.name}"
    assert target.read_text(encoding="utf-8") == nbformat.writes(student_version(path)) + "\n"
    student = nbformat.read(target, as_version=4)
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    assert BEGIN not in code
    assert code.count("raise NotImplementedError()") == len(exercises_of(
        nbformat.read(path, as_version=4), path.name))
