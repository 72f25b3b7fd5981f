"""interp_lib: the small, typed library behind the interp-course notebooks.

Heavy dependencies (torch, TransformerLens) are imported on first use, so that
``python -m interp_lib.course`` can start on a machine where they are not installed yet.

>>> import interp_lib
>>> interp_lib.load_model is interp_lib.models.load_model
True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "load_model": "models",
    "resolve_model": "models",
    "ModelNotAvailableError": "models",
    "course_model_available": "models",
    "heatmap": "plotting",
    "line_over_layers": "plotting",
    "configure_plotly": "plotting",
    "attention_heads": "vis",
    "diagram": "vis",
    "setup_notebook": "notebook",
}
__all__ = [
    "ModelNotAvailableError",
    "attention_heads",
    "configure_plotly",
    "course_model_available",
    "diagram",
    "heatmap",
    "line_over_layers",
    "load_model",
    "resolve_model",
    "setup_notebook",
]

if TYPE_CHECKING:  # pragma: no cover
    from interp_lib.models import (
        ModelNotAvailableError,
        course_model_available,
        load_model,
        resolve_model,
    )
    from interp_lib.notebook import setup_notebook
    from interp_lib.plotting import configure_plotly, heatmap, line_over_layers
    from interp_lib.vis import attention_heads, diagram


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'interp_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"interp_lib.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
