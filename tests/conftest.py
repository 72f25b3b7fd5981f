"""Shared fixtures: tiny random-init models written in-process, and local HTTP servers that
stand in for the Hub (answering, or accepting connections and never answering)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from interp_lib import network


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from interp_lib.tiny_models import save_tiny_gpt2

    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from interp_lib import load_model

    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(autouse=True)
def _isolated_network_env(monkeypatch) -> Iterator[None]:
    """Each test starts with no cached network answers and no offline overrides."""
    for name in ("INTERP_OFFLINE", "HF_HUB_OFFLINE", "INTERP_MODEL", "INTERP_CIRCUITSVIS_MODE",
                 "INTERP_CDN_URL", "PLOTLY_RENDERER"):
        monkeypatch.delenv(name, raising=False)
    network.clear_cache()
    yield
    network.clear_cache()


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        self.server.hits += 1
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server() -> Iterator[http.server.HTTPServer]:
    """A local server answering HEAD with ``server.status`` (200); counts ``server.hits``."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    server.hits = 0
    server.status = 200
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server accepts TCP connections and never sends a byte (a stalled host)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
def closed_url() -> str:
    """A URL on which nothing listens (connection refused at once)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def offline_hub(monkeypatch, closed_url, tmp_path):
    """The Hub is unreachable and the Hugging Face cache is empty."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", closed_url)
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_neox_dir(tmp_path_factory):
    from interp_lib.tiny_models import save_tiny_neox

    return save_tiny_neox(tmp_path_factory.mktemp("tiny-neox"))


@pytest.fixture(scope="session")
def tiny_neox(tiny_neox_dir):
    """A tiny random GPT-NeoX shaped like the course model (rotary, tied embeddings)."""
    from interp_lib import load_model

    return load_model(str(tiny_neox_dir), device="cpu")
