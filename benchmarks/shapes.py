"""Random-weight models of a given shape, written to a temporary directory, for benchmarks.

Times depend on the shape, not the weights, so a random GPT-2-small-shaped model times what
gpt2-small would on this machine without the Hub. The tokenizer is the tiny test tokenizer
(its ids are a subset of the model's vocabulary); the unembedding still has the full width.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

SHAPES = {
    # name: (architecture, layers, d_model, heads, d_mlp, vocab, context)
    "gpt2-small": ("gpt2", 12, 768, 12, 3072, 50257, 1024),
    "course": ("neox", 4, 256, 8, 1024, 8192, 256),
}


def random_model_dir(shape: str, root: str | Path | None = None) -> Path:
    """Write a random model of ``shape`` (a key of :data:`SHAPES`); return its directory."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    from interp_lib.tiny_models import BOS, train_tiny_tokenizer

    arch, layers, d_model, heads, d_mlp, vocab, ctx = SHAPES[shape]
    path = Path(root or tempfile.mkdtemp(prefix=f"bench-{shape}-"))
    tokenizer = train_tiny_tokenizer()
    tokenizer.model_max_length = ctx
    bos = tokenizer.convert_tokens_to_ids(BOS)
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=ctx, n_embd=d_model,
                                           n_layer=layers, n_head=heads, n_inner=d_mlp,
                                           bos_token_id=bos, eos_token_id=bos))
    else:
        model = GPTNeoXForCausalLM(GPTNeoXConfig(
            vocab_size=vocab, hidden_size=d_model, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=d_mlp, max_position_embeddings=ctx,
            rotary_pct=0.25, use_parallel_residual=False, tie_word_embeddings=True,
            bos_token_id=bos, eos_token_id=bos))
    torch.manual_seed(0)
    with contextlib.redirect_stderr(io.StringIO()):
        model.eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
