"""Head scores for every head: the batched sweep against the per-head loop and TransformerLens.

1. ``interp_lib.heads.head_scores`` (one forward pass per batch chunk, patterns reduced inside
   hooks) against ``head_scores_loop`` (one forward pass per sequence and per head, scoring one
   head at a time, as in ARENA's and seed 003's loops): time ratio and max abs difference over
   all seven scores.
2. The previous-token, duplicate-token and induction scores against TransformerLens's
   ``head_detector.detect_head`` (one call per text and per kind) on texts that repeat a
   sentence, compared on its own scale (attention mass over all query positions).

Measured in one run with alternating repeats.

Run: ``python benchmarks/bench_heads.py [--model NAME] [--n 50] [--batch 8] [--repeats 3]``
(default model: the course model when shipped, else ``load_model()``'s choice).
"""

from __future__ import annotations

import argparse
import statistics
import time


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or directory")
    parser.add_argument("--n", type=int, default=50, help="random tokens per half")
    parser.add_argument("--batch", type=int, default=8, help="sequences")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    from transformer_lens.head_detector import detect_head

    from interp_lib import load_model
    from interp_lib.heads import head_scores, head_scores_loop, repeated_tokens

    torch.set_grad_enabled(False)
    model = load_model(args.model, device="cpu")
    cfg = model.cfg
    tokens = repeated_tokens(model, n=args.n, batch=args.batch, seed=0)
    print(f"model {cfg.model_name}: {cfg.n_layers} layers x {cfg.n_heads} heads; "
          f"{args.batch} sequences of {tokens.shape[1]} tokens; torch threads "
          f"{torch.get_num_threads()}")

    kinds = ("previous_token", "duplicate_token", "induction")
    # detect_head tokenizes strings itself (random rows do not survive decoding), so the peer
    # comparison uses ordinary text: paragraphs that repeat a sentence, one call per text
    base = ("The committee met again on Tuesday and the chairman read the report aloud. ",
            "Whales were seen off the coast at dawn, and the sailors counted them twice. ",
            "Congress shall consider the treaty, the tariff and the army in this session. ",
            "She wrote the letter slowly, then she read the letter to her brother. ")
    texts = [a + b + a for a in base for b in base if a != b][: args.batch]
    ours_t, loop_t, tl_ours_t, tl_t = [], [], [], []
    for _ in range(args.repeats):
        t, ours = _timed(lambda: head_scores(model, tokens))
        ours_t.append(t)
        t, loop = _timed(lambda: head_scores_loop(model, tokens))
        loop_t.append(t)
        t, per_text = _timed(lambda: [head_scores(model, x, kinds=kinds) for x in texts])
        tl_ours_t.append(t)
        t, theirs = _timed(lambda: [{k: detect_head(model, x, f"{k}_head") for k in kinds}
                                    for x in texts])
        tl_t.append(t)

    diff_loop = max(float((ours[k] - loop[k]).abs().max()) for k in ours.kinds)
    diff_tl = max(float((mine.mass[k] / mine.positions - peer[k]).abs().max())
                  for mine, peer in zip(per_text, theirs, strict=True) for k in kinds)
    med = statistics.median
    print(f"1. all {len(ours.kinds)} scores of every head, {args.batch} repeated sequences")
    print(f"   head_scores (batched)        {med(ours_t):8.3f} s")
    print(f"   head_scores_loop (per head)  {med(loop_t):8.3f} s   ratio "
          f"{med(loop_t) / med(ours_t):.1f}x   max abs diff {diff_loop:.1e}")
    print(f"2. previous-token, duplicate-token, induction on {len(texts)} texts, one call per text")
    print(f"   head_scores                  {med(tl_ours_t):8.3f} s")
    print(f"   TransformerLens detect_head  {med(tl_t):8.3f} s   ratio "
          f"{med(tl_t) / med(tl_ours_t):.1f}x   max abs diff {diff_tl:.1e} (on its scale)")
    print("   top induction heads (repeated tokens): "
          + ", ".join(f"{n} {s:.2f}" for n, s in ours.top("induction", 3)))
    print("   top previous-token heads: "
          + ", ".join(f"{n} {s:.2f}" for n, s in ours.top("previous_token", 3)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
