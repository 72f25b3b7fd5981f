"""Logit lens in dataset mode: chunked against the naive full-vocabulary version.

``interp_lib.logit_lens.lens_dataset`` (one forward pass per batch chunk caching only the
residual sites, sites decoded a chunk of positions at a time) against ``lens_dataset_naive``
(cache everything, decode every site over the whole vocabulary at once:
``[sites, batch, pos, d_vocab]`` in memory), on the same windows of held-out text, measured in one
run with alternating repeats. Reports the median times, their ratio, the peak memory of each
(traced by ``tracemalloc``-free RSS sampling: ``resource`` max RSS is monotone, so each side runs
in a fresh subprocess), the peak of a plain forward pass for scale, and the max abs difference.

Run: ``python benchmarks/bench_logit_lens.py [--model NAME] [--sequences 256] [--length 128]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _tokens(model, sequences: int, length: int):
    """Consecutive windows of the shipped held-out text (repeated when it is too short)."""
    from interp_lib.text import sample_text, token_windows

    try:
        text = sample_text()
    except FileNotFoundError:  # no course model shipped: any English will do for timings
        text = "The committee met on Tuesday and the chairman read the report aloud. " * 200
    while True:
        try:
            return token_windows(model, text, n_windows=sequences, length=length)
        except ValueError as err:
            if "enough for" not in str(err):
                raise
            text = text + "\n" + text


def _child(args) -> int:
    """Run one side once in this fresh process; print JSON with time, peak RSS and results."""
    import resource

    import torch

    from interp_lib import load_model
    from interp_lib.logit_lens import lens_dataset, lens_dataset_naive

    torch.set_grad_enabled(False)
    model = load_model(args.model, device="cpu")
    tokens = _tokens(model, args.sequences, args.length)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if args.side == "forward":
        for chunk in tokens.split(args.batch_size):
            model(chunk)
        out = None
    elif args.side == "chunked":
        out = lens_dataset(model, tokens, batch_size=args.batch_size)
    else:
        out = lens_dataset_naive(model, tokens)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"seconds": seconds, "peak_mb": (peak - base) / 1024, "sites": None}
    if out is not None:
        result.update(sites=out.sites, kl=out.mean_kl_to_final.tolist(),
                      loss=out.mean_loss.tolist(), agree=out.agreement_with_final.tolist(),
                      first=out.first_stable.tolist())
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare-sequences", type=int, default=32,
                        help="sequences for the side-by-side comparison (the naive version "
                        "holds [sites, batch, pos, vocab] and runs out of memory at 256 x 128)")
    parser.add_argument("--side", choices=["forward", "chunked", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        return _child(args)

    def run(side: str, sequences: int) -> dict | None:
        cmd = [sys.executable, __file__, "--side", side, "--sequences", str(sequences),
               "--length", str(args.length), "--batch-size", str(args.batch_size)]
        if args.model:
            cmd += ["--model", args.model]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            return None  # killed (out of memory) or failed
        return json.loads(out.stdout.strip().splitlines()[-1])

    med = statistics.median
    full = run("chunked", args.sequences)
    forward = run("forward", args.sequences)
    print(f"logit lens, dataset mode, {args.length} tokens per sequence")
    print(f"  {args.sequences} sequences: plain forward passes (batch {args.batch_size}) "
          f"{forward['seconds']:.2f} s, peak +{forward['peak_mb']:.0f} MB; lens_dataset "
          f"{full['seconds']:.2f} s, peak +{full['peak_mb']:.0f} MB "
          f"({full['peak_mb'] / max(forward['peak_mb'], 1):.2f}x the forward pass)")
    naive_full = run("naive", args.sequences)
    print(f"  {args.sequences} sequences, naive: "
          + ("killed (out of memory)" if naive_full is None else
             f"{naive_full['seconds']:.2f} s, peak +{naive_full['peak_mb']:.0f} MB"))
    n = args.compare_sequences
    chunked, naive = [], []
    for _ in range(args.repeats):
        chunked.append(run("chunked", n))
        naive.append(run("naive", n))
    if any(r is None for r in chunked + naive):
        print(f"  comparison at {n} sequences failed (out of memory?)")
        return 1
    c, nv = chunked[-1], naive[-1]
    diff = max(max(abs(a - b) for a, b in zip(c[k], nv[k], strict=True))
               for k in ("kl", "loss", "agree"))
    tc, tn = med(r["seconds"] for r in chunked), med(r["seconds"] for r in naive)
    print(f"  {n} sequences side by side: lens_dataset {tc:.2f} s, peak "
          f"+{med(r['peak_mb'] for r in chunked):.0f} MB; naive {tn:.2f} s, peak "
          f"+{med(r['peak_mb'] for r in naive):.0f} MB; time ratio naive/chunked {tn / tc:.2f}x; "
          f"max abs diff {diff:.1e}; first-stable histograms equal: {c['first'] == nv['first']}")
    print("  per site (" + str(args.sequences) + " sequences): " + ", ".join(
        f"{s}: KL {k:.2f} loss {lo:.2f} agree {a:.2f}"
        for s, k, lo, a in zip(full["sites"], full["kl"], full["loss"], full["agree"],
                               strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
