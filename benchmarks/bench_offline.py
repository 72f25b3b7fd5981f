"""Offline behaviour of the foundation, against the peer tools, measured in one run.

1. Asking for an uncached Hub model offline: ``interp_lib.load_model("gpt2-small")`` against
   ``TransformerBridge.boot_transformers("openai-community/gpt2")`` (which retries for a while),
   with the Hub unreachable (a refused port) and stalled (a host that accepts and never answers).
2. Ten attention views of one pattern: ``interp_lib.attention_heads`` (mode "once") against
   circuitsvis's own ``attention_heads(...)._repr_html_()``: time, bytes written into the
   notebook, and the max abs difference of the attention values the two embed.
3. Loading a local model directory with ``load_model``.

Run: ``python benchmarks/bench_offline.py [--skip-peer-boot]`` (the peer's offline boot alone
takes about half a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import tempfile
import time

import numpy as np


def _closed_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def _timed(fn):
    start = time.perf_counter()
    try:
        fn()
        outcome = "loaded"
    except Exception as err:  # noqa: BLE001 - we report what happened
        outcome = type(err).__name__
    return time.perf_counter() - start, outcome


def bench_offline_hub(skip_peer: bool) -> list[tuple[str, float, str]]:
    import huggingface_hub.constants
    import torch  # noqa: F401 - imported up front so the timings below exclude imports

    from interp_lib import load_model, network

    rows = []
    huggingface_hub.constants.HF_HUB_CACHE = tempfile.mkdtemp()  # nothing cached
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ["HF_ENDPOINT"] = _closed_url()
    network.clear_cache()
    gpt2 = lambda: load_model("gpt2-small")  # noqa: E731
    rows.append(("load_model('gpt2-small'), Hub refused", *_timed(gpt2)))
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)
    os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{stalled.getsockname()[1]}"
    network.clear_cache()
    rows.append(("load_model('gpt2-small'), Hub stalled", *_timed(gpt2)))
    stalled.close()
    if not skip_peer:
        from transformer_lens.model_bridge import TransformerBridge

        os.environ.pop("HF_ENDPOINT")  # the real Hub address, unreachable here
        rows.append(("TransformerBridge.boot_transformers(gpt2), offline",
                     *_timed(lambda: TransformerBridge.boot_transformers("openai-community/gpt2"))))
    return rows


def bench_views(n_views: int = 10, n_tokens: int = 20, n_heads: int = 4) -> dict:
    import circuitsvis

    from interp_lib import vis

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(n_heads, n_tokens, n_tokens))
    scores[:, np.triu_indices(n_tokens, 1)[0], np.triu_indices(n_tokens, 1)[1]] = -np.inf
    pattern = np.exp(scores - scores.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)
    tokens = [f"t{i}" for i in range(n_tokens)]

    vis.reset()
    start = time.perf_counter()
    ours = [vis.attention_heads(pattern, tokens, mode="once")._repr_html_() for _ in range(n_views)]
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = [circuitsvis.attention.attention_heads(pattern, tokens)._repr_html_()
              for _ in range(n_views)]
    theirs_s = time.perf_counter() - start

    def embedded(html: str) -> np.ndarray:
        props = re.search(r'"attention":\s*(\[.*?\]\]\])', html, re.S).group(1)
        return np.array(json.loads(props))

    diff = max(float(np.abs(embedded(a) - embedded(b)).max())
               for a, b in zip(ours, theirs, strict=True))
    return {
        "views": n_views,
        "interp_lib_s": ours_s,
        "circuitsvis_s": theirs_s,
        "interp_lib_bytes": sum(map(len, ours)),
        "circuitsvis_bytes": sum(map(len, theirs)),
        "max_abs_diff": diff,
    }


def bench_local_load() -> float:
    from interp_lib import load_model
    from interp_lib.testing import save_tiny_gpt2

    path = save_tiny_gpt2(tempfile.mkdtemp())
    load_model(str(path))  # warm imports
    start = time.perf_counter()
    load_model(str(path))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-peer-boot", action="store_true")
    args = parser.parse_args()

    print("1. An uncached Hub model, offline")
    for label, seconds, outcome in bench_offline_hub(args.skip_peer_boot):
        print(f"   {label:52s} {seconds:6.2f} s  -> {outcome}")
    views = bench_views()
    print(f"2. {views['views']} attention views (20 tokens, 4 heads)")
    print(f"   interp_lib.attention_heads (once): {views['interp_lib_s']:.3f} s, "
          f"{views['interp_lib_bytes'] / 1e6:.2f} MB")
    print(f"   circuitsvis attention_heads:       {views['circuitsvis_s']:.3f} s, "
          f"{views['circuitsvis_bytes'] / 1e6:.2f} MB")
    ratio = views["circuitsvis_s"] / views["interp_lib_s"]
    print(f"   time ratio circuitsvis/interp_lib: {ratio:.1f}x;"
          f" bytes ratio: {views['circuitsvis_bytes'] / views['interp_lib_bytes']:.1f}x;"
          f" max abs diff of embedded attention: {views['max_abs_diff']:.1e}")
    print(f"3. load_model(local tiny GPT-2 directory), warm: {bench_local_load():.2f} s")


if __name__ == "__main__":
    main()
