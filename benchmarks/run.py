"""One benchmark runner for the whole library: every batched sweep against its straightforward
loop or peer tool, on the same inputs in one process, written as one table (Markdown and JSON).

Pairings (library function vs reference):

- ``head_scores``: all seven scores of every head in one pass per chunk vs ``head_scores_loop``
  (one forward pass per sequence and head, scored query by query).
- ``head_scores_vs_tl``: previous-token, duplicate-token and induction scores vs
  TransformerLens's ``detect_head`` (one call per text and kind), compared on its scale.
- ``lens_dataset``: logit-lens dataset mode (chunked) vs ``lens_dataset_naive`` (every site
  decoded over the full vocabulary at once).
- ``mlp_position_patching``: seed 003's MLP patching grid, batched vs one forward per cell.
- ``head_ablation``: zero ablation of every head, stacked vs one forward per head.
- ``head_importance``: one backward pass through a head mask vs exhaustive ablation (the
  "difference" column is 1 - Spearman correlation of the two rankings, not a value difference).
- ``composition_scores``: K-composition scores of every head pair from ``d_head x d_head``
  products vs ``composition_scores_loop`` (two dense ``d_model x d_model`` matrices per pair).
- ``composition_scores_vs_tl``: the same vs TransformerLens's ``all_composition_scores``.
- ``diagonal_accuracy``: top-1/top-5 diagonal accuracy of a K-composition full circuit in row
  batches of the factored matrix vs multiplying the rows out at once and sorting them (a
  vocabulary slice of rows at GPT-2 small's size); the difference is in top-1/top-5 accuracy.
- ``probes``: a part-of-speech probe at every site trained as one batched model vs
  scikit-learn's ``LogisticRegression`` fitted site by site (same features, same penalty); the
  difference is the largest gap in test accuracy over the sites.

Each pairing runs ``--repeats`` times, library and reference alternating, and the table gives
the median time of each, their ratio (reference / library), the peak memory each side added
above what was resident before it (sampled from /proc every few milliseconds on Linux; on CUDA,
``torch.cuda.max_memory_allocated``), and the max abs difference of the results.

Models: ``--shape course`` and ``--shape gpt2-small`` build random-weight models of those shapes
(timings depend on the shape, not the weights), ``--model NAME|DIR`` loads one (the shipped course
model: ``--model course``). ``--quick``: tiny sizes on a tiny random model, every pairing checked
for agreement (exit status 1 when one disagrees), nothing timed in earnest; CI runs it through
``tests/test_benchmarks.py``. ``--course build/course.json`` adds the whole-course timing that
``make course`` wrote (each notebook's seconds and kernel peak memory).

Run: ``python benchmarks/run.py [--quick] [--shape course --shape gpt2-small] [--model DIR]
[--device cpu|cuda] [--repeats 3] [--out benchmarks/results]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- measuring


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    except OSError:
        return None


class PeakMemory:
    """Peak memory added while the block runs, in MB: resident set sampled by a thread (CPU),
    or ``torch.cuda.max_memory_allocated`` (CUDA). ``None`` where neither is available."""

    def __init__(self, device: str = "cpu", interval: float = 0.002):
        self.device, self.interval, self.mb = device, interval, None

    def __enter__(self):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._base = _rss_mb()
        self._peak = self._base
        self._stop = threading.Event()
        if self._base is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_mb() or 0.0)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
            return False
        if self._base is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_mb() or 0.0)
            self.mb = self._peak - self._base
        return False


def _release_freed_memory() -> None:
    """Hand memory freed by earlier calls back to the OS (glibc ``malloc_trim``), so that the
    next call's resident-set growth is its own and not hidden by reuse of a cached heap."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def _timed(fn: Callable[[], Any], device: str) -> tuple[float, float | None, Any]:
    import gc

    gc.collect()
    if not device.startswith("cuda"):
        _release_freed_memory()
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, mem.mb, out


# ---------------------------------------------------------------- pairings


@dataclass
class Pairing:
    """A library function and its reference on the same inputs; ``compare(lib, ref)`` gives the
    difference (0 is perfect agreement) and ``tolerance`` the largest one accepted."""

    task: str
    library: str
    reference: str
    sizes: str
    run_library: Callable[[], Any]
    run_reference: Callable[[], Any]
    compare: Callable[[Any, Any], float]
    tolerance: float
    difference: str = "max abs diff"
    grad: bool = False


@dataclass
class Row:
    task: str
    model: str
    device: str
    sizes: str
    library: str
    reference: str
    library_s: float
    reference_s: float
    ratio: float
    library_peak_mb: float | None
    reference_peak_mb: float | None
    difference: float
    difference_kind: str
    tolerance: float
    agrees: bool
    repeats: int
    times: dict[str, list[float]] = field(default_factory=dict)


def _max_abs(a, b) -> float:
    import torch

    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).abs().max())


def _texts(n: int) -> list[str]:
    base = ("The committee met again on Tuesday and the chairman read the report aloud. ",
            "Whales were seen off the coast at dawn, and the sailors counted them twice. ",
            "Congress shall consider the treaty, the tariff and the army in this session. ",
            "She wrote the letter slowly, then she read the letter to her brother. ")
    return [a + b + a for a in base for b in base if a != b][:n]


def _text_windows(model, sequences: int, length: int):
    from interp_lib.data import NotEnoughTextError, sample_text, token_windows

    try:
        text = sample_text()
    except FileNotFoundError:  # no course model shipped: any English will do for timings
        text = " ".join(_texts(12)) * 20
    while True:
        try:
            return token_windows(model, text, n_windows=sequences, length=length)
        except NotEnoughTextError:
            text = text + "\n" + text


def is_big(model) -> bool:
    """GPT-2-small-sized or larger (smaller full-mode sizes, one repeat)."""
    return model.cfg.n_layers * model.cfg.d_model >= 4096


def pairings(model, quick: bool) -> list[Pairing]:
    """Every pairing on ``model``, with quick (tiny) or full sizes: the core ones below, then
    those of every ``benchmarks/pairings/*.py`` (one file per technique), in file order."""
    return core_pairings(model, quick) + plugin_pairings(model, quick)


def plugin_pairings(model, quick: bool) -> list[Pairing]:
    """Each ``benchmarks/pairings/NAME.py`` defines ``pairings(model, quick, Pairing,
    max_abs) -> list[Pairing]`` (the class and the helper are passed in, so the file needs no
    import of this script)."""
    import importlib.util

    out = []
    for path in sorted((HERE / "pairings").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"bench_pairings_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out.extend(module.pairings(model, quick, Pairing, _max_abs))
    return out


def sweep_flops(cfg: Any, n_pos: int, cells: list[tuple[int, int]]) -> str:
    """FLOPs of a sweep whose cell ``(layer, position)`` changes the run only at layers
    ``>= layer`` and positions ``>= position`` (2 per multiply-add; projections, attention over
    the keys each position sees, MLP, unembedding): the loop (a whole forward per cell), the
    minimum (only the changed blocks and positions, and their logits) and the library (the
    minimum plus the one recorded forward)."""
    d, v = cfg.d_model, cfg.d_vocab

    def block(pos: int) -> float:  # one block at one position, keys 0..pos
        return 2 * (4 * d * d + 2 * d * cfg.d_mlp) + 4 * (pos + 1) * d

    def run(layer: int, start: int) -> float:
        blocks = sum(block(p) for p in range(start, n_pos)) * (cfg.n_layers - layer)
        return blocks + 2 * d * v * (n_pos - start)

    forward = run(0, 0)
    loop = forward * len(cells)
    minimum = sum(run(layer, start) for layer, start in cells)
    return (f"GFLOP: loop {loop / 1e9:.3g}, library {(minimum + forward) / 1e9:.3g}, minimum "
            f"{minimum / 1e9:.3g} ({minimum / loop:.2f} of the loop)")


def core_pairings(model, quick: bool) -> list[Pairing]:
    """The pairings of the techniques in notebooks 01-05."""
    import torch
    from transformer_lens.head_detector import detect_head

    from interp_lib.ablation import head_ablation, head_importance, rank_correlation
    from interp_lib.circuits import composition_scores, diagonal_accuracy, k_composition_circuit
    from interp_lib.data import probe_sentences, repeated_tokens
    from interp_lib.heads import head_scores
    from interp_lib.logit_lens import lens_dataset
    from interp_lib.patching import mlp_position_patching
    from interp_lib.probes import build_probe_data, train_probes
    from interp_lib.reference import (
        composition_scores_loop,
        head_ablation_loop,
        head_scores_loop,
        lens_dataset_naive,
        mlp_position_patching_loop,
    )

    big = is_big(model)
    n, batch = (8, 2) if quick else (50, 2 if big else 4)
    tokens = repeated_tokens(model, n=n, batch=batch, seed=0)
    one = tokens[:1]  # the MLP position sweep and the ablations: one sequence
    texts = _texts(2 if quick else 8)
    kinds = ("previous_token", "duplicate_token", "induction")
    # the naive lens holds [sites, batch, pos, vocab]: 8 x 128 at GPT-2 small's size is 2.6 GB
    lens_seqs, lens_len = (4, 16) if quick else ((8 if big else 32), 128)
    windows = _text_windows(model, lens_seqs, lens_len)

    def scores_diff(ours, loop):
        return max(_max_abs(ours[k], loop[k]) for k in ours.kinds)

    def tl_diff(ours, theirs):
        return max(_max_abs(mine.mass[k] / mine.positions, peer[k])
                   for mine, peer in zip(ours, theirs, strict=True) for k in kinds)

    def lens_diff(a, b):
        return max(_max_abs(getattr(a, k), getattr(b, k)) for k in
                   ("mean_kl_to_final", "mean_loss", "agreement_with_final", "first_stable"))

    def grid_diff(a, b):
        return _max_abs(a.values, b.values)

    def spearman_gap(importance, ablation):
        return 1.0 - rank_correlation(importance.values, ablation.values.abs())

    def comp_diff(ours, theirs):
        theirs = getattr(theirs, "scores", theirs)
        valid = ~ours.scores.isnan()
        return _max_abs(ours.scores[valid], theirs[valid].float())

    cfg = model.cfg
    circuit = k_composition_circuit(model, (cfg.n_layers - 2, 0), (cfg.n_layers - 1, 0))
    slice_rows = min(cfg.d_vocab, 256 if quick else (2048 if big else cfg.d_vocab))

    def dense_ranks():
        """The straightforward way: multiply the rows out, sort each row, find the diagonal."""
        dense = circuit.A[:slice_rows] @ circuit.B
        order = dense.argsort(dim=1, descending=True, stable=True)
        return (order == torch.arange(slice_rows)[:, None]).float().argmax(1)

    def accuracy_diff(ours, dense):
        # rows multiplied in different batch shapes round differently, so near-ties may swap
        # a rank by one: compare the accuracies (top-1 and top-5), not every rank
        return max(abs(ours.top1 - float((dense == 0).float().mean())),
                   abs(ours.topk - float((dense < 5).float().mean())))

    # probe data: short sentences (random-shaped models use the tiny test tokenizer, which
    # splits words into many pieces); the activations are cached once, outside the timing
    short = [s for s in probe_sentences() if len(s.split()) <= 14]
    probe_data = build_probe_data(model, short[: 40 if quick else (300 if big else 700)])
    l2 = 1e-3

    def sklearn_probes():
        from sklearn.linear_model import LogisticRegression

        labels = probe_data.labels["pos"].astype(str)
        train, test = probe_data.split == "train", probe_data.split == "test"
        accuracy = []
        for site in range(len(probe_data.site_names)):
            x = probe_data.activations[site].float().numpy()
            mean, std = x[train].mean(0), x[train].std(0, ddof=1).clip(1e-4)
            x = (x - mean) / std
            clf = LogisticRegression(C=1.0 / (l2 * train.sum()), max_iter=500)
            clf.fit(x[train], labels[train])
            accuracy.append(float((clf.predict(x[test]) == labels[test]).mean()))
        return accuracy

    def probe_diff(ours, theirs):
        return max(abs(float(a) - b) for a, b in zip(ours.accuracy, theirs, strict=True))

    seq = f"{batch} x (BOS + {n} + {n})"
    single = f"1 x (BOS + {n} + {n})"
    mlp_cells = [(la, p) for la in range(cfg.n_layers) for p in range(n + 1, 2 * n + 1)]
    head_cells = [(la, 0) for la in range(cfg.n_layers) for _ in range(cfg.n_heads)]
    mlp_sizes = f"{single}; {sweep_flops(cfg, 2 * n + 1, mlp_cells)}"
    head_sizes = f"{single}; {sweep_flops(cfg, 2 * n + 1, head_cells)}"
    return [
        Pairing("head_scores", "head_scores", "head_scores_loop", seq,
                lambda: head_scores(model, tokens), lambda: head_scores_loop(model, tokens),
                scores_diff, 1e-5),
        Pairing("head_scores_vs_tl", "head_scores (3 kinds)", "TransformerLens detect_head",
                f"{len(texts)} texts", lambda: [head_scores(model, x, kinds=kinds) for x in texts],
                lambda: [{k: detect_head(model, x, f"{k}_head") for k in kinds} for x in texts],
                tl_diff, 1e-5),
        Pairing("lens_dataset", "lens_dataset", "lens_dataset_naive",
                f"{lens_seqs} x {lens_len} tokens",
                lambda: lens_dataset(model, windows), lambda: lens_dataset_naive(model, windows),
                lens_diff, 1e-3),
        Pairing("mlp_position_patching", "mlp_position_patching",
                "mlp_position_patching_loop", mlp_sizes,
                lambda: mlp_position_patching(model, one),
                lambda: mlp_position_patching_loop(model, one), grid_diff, 1e-4),
        Pairing("head_ablation", "head_ablation (zero)", "head_ablation_loop", head_sizes,
                lambda: head_ablation(model, one), lambda: head_ablation_loop(model, one),
                grid_diff, 1e-4),
        Pairing("head_importance", "head_importance", "head_ablation_loop (exhaustive)", single,
                lambda: head_importance(model, one, normalise=False),
                lambda: head_ablation_loop(model, one), spearman_gap,
                2.0 if quick else 1.0, "1 - Spearman", grad=True),
        Pairing("composition_scores", "composition_scores (K)", "composition_scores_loop",
                f"{cfg.n_layers * cfg.n_heads} heads",
                lambda: composition_scores(model, "K", baseline_samples=0),
                lambda: composition_scores_loop(model, "K"), comp_diff, 1e-5),
        Pairing("composition_scores_vs_tl", "composition_scores (K)",
                "TransformerLens all_composition_scores", f"{cfg.n_layers * cfg.n_heads} heads",
                lambda: composition_scores(model, "K", baseline_samples=0),
                lambda: model.all_composition_scores("K"), comp_diff, 1e-5),
        Pairing("diagonal_accuracy", "diagonal_accuracy (row batches)",
                "dense rows + sort", f"{slice_rows} rows x {cfg.d_vocab}",
                lambda: diagonal_accuracy(circuit, k=5, rows=range(slice_rows)), dense_ranks,
                accuracy_diff, 1e-3, "top-1/top-5 diff"),
        Pairing("probes", "train_probes (all sites, batched)",
                "scikit-learn LogisticRegression per site",
                f"{len(probe_data.site_names)} sites x {probe_data.n_words} words",
                lambda: train_probes(probe_data, "pos", l2=l2), sklearn_probes, probe_diff,
                0.02, "max accuracy gap"),
    ]


def run_pairing(p: Pairing, model_label: str, device: str, repeats: int) -> Row:
    import torch

    times: dict[str, list[float]] = {"library": [], "reference": []}
    peaks: dict[str, list[float]] = {"library": [], "reference": []}
    outs: dict[str, Any] = {}
    for r in range(repeats):
        order = ("library", "reference") if r % 2 == 0 else ("reference", "library")
        for side in order:
            fn = p.run_library if side == "library" else p.run_reference
            with torch.set_grad_enabled(p.grad and side == "library"):
                seconds, peak, out = _timed(fn, device)
            times[side].append(seconds)
            if peak is not None:
                peaks[side].append(peak)
            outs[side] = out
    diff = p.compare(outs["library"], outs["reference"])
    lib_s, ref_s = statistics.median(times["library"]), statistics.median(times["reference"])
    return Row(p.task, model_label, device, p.sizes, p.library, p.reference, lib_s, ref_s,
               ref_s / lib_s if lib_s > 0 else float("inf"),
               max(peaks["library"]) if peaks["library"] else None,
               max(peaks["reference"]) if peaks["reference"] else None,
               diff, p.difference, p.tolerance, bool(diff <= p.tolerance), repeats, times)


# ---------------------------------------------------------------- tables


def _fmt_mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def markdown_table(rows: list[Row]) -> str:
    head = ("| task | model | device | sizes | library s | reference s | ratio | library peak MB "
            "| reference peak MB | difference | agrees |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r.task} | {r.model} | {r.device} | {r.sizes} | {r.library_s:.3f} | "
            f"{r.reference_s:.3f} | {r.ratio:.1f}x | {_fmt_mb(r.library_peak_mb)} | "
            f"{_fmt_mb(r.reference_peak_mb)} | {r.difference:.1e} ({r.difference_kind}) | "
            f"{'yes' if r.agrees else '**no**'} |")
    return "\n".join(lines)


def course_table(summary: dict) -> str:
    # course.json gives the course line "model: NAME (why)"
    model = str(summary.get("model", "?")).removeprefix("model: ")
    lines = [f"Model: {model}", "",
             "| notebook | status | seconds | kernel peak MB |", "|---|---|---|---|"]
    for nb in summary["notebooks"]:
        lines.append(f"| {nb['name']} | {nb['status']} | {nb['seconds']:.1f} | "
                     f"{_fmt_mb(nb.get('peak_mb'))} |")
    total = sum(nb["seconds"] for nb in summary["notebooks"])
    peaks = [nb["peak_mb"] for nb in summary["notebooks"] if nb.get("peak_mb") is not None]
    lines.append(f"| **all** | | {total:.1f} | {_fmt_mb(max(peaks) if peaks else None)} |")
    return "\n".join(lines)


def _machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    import os

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads")


# ---------------------------------------------------------------- main


def _models(args) -> list[tuple[str, Any]]:
    from interp_lib import load_model

    sys.path.insert(0, str(HERE))
    from shapes import random_model_dir

    if args.quick and not args.model:
        import tempfile

        from interp_lib.tiny_models import save_tiny_gpt2

        path = save_tiny_gpt2(Path(tempfile.mkdtemp(prefix="bench-quick-")) / "tiny")
        return [("tiny random GPT-2", load_model(str(path), device=args.device))]
    out = []
    for name in args.model or []:
        out.append((name, load_model(name, device=args.device)))
    for shape in args.shape or ([] if args.model else ["course", "gpt2-small"]):
        out.append((f"random {shape}-shaped",
                    load_model(str(random_model_dir(shape)), device=args.device)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes on a tiny random model; check agreement only")
    parser.add_argument("--model", action="append", help="model name or directory (repeatable)")
    parser.add_argument("--shape", action="append", choices=["course", "gpt2-small"],
                        help="random-weight model of this shape (repeatable; default: both, "
                        "unless --model is given)")
    parser.add_argument("--only", action="append", help="run only this task (repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None,
                        help="default 3; 1 in quick mode and for GPT-2-small-sized models")
    parser.add_argument("--course", help="build/course.json from `make course` to include")
    parser.add_argument("--out", default=None,
                        help="folder for results.md and results.json (default: benchmarks/"
                        "results, or nothing written in quick mode)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda but torch sees no CUDA device: run on a GPU machine, "
                         "or leave --device at cpu")

    rows: list[Row] = []
    for label, model in _models(args):
        repeats = args.repeats or (1 if args.quick or is_big(model) else 3)
        for p in pairings(model, args.quick):
            if args.only and p.task not in args.only:
                continue
            print(f"[bench] {label}: {p.task} ...", flush=True)
            row = run_pairing(p, label, args.device, repeats)
            rows.append(row)
            print(f"[bench]   library {row.library_s:.3f} s, reference {row.reference_s:.3f} s, "
                  f"ratio {row.ratio:.1f}x, {row.difference_kind} {row.difference:.1e}"
                  + ("" if row.agrees else f"  DISAGREES (tolerance {row.tolerance:g})"),
                  flush=True)
        del model
    header = (f"Benchmarks, {date.today().isoformat()}, {_machine(args.device)}"
              + (" (quick mode: tiny sizes, times not meaningful)" if args.quick else ""))
    text = f"{header}\n\n{markdown_table(rows)}\n"
    course = None
    if args.course:
        course = json.loads(Path(args.course).read_text())
        text += f"\nWhole course (`make course`)\n\n{course_table(course)}\n"
    print()
    print(text)
    out = Path(args.out) if args.out else (None if args.quick else HERE / "results")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
        (out / f"results{suffix}.md").write_text(text)
        (out / f"results{suffix}.json").write_text(json.dumps(
            {"header": header, "rows": [asdict(r) for r in rows], "course": course},
            indent=2) + "\n")
        print(f"[bench] wrote {out / f'results{suffix}.md'} and .json")
    bad = [r.task for r in rows if not r.agrees]
    if bad:
        print(f"[bench] results disagree: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
