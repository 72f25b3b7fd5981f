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


def test_two_phase_run_is_read_back_from_checkpoint_and_log(tmp_path):
    card, train = _load("write_model_card"), _load("train_course_model")
    first_cfg = asdict(train.Config(steps=300))
    rows = [{"step": s, "tokens": s * 10} for s in (100, 200, 200, 300, 400)]  # resumed at 200
    rows[3]["tokens"] = 2001
    (tmp_path / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    torch.save({"config": first_cfg, "step": 300, "elapsed": 600.0, "model": {}},
               tmp_path / "step300.pt")
    second = asdict(train.Config(steps=50, init_from=str(tmp_path / "step300.pt")))
    first = card.first_phase(second)
    assert first["step"] == 300 and first["minutes"] == 10.0
    assert [r["step"] for r in first["log"]] == [100, 200, 300]  # steps after the stop dropped
    assert first["log"][1]["tokens"] == 2000  # the later of two rows for one step
    commands = card.retrain_commands(second, 50, first).splitlines()
    assert commands[0].startswith(f"python scripts/train_course_model.py --out {tmp_path}")
    assert commands[1] == f"cp {tmp_path}/checkpoint.pt {tmp_path}/step300.pt"
    assert asdict(_config_from_command(train, commands[2])) == second
    assert card.first_phase(asdict(train.Config())) is None
