"""Ablation and patching sweeps: batched against the straightforward loops.

1. MLP position patching (seed 003's sizes: n = 50 repeated random tokens): the batched sweep
   (``mlp_position_patching``, every position of a layer in stacked forwards) against
   ``mlp_position_patching_loop`` (one forward per layer and position).
2. Zero ablation of every head: ``head_ablation`` (heads stacked along the batch) against
   ``head_ablation_loop`` (one forward per head).
3. Head importance from one backward pass (``head_importance``) against exhaustive ablation
   (2.), with the Spearman correlation of the two rankings.

Each side runs in a fresh subprocess (peak RSS is monotone within a process), in one run;
reports times, ratios, peak memory above the loaded model, and max abs differences.

Run: ``python benchmarks/bench_ablation.py [--model NAME | --shape gpt2-small|course]
[--n 50] [--batch 4]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIDES = ("mlp_batched", "mlp_loop", "heads_batched", "heads_loop", "importance")


def _child(args) -> int:
    import resource

    import torch

    from interp_lib import load_model
    from interp_lib.ablation import head_ablation, head_ablation_loop, head_importance
    from interp_lib.heads import repeated_tokens
    from interp_lib.patching import mlp_position_patching, mlp_position_patching_loop

    model = load_model(args.model, device="cpu")
    tokens = repeated_tokens(model, n=args.n, batch=args.batch, seed=0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run = {
        "mlp_batched": lambda: mlp_position_patching(model, tokens),
        "mlp_loop": lambda: mlp_position_patching_loop(model, tokens),
        "heads_batched": lambda: head_ablation(model, tokens),
        "heads_loop": lambda: head_ablation_loop(model, tokens),
        "importance": lambda: head_importance(model, tokens, normalise=False),
    }[args.side]
    start = time.perf_counter()
    grid = run()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.save(grid.values, args.save)
    print(json.dumps({"seconds": seconds, "peak_mb": (peak - base) / 1024}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or directory")
    parser.add_argument("--shape", choices=["gpt2-small", "course"],
                        help="a random-weight model of this shape instead of --model")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1, help="sequences (seed 003: 1)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        return _child(args)

    import torch

    from interp_lib.ablation import rank_correlation

    model = args.model
    if args.shape:
        sys.path.insert(0, str(Path(__file__).parent))
        from shapes import random_model_dir

        model = str(random_model_dir(args.shape))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in SIDES:
            save = f"{tmp}/{side}.pt"
            cmd = [sys.executable, __file__, "--side", side, "--save", save, "--n", str(args.n),
                   "--batch", str(args.batch)] + (["--model", model] if model else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-2000:])
                return proc.returncode
            out[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            out[side]["values"] = torch.load(save)
    label = f"random {args.shape}-shaped model" if args.shape else (args.model or "default model")
    print(f"{label}; {args.batch} sequences of BOS + {args.n} + {args.n} tokens; "
          f"torch threads {torch.get_num_threads()}")

    def line(name, side):
        r = out[side]
        return f"   {name:34s} {r['seconds']:8.2f} s   peak +{r['peak_mb']:.0f} MB"

    def pair(title, fast, slow):
        diff = float((out[fast]["values"] - out[slow]["values"]).abs().max())
        print(title)
        print(line(fast, fast))
        print(line(slow, slow) + f"   ratio {out[slow]['seconds'] / out[fast]['seconds']:.1f}x"
              f"   max abs diff {diff:.1e}")

    pair("1. MLP position patching, every layer x second-half position", "mlp_batched", "mlp_loop")
    pair("2. zero ablation of every head", "heads_batched", "heads_loop")
    rho = rank_correlation(out["importance"]["values"], out["heads_batched"]["values"].abs())
    print("3. head importance (one backward pass) vs exhaustive ablation")
    print(line("importance", "importance") + f"   exhaustive/importance "
          f"{out['heads_batched']['seconds'] / out['importance']['seconds']:.1f}x (batched), "
          f"{out['heads_loop']['seconds'] / out['importance']['seconds']:.1f}x (loop)")
    print(f"   Spearman(importance, |ablation effect|) = {rho:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
