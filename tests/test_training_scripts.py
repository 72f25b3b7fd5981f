"""scripts/write_model_card.py: the retrain commands it writes into the card rebuild the
configuration, and a two-phase run's first phase is read back from its checkpoint and log."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)  # dataclasses look their module up by name
    spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _config_from_command(train, command: str):
    """Apply a command's --steps and --set flags to the default Config, as the script does."""
    args = shlex.split(command)
    cfg = train.Config()
    for i, arg in enumerate(args):
        if arg == "--steps":
            cfg.steps = int(args[i + 1])
        if arg == "--set":
            key, _, value = args[i + 1].partition("=")
            kind = type(getattr(cfg, key))
            setattr(cfg, key, value.lower() in ("1", "true") if kind is bool else kind(value))
    return cfg


def test_retrain_command_rebuilds_the_config():
    card, train = _load("write_model_card"), _load("train_course_model")
    cfg = train.Config(steps=1234, lr=7e-4, random_len=128, init_from="data/x/step5.pt")
    command = card.retrain_command(asdict(cfg), trained_steps=1000)
    assert "--stop-at 1000" in command
    assert asdict(_config_from_command(train, command)) == asdict(cfg)
    assert "--stop-at" not in card.retrain_command(asdict(cfg), trained_steps=1234)


def test_earlier_phases_are_read_back_from_checkpoints_and_logs(tmp_path):
    card, train = _load("write_model_card"), _load("train_course_model")
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    first_cfg = asdict(train.Config(steps=300))
    rows = [{"step": s, "tokens": s * 10} for s in (100, 200, 200, 300, 400)]  # resumed at 200
    rows[3]["tokens"] = 2001
    (one / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    torch.save({"config": first_cfg, "step": 300, "elapsed": 600.0, "model": {}},
               one / "step300.pt")
    second_cfg = asdict(train.Config(steps=80, lr=1e-3, init_from=str(one / "step300.pt")))
    torch.save({"config": second_cfg, "step": 60, "elapsed": 120.0, "model": {}},
               two / "step60.pt")
    third = asdict(train.Config(steps=50, init_from=str(two / "step60.pt")))

    phases = card.earlier_phases(third)
    assert [p["step"] for p in phases] == [300, 60]  # oldest first
    first = phases[0]
    assert first["minutes"] == 10.0 and first["config"] == first_cfg
    assert [r["step"] for r in first["log"]] == [100, 200, 300]  # steps after the stop dropped
    assert first["log"][1]["tokens"] == 2000  # the later of two rows for one step
    assert phases[1]["log"] == []  # no log beside the second checkpoint

    commands = card.retrain_commands(third, 50, phases).splitlines()
    assert len(commands) == 5
    assert commands[0].startswith(f"python scripts/train_course_model.py --out {one}")
    assert commands[1] == f"cp {one}/checkpoint.pt {one}/step300.pt"
    assert asdict(_config_from_command(train, commands[2])) == second_cfg
    assert "--stop-at 60" in commands[2]
    assert commands[3] == f"cp {two}/checkpoint.pt {two}/step60.pt"
    assert asdict(_config_from_command(train, commands[4])) == third
    assert card.earlier_phases(asdict(train.Config())) == []


def test_vocabulary_curriculum_grows_from_the_most_frequent_tokens():
    import numpy as np

    train = _load("train_course_model")
    stream = np.array([0, 5, 5, 5, 3, 3, 7, 0, 9, 9, 9, 9], dtype=np.int32)
    assert train.frequency_order(stream, 12, bos=0)[:4].tolist() == [9, 5, 3, 7]
    assert 0 not in train.frequency_order(stream, 12, bos=0)

    cfg = train.Config(vocab_size=1025, random_vocab_start=16, random_vocab_steps=600)
    sizes = [train.random_vocab_size(cfg, s) for s in (0, 100, 300, 599, 600, 5000)]
    assert sizes[0] == 16 and sizes[2] == 128 and sizes[-2] == sizes[-1] == 1024
    assert sizes == sorted(sizes)
    assert train.random_vocab_size(train.Config(), 0) == train.Config().vocab_size - 1

    # the random rows draw only from the allowed most frequent tokens, and repeat their period
    big = np.random.default_rng(0).zipf(1.3, 20000).clip(1, 1024).astype(np.int32)
    order = train.frequency_order(big, 1025, bos=0)
    groups = train.make_batch(big, cfg, 0, 0, order)
    ids, labels = groups[-1]
    body = ids[:, 1:]
    assert set(body.flatten().tolist()) <= set(order[:16].tolist())
    for row, label in zip(ids, labels, strict=True):
        n = int((label == -100).sum()) - 2  # BOS, the first copy, the second copy's start
        assert torch.equal(row[1 + n: 1 + 2 * n], row[1: 1 + n])


def test_attention_guidance_loss_is_zero_on_the_target_patterns_and_fades():
    train = _load("train_course_model")
    cfg = train.Config(n_layers=2, n_heads=2, guide_steps=100, guide_weight=2.0,
                       guide_prev="0.1", guide_induction="1.0")
    # a repeated random row (period 4) and a text-like row with one repeated token (7)
    ids = torch.tensor([[0, 11, 12, 13, 14, 11, 12, 13, 14, 11],
                        [0, 7, 20, 21, 22, 7, 23, 24, 25, 26]])
    n_pos = ids.shape[1]
    uniform = torch.tril(torch.ones(n_pos, n_pos))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    attn = [uniform.expand(2, 2, n_pos, n_pos).clone() for _ in range(2)]
    prev = torch.zeros(n_pos, n_pos)
    prev[0, 0] = 1.0
    prev[torch.arange(1, n_pos), torch.arange(n_pos - 1)] = 1.0
    attn[0][:, 1] = prev
    # planted induction: row 0 from position 5 on attends one period back, plus one; row 1's
    # second 7 (position 5) attends to position 2; other queries attend to themselves
    induction = torch.eye(n_pos).expand(2, n_pos, n_pos).clone()
    for q in range(5, n_pos):
        induction[0, q] = 0.0
        induction[0, q, q - 3] = 1.0
    induction[1, 5] = 0.0
    induction[1, 5, 2] = 1.0
    attn[1][:, 0] = induction
    assert float(train.guide_loss(attn, ids, cfg)) < 1e-5
    # period-4 rows: at position 9 the earlier occurrences are 1 and 5, so the targets are 2
    # and 6; splitting the attention between them is as good as either alone
    induction[0, 9] = 0.0
    induction[0, 9, 2] = induction[0, 9, 6] = 0.5
    attn[1][:, 0] = induction
    assert float(train.guide_loss(attn, ids, cfg)) < 1e-5
    # uniform attention: about the mean log of the number of visible keys, far from 0
    flat = [uniform.expand(2, 2, n_pos, n_pos) for _ in range(2)]
    assert float(train.guide_loss(flat, ids, cfg)) > 2.0
    assert [train.guide_weight_at(s, cfg) for s in (0, 50, 100, 500)] == [2.0, 1.0, 0.0, 0.0]
