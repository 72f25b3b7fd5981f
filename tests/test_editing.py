"""Model editing (interp_lib.editing): the rank-one update's identities, agreement with a generic
constrained least-squares solver and with the straightforward loops, reversibility, a planted
association edited on a tiny model, the measures on closed forms, and every bad argument."""

from __future__ import annotations

import math

import pytest
import torch

from interp_lib import editing
from interp_lib.data import probe_sentences
from interp_lib.editing import EditCase, Fact
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import attached_hooks, hook_name
from interp_lib.logprobs import sequence_loss
from interp_lib.patching import CausalTrace, causal_trace
from interp_lib.reference import key_covariance_naive, optimise_value_loop
from interp_lib.validate import ModelMismatchError

FACT = Fact("The cat", "{} sat on the", " mat")
TEXTS = ["The cat sat on the mat, and the dog slept by the door. " * 6,
         "Whales were seen off the coast at dawn, and the sailors counted them twice.",
         "Congress shall consider the treaty, the tariff and the army in this session."]


@pytest.fixture(scope="module")
def stats(tiny_model):
    return editing.key_covariance(tiny_model, 1, probe_sentences(120), length=32)


def _spd(d: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=gen, dtype=torch.float64).abs()
    return keys, keys.T @ keys / n


# ---------------------------------------------------------------- facts and scores


def test_fact_and_case_refuse_malformed_input():
    assert FACT.prompt == "The cat sat on the"
    assert Fact.of(("a", "{} b", " c")).prompt == "a b"
    with pytest.raises(ValueError, match="exactly once"):
        Fact("The cat", "sat on the", " mat")
    with pytest.raises(ValueError, match="subject is empty"):
        Fact(" ", "{} sat", " mat")
    with pytest.raises(TypeError, match="object must be a string"):
        Fact("The cat", "{} sat", 3)
    with pytest.raises(TypeError, match="Fact or a"):
        Fact.of("The cat sat")
    with pytest.raises(ValueError, match="own object"):
        EditCase(FACT, " mat", ("x",), (("a", " b"),), ("y",))
    with pytest.raises(TypeError, match="neighbours"):
        EditCase(FACT, " dog", ("x",), (("a",),), ("y",))
    with pytest.raises(TypeError, match="paraphrases must be a list"):
        EditCase(FACT, " dog", "The cat sat on the", (("a", " b"),), ("y",))


def test_the_shipped_candidates_are_well_formed():
    assert sum(len(v) for v in editing.CANDIDATE_FACTS.values()) >= 40
    for case in editing.EDIT_CASES:
        assert case.new_object != case.fact.object and case.source
        assert all(case.fact.subject.lower() in p.lower() for p in case.paraphrases)


def test_score_facts_agrees_with_a_plain_forward_pass(tiny_model):
    facts = [FACT, Fact("Whales", "{} were seen off the", " coast at dawn")]
    scores = editing.score_facts(tiny_model, facts, batch_size=1)
    for i, fact in enumerate(facts):
        prompt = tiny_model.to_tokens(fact.prompt)[0].tolist()
        obj = tiny_model.tokenizer(fact.object, add_special_tokens=False)["input_ids"]
        tokens = torch.tensor([prompt + obj])
        with torch.no_grad():
            lp = tiny_model(tokens)[0].float().log_softmax(-1)
        picked = [lp[len(prompt) - 1 + j, t] for j, t in enumerate(obj)]
        assert abs(float(sum(picked)) - float(scores.log_prob[i])) < 1e-4
        assert int(scores.n_tokens[i]) == len(obj)
        greedy = all(int(lp[len(prompt) - 1 + j].argmax()) == t for j, t in enumerate(obj))
        assert bool(scores.correct[i]) == greedy
        assert int(scores.first_rank[i]) == int((lp[len(prompt) - 1] > lp[len(prompt) - 1,
                                                                              obj[0]]).sum())
    frame = scores.to_frame()
    assert list(frame["prompt"]) == [f.prompt for f in facts]
    assert len(scores.figure().data) == 1


def test_a_fact_the_model_predicts_is_known(tiny_model):
    with torch.no_grad():
        top = tiny_model.tokenizer.decode(int(tiny_model(FACT.prompt)[0, -1].argmax()))
    own = Fact("The cat", "{} sat on the", top)
    scores = editing.score_facts(tiny_model, {"planted": [own, FACT]})
    assert own in scores.known() and scores.kinds == ["planted", "planted"]


def test_object_log_probs_is_the_mean_over_the_objects_tokens(tiny_model):
    objects = [" mat", " coast at dawn"]
    got = editing.object_log_probs(tiny_model, [FACT.prompt, "Whales were"], objects)
    assert got.shape == (2, 2)
    for i, prompt in enumerate([FACT.prompt, "Whales were"]):
        lp = editing.score_facts(tiny_model, [Fact(prompt, "{}", o) for o in objects])
        assert torch.allclose(got[i], lp.log_prob / lp.n_tokens, atol=1e-5)


# ---------------------------------------------------------------- the weight, the update


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_neox"])
def test_the_edited_parameter_is_the_one_the_forward_pass_uses(fixture, request):
    model = request.getfixturevalue(fixture)
    weight = editing.mlp_output_weight(model, 1)
    assert weight.transposed == (fixture == "tiny_neox")  # Linear [out, in]; Conv1D [in, out]
    assert torch.equal(weight.as_w_out(), model.W_out[1])
    tokens = model.to_tokens("The cat sat on the mat")
    names = [hook_name("mlp_post", 1), hook_name("mlp_out", 1)]
    with torch.no_grad():
        _, before = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    delta = torch.randn(model.cfg.d_mlp, model.cfg.d_model, generator=torch.Generator()
                        .manual_seed(0)) * 0.01
    original = weight.parameter.detach().clone()
    try:
        with torch.no_grad():
            weight.parameter.add_(delta.T if weight.transposed else delta)
            _, after = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        assert torch.allclose(model.W_out[1], original.T if weight.transposed else original)\
            is False
        change = after[names[1]] - before[names[1]]
        assert torch.allclose(change, before[names[0]] @ delta, atol=1e-5)
    finally:
        with torch.no_grad():
            weight.parameter.copy_(original)


def test_rank_one_update_maps_the_key_to_the_value_with_rank_one():
    keys, c = _spd(12, 200, 0)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    k, v = keys[3], torch.randn(5, generator=gen, dtype=torch.float64)
    delta = editing.rank_one_update(w, k, v, c)
    assert torch.allclose(k @ (w + delta), v, atol=1e-9)
    assert int(torch.linalg.matrix_rank(delta)) == 1
    # a key C-orthogonal to k* (xᵀ C⁻¹ k* = 0) is mapped as before
    c_inv_k = torch.linalg.solve(c, k)
    x = torch.randn(12, generator=gen, dtype=torch.float64)
    x = x - (x @ c_inv_k) / (k @ c_inv_k) * k
    assert torch.allclose(x @ delta, torch.zeros(5, dtype=torch.float64), atol=1e-9)
    # without a covariance: the plain least-norm update along k
    plain = editing.rank_one_update(w, k, v)
    assert torch.allclose(plain, torch.outer(k, v - k @ w) / (k @ k), atol=1e-10)


def test_rank_one_update_is_the_constrained_least_squares_solution():
    """Peer: minimise ‖K Δ‖ subject to k Δ = v − k W by a null-space parametrisation and
    torch.linalg.lstsq, without the closed form."""
    keys, c = _spd(10, 300, 2)
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    k, v = keys[0] + 0.1, torch.randn(4, generator=gen, dtype=torch.float64)
    r = v - k @ w
    base = torch.outer(k, r) / (k @ k)                       # satisfies the constraint
    null = torch.linalg.svd(k[None], full_matrices=True).Vh[1:].T  # k @ null = 0
    z = torch.linalg.lstsq(keys @ null, -(keys @ base)).solution
    peer = base + null @ z
    ours = editing.rank_one_update(w, k, v, c)
    assert torch.allclose(ours, peer, atol=1e-8)


def test_rank_one_update_with_key_statistics_equals_the_tensor_form(stats):
    c = stats.second_moment
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(c.shape[0], 64, generator=gen)
    k = stats.mean.float() + 0.01
    v = torch.randn(64, generator=gen)
    a = editing.rank_one_update(w, k, v, stats, ridge=1e-3)
    b = editing.rank_one_update(w, k, v, c, ridge=1e-3)
    assert torch.allclose(a, b, atol=1e-4 * float(b.abs().max()))


# ---------------------------------------------------------------- keys and covariance


def test_key_covariance_chunked_equals_the_materialised_reference(tiny_model):
    ours = editing.key_covariance(tiny_model, 1, TEXTS, length=40, batch_tokens=64)
    naive = key_covariance_naive(tiny_model, 1, TEXTS, length=40)
    assert ours.n_tokens == naive.n_tokens
    assert torch.allclose(ours.second_moment, naive.second_moment, atol=1e-7)
    assert torch.allclose(ours.mean, naive.mean, atol=1e-7)
    other = editing.key_covariance(tiny_model, 1, TEXTS, length=40, batch_tokens=10_000)
    assert torch.allclose(other.second_moment, ours.second_moment, atol=1e-7)
    capped = editing.key_covariance(tiny_model, 1, TEXTS, length=40, max_tokens=50)
    assert capped.n_tokens == 50
    ev = ours.eigenvalues()
    assert bool((ev[:-1] >= ev[1:] - 1e-12).all()) and len(ours.figure().data) == 1


def test_solve_is_the_inverse_and_refuses_a_singular_covariance(tiny_model, stats):
    k = stats.mean
    x = stats.solve(k)
    assert torch.allclose(stats.second_moment @ x, k.double(), atol=1e-6 * float(k.abs().max()))
    few = editing.key_covariance(tiny_model, 1, ["The cat sat."])
    with pytest.raises(ValueError, match="singular"):
        few.solve(few.mean)
    assert torch.isfinite(few.solve(few.mean, ridge=1e-3)).all()


@pytest.mark.parametrize("at", editing.POSITIONS)
def test_subject_key_is_the_mean_hook_post_at_the_edit_position(tiny_model, at):
    prefixes = ["", "Whales were seen. "]
    got = editing.subject_key(tiny_model, FACT, 1, prefixes=prefixes, at=at)
    name = hook_name("mlp_post", 1)
    keys = []
    for prefix in prefixes:
        text = prefix + FACT.prompt
        _, cache = tiny_model.run_with_cache(text, names_filter=name)
        # the subject ends before a word that starts with a space: the tokens of the text up to
        # the subject's end are the first tokens of the whole text
        upto = len(tiny_model.to_tokens(text[: text.index("The cat") + len("The cat")])[0])
        pos = upto - 1 if at == "subject_last" else cache[name].shape[1] - 1
        keys.append(cache[name][0, pos])
    assert torch.allclose(got, torch.stack(keys).mean(0), atol=1e-5)


def test_context_prefixes_are_seeded_and_end_in_a_full_stop(tiny_model):
    a = editing.context_prefixes(tiny_model, n=2, length=4, seed=1)
    assert a == editing.context_prefixes(tiny_model, n=2, length=4, seed=1)
    assert a[0] == "" and len(a) == 3 and all(p.endswith(". ") for p in a[1:])


# ---------------------------------------------------------------- the value, ROME


@pytest.mark.parametrize(("layer", "at"), [(0, "subject_last"), (1, "last")])
def test_optimise_value_batched_equals_the_loop(tiny_model, layer, at):
    kwargs = dict(prefixes=["", "Whales were seen. "], steps=6, at=at, lr=0.05, decay=0.0)
    ours = editing.optimise_value(tiny_model, FACT, " dog", layer, **kwargs)
    loop = optimise_value_loop(tiny_model, FACT, " dog", layer, **kwargs)
    assert torch.allclose(ours.value, loop.value, atol=1e-4)
    assert torch.allclose(ours.initial, loop.initial, atol=1e-5)
    for key in ours.history:
        assert ours.history[key] == pytest.approx(loop.history[key], abs=1e-4)
    assert ours.history["nll"][-1] < ours.history["nll"][0]
    assert ours.steps == 6 and len(ours.figure().data) == len(ours.history)


def test_the_kl_term_keeps_the_subjects_other_prediction(tiny_model):
    kwargs = dict(prefixes=[""], steps=12, lr=0.5, decay=0.0)
    free = editing.optimise_value(tiny_model, FACT, " dog", 0, kl_weight=0.0, **kwargs)
    kept = editing.optimise_value(tiny_model, FACT, " dog", 0, kl_weight=5.0, **kwargs)
    assert free.history["kl"][0] == kept.history["kl"][0] == 0.0  # δ = 0: nothing changed yet
    assert 0 < kept.history["kl"][-1] < free.history["kl"][-1]


@pytest.mark.parametrize(("layer", "at"), [(0, "subject_last"), (1, "last")])
def test_rome_writes_v_star_at_the_edit_position_with_a_rank_one_change(tiny_model, layer, at):
    stats = editing.key_covariance(tiny_model, layer, probe_sentences(120), length=32)
    edit = editing.rome(tiny_model, FACT, " dog", layer=layer, at=at, statistics=stats,
                        prefixes=[""], steps=5)
    assert edit.rank() == 1 and edit.layer == layer and edit.at == at
    w = editing.mlp_output_weight(tiny_model, layer).as_w_out()
    b = tiny_model.b_out[layer].detach()
    # W' k* + b = v*: the closed form holds to float tolerance
    assert torch.allclose(edit.key @ (w + edit.delta()) + b, edit.value, atol=1e-4)
    tokens = tiny_model.to_tokens(FACT.prompt)
    subject_end = len(tiny_model.to_tokens(FACT.subject)[0]) - 1
    pos = subject_end if at == "subject_last" else tokens.shape[1] - 1
    name = hook_name("mlp_out", layer)
    with edit.applied(tiny_model), torch.no_grad():
        _, cache = tiny_model.run_with_cache(tokens, names_filter=name)
    assert torch.allclose(cache[name][0, pos], edit.value, atol=1e-4)
    assert set(edit.seconds) >= {"key", "value", "update", "total"}


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_neox"])
def test_applied_restores_bit_identical_weights_even_when_the_body_raises(fixture, request):
    model = request.getfixturevalue(fixture)
    s = editing.key_covariance(model, 0, probe_sentences(120), length=32)
    edit = editing.rome(model, FACT, " dog", layer=0, statistics=s, prefixes=[""], steps=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    w_out = model.W_out[0].clone()
    with edit.applied(model):
        assert torch.allclose(model.W_out[0] - w_out, edit.delta(), atol=1e-6)
        assert not torch.equal(model.W_out[0], w_out)
    with pytest.raises(RuntimeError, match="inside"), edit.applied(model):
        raise RuntimeError("inside")
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name
    assert attached_hooks(model) == {}


PLANTED = (Fact("The cat", "{} sat on the", " sky"), Fact("The dog", "{} sat on the", " army"),
           Fact("Mary", "{} sat on the", " line"))


def _planted_model(tiny_model_dir, tmp_path):
    """A tiny GPT-2 taught three facts of one relation (the object depends on the subject):
    the Hugging Face model trained with plain torch on each fact behind five contexts (about
    two seconds on one thread), saved, and loaded as a bridge."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from interp_lib import load_model

    hf = GPT2LMHeadModel.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    contexts = ["", "The rain stopped. ", "She opened the window and ", "In 1790 ",
                "Bob said that "]
    rows = [[tok.bos_token_id, *tok(c + f.prompt + f.object)["input_ids"]]
            for c in contexts for f in PLANTED]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [tok.bos_token_id] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(hf.parameters(), lr=1e-2)
    hf.train()
    try:
        torch.set_num_threads(1)  # small matrices: one thread is fastest
        with torch.enable_grad():
            for _ in range(150):
                optimiser.zero_grad()
                hf(input_ids=ids, labels=labels).loss.backward()
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    hf.eval().save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return load_model(str(tmp_path), device="cpu")


def test_on_a_tiny_model_a_planted_association_is_edited(tiny_model_dir, tmp_path):
    model = _planted_model(tiny_model_dir, tmp_path)
    cat, dog, mary = PLANTED
    assert set(editing.score_facts(model, PLANTED).known()) == set(PLANTED)
    trace = causal_trace(model, cat.prompt, cat.subject, cat.object, site="mlp_out",
                         samples=4)
    assert trace.corrupted_prob < trace.clean_prob - 0.2  # the answer depends on the subject
    choice = editing.edit_layer(trace)
    stats = editing.key_covariance(model, choice.layer, probe_sentences(120), length=32)
    prefixes = ["", "Whales were seen. ", "In 1790 "]
    edit = editing.rome(model, cat, mary.object, trace=choice, statistics=stats,
                        prefixes=prefixes)
    case = EditCase(cat, mary.object, paraphrases=("Bob said that The cat sat on the",),
                    neighbours=((dog.prompt, dog.object),), generation_prompts=("The cat",))
    before_weights = [p.detach().clone() for p in model.parameters()]
    result = editing.compare_edits(model, case, {"unedited": None, "ROME": edit},
                                   heldout=TEXTS[1:], max_new_tokens=5)
    before, after = result["unedited"], result["ROME"]
    assert before.efficacy == 0.0 and after.efficacy == 1.0
    assert before.paraphrase == 0.0 and after.paraphrase == 1.0
    assert after.efficacy_margin > 0.5 > 0 > before.efficacy_margin
    assert before.neighbourhood == after.neighbourhood == 1.0  # the dog keeps its answer
    assert before.neighbourhood_kl == 0.0 <= after.neighbourhood_kl
    assert all(torch.equal(a, b) for a, b in zip(before_weights, model.parameters(),
                                                 strict=True))
    assert set(result.to_frame().index) == {"unedited", "ROME"}
    assert len(result.figure().data) == 1
    assert list(after.prompt_frame()["kind"]) == ["edit", "paraphrase", "neighbour"]


def test_finetuning_stays_in_its_linf_ball_and_leaves_the_model_alone(tiny_model):
    before = tiny_model.W_out[1].clone()
    edit = editing.finetune_edit(tiny_model, FACT, " dog", 1, steps=6, lr=1e-2, linf=2e-3)
    assert torch.equal(tiny_model.W_out[1], before)
    assert float(edit.delta().abs().max()) <= 2e-3 + 1e-7
    assert edit.history[-1] < edit.history[0]
    free = editing.finetune_edit(tiny_model, FACT, " dog", 1, steps=6, lr=1e-2, linf=None)
    assert free.method == "fine-tuning" and edit.method == "constrained fine-tuning"
    assert float(free.delta().abs().max()) > 2e-3
    with edit.applied(tiny_model):
        lp = editing.object_log_probs(tiny_model, [FACT.prompt], [" dog"])
    assert float(lp) > float(editing.object_log_probs(tiny_model, [FACT.prompt], [" dog"]))


# ---------------------------------------------------------------- the layer, the measures


def _trace(values: torch.Tensor, subject: list[int], site: str, corrupted: float = 0.1):
    n_layers, n_pos = values.shape
    grid = LabelledGrid(values, [str(i) for i in range(n_layers)], [str(p) for p in
                                                                    range(n_pos)],
                        baseline=corrupted, reference=0.9)
    return CausalTrace(grid, " x", subject, site)


def test_edit_layer_picks_the_peak_of_the_mlp_trace_at_either_position():
    values = torch.full((4, 5), 0.1)
    values[1, 2] = 0.6           # subject's last token, layer 1
    values[3, 4] = 0.4           # last token, layer 3
    choice = editing.edit_layer(_trace(values, [1, 2], "mlp_out"),
                                _trace(values * 0 + 0.2, [1, 2], "resid_post"))
    assert (choice.layer, choice.at, choice.position) == (1, "subject_last", 2)
    assert choice.best["subject_last"] == pytest.approx(0.5)
    assert choice.best["last"] == pytest.approx(0.3)
    values[2, 4] = 0.9
    choice = editing.edit_layer(_trace(values, [1, 2], "mlp_out"))
    assert (choice.layer, choice.at) == (2, "last")
    assert set(choice.to_frame().columns) == {"mlp_out at the subject's last token",
                                              "mlp_out at the last token"}
    assert len(choice.figure().data) == 2


def test_edit_layer_on_a_real_trace(tiny_model):
    trace = causal_trace(tiny_model, FACT.prompt, FACT.subject, site="mlp_out", samples=2)
    choice = editing.edit_layer(trace)
    assert 0 <= choice.layer < tiny_model.cfg.n_layers and choice.at in editing.POSITIONS


def test_ngram_entropy_closed_forms():
    assert editing.ngram_entropy("a a a a a a") == 0.0
    words = " ".join(f"w{i}" for i in range(10))           # all n-grams distinct
    expected = (2 / 3 * math.log2(9) + 4 / 3 * math.log2(8)) / 2
    assert editing.ngram_entropy(words) == pytest.approx(expected)
    assert editing.ngram_entropy("one, two.") == pytest.approx(
        (2 / 3 * math.log2(3) + 4 / 3 * math.log2(2)) / 2)  # one , two .
    assert editing.ngram_entropy("") == 0.0


def test_text_losses_equal_each_text_run_alone(tiny_model):
    got = editing.text_losses(tiny_model, TEXTS, batch_size=2)
    for i, text in enumerate(TEXTS):
        tokens = tiny_model.to_tokens(text)
        with torch.no_grad():
            alone = sequence_loss(tiny_model(tokens), tokens)
        assert abs(float(got[i]) - float(alone)) < 1e-4


def test_evaluate_edit_of_nothing_is_the_unedited_model(tiny_model):
    case = EditCase(FACT, " dog", ("The dog and The cat sat on the",),
                    (("Whales were seen off the", " coast"),), ("The cat",))
    scores = editing.evaluate_edit(tiny_model, case, None, heldout=TEXTS[:1], max_new_tokens=3)
    assert scores.method == "unedited" and scores.neighbourhood_kl == 0.0
    assert 0.0 <= scores.efficacy <= 1.0 and len(scores.generations) == 1


# ---------------------------------------------------------------- course model


def test_on_the_course_model_an_edit_where_the_trace_says_works():
    from interp_lib import course_model_available, load_model

    if not course_model_available():
        pytest.skip("the course model is not shipped in this copy")
    model = load_model("course", device="cpu")
    case = next(c for c in editing.EDIT_CASES if c.fact.prompt == "the House of")
    fact = case.fact
    assert fact in editing.score_facts(model, [fact]).known()
    trace = causal_trace(model, fact.prompt, fact.subject, fact.object, site="mlp_out",
                         samples=4)
    choice = editing.edit_layer(trace)
    stats = editing.key_covariance(model, choice.layer, max_tokens=4000)
    edit = editing.rome(model, fact, case.new_object, trace=choice, statistics=stats,
                        prefixes=[""])
    prompts = [fact.prompt, case.paraphrases[0]]
    before = editing.object_log_probs(model, prompts, [case.new_object, fact.object])
    with edit.applied(model):
        after = editing.object_log_probs(model, prompts, [case.new_object, fact.object])
    assert bool((before[:, 0] < before[:, 1]).all()) and bool((after[:, 0] > after[:, 1]).all())


# ---------------------------------------------------------------- bad arguments


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A tiny model of other sizes than ``tiny_model`` (d_model 32)."""
    from interp_lib import load_model
    from interp_lib.tiny_models import save_tiny_gpt2

    return load_model(str(save_tiny_gpt2(tmp_path_factory.mktemp("other"), d_model=32)),
                      device="cpu")


def test_every_public_function_refuses_bad_arguments(tiny_model, other_model, stats):
    m = tiny_model
    with pytest.raises(TypeError, match="model"):
        editing.score_facts("gpt2", [FACT])
    with pytest.raises(ValueError, match="facts is empty"):
        editing.score_facts(m, [])
    with pytest.raises(TypeError, match="facts must be"):
        editing.score_facts(m, "The cat")
    with pytest.raises(ValueError, match="batch_size"):
        editing.score_facts(m, [FACT], batch_size=0)
    with pytest.raises(ValueError, match="context"):
        editing.score_facts(m, [Fact("a", "{}" + " word" * 200, " b")])
    with pytest.raises(TypeError, match="prompts must be a list"):
        editing.object_log_probs(m, "The cat", [" mat"])
    with pytest.raises(ValueError, match="object"):
        editing.object_log_probs(m, ["The cat"], [""])
    with pytest.raises(ValueError, match="layer"):
        editing.subject_key(m, FACT, 5)
    with pytest.raises(ValueError, match="at must be one of"):
        editing.subject_key(m, FACT, 0, at="first")
    with pytest.raises(ValueError, match="contains the subject"):
        editing.subject_key(m, FACT, 0, prefixes=["The cat ran. "])
    with pytest.raises(TypeError, match="prefixes must be a list"):
        editing.subject_key(m, FACT, 0, prefixes="")
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        editing.context_prefixes(m, n=-1)
    with pytest.raises(TypeError, match="length"):
        editing.context_prefixes(m, length=2.5)
    with pytest.raises(TypeError, match="starts must be a list"):
        editing.context_prefixes(m, starts="The")
    with pytest.raises(ValueError, match="out of range"):
        editing.mlp_output_weight(m, 2)
    with pytest.raises(TypeError, match="model"):
        editing.mlp_output_weight(None, 0)
    with pytest.raises(ValueError, match="length"):
        editing.key_covariance(m, 0, TEXTS, length=1)
    with pytest.raises(TypeError, match="texts"):
        editing.key_covariance(m, 0, "The cat")
    with pytest.raises(ValueError, match="max_tokens"):
        editing.key_covariance(m, 0, TEXTS, max_tokens=0)
    with pytest.raises(ValueError, match="steps"):
        editing.optimise_value(m, FACT, " dog", 0, steps=-1)
    with pytest.raises(ValueError, match="lr"):
        editing.optimise_value(m, FACT, " dog", 0, lr=float("nan"))
    with pytest.raises(ValueError, match="kl_prompt"):
        editing.optimise_value(m, FACT, " dog", 0, kl_prompt="no subject")
    with pytest.raises(ValueError, match="clamp"):
        editing.optimise_value(m, FACT, " dog", 0, clamp=0.0)
    with pytest.raises(ValueError, match="new_object"):
        editing.optimise_value(m, FACT, " ", 0)
    w = torch.randn(8, 4)
    with pytest.raises(ValueError, match="key must have shape"):
        editing.rank_one_update(w, torch.randn(7), torch.randn(4))
    with pytest.raises(ValueError, match="NaN"):
        editing.rank_one_update(w, torch.randn(8), torch.tensor([1.0, float("nan"), 0, 0]))
    with pytest.raises(ValueError, match="covariance must have shape"):
        editing.rank_one_update(w, torch.randn(8), torch.randn(4), torch.eye(3))
    with pytest.raises(ValueError, match="not positive"):
        editing.rank_one_update(w, torch.zeros(8), torch.randn(4))
    with pytest.raises(ValueError, match="own object"):
        editing.rome(m, FACT, " mat", layer=0, statistics=stats)
    with pytest.raises(ValueError, match="statistics are of layer 1"):
        editing.rome(m, FACT, " dog", layer=0, statistics=stats, prefixes=[""])
    with pytest.raises(ModelMismatchError):
        editing.rome(other_model, FACT, " dog", layer=0, statistics=stats, prefixes=[""])
    with pytest.raises(TypeError, match="trace must be"):
        editing.rome(m, FACT, " dog", trace="layer 1", statistics=stats)
    with pytest.raises(TypeError, match="statistics must be"):
        editing.rome(m, FACT, " dog", layer=1, statistics=torch.eye(3))
    assert m.cfg.n_layers == 2  # layer 1 is the last: at the subject's last token it is inert
    with pytest.raises(ValueError, match="reaches no later layer"):
        editing.rome(m, FACT, " dog", layer=1, at="subject_last", statistics=stats,
                     prefixes=[""])
    with pytest.raises(ValueError, match="linf"):
        editing.finetune_edit(m, FACT, " dog", 0, linf=-1.0)
    with pytest.raises(ValueError, match="layer"):
        editing.finetune_edit(m, FACT, " dog", 9)
    edit = editing.finetune_edit(m, FACT, " dog", 1, steps=1)
    with pytest.raises(ModelMismatchError), edit.applied(other_model):
        pass
    with pytest.raises(ModelMismatchError):
        editing.compare_edits(other_model, editing.EDIT_CASES[0], {"x": edit}, heldout=TEXTS)
    with pytest.raises(TypeError, match="CausalTrace"):
        editing.edit_layer("trace")
    with pytest.raises(ValueError, match="at least one"):
        editing.edit_layer()
    t = _trace(torch.zeros(2, 3), [1], "resid_post")
    with pytest.raises(ValueError, match="no trace of site"):
        editing.edit_layer(t)
    with pytest.raises(ValueError, match="different prompts"):
        editing.edit_layer(_trace(torch.zeros(2, 3), [1], "mlp_out"),
                           _trace(torch.zeros(2, 4), [1], "resid_post"))
    with pytest.raises(TypeError, match="text must be a string"):
        editing.ngram_entropy(["a"])
    with pytest.raises(ValueError, match="same length"):
        editing.ngram_entropy("a b", ns=(2,), weights=(1.0, 2.0))
    with pytest.raises(TypeError, match="texts must be a list"):
        editing.text_losses(m, "The cat")
    case = editing.EDIT_CASES[0]
    with pytest.raises(TypeError, match="case must be"):
        editing.compare_edits(m, "case", {"x": None}, heldout=TEXTS)
    with pytest.raises(ValueError, match="edits must be"):
        editing.compare_edits(m, case, {}, heldout=TEXTS)
    with pytest.raises(TypeError, match="WeightEdit or None"):
        editing.compare_edits(m, case, {"x": "rome"}, heldout=TEXTS)
    with pytest.raises(ValueError, match="max_new_tokens"):
        editing.compare_edits(m, case, {"x": None}, heldout=TEXTS, max_new_tokens=0)
    with pytest.raises(ValueError, match="min_prob"):
        editing.score_facts(m, [FACT]).known(min_prob=2.0)
    with pytest.raises(ValueError, match="ridge"):
        stats.solve(stats.mean, ridge=-1.0)
    with pytest.raises(ValueError, match="key must have shape"):
        stats.solve(torch.zeros(3))
    assert attached_hooks(m) == {}
