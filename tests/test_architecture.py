"""The floors of ARCHITECTURE.md, checked: no module of interp_lib reaches into another
module's private (underscore) names, build tools stay out of the package, and the import
contract in pyproject.toml holds (import-linter)."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "interp_lib"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        yield name, path


def _private_imports(name: str, path: Path):
    """``(line, imported module, private name)`` for every import of an underscore name from
    another interp_lib module, at any depth (inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("interp_lib") and node.module != name:
            for alias in node.names:
                if alias.name.startswith("_"):
                    yield node.lineno, node.module, alias.name


def test_no_module_imports_another_modules_private_names():
    found = [f"{path.relative_to(ROOT)}:{line} imports {name} from {module}"
             for mod, path in _modules() for line, module, name in _private_imports(mod, path)]
    assert not found, "private names crossing modules:\n" + "\n".join(found)


def test_the_private_import_check_catches_a_planted_import(tmp_path):
    planted = tmp_path / "steering.py"
    planted.write_text("def f():\n    from interp_lib.probes import _fit_logistic\n")
    assert list(_private_imports("interp_lib.steering", planted)) == [
        (2, "interp_lib.probes", "_fit_logistic")]


def test_build_tools_live_outside_the_package():
    for tool in ("course", "pages", "browser"):
        assert not (PACKAGE / f"{tool}.py").exists()
        assert (ROOT / "tools" / f"{tool}.py").is_file()
    import tomllib

    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert found["packages"]["find"]["include"] == ["interp_lib*"]


@pytest.mark.skipif(importlib.util.find_spec("importlinter") is None,
                    reason="import-linter is not installed: pip install import-linter")
def test_the_layers_contract_holds():
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                        no_logo=True) == 0


#: Words a student cannot follow: references to the course's own source files, issues or notes.
INSIDER = re.compile(r"seed 00\d|seeds?/0|shared/|REFERENCE\.md|closing note|this issue|"
                     r"notebook's issue|(?<!TransformerLens )(?<!tuned-lens )\bissue #?\d+",
                     re.IGNORECASE)


def test_no_insider_references_in_what_a_student_reads():
    found = []
    paths = [*sorted((ROOT / "notebooks").glob("*.ipynb")),
             *sorted((ROOT / "exercises").glob("*.ipynb")),
             *sorted(PACKAGE.rglob("*.py")), *sorted(PACKAGE.rglob("*.md"))]
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INSIDER.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "cite the paper, post or talk instead:\n" + "\n".join(found)


def test_the_insider_pattern_catches_what_it_should():
    for bad in ("as seed 003 reports", "see shared/REFERENCE.md", "the closing note of issue 6",
                "bare issue 20"):
        assert INSIDER.search(bad), bad
    for fine in ("TransformerLens issue #1272", "tuned-lens issue #72", "the seed of the RNG"):
        assert not INSIDER.search(fine), fine
