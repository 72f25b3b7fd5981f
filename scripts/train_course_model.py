#!/usr/bin/env python3
"""Train the course model: a small GPT-NeoX (rotary) language model on public-domain English.

Reproducible and resumable: every batch is a function of (seed, step) alone, and a checkpoint
(model, optimiser, step) is written every ``--eval-every`` steps, so a run stopped at any point
continues where it stopped when the same command is run again. Logs go to ``OUT/train_log.jsonl``.

Steps: read the corpora fetched by ``scripts/fetch_corpus.py`` (``data/raw``), split them by
document (every 20th document held out), train a byte-level BPE tokenizer on the training split,
tokenize, train, then write the shipped files (``--ship DIR``: config, float16 safetensors,
tokenizer, ``interp_lib.json``, held-out sample, ``metrics.json``).

Batch mixture (the course needs in-context copying, which plain text teaches slowly; measured
on this CPU, a model trained on text alone, or with a quarter of its rows repeating, had no
induction head after an hour). Steps are small (512 tokens) and many: Aoyama, Wilcox and
Schneider (2025, arXiv:2511.16893) find induction heads emerge after about
10^5.7 * sqrt(batch * context) training tokens, so at a fixed compute budget smaller batches
reach them sooner (about 22k steps of 512 tokens by that law). The rows:
- ``natural``: a window of running text (``text_len`` tokens);
- ``span``: a window of running text in which a span is copied further on (off by default);
- ``random``: BOS + n random tokens repeated to fill ``random_len`` tokens (n from
  ``random_n_min`` to ``random_n_max``), the loss taken only where the sequence is predictable
  (from the second token of the second copy on).
Each step averages the loss of the text rows and of the random rows. Optionally the first
``random_only_steps`` steps (0 by default) use only random rows (``warm_rows`` rows of
``warm_len`` tokens, periods up to ``warm_n_max``): previous-token heads form there within
minutes, but in the runs measured here no induction head followed.

Rotary embeddings cover only ``rotary_pct`` of each head's dimensions (a quarter, as in Pythia):
the rest carry content unrotated, so a query can match a key's content at any distance. In a run
with rotary on every dimension, the model learned to copy only over short distances (second-half
accuracy 0.24 at period 16, none at period 30) and had no induction head after 25 minutes.

With partial rotary and these defaults (20,000 steps measured), previous-token heads formed
(0.5 to 0.75) but copying still faded with distance (second-copy accuracy 0.28 at period 5, 0.03
at 29, none at 40 or 50) and there was no induction head: periods of 4 to 29 can be predicted by
short-range means. ``init_from`` starts a second phase from such a run's weights with its own
schedule and mixture (e.g. random rows of 128 tokens with periods 20 to 60 only); the model
card lists both phases and the commands for each.

Usage::

    python scripts/fetch_corpus.py
    python scripts/train_course_model.py --out data/run --ship interp_lib/course_model
    # a second phase from the first one's weights (fresh optimiser and schedule):
    cp data/run/checkpoint.pt data/run/phase1.pt
    python scripts/train_course_model.py --out data/run2 --ship interp_lib/course_model \
        --steps 10000 --set init_from=data/run/phase1.pt --set random_len=128 ...

About 30,000 steps at about 0.2 s each on a 2-core CPU: under two hours in the background.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_corpus import PACKAGES, documents  # noqa: E402

BOS = "<|endoftext|>"


@dataclass
class Config:
    seed: int = 0
    vocab_size: int = 8192
    n_layers: int = 4
    d_model: int = 256
    n_heads: int = 8
    d_mlp: int = 1024
    n_ctx: int = 256
    rotary_pct: float = 0.25
    tie_embeddings: bool = True
    steps: int = 30000
    lr: float = 1.5e-3
    warmup: int = 300
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    # weight decay on the input embedding too (False: rows of rare tokens keep their scale)
    decay_embeddings: bool = True
    # text rows of text_len tokens per step: plain windows, and windows with a copied span
    mix_natural: int = 2
    mix_span: int = 0
    text_len: int = 128
    # repeated-random-token rows per step, each random_len tokens, period n in [n_min, n_max)
    mix_random: int = 4
    random_len: int = 64
    random_n_min: int = 4
    random_n_max: int = 30
    # the first steps train on repeated random tokens only, short rows with short periods
    # (previous-token and induction heads form fastest there)
    random_only_steps: int = 0
    warm_rows: int = 16
    warm_len: int = 128
    warm_n_max: int = 60
    # vocabulary curriculum for the random rows: their tokens come from the random_vocab_start
    # most frequent training tokens at first, a set growing geometrically to the whole
    # vocabulary by step random_vocab_steps (0: the whole vocabulary from the start). With few
    # distinct tokens, a bag of the earlier tokens predicts nothing and copying the token that
    # followed the current one's earlier occurrence (induction) is what pays.
    random_vocab_start: int = 0
    random_vocab_steps: int = 0
    heldout_every: int = 20
    # attention guidance (off when guide_steps is 0): for the first guide_steps steps, an extra
    # loss on the repeated-random rows pulls head guide_prev ("L.H") towards the previous token
    # and head guide_induction towards the token after the current token's previous occurrence,
    # weighted guide_weight and fading linearly to zero; afterwards only the language-modelling
    # loss trains. It seeds the circuit that plain training on this CPU budget did not find;
    # whatever the weights do after the fade, they do for the language-modelling loss.
    guide_steps: int = 0
    # the token embedding (tied: also the unembedding) stays at its random initialisation for
    # the first freeze_embed_steps steps, so that every token, rare ones included, keeps a
    # distinct vector while the copying circuit forms (trained, the vectors of rarely seen
    # tokens drift together: they are pushed down as wrong answers at every step)
    freeze_embed_steps: int = 0
    guide_weight: float = 1.0
    guide_prev: str = "0.0"
    guide_induction: str = "1.0"
    # guide on the text rows too (else only on the repeated-random rows): without it the guided
    # heads learned to act on random sequences only
    guide_text: bool = False
    # start from the weights of another run's checkpoint (a second phase with its own schedule
    # and mixture); "" starts from random weights. The optimiser state is not carried over.
    init_from: str = ""


# ---------------------------------------------------------------- data


def load_split(raw: Path, every: int) -> tuple[list[str], list[str], list[str]]:
    """Documents of both corpora, split by document: ``(train, heldout, heldout_names)``."""
    train, heldout, names = [], [], []
    for package, version in PACKAGES.items():
        tarball = raw / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
        if not tarball.is_file():
            raise SystemExit(f"{tarball} is missing: run `python scripts/fetch_corpus.py` first")
        for i, (name, text) in enumerate(documents(tarball).items()):
            if i % every == every // 2:
                heldout.append(text)
                names.append(f"{package}:{name}")
            else:
                train.append(text)
    return train, heldout, names


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=BOS,
                                   unk_token=BOS)


def token_stream(tokenizer, texts: list[str]) -> np.ndarray:
    """All documents' tokens, each document followed by the end-of-text token."""
    eos = tokenizer.convert_tokens_to_ids(BOS)
    pieces = []
    for ids in tokenizer(texts)["input_ids"]:
        pieces.append(np.asarray(ids, dtype=np.int32))
        pieces.append(np.asarray([eos], dtype=np.int32))
    return np.concatenate(pieces)


def frequency_order(stream: np.ndarray, vocab: int, bos: int) -> np.ndarray:
    """Token ids by decreasing count in ``stream`` (ties by id), without ``bos``."""
    counts = np.bincount(stream, minlength=vocab)
    order = np.lexsort((np.arange(vocab), -counts))
    return order[order != bos]


def random_vocab_size(cfg: Config, step: int) -> int:
    """How many of the most frequent tokens the random rows draw from at ``step``."""
    full = cfg.vocab_size - 1
    if not cfg.random_vocab_start or step >= cfg.random_vocab_steps:
        return full
    start = min(cfg.random_vocab_start, full)
    return int(round(start * (full / start) ** (step / cfg.random_vocab_steps)))


def make_batch(stream: np.ndarray, cfg: Config, step: int, bos: int,
               order: np.ndarray | None = None):
    """``[(input_ids, labels), ...]`` for one step (text rows, random rows); a function of
    (seed, step) only. Labels are -100 where nothing can be predicted. ``order``: token ids
    by decreasing frequency (:func:`frequency_order`), needed by the vocabulary curriculum."""
    rng = np.random.default_rng([cfg.seed, step])
    n_ctx = cfg.text_len
    groups = []
    text_kinds = [] if step < cfg.random_only_steps else (
        ["natural"] * cfg.mix_natural + ["span"] * cfg.mix_span)
    rows, labels = [], []
    for kind in text_kinds:
        start = int(rng.integers(0, len(stream) - n_ctx))
        row = np.concatenate([[bos], stream[start: start + n_ctx - 1]])
        if kind == "span":
            k = int(rng.integers(10, 61))
            a = int(rng.integers(1, n_ctx - 2 * k - 1))
            b = int(rng.integers(a + k, n_ctx - k + 1))
            row[b: b + k] = row[a: a + k]
        label = row.copy()
        label[0] = -100
        rows.append(row)
        labels.append(label)
    if rows:
        groups.append((rows, labels))
    rows, labels = [], []
    warm = step < cfg.random_only_steps
    n_rows, length, n_max = ((cfg.warm_rows, cfg.warm_len, cfg.warm_n_max) if warm
                             else (cfg.mix_random, cfg.random_len, cfg.random_n_max))
    for _ in range(n_rows):
        n = int(rng.integers(cfg.random_n_min, n_max))
        if cfg.random_vocab_start:
            half = order[rng.integers(0, random_vocab_size(cfg, step), size=n)]
        else:
            half = rng.integers(1, cfg.vocab_size, size=n)
        row = np.concatenate([[bos], np.resize(half, length - 1)])
        label = row.copy()
        label[: n + 2] = -100  # unpredictable: BOS, the first copy, the second copy's start
        rows.append(row)
        labels.append(label)
    if rows:
        groups.append((rows, labels))
    return [(torch.as_tensor(np.stack(r), dtype=torch.long),
             torch.as_tensor(np.stack(la), dtype=torch.long)) for r, la in groups]


# ---------------------------------------------------------------- model and evaluation


def build_model(cfg: Config, bos: int):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(cfg.seed)
    config = GPTNeoXConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads, intermediate_size=cfg.d_mlp,
        max_position_embeddings=cfg.n_ctx, rotary_pct=cfg.rotary_pct, use_parallel_residual=False,
        tie_word_embeddings=cfg.tie_embeddings, bos_token_id=bos, eos_token_id=bos,
        hidden_dropout=0.0, attention_dropout=0.0, attn_implementation="sdpa",
    )
    return GPTNeoXForCausalLM(config)


@torch.no_grad()
def heldout_loss(model, stream: np.ndarray, cfg: Config, bos: int, n_windows: int = 64) -> float:
    """Mean next-token loss on evenly spaced windows of the held-out stream (BOS first)."""
    starts = np.linspace(0, len(stream) - cfg.n_ctx, n_windows).astype(int)
    total, count = 0.0, 0
    for chunk in np.array_split(starts, max(1, n_windows // 16)):
        ids = torch.as_tensor(np.stack([np.concatenate([[bos], stream[s: s + cfg.n_ctx - 1]])
                                        for s in chunk]), dtype=torch.long)
        logits = model(ids).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 ids[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += ids[:, 1:].numel()
    return total / count


def unigram_loss(train: np.ndarray, heldout: np.ndarray, vocab: int) -> float:
    """Loss of the add-one unigram model of the training tokens, on the held-out tokens."""
    counts = np.bincount(train, minlength=vocab).astype(float) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(-log_p[heldout].mean())


@torch.no_grad()
def repeat_metrics(model, cfg: Config, bos: int, n: int = 50, batch: int = 8) -> dict:
    """Head scores and per-half loss on BOS + n random tokens + the same n tokens."""
    gen = torch.Generator().manual_seed(1234)
    half = torch.randint(1, cfg.vocab_size, (batch, n), generator=gen)
    ids = torch.cat([torch.full((batch, 1), bos), half, half], dim=1)
    model.set_attn_implementation("eager")
    out = model(ids, output_attentions=True)
    model.set_attn_implementation("sdpa")
    log_probs = out.logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    first, second = -log_probs[:, :n].mean().item(), -log_probs[:, n:].mean().item()
    prev, induction = [], []
    for pattern in out.attentions:  # [batch, head, query, key]
        prev.append(pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, -1)))
        induction.append(pattern.diagonal(offset=1 - n, dim1=-2, dim2=-1)[..., 1:].mean((0, -1)))
    prev, induction = torch.stack(prev), torch.stack(induction)  # [layer, head]

    def best(scores):
        flat = int(scores.argmax())
        return f"{flat // scores.shape[1]}.{flat % scores.shape[1]}", float(scores.max())

    (prev_head, prev_score), (ind_head, ind_score) = best(prev), best(induction)
    return {"loss_first_half": first, "loss_second_half": second,
            "best_prev_token_head": prev_head, "prev_token_score": prev_score,
            "best_induction_head": ind_head, "induction_score": ind_score,
            "prev_token_scores": prev.tolist(), "induction_scores": induction.tolist()}


def tokens_seen(cfg: Config, steps: int) -> int:
    """Training tokens in the first ``steps`` steps (text rows join after random_only_steps)."""
    warm = min(steps, cfg.random_only_steps)
    later = steps - warm
    return (warm * cfg.warm_rows * cfg.warm_len
            + later * (cfg.mix_natural + cfg.mix_span) * cfg.text_len
            + later * cfg.mix_random * cfg.random_len)


def _head(spec: str, cfg: Config) -> tuple[int, int]:
    layer, _, head = spec.partition(".")
    layer, head = int(layer), int(head)
    if not (0 <= layer < cfg.n_layers and 0 <= head < cfg.n_heads):
        raise SystemExit(f"guide head {spec!r} is outside {cfg.n_layers} layers x "
                         f"{cfg.n_heads} heads")
    return layer, head


def guide_weight_at(step: int, cfg: Config) -> float:
    """Weight of the attention-guidance loss at ``step``: linear fade to 0 at guide_steps."""
    if step >= cfg.guide_steps:
        return 0.0
    return cfg.guide_weight * (1 - step / cfg.guide_steps)


def guide_loss(attentions, ids: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Mean negative log attention of the guided heads on their targets: for guide_prev, the
    previous position; for guide_induction, the positions right after earlier occurrences of
    the current token (summed), at every query whose token occurred before."""
    (lp, hp), (li, hi) = _head(cfg.guide_prev, cfg), _head(cfg.guide_induction, cfg)
    prev = attentions[lp][:, hp]  # [row, query, key]
    loss_prev = -prev.diagonal(offset=-1, dim1=-2, dim2=-1).clamp_min(1e-6).log().mean()
    n_pos = ids.shape[1]
    # target[b, q, k]: key k (>= 1, <= q) follows an earlier occurrence of query q's token
    same = ids[:, None, :-1] == ids[:, :, None]  # [row, query, key - 1]
    target = torch.zeros(ids.shape[0], n_pos, n_pos, dtype=torch.bool)
    target[:, :, 1:] = same
    target &= torch.ones(n_pos, n_pos, dtype=torch.bool).tril()
    has = target.any(-1)
    if not has.any():
        return loss_prev
    mass = (attentions[li][:, hi] * target).sum(-1)[has]
    return loss_prev - mass.clamp_min(1e-6).log().mean()


def lr_at(step: int, cfg: Config) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


# ---------------------------------------------------------------- main


def prepare(cfg: Config, raw: Path, out: Path):
    """Tokenizer and token streams, cached in ``out`` (deterministic from the corpora)."""
    from transformers import AutoTokenizer

    tok_dir = out / "tokenizer"
    train_docs, heldout_docs, heldout_names = load_split(raw, cfg.heldout_every)
    if not (tok_dir / "tokenizer.json").is_file():
        tokenizer = train_tokenizer(train_docs, cfg.vocab_size)
        tokenizer.model_max_length = cfg.n_ctx
        tokenizer.save_pretrained(tok_dir)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    cache = out / "tokens.npz"
    if not cache.is_file():
        np.savez(cache, train=token_stream(tokenizer, train_docs),
                 heldout=token_stream(tokenizer, heldout_docs))
    arrays = np.load(cache)
    return tokenizer, arrays["train"], arrays["heldout"], heldout_docs, heldout_names


def ship(model, tokenizer, cfg: Config, out: Path, ship_dir: Path, heldout_docs, heldout_names,
         metrics: dict) -> None:
    ship_dir.mkdir(parents=True, exist_ok=True)
    model.config.attn_implementation = "eager"
    model.to(torch.float16).save_pretrained(ship_dir)
    model.to(torch.float32)
    tokenizer.save_pretrained(ship_dir)
    (ship_dir / "interp_lib.json").write_text(json.dumps(
        {"default_prepend_bos": True, "name": "course"}, indent=2) + "\n")
    sample = "\n\n".join(heldout_docs[:3])[:60_000]
    (ship_dir / "heldout_sample.txt").write_text(sample + "\n", encoding="utf-8")
    (ship_dir / "metrics.json").write_text(json.dumps(
        {"config": asdict(cfg), "heldout_documents": heldout_names, **metrics}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default="data/raw", help="fetched tarballs (data/raw)")
    parser.add_argument("--out", default="data/run", help="run folder: checkpoints and logs")
    parser.add_argument("--ship", help="write the shipped model files to this folder at the end")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a Config field, e.g. --set lr=1e-3 (repeatable)")
    parser.add_argument("--stop-at", type=int, metavar="N",
                        help="stop after step N of the --steps schedule (then ship), e.g. when "
                        "the behaviour the course needs is there before the schedule ends")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    args = parser.parse_args(argv)
    cfg = Config()
    if args.steps:
        cfg.steps = args.steps
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in Config.__dataclass_fields__:
            fields = list(Config.__dataclass_fields__)
            parser.error(f"unknown Config field {key!r}; fields: {fields}")
        kind = type(getattr(cfg, key))
        setattr(cfg, key, value.lower() in ("1", "true", "yes") if kind is bool else kind(value))
    print(f"config: {asdict(cfg)}", flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer, train, heldout, heldout_docs, heldout_names = prepare(cfg, Path(args.raw), out)
    bos = tokenizer.convert_tokens_to_ids(BOS)
    print(f"train tokens {len(train):,}; held-out tokens {len(heldout):,}; "
          f"vocab {len(tokenizer)}", flush=True)
    order = frequency_order(train, cfg.vocab_size, bos)
    model = build_model(cfg, bos)

    def decays(name, param):
        if name.endswith("embed_in.weight") and not cfg.decay_embeddings:
            return False
        return param.ndim >= 2

    decay = [p for n, p in model.named_parameters() if decays(n, p)]
    no_decay = [p for n, p in model.named_parameters() if not decays(n, p)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    ckpt = out / "checkpoint.pt"
    step, elapsed = 0, 0.0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        if state.get("config") != asdict(cfg):
            raise SystemExit(
                f"{ckpt} was written by a run with another configuration "
                f"({state.get('config')}); use another --out folder or delete it to start over"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        print(f"resumed at step {step} ({elapsed / 60:.1f} min trained)", flush=True)
    elif cfg.init_from:
        first = torch.load(cfg.init_from, weights_only=False)
        model.load_state_dict(first["model"])
        print(f"initialised from {cfg.init_from} (step {first['step']} of a run with config "
              f"{first['config']})", flush=True)
    log = (out / "train_log.jsonl").open("a")
    model.train()
    train_loss, guide_log = [], []
    start = time.perf_counter() - elapsed
    stop = min(cfg.steps, args.stop_at) if args.stop_at else cfg.steps
    while step < stop:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        # every group (text rows, random rows) weighs equally in the step's loss
        groups = make_batch(train, cfg, step, bos, order)
        loss = 0.0
        weight = guide_weight_at(step, cfg)
        for index, (ids, labels) in enumerate(groups):
            random_rows = index == len(groups) - 1 and cfg.mix_random > 0  # the last group
            if weight > 0 and (random_rows or cfg.guide_text):
                model.set_attn_implementation("eager")
                result = model(ids, labels=labels, output_attentions=True)
                model.set_attn_implementation("sdpa")
                extra = weight * guide_loss(result.attentions, ids, cfg)
                guide_log.append(extra.item())
            else:
                result, extra = model(ids, labels=labels), 0.0
            part = result.loss / len(groups)
            (part + extra).backward()
            loss += part.detach()
        if step < cfg.freeze_embed_steps:
            model.get_input_embeddings().weight.grad = None
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        train_loss.append(loss.item())
        step += 1
        if step % args.eval_every == 0 or step == stop:
            model.eval()
            record = {"step": step, "tokens": tokens_seen(cfg, step),
                      "minutes": (time.perf_counter() - start) / 60,
                      "train_loss": float(np.mean(train_loss)),
                      **({"guide_loss": float(np.mean(guide_log))} if guide_log else {}),
                      "heldout_loss": heldout_loss(model, heldout, cfg, bos),
                      **{k: v for k, v in repeat_metrics(model, cfg, bos).items()
                         if not k.endswith("_scores")}}
            model.train()
            train_loss, guide_log = [], []
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in record.items()}), flush=True)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "config": asdict(cfg),
                        "elapsed": time.perf_counter() - start}, ckpt)
    model.eval()
    if args.ship:
        metrics = {"heldout_loss": heldout_loss(model, heldout, cfg, bos),
                   "unigram_heldout_loss": unigram_loss(train, heldout, len(tokenizer)),
                   "train_minutes": (time.perf_counter() - start) / 60,
                   "train_tokens": tokens_seen(cfg, step),
                   "train_steps": step,
                   "log": [json.loads(line) for line in (out / "train_log.jsonl").open()]}
        ship(model, tokenizer, cfg, out, Path(args.ship), heldout_docs, heldout_names, metrics)
        print(f"shipped to {args.ship}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
