"""Decide quickly whether a web service answers, without ever stalling a notebook.

A plain ``urlopen(url, timeout=1)`` does not bound the DNS lookup: where DNS packets are
dropped it can hang for many seconds (circuitsvis's own ``internet_on()`` does exactly this).
:func:`reachable` runs the request in a daemon thread and waits at most ``timeout`` seconds
for it, so the answer always comes within the bound. Answers are cached per process.

Environment variables, read on every call:

- ``INTERP_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1`` for the Hub) says "offline" without asking.
- ``HF_ENDPOINT`` moves the Hub, as it does for ``huggingface_hub``.

>>> from interp_lib.network import reachable
>>> reachable("http://127.0.0.1:9", timeout=0.5)  # nothing listens on port 9
False
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

__all__ = [
    "DEFAULT_TIMEOUT",
    "cdn_reachable",
    "clear_cache",
    "hub_endpoint",
    "hub_reachable",
    "offline_forced",
    "reachable",
]

#: Seconds to wait for an answer before calling a service unreachable.
DEFAULT_TIMEOUT = 2.0

_TRUE = {"1", "true", "yes", "on"}
_cache: dict[str, bool] = {}
_lock = threading.Lock()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def offline_forced() -> bool:
    """True when ``INTERP_OFFLINE`` is set to 1/true/yes/on."""
    return _env_flag("INTERP_OFFLINE")


def clear_cache() -> None:
    """Forget earlier answers (tests, or after the network came back)."""
    with _lock:
        _cache.clear()


def _probe(url: str, timeout: float, result: list[bool]) -> None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "interp_lib"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            result.append(True)
    except urllib.error.HTTPError:
        # The server answered (404, 401, 405...): it is reachable.
        result.append(True)
    except Exception:  # noqa: BLE001 - any other failure means "not reachable"
        result.append(False)


def reachable(url: str, timeout: float = DEFAULT_TIMEOUT, *, use_cache: bool = True) -> bool:
    """Whether ``url`` answers an HTTP HEAD request within ``timeout`` seconds.

    Any HTTP answer, an error status included, counts as reachable. The wait is bounded
    end to end (DNS included) because the request runs in a daemon thread.
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be an http(s) URL, got {url!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
    if offline_forced():
        return False
    if use_cache and url in _cache:
        return _cache[url]
    result: list[bool] = []
    worker = threading.Thread(target=_probe, args=(url, timeout, result), daemon=True)
    worker.start()
    worker.join(timeout)
    answer = bool(result and result[0])
    with _lock:
        _cache[url] = answer
    return answer


def hub_endpoint() -> str:
    """The Hugging Face Hub's address (``HF_ENDPOINT`` if set)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether the Hugging Face Hub answers within ``timeout`` seconds.

    False at once when ``HF_HUB_OFFLINE`` or ``INTERP_OFFLINE`` is set.
    """
    if _env_flag("HF_HUB_OFFLINE"):
        return False
    return reachable(f"{hub_endpoint()}/api/models/openai-community/gpt2", timeout)


def cdn_reachable(timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether the JavaScript CDN that circuitsvis loads from (unpkg) answers."""
    url = os.environ.get("INTERP_CDN_URL", "https://unpkg.com/circuitsvis/package.json")
    return reachable(url, timeout)
