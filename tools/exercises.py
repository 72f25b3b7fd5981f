"""Write the student versions of the course's notebooks from the masters.

Each notebook in ``notebooks/`` is the master: it holds every exercise's solution between
nbgrader's markers, ``### BEGIN SOLUTION`` and ``### END SOLUTION``, and runs end to end in CI
with the solutions in. The student version, ``exercises/NN_name.ipynb``, is the same notebook
with

- each solution region replaced by nbgrader's stub (``# YOUR CODE HERE`` /
  ``raise NotImplementedError()``, indented like the markers), by nbgrader's own
  ``ClearSolutions`` preprocessor;
- the master's solution shown after the exercise's check, folded in a ``<details>`` block
  (so a student who is stuck can look, and the solution shown is always the one CI ran);
- every region between ``### BEGIN HIDDEN`` and ``### END HIDDEN`` removed (a cell that holds
  nothing else is dropped);
- the Colab badge pointing at the student version.

Student versions are generated, committed, and checked to be current: ``python -m
tools.exercises`` writes them, ``python -m tools.exercises --check`` (run by ``make lint``)
fails if one differs from what the masters give. Never edit them by hand.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MASTERS = ROOT / "notebooks"
STUDENT = ROOT / "exercises"

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN", "### END HIDDEN"
_CHECK = re.compile(r"\bcheck_(\w+)\(")
_DEF = re.compile(r"^def (\w+)\(", re.M)


@dataclass
class Exercise:
    """One exercise of a master notebook: the function the student writes, the cell that
    holds its solution and the check that follows it."""

    notebook: str
    function: str
    solution_cell: int
    check_cell: int
    solution: str   # the master's cell source (markers removed)
    stub: str       # the student's cell source


def _without_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n")
                     if BEGIN not in line and END not in line)


def _strip_hidden(source: str) -> str:
    out, hidden = [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            hidden = True
            continue
        if END_HIDDEN in line:
            hidden = False
            continue
        if not hidden:
            out.append(line)
    return "\n".join(out).strip("\n")


def clear_solutions(source: str) -> str:
    """``source`` with its solution regions replaced by nbgrader's stub (``ClearSolutions``)."""
    import nbformat
    from nbgrader.preprocessors import ClearSolutions

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"language": "python", "name": "python3",
                                 "display_name": "Python 3"}
    cleared, _ = ClearSolutions(enforce_metadata=False).preprocess(nb, {})
    return cleared.cells[0].source


def exercises_of(nb, name: str) -> list[Exercise]:
    """The exercises of a master notebook, in order. Raises if a solution cell has no check
    after it, or defines no function."""
    found = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or BEGIN not in cell.source:
            continue
        functions = _DEF.findall(cell.source)
        if not functions:
            raise ValueError(f"{name}, cell {i}: a solution cell must define the function "
                             "the student writes")
        check = next((j for j in range(i + 1, len(cells)) if cells[j].cell_type == "code"
                      and _CHECK.search(cells[j].source)), None)
        if check is None or _CHECK.search(cells[check].source).group(1) != functions[-1]:
            raise ValueError(f"{name}, cell {i}: the solution of {functions[-1]} must be "
                             f"followed by its check, check_{functions[-1]}({functions[-1]}, ...)")
        found.append(Exercise(name, functions[-1], i, check, _without_markers(cell.source),
                              clear_solutions(cell.source)))
    return found


def student_version(master_path: Path):
    """The student version of one master notebook (an ``nbformat`` notebook)."""
    import nbformat

    master = nbformat.read(master_path, as_version=4)
    name = master_path.name
    exercises = {e.check_cell: e for e in exercises_of(master, name)}
    by_solution = {e.solution_cell: e for e in exercises.values()}
    nb = copy.deepcopy(master)
    cells = []
    for i, cell in enumerate(nb.cells):
        if BEGIN_HIDDEN in cell.source:
            cell.source = _strip_hidden(cell.source)
            if not cell.source.strip():
                continue
        if i in by_solution:
            cell.source = by_solution[i].stub
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(f"notebooks/{name}", f"exercises/{name}")
        cells.append(cell)
        if i in exercises:
            ex = exercises[i]
            body = _strip_hidden(ex.solution)
            cells.append(nbformat.v4.new_markdown_cell(
                f"<details><summary>Solution: <code>{ex.function}</code></summary>\n\n"
                f"```python\n{body}\n```\n\n</details>"))
    for index, cell in enumerate(cells):  # ids numbered as nbstripout numbers them
        cell.id = str(index)
    nb.cells = cells
    nb.metadata.pop("celltoolbar", None)
    return nb


def _render(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.exercises", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail if a student version is missing or stale")
    parser.add_argument("notebooks", nargs="*", help="masters (default: notebooks/*.ipynb)")
    args = parser.parse_args(argv)
    masters = [Path(p) for p in args.notebooks] or sorted(MASTERS.glob("[0-9][0-9]_*.ipynb"))
    stale = []
    for master in masters:
        text = _render(student_version(master))
        target = STUDENT / master.name
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(str(target.relative_to(ROOT)))
            continue
        STUDENT.mkdir(exist_ok=True)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print("student versions out of date (run `python -m tools.exercises`):\n  "
              + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
