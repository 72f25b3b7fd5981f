import shutil

import pytest
import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM

from interp_lib import load_model, models
from interp_lib.models import ModelNotAvailableError, resolve_model


@pytest.fixture
def no_boot(monkeypatch):
    """Fail the test if anything tries to load weights (the fast paths must not)."""

    def refuse(*args, **kwargs):
        raise AssertionError("boot_transformers must not be called on this path")

    monkeypatch.setattr(TransformerBridge, "boot_transformers", refuse)


@pytest.fixture
def no_course_model(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "course_model_dir", lambda: tmp_path / "no-course-model")


@pytest.fixture
def course_model_is(monkeypatch):
    def point_to(path):
        monkeypatch.setattr(models, "course_model_dir", lambda: path)

    return point_to


def _fake_hub_cache(cache, model_dir, repo_id=models.GPT2_SMALL_ID):
    """Lay out ``model_dir`` as huggingface_hub's cache does for ``repo_id``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    return snapshot


def test_loads_a_local_directory_in_eval_and_compatibility_mode(tiny_model):
    assert isinstance(tiny_model, TransformerBridge)
    assert not tiny_model.training
    assert tiny_model.compatibility_mode
    _, cache = tiny_model.run_with_cache(tiny_model.to_tokens("The cat sat."))
    for name in ("blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern", "blocks.0.attn.hook_z",
                 "blocks.1.hook_mlp_out"):
        assert name in cache.keys()


def test_bridge_log_probs_match_raw_hugging_face(tiny_model, tiny_model_dir):
    # Compatibility mode centres the unembedding, which shifts logits by a constant per
    # position: log-probabilities must agree with the plain Hugging Face model.
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    tokens = tiny_model.to_tokens("Mary gave the book to John because he had asked for it.")
    with torch.no_grad():
        ours = tiny_model(tokens).log_softmax(-1)
        theirs = hf(tokens).logits.log_softmax(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_dtype_and_device_are_applied(tiny_model_dir):
    model = load_model(str(tiny_model_dir), device="cpu", dtype="float64")
    assert model.W_E.dtype == torch.float64
    assert model.W_E.device.type == "cpu"


@pytest.mark.parametrize("name", ["no-such-model", "gpt2-ultra large", "a/b/c", "./not-here"])
def test_unknown_names_list_what_is_accepted(name, no_boot):
    with pytest.raises(ValueError) as err:
        load_model(name)
    message = str(err.value)
    for accepted in ("gpt2-small", "course", "Hugging Face model id", "directory", "INTERP_MODEL"):
        assert accepted in message


def test_empty_and_non_string_names():
    with pytest.raises(ValueError, match="empty"):
        resolve_model("  ")
    with pytest.raises(TypeError, match="str"):
        resolve_model(42)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize("dtype, error", [("int8", ValueError), (torch.int64, ValueError),
                                          (3, TypeError)])
def test_bad_dtype(tiny_model_dir, dtype, error, no_boot):
    with pytest.raises(error, match="dtype"):
        load_model(str(tiny_model_dir), dtype=dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_gpu_without_one_says_so(tiny_model_dir, no_boot):
    with pytest.raises(ValueError, match="device='cpu'"):
        load_model(str(tiny_model_dir), device="cuda")


def test_offline_uncached_hub_model_fails_fast_with_guidance(offline_hub, no_boot):
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("gpt2-small")
    message = str(err.value)
    assert "not in the local Hugging Face cache" in message
    assert "course" in message and "INTERP_MODEL" in message


def test_offline_cached_hub_model_loads_from_the_cache(offline_hub, tiny_model_dir):
    snapshot = _fake_hub_cache(offline_hub, tiny_model_dir)
    choice = resolve_model("gpt2")
    assert (choice.name, choice.kind, choice.source) == ("gpt2-small", "hub", str(snapshot))
    model = load_model("gpt2-small")
    assert model.cfg.n_layers == 2


def test_online_hub_model_is_loaded_by_id(monkeypatch, http_server, offline_hub):
    monkeypatch.setenv("HF_ENDPOINT", http_server.url)
    choice = resolve_model("gpt2-small")
    assert (choice.kind, choice.source) == ("hub", models.GPT2_SMALL_ID)
    other = resolve_model("EleutherAI/pythia-70m")
    assert (other.name, other.source) == ("EleutherAI/pythia-70m", "EleutherAI/pythia-70m")


def test_default_is_interp_model_when_set(monkeypatch, tiny_model_dir, capsys, offline_hub):
    monkeypatch.setenv("INTERP_MODEL", str(tiny_model_dir))
    model = load_model()
    assert model.cfg.n_layers == 2
    notice = capsys.readouterr().out.strip().splitlines()
    assert len(notice) == 1 and "INTERP_MODEL" in notice[0]


def test_default_prefers_cached_gpt2_small(offline_hub, tiny_model_dir, course_model_is, tmp_path):
    _fake_hub_cache(offline_hub, tiny_model_dir)
    course_model_is(tiny_model_dir)
    choice = resolve_model(None)
    assert choice.name == "gpt2-small"
    assert "local Hub cache" in choice.reason


def test_default_offline_falls_back_to_the_course_model(offline_hub, tiny_model_dir,
                                                        course_model_is, capsys):
    course_model_is(tiny_model_dir)
    assert models.course_model_available()
    model = load_model()
    assert model.cfg.n_layers == 2
    notice = capsys.readouterr().out
    assert notice.count("\n") == 1
    assert "model: course" in notice and "INTERP_MODEL" in notice


def test_course_name_without_shipped_files_says_so(no_course_model, no_boot):
    assert not models.course_model_available()
    with pytest.raises(ModelNotAvailableError, match="python -m interp_lib.tiny_models"):
        load_model("course")


def test_default_offline_with_nothing_available_says_what_to_do(offline_hub, no_course_model,
                                                                no_boot):
    with pytest.raises(ModelNotAvailableError) as err:
        load_model()
    assert "INTERP_MODEL" in str(err.value)


def test_interp_model_with_a_bad_value_is_an_error(monkeypatch, no_boot):
    monkeypatch.setenv("INTERP_MODEL", "no-such-model")
    with pytest.raises(ValueError, match="Unknown model name"):
        load_model()


def test_model_directory_settings_are_applied(tmp_path, tiny_model_dir):
    path = tmp_path / "m"
    shutil.copytree(tiny_model_dir, path)
    assert load_model(str(path)).cfg.default_prepend_bos  # GPT-2: BOS first by default
    (path / models.SETTINGS_FILE).write_text('{"default_prepend_bos": false}')
    model = load_model(str(path))
    assert model.cfg.default_prepend_bos is False
    without, with_bos = model.to_tokens("The cat"), model.to_tokens("The cat", prepend_bos=True)
    assert torch.equal(without[0], with_bos[0, 1:])
    (path / models.SETTINGS_FILE).write_text('{"default_prepend_bos": "yes"}')
    with pytest.raises(ValueError, match="default_prepend_bos must be a bool"):
        load_model(str(path))
