"""Tiny random-init GPT-2-architecture models, for unit tests and for offline smoke runs.

A random model teaches nothing, but it has every hook, shape and identity a real one has, so
tests build one in a temporary directory in well under a second. The tokenizer is a real
byte-level BPE (GPT-2 style: leading spaces belong to the word, ``<|endoftext|>`` is BOS and
EOS), trained on a few paragraphs of English written for this module.

From the shell: ``python -m interp_lib.tiny_models DIR`` writes such a model to ``DIR``, which
``load_model(DIR)`` or ``INTERP_MODEL=DIR`` then loads.

>>> import tempfile
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> path = save_tiny_gpt2(tempfile.mkdtemp(), n_layers=1)
>>> sorted(p.name for p in path.iterdir())[:2]
['config.json', 'generation_config.json']
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

__all__ = ["TOKENIZER_TEXT", "save_tiny_gpt2", "save_tiny_neox", "tiny_neox_config",
           "train_tiny_tokenizer"]

BOS = "<|endoftext|>"

TOKENIZER_TEXT = """\
The cat sat on the mat, and the dog slept by the door. When the rain stopped, the children
ran into the garden to look for snails under the wet leaves. Mary gave the book to John
because he had asked for it twice. The old man who lived next to the river said that the
water was higher than it had been for years. She opened the window, looked at the sky and
decided to walk to the station instead of taking the bus. In 1790 the president spoke to
Congress about trade, roads and the army; in 2016 another president spoke about jobs,
health and the world. A ship sailed from the harbour at dawn with forty men on board, and
by noon the coast was only a grey line behind them. Numbers such as 12, 345 and 6789 appear
in text too, as do names like Alice, Bob, Paris and London. If you read this sentence
twice, you will notice that the second time it is easier to predict the next word.
Questions end with a question mark? Some sentences end with an exclamation mark! Others,
which are longer and contain clauses, end with a full stop after many words.
"""


def train_tiny_tokenizer(vocab_size: int = 512, text: str = TOKENIZER_TEXT):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``text`` (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 260:
        raise ValueError(f"vocab_size must be at least 260 (256 bytes + BOS), got {vocab_size}")
    if not text.strip():
        raise ValueError("text to train the tokenizer on is empty")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(text.splitlines(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=BOS, unk_token=BOS
    )


def save_tiny_gpt2(
    path: str | Path,
    *,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_ctx: int = 128,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Write a random-init ``GPT2LMHeadModel`` and its tokenizer to ``path``; return the path.

    The model is the GPT-2 architecture (learned positions, LayerNorm, GELU MLPs) at a tiny
    size; the same arguments and seed always give the same weights.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    path, tokenizer, bos_id = _prepare(path, n_layers, d_model, n_heads, n_ctx, vocab_size)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_ctx,
        n_embd=d_model,
        n_layer=n_layers,
        n_head=n_heads,
        bos_token_id=bos_id,
        eos_token_id=bos_id,
    )
    return _write(GPT2LMHeadModel, config, tokenizer, path, seed)


def save_tiny_neox(
    path: str | Path,
    *,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_ctx: int = 128,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Write a random-init ``GPTNeoXForCausalLM`` shaped like the course model (partial rotary,
    sequential residual, tied embeddings) and its tokenizer to ``path``; return the path."""
    from transformers import GPTNeoXForCausalLM

    path, tokenizer, bos_id = _prepare(path, n_layers, d_model, n_heads, n_ctx, vocab_size)
    config = tiny_neox_config(len(tokenizer), n_layers=n_layers, d_model=d_model,
                              n_heads=n_heads, n_ctx=n_ctx, bos_token_id=bos_id,
                              eos_token_id=bos_id)
    return _write(GPTNeoXForCausalLM, config, tokenizer, path, seed)


def tiny_neox_config(vocab_size: int, *, n_layers: int = 2, d_model: int = 64, n_heads: int = 4,
                     n_ctx: int = 128, **extra):
    """A ``GPTNeoXConfig`` with the course model's architecture (partial rotary, sequential
    residual, tied embeddings) at a tiny size; ``extra`` goes to the config as is."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, intermediate_size=4 * d_model,
        max_position_embeddings=n_ctx, rotary_pct=0.25, use_parallel_residual=False,
        tie_word_embeddings=True, **extra,
    )


def _prepare(path, n_layers: int, d_model: int, n_heads: int, n_ctx: int, vocab_size: int):
    """Checked sizes, the created folder, the tiny tokenizer and its BOS id."""
    for label, value in (("n_layers", n_layers), ("d_model", d_model), ("n_heads", n_heads),
                         ("n_ctx", n_ctx)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_tokenizer(vocab_size)
    tokenizer.model_max_length = n_ctx
    return path, tokenizer, tokenizer.convert_tokens_to_ids(BOS)


def _write(model_class, config, tokenizer, path: Path, seed: int) -> Path:
    """A seeded random-init model of ``model_class`` and the tokenizer, saved to ``path``."""
    import torch

    torch.manual_seed(seed)
    model = model_class(config).eval()
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' "Writing shards" bar
        model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interp_lib.tiny_models",
        description="Write a tiny random-init GPT-2-architecture model directory.",
    )
    parser.add_argument("path", help="directory to write (created if missing)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--n-ctx", type=int, default=128)
    args = parser.parse_args(argv)
    out = save_tiny_gpt2(
        args.path, n_layers=args.layers, d_model=args.d_model, n_heads=args.heads,
        n_ctx=args.n_ctx,
    )
    print(f"wrote a tiny random-init GPT-2 to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
