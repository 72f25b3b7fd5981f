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
    # `python -m interp_lib.course` must start on a machine without torch: importing the
    # package and the runner module may not pull torch or TransformerLens in.
    code = ("import sys, interp_lib, interp_lib.course; "
            "print(any(m in sys.modules for m in ('torch', 'transformer_lens')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
