"""nbval settings for the course notebooks.

Outputs that differ from run to run by design (HTML and JavaScript views, plotly JSON,
widgets, stderr) are never compared: a notebook's claims are the asserts in its cells. The
model the notebooks run on is chosen once, in the repository's root ``conftest.py``.
"""

from __future__ import annotations

_SKIP_COMPARE = (
    "text/html",
    "application/javascript",
    "application/vnd.plotly.v1+json",
    "application/vnd.jupyter.widget-view+json",
    "stderr",
)


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += _SKIP_COMPARE
