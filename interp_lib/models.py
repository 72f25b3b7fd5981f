"""One loader for every notebook: online (Colab) and offline (laptop, CI, lecture hall).

:func:`load_model` returns a TransformerLens 4 ``TransformerBridge`` in eval mode with
compatibility mode on, so the familiar hook names (``blocks.0.hook_resid_pre``,
``blocks.0.attn.hook_pattern``...) and HookedTransformer-style weights (LayerNorm folded,
writing weights centred) are what every analysis sees. Value biases are *not* folded into the
attention output bias (TransformerLens's default folds them): each head keeps its own value
bias, so a head's ``hook_z`` and ``hook_result`` are its whole output and zero-ablating
``hook_z`` removes the head completely.

Names it accepts:

==========================  ===========================================================
``"gpt2-small"``, ``"gpt2"``  ``openai-community/gpt2`` from the Hugging Face Hub (or its cache)
``"course"``                 the course model shipped inside ``interp_lib/course_model/``
``"owner/name"``             any Hugging Face model id
a directory                  a local Hugging Face model directory (``config.json`` + weights)
``None``                     ``$INTERP_MODEL`` if set; else ``gpt2-small`` if it is cached or
                             the Hub answers within about 2 s; else the course model
==========================  ===========================================================

Offline, a Hub model that is not in the local cache fails within a few seconds (the Hub is
probed once, with a bounded wait) instead of retrying for half a minute.

Example (offline-safe: builds a tiny random-init model in a temporary directory)::

    >>> import tempfile
    >>> from interp_lib.tiny_models import save_tiny_gpt2
    >>> from interp_lib import load_model
    >>> path = save_tiny_gpt2(tempfile.mkdtemp())
    >>> model = load_model(str(path))
    >>> model.cfg.n_layers, model.training
    (2, False)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from interp_lib import network

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "COURSE_MODEL_NAME",
    "GPT2_SMALL_ID",
    "ModelChoice",
    "ModelNotAvailableError",
    "course_model_available",
    "course_model_dir",
    "load_model",
    "resolve_model",
]

GPT2_SMALL_ID = "openai-community/gpt2"
COURSE_MODEL_NAME = "course"
ALIASES = {"gpt2-small": GPT2_SMALL_ID, "gpt2": GPT2_SMALL_ID}
ENV_VAR = "INTERP_MODEL"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_DTYPES = ("float32", "float16", "bfloat16", "float64")

ACCEPTED = (
    f"'gpt2-small' (or 'gpt2'), '{COURSE_MODEL_NAME}', a Hugging Face model id such as "
    f"'{GPT2_SMALL_ID}', a local Hugging Face model directory (with config.json), or None "
    f"(${ENV_VAR}, else gpt2-small when reachable, else the course model)"
)


class ModelNotAvailableError(ConnectionError):
    """A model cannot be had here: not cached, and the Hub does not answer."""


@dataclass(frozen=True)
class ModelChoice:
    """What :func:`load_model` will load, decided without loading anything.

    Attributes:
        name: the name as the course speaks of it (``"gpt2-small"``, ``"course"``, an id, a path).
        source: what ``TransformerBridge.boot_transformers`` receives: a Hub id or a directory.
        kind: ``"hub"`` (download or Hub cache), ``"local"`` (a directory) or ``"course"``.
        reason: one line saying why this model was chosen.
    """

    name: str
    source: str
    kind: Literal["hub", "local", "course"]
    reason: str

    def notice(self) -> str:
        return f"[interp_lib] model: {self.name} ({self.reason})"


def course_model_dir() -> Path:
    """Where the shipped course model lives inside the installed package."""
    return Path(__file__).resolve().parent / "course_model"


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / f).is_file() for f in _WEIGHT_FILES)


def course_model_available() -> bool:
    """Whether this copy of interp_lib ships the course model's files."""
    return _is_model_dir(course_model_dir())


def _cached_snapshot(repo_id: str) -> Path | None:
    """The local Hub-cache directory holding ``repo_id``'s config and weights, if any."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    return snapshot if _is_model_dir(snapshot) else None


def _not_available(name: str, why: str) -> ModelNotAvailableError:
    course = (
        f"load_model('{COURSE_MODEL_NAME}') works offline"
        if course_model_available()
        else "the course model is not shipped in this version of interp_lib; "
        "`python -m interp_lib.tiny_models DIR` writes a tiny random-init model you can point to"
    )
    return ModelNotAvailableError(
        f"Cannot load {name!r}: {why}. Offline, {course}; or set {ENV_VAR} to a local "
        f"Hugging Face model directory (or to '{COURSE_MODEL_NAME}') and call load_model()."
    )


def _looks_like_path(name: str) -> bool:
    """A name meant as a folder, not a Hub id: it starts like a path, has more than one
    ``/``, or its first part is a folder that exists here (``data/my_model``)."""
    if name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or "\\" in name:
        return True
    first = name.split("/", 1)[0]
    return "/" in name and Path(first).expanduser().is_dir()


def _check_model_dir(path: Path) -> None:
    """A local folder must hold a readable config.json and weights."""
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(
            f"{str(path)!r} is a directory but not a Hugging Face model directory: it has no "
            "config.json. Save one with model.save_pretrained(dir) and "
            "tokenizer.save_pretrained(dir)."
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(config)!r} is not valid JSON ({err}); re-save the model with "
                         "model.save_pretrained(dir)") from None
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise ValueError(
            f"{str(path)!r} has a config.json but no weights (one of {', '.join(_WEIGHT_FILES)}); "
            "save them with model.save_pretrained(dir)")


def _resolve_named(name: str) -> ModelChoice:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str or None, got {type(name).__name__}")
    stripped = name.strip()
    if not stripped:
        raise ValueError(f"model name is empty. Accepted: {ACCEPTED}.")
    if stripped == COURSE_MODEL_NAME:
        if not course_model_available():
            raise _not_available(
                COURSE_MODEL_NAME,
                f"no model files in {course_model_dir()} (this interp_lib does not ship them yet)",
            )
        return ModelChoice(COURSE_MODEL_NAME, str(course_model_dir()), "course", "shipped")
    path = Path(stripped).expanduser()
    if path.is_dir():
        _check_model_dir(path)
        return ModelChoice(str(path), str(path.resolve()), "local", "local directory")
    if _looks_like_path(stripped):
        raise ValueError(
            f"{stripped!r} looks like a local folder, but there is no such directory (from "
            f"{Path.cwd()}); check the path. Accepted: {ACCEPTED}.")
    repo_id = ALIASES.get(stripped, stripped)
    if not _HUB_ID.match(repo_id):
        raise ValueError(f"Unknown model name {name!r}. Accepted: {ACCEPTED}.")
    label = "gpt2-small" if stripped in ALIASES else repo_id
    snapshot = _cached_snapshot(repo_id)
    if network.hub_reachable():
        return ModelChoice(label, repo_id, "hub", "from the Hugging Face Hub")
    if snapshot is not None:
        return ModelChoice(label, str(snapshot), "hub", "offline: from the local Hub cache")
    raise _not_available(
        label,
        f"it is not in the local Hugging Face cache and the Hub ({network.hub_endpoint()}) "
        f"did not answer within {network.DEFAULT_TIMEOUT:g} s",
    )


def resolve_model(name: str | None = None) -> ModelChoice:
    """Decide what :func:`load_model` would load for ``name``, without loading it.

    Raises:
        ValueError: the name is none of the accepted forms, or a directory is not a model.
        TypeError: the name is not a string.
        ModelNotAvailableError: the model cannot be had offline.
    """
    if name is not None:
        return _resolve_named(name)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        choice = _resolve_named(env)
        return ModelChoice(choice.name, choice.source, choice.kind, f"{ENV_VAR}={env}")
    if _cached_snapshot(GPT2_SMALL_ID) is not None or network.hub_reachable():
        choice = _resolve_named("gpt2-small")
        return ModelChoice(choice.name, choice.source, choice.kind, f"default; {choice.reason}")
    if course_model_available():
        return ModelChoice(
            COURSE_MODEL_NAME,
            str(course_model_dir()),
            "course",
            "default offline: gpt2-small is not cached and the Hub did not answer; "
            f"set {ENV_VAR} to choose",
        )
    raise _not_available(
        "the default model",
        "gpt2-small is not cached, the Hub did not answer, and no course model is shipped",
    )


def _torch_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        return dtype
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.")
        if key in _DTYPES:
            return getattr(torch, key)
        raise ValueError(f"Unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}.")
    raise TypeError(f"dtype must be a torch.dtype, a string or None, got {type(dtype).__name__}")


def _torch_device(device: torch.device | str | None) -> torch.device:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str, torch.device or None, got {type(device).__name__}")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"Unknown device {device!r}: {err}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asks for a GPU, but torch sees none (torch.cuda.is_available() "
            "is False). Use device='cpu', or install a CUDA build of torch on a GPU machine."
        )
    return resolved


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bars (they clutter every notebook)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(
    name: str | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> TransformerBridge:
    """Load a model as a ``TransformerBridge`` in eval mode with compatibility mode on.

    Args:
        name: see the module docstring; ``None`` picks a default and prints one line saying
            which and why.
        device: ``"cpu"``, ``"cuda"``, ... (default: the GPU if torch sees one, else the CPU).
        dtype: a floating torch dtype or its name (default ``float32``).

    Raises:
        ValueError: unknown name, a directory that is not a model, unknown dtype or device.
        ModelNotAvailableError: the model is not cached and the Hub does not answer.
    """
    torch_dtype = _torch_dtype(dtype)
    torch_device = _torch_device(device)
    choice = resolve_model(name)
    if name is None:
        print(choice.notice())
    from transformer_lens.model_bridge import TransformerBridge

    with _quiet_transformers():
        try:
            bridge = TransformerBridge.boot_transformers(
                choice.source, device=torch_device, dtype=torch_dtype
            )
        except (OSError, ValueError, KeyError) as err:
            if choice.kind == "hub":
                raise
            raise ValueError(f"could not load the model folder {choice.source!r}: "
                             f"{type(err).__name__}: {str(err)[:300]}") from err
    # fold_value_biases=False: each head keeps its value bias, so zeroing a head's hook_z
    # removes its whole output (with folding, b_V W_O would stay behind in the shared b_O)
    bridge.enable_compatibility_mode(fold_value_biases=False, disable_warnings=True)
    bridge.eval()
    _apply_settings(bridge, choice)
    # the course's name for the model, not a path on this machine
    bridge.cfg.model_name = (Path(choice.name).name if choice.kind == "local" else choice.name)
    return bridge


#: Settings a model directory may carry in ``interp_lib.json`` (how the model was trained).
SETTINGS_FILE = "interp_lib.json"
_SETTINGS = {"default_prepend_bos": bool}


def _apply_settings(bridge: TransformerBridge, choice: ModelChoice) -> None:
    """Apply ``interp_lib.json`` from a local model directory, e.g. that the course model was
    trained with BOS first (TransformerLens's GPT-NeoX adapter assumes Pythia, trained without)."""
    if choice.kind == "hub" and not Path(choice.source).is_dir():
        return
    path = Path(choice.source) / SETTINGS_FILE
    if not path.is_file():
        return
    settings = json.loads(path.read_text(encoding="utf-8"))
    for key, kind in _SETTINGS.items():
        if key in settings:
            if not isinstance(settings[key], kind):
                raise ValueError(f"{path}: {key} must be a {kind.__name__}, got {settings[key]!r}")
            setattr(bridge.cfg, key, settings[key])
