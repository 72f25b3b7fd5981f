import subprocess
import sys

import pytest

import interp_lib


def test_every_public_name_resolves_to_its_module():
    assert sorted(interp_lib._EXPORTS) == interp_lib.__all__
    for name, module in interp_lib._EXPORTS.items():
        assert getattr(interp_lib, name) is getattr(
            __import__(f"interp_lib.{module}", fromlist=[name]), name)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        interp_lib.nope  # noqa: B018


def test_importing_the_package_and_the_runner_needs_no_heavy_dependency():
    # `python -m tools.course` must start on a machine without torch: importing the package
    # and the runner module may not pull torch or TransformerLens in.
    code = ("import sys, interp_lib, tools.course; "
            "print(any(m in sys.modules for m in ('torch', 'transformer_lens')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_student_library_imports_no_course_building_tool():
    # Every module of interp_lib, imported in a fresh interpreter, leaves the notebook runner,
    # the page exporter, the kernel and the browser driver out.
    code = (
        "import importlib, pkgutil, sys, interp_lib\n"
        "for m in pkgutil.walk_packages(interp_lib.__path__, 'interp_lib.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('nbclient', 'nbconvert', 'ipykernel', 'tools')]\n"
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
