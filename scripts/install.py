#!/usr/bin/env python3
"""Install what the course needs into the running Python, and nothing it already has.

Standard library only, so it runs on a fresh machine. Steps:

1. torch: if it does not import, install ``torch==2.13.0`` first (on the course machines that
   is a CPU build already on disk; elsewhere on Linux set ``INTERP_TORCH_INDEX`` to a CPU wheel
   index to avoid the CUDA build). An installed torch (Colab's, say) is never replaced.
2. interp_lib and its dependencies (``pip install -e ".[dev]"``) unless every requirement in
   pyproject.toml is already met and ``import interp_lib`` resolves to this checkout.

Usage: ``python scripts/install.py [--check]`` (``--check`` reports and installs nothing).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_SPEC = os.environ.get("INTERP_TORCH_SPEC", "torch==2.13.0")


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def read_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's dependencies plus its ``dev`` extra, as requirement strings."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: read the two arrays by hand
        blocks = re.findall(r"^(?:dependencies|dev) = \[(.*?)^\]", text, re.S | re.M)
        return [r for block in blocks for r in re.findall(r'"([^"]+)"', block)]
    data = tomllib.loads(text)["project"]
    return list(data["dependencies"]) + list(data["optional-dependencies"]["dev"])


def _requirement_cls():
    try:
        from packaging.requirements import Requirement
    except ModuleNotFoundError:
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def unmet(requirements: list[str]) -> list[str]:
    """Requirements that are not installed at a version that satisfies them."""
    requirement_cls = _requirement_cls()
    missing = []
    for text in requirements:
        req = requirement_cls(text)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(f"{text} (have {version})")
    return missing


def interp_lib_location() -> Path | None:
    """Where ``import interp_lib`` lands when run from outside the checkout."""
    probe = subprocess.run(
        [sys.executable, "-c",
         "import interp_lib, os; print(os.path.dirname(interp_lib.__file__))"],
        capture_output=True, text=True, cwd=os.path.expanduser("~"),
    )
    return Path(probe.stdout.strip()).resolve() if probe.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report only, install nothing")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 10):  # noqa: UP036 - this script may run on any Python
        print(f"interp-course needs Python >= 3.10; this is {sys.version.split()[0]}")
        return 1

    have_torch = importlib_has("torch")
    missing = unmet(read_requirements())
    location = interp_lib_location()
    here = location == (ROOT / "interp_lib").resolve()
    print(f"[install] torch: {'present' if have_torch else 'missing'}; "
          f"unmet requirements: {len(missing)}; interp_lib from this checkout: {here}")
    for item in missing:
        print(f"[install]   unmet: {item}")
    if args.check:
        return 0 if (have_torch and not missing and here) else 1

    if not have_torch:
        extra = ["--index-url", os.environ["INTERP_TORCH_INDEX"]] \
            if os.environ.get("INTERP_TORCH_INDEX") else []
        _pip(TORCH_SPEC, *extra)
    if missing or not have_torch:
        _pip("-e", f"{ROOT}[dev]")
    elif not here:
        # Dependencies are all there; only point interp_lib at this checkout.
        no_isolation = ["--no-build-isolation"] if importlib_has("setuptools") else []
        _pip("--no-deps", *no_isolation, "-e", str(ROOT))
    else:
        print("[install] nothing to do")
    return 0


def importlib_has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    raise SystemExit(main())
