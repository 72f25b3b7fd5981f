# The two commands of the README. Both first install what is missing (scripts/install.py:
# the pinned CPU torch when torch is absent, then this package with its dev extra).
PYTHON ?= python3

.PHONY: install course test lint

install:
	$(PYTHON) scripts/install.py

course: install
	$(PYTHON) -m tools.course --no-install

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m nbstripout --verify notebooks/*.ipynb exercises/*.ipynb
	$(PYTHON) -m tools.exercises --check
	$(PYTHON) -m tools.diagrams --check
	$(PYTHON) -c "import sys; from importlinter.cli import lint_imports as l; sys.exit(l(no_cache=True, no_logo=True))"

test: install lint
	$(PYTHON) -m pytest -rs -n 2 --dist loadscope --nbval-lax --nbval-current-env \
		--doctest-modules interp_lib tests notebooks
