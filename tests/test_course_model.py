"""The shipped course model: it loads offline, and the numbers of its card hold.

The card's numbers were measured through TransformerLens (``scripts/write_model_card.py``);
here they are recomputed with the plain Hugging Face model, a second, independent path.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp_lib import load_model
from interp_lib.models import course_model_available, course_model_dir

pytestmark = pytest.mark.skipif(not course_model_available(),
                                reason="this version of interp_lib ships no course model")

ROOT = Path(__file__).resolve().parent.parent


def _card_script():
    spec = importlib.util.spec_from_file_location("card", ROOT / "scripts" / "write_model_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def card():
    return json.loads((course_model_dir() / "card.json").read_text())


@pytest.fixture(scope="module")
def hf():
    folder = course_model_dir()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def bridge():
    return load_model("course", device="cpu")


@pytest.fixture(scope="module")
def repeat_run(hf, bridge, card):
    from interp_lib.data import repeated_tokens

    model, _ = hf
    ids = repeated_tokens(bridge, **card["repeat"]).cpu()
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    return ids, out


def test_loads_offline_by_name_in_eval_mode_with_bos(monkeypatch, closed_url):
    monkeypatch.setenv("HF_ENDPOINT", closed_url)  # no Hub
    model = load_model("course", device="cpu")
    assert not model.training and model.compatibility_mode
    assert model.cfg.default_prepend_bos
    assert model.to_tokens("Hello")[0, 0].item() == model.tokenizer.bos_token_id
    assert 4 <= model.cfg.n_layers <= 6 and 256 <= model.cfg.d_model <= 384
    assert model.cfg.n_ctx >= 256


def test_shipped_files_fit_the_size_budget():
    total = sum(p.stat().st_size for p in course_model_dir().iterdir() if p.is_file())
    assert total <= 25 * 2**20
    assert (course_model_dir() / "MODEL_CARD.md").is_file()


def test_heldout_sample_loss_matches_the_card(hf, card):
    model, tokenizer = hf
    script = _card_script()
    text = (course_model_dir() / "heldout_sample.txt").read_text()
    windows = script.sample_windows(tokenizer, text, model.config.max_position_embeddings,
                                    tokenizer.bos_token_id)
    with torch.no_grad():
        logits = torch.cat([model(chunk).logits for chunk in windows.split(8)])
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1),
                                             windows[:, 1:].flatten()).item()
    assert windows[:, 1:].numel() == card["heldout_sample_tokens"]
    assert loss == pytest.approx(card["heldout_sample_loss"], abs=2e-3)


def test_heldout_loss_is_far_below_unigram():
    metrics = json.loads((course_model_dir() / "metrics.json").read_text())
    assert metrics["heldout_loss"] < metrics["unigram_heldout_loss"] - 1.5


def test_head_scores_match_the_card(repeat_run, card):
    """Recomputed from the Hugging Face attentions with plain torch, query by query."""
    ids, out = repeat_run
    seq = ids.shape[1]
    prev = torch.stack([p.diagonal(-1, -2, -1).mean((0, -1)) for p in out.attentions])
    # induction: from each query whose token occurred before, the attention on the keys right
    # after its earlier occurrences
    mass = torch.zeros(len(out.attentions), out.attentions[0].shape[1])
    queries = 0
    for b in range(ids.shape[0]):
        for q in range(1, seq):
            keys = [k for k in range(1, q + 1) if ids[b, k - 1] == ids[b, q]]
            if keys:
                queries += 1
                mass += torch.stack([p[b, :, q, keys].sum(-1) for p in out.attentions])
    induction = mass / queries
    torch.testing.assert_close(prev, torch.tensor(card["prev_token_scores"]), atol=2e-3, rtol=0)
    torch.testing.assert_close(induction, torch.tensor(card["induction_scores"]), atol=2e-3,
                               rtol=0)


def test_has_a_previous_token_head_and_a_later_induction_head(card):
    prev = torch.tensor(card["prev_token_scores"])
    induction = torch.tensor(card["induction_scores"])
    assert prev.max() >= 0.6
    first_prev_layer = int((prev >= 0.6).any(-1).nonzero()[0])
    later = induction[first_prev_layer + 1:]
    assert later.numel() and later.max() >= 0.6


def test_copies_in_context(repeat_run, card):
    ids, out = repeat_run
    n = (ids.shape[1] - 1) // 2
    log_probs = out.logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    first, second = -log_probs[:, :n].mean().item(), -log_probs[:, n:].mean().item()
    assert first - second >= 4.0
    assert first == pytest.approx(card["repeat_loss_first_half"], abs=2e-3)
    assert second == pytest.approx(card["repeat_loss_second_half"], abs=2e-3)
