"""The repository's promises about itself: same dependencies everywhere, CI runs the README's
test command, the install script reads pyproject.toml as pip does."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _install_script():
    spec = importlib.util.spec_from_file_location("install", ROOT / "scripts" / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _normalise(requirements):
    return {Requirement(r).name.lower().replace("_", "-"): str(Requirement(r).specifier)
            for r in requirements}


def _pyproject_requirements():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_environment_yml_names_the_same_requirements_as_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    editable = [p for p in pip_section if p.startswith("-e")]
    assert editable == ["-e .[dev]"], "the env installs this package with its dev extra"
    listed = [p for p in pip_section if not p.startswith("-e")]
    assert _normalise(listed) == _normalise(_pyproject_requirements())
    assert any(str(d).startswith("python>=3.10") for d in env["dependencies"])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_install_script_reads_pyproject_like_tomllib_even_without_it(monkeypatch):
    install = _install_script()
    expected = _pyproject_requirements()
    assert install.read_requirements() == expected
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10
    assert install.read_requirements() == expected


def test_required_packages_of_the_issue_are_declared():
    names = set(_normalise(_pyproject_requirements()))
    for name in ("transformer-lens", "torch", "einops", "jaxtyping", "plotly", "circuitsvis",
                 "spacy", "ipywidgets", "tqdm", "pandas", "pytest", "pytest-xdist", "nbval",
                 "nbstripout", "ruff"):
        assert name in names
    assert _normalise(_pyproject_requirements())["transformer-lens"] == "<5,>=4.3"


def test_install_script_sees_this_environment_as_complete():
    install = _install_script()
    assert install.unmet(_pyproject_requirements()) == []
    absent = "surely-not-a-real-package-xyz>=1"
    assert install.unmet([absent]) == [absent]
    assert install.unmet(["pytest<1"])[0].startswith("pytest<1 (have ")


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^(make \w+)\s+#", readme, re.M)
    assert commands == ["make course", "make test"]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert ci_lines[-1] == "make test"


def test_makefile_test_target_runs_nbval_as_specified():
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(ln for ln in makefile.splitlines() if "-m pytest" in ln)
    for flag in ("--nbval-lax", "--nbval-current-env", "-n 2", "--dist loadscope",
                 "--doctest-modules interp_lib", "tests notebooks"):
        assert flag in line
    assert "nbstripout --verify" in makefile and "ruff check" in makefile
