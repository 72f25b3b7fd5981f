"""Write ``interp_lib/data/probe_sentences.txt``: sentences for the grammar probes (notebook 05),
one per line, and ``interp_lib/data/topic_sentences.tsv``: ``label<TAB>sentence`` lines, "sea"
for *Moby-Dick* and "state" for the State of the Union addresses, balanced (steering, notebook
06); both from the course corpus's *held-out* documents (public domain: State of the Union
addresses and *Moby-Dick*; never seen in the course model's training), skipping the three
documents already shipped as ``heldout_sample.txt``.

Sentences are split with a simple rule (a full stop, question or exclamation mark followed by a
space and a capital), whitespace is collapsed, and only sentences of 6 to 40 words made of
ordinary characters are kept; then ``--count`` of them are drawn with a fixed seed, in corpus
order.

Run: ``python scripts/make_probe_sentences.py [--raw data/raw] [--count 2000]``
(needs the corpus tarballs: ``python scripts/fetch_corpus.py``).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
ALLOWED = re.compile(r"^[A-Za-z0-9 ,.;:!?'\"()\-]+$")


def sentences_of(text: str) -> list[str]:
    out = []
    for raw in SPLIT.split(text):
        sentence = " ".join(raw.split())
        words = sentence.split()
        if 6 <= len(words) <= 40 and ALLOWED.match(sentence) and sentence[0].isupper() \
                and sentence[-1] in ".!?":
            out.append(sentence)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default=str(ROOT / "data" / "raw"))
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "interp_lib" / "data" / "probe_sentences.txt"))
    args = parser.parse_args(argv)
    from train_course_model import Config, load_split

    _, heldout, names = load_split(Path(args.raw), Config().heldout_every)
    pool = [s for doc in heldout[3:] for s in sentences_of(doc)]
    if len(pool) < args.count:
        raise SystemExit(f"only {len(pool)} sentences available, asked for {args.count}")
    keep = sorted(random.Random(args.seed).sample(range(len(pool)), args.count))
    Path(args.out).write_text("\n".join(pool[i] for i in keep) + "\n", encoding="utf-8")
    print(f"{args.count} of {len(pool)} sentences from {len(heldout) - 3} held-out documents "
          f"-> {args.out}")

    by_topic: dict[str, list[str]] = {"sea": [], "state": []}
    for doc, name in zip(heldout[3:], names[3:], strict=True):
        topic = "sea" if "moby-dick" in name else "state"
        by_topic[topic].extend(s for s in sentences_of(doc) if len(s.split()) <= 30)
    n = min(len(v) for v in by_topic.values())
    rng = random.Random(args.seed)
    lines = [f"{topic}\t{s}" for topic, pool in by_topic.items()
             for s in (pool[i] for i in sorted(rng.sample(range(len(pool)), n)))]
    topic_out = Path(args.out).with_name("topic_sentences.tsv")
    topic_out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{n} sentences per topic -> {topic_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
