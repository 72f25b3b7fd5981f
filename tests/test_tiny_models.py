import json

import pytest
import torch
from safetensors.torch import load_file

from interp_lib.tiny_models import main, save_tiny_gpt2, train_tiny_tokenizer


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = load_file(save_tiny_gpt2(tmp_path / "a", n_layers=1) / "model.safetensors")
    b = load_file(save_tiny_gpt2(tmp_path / "b", n_layers=1) / "model.safetensors")
    c = load_file(save_tiny_gpt2(tmp_path / "c", n_layers=1, seed=1) / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["transformer.wte.weight"], c["transformer.wte.weight"])


def test_config_records_the_requested_sizes(tmp_path):
    path = save_tiny_gpt2(tmp_path, n_layers=3, d_model=48, n_heads=6, n_ctx=32)
    config = json.loads((path / "config.json").read_text())
    assert (config["n_layer"], config["n_embd"], config["n_head"], config["n_positions"]) == (
        3, 48, 6, 32)
    assert config["architectures"] == ["GPT2LMHeadModel"]


def test_tokenizer_is_lossless_byte_level_bpe_with_bos():
    tokenizer = train_tiny_tokenizer()
    text = "Héllo, wörld! Numbers 12345 and émojis 🙂 survive byte-level BPE."
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.bos_token == tokenizer.eos_token == "<|endoftext|>"
    # GPT-2 style: the leading space belongs to the word
    assert tokenizer.convert_ids_to_tokens(tokenizer(" the")["input_ids"])[0].startswith("Ġ")


@pytest.mark.parametrize("kwargs, match", [({"n_layers": 0}, "n_layers"),
                                           ({"d_model": 30, "n_heads": 4}, "divisible"),
                                           ({"n_ctx": 2.5}, "n_ctx")])
def test_rejects_bad_sizes(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        save_tiny_gpt2(tmp_path, **kwargs)


def test_rejects_bad_tokenizer_settings():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tiny_tokenizer(vocab_size=100)
    with pytest.raises(ValueError, match="empty"):
        train_tiny_tokenizer(text="   ")


def test_command_line_writes_a_loadable_model(tmp_path, capsys):
    from interp_lib import load_model

    assert main([str(tmp_path / "m"), "--layers", "1", "--d-model", "32", "--heads", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_model(str(tmp_path / "m"))
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.n_heads) == (1, 32, 2)
