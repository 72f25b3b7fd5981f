"""The benchmark runner (benchmarks/run.py): quick mode checks every pairing's agreement; the
memory meter sees an allocation; a wrong reference is reported as disagreeing."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_run", None)


def test_quick_mode_runs_every_pairing_and_they_agree(bench, tiny_model_dir, tmp_path, capsys):
    code = bench.main(["--quick", "--model", str(tiny_model_dir), "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().out
    data = json.loads((tmp_path / "results.json").read_text())
    tasks = [row["task"] for row in data["rows"]]
    assert tasks[:10] == ["head_scores", "head_scores_vs_tl", "lens_dataset",
                          "mlp_position_patching", "head_ablation", "head_importance",
                          "composition_scores", "composition_scores_vs_tl", "diagonal_accuracy",
                          "probes"]
    plugins = sorted((ROOT / "benchmarks" / "pairings").glob("*.py"))
    assert len(tasks) >= 10 + len(plugins)  # every technique file adds at least one pairing
    for row in data["rows"]:
        assert row["agrees"] and row["difference"] <= row["tolerance"], row
        assert row["library_s"] > 0 and row["reference_s"] > 0
        assert row["ratio"] == pytest.approx(row["reference_s"] / row["library_s"])
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| ") == 1 + len(tasks)  # header row + one row per task


def test_a_wrong_reference_is_reported(bench, tiny_model_dir):
    from interp_lib import load_model
    from interp_lib.data import repeated_tokens
    from interp_lib.heads import head_scores

    model = load_model(str(tiny_model_dir))
    tokens = repeated_tokens(model, n=5, batch=1, seed=0)
    def scores():
        return head_scores(model, tokens)["induction"]

    right = bench.Pairing("t", "lib", "ref", "s", scores, scores, bench._max_abs, 1e-6)
    wrong = bench.Pairing("t", "lib", "ref", "s", scores, lambda: scores() + 0.1,
                          bench._max_abs, 1e-6)
    assert bench.run_pairing(right, "m", "cpu", 2).agrees
    row = bench.run_pairing(wrong, "m", "cpu", 2)
    assert not row.agrees and row.difference == pytest.approx(0.1, abs=1e-6)
    assert len(row.times["library"]) == len(row.times["reference"]) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_memory_sees_an_allocation(bench):
    with bench.PeakMemory("cpu") as mem:
        block = torch.ones(50_000_000)  # 200 MB, touched
        block += 1
        del block
    assert 150 < mem.mb < 1000


def test_course_table_totals(bench):
    summary = {"model": "m", "notebooks": [
        {"name": "00_a", "status": "ok", "seconds": 10.0, "peak_mb": 500.0},
        {"name": "01_b", "status": "ok", "seconds": 20.5, "peak_mb": 700.0}]}
    table = bench.course_table(summary)
    assert "| **all** | | 30.5 | 700 |" in table
