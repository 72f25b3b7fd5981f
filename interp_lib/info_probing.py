"""Probing beyond accuracy: information-theoretic probes, behavioural minimal pairs and causal
probing of grammatical number.

Three paradigms (Lasri, Pimentel, Lenci, Poibeau & Cotterell 2022, "Probing for the Usage of
Grammatical Number", arXiv:2204.08831): *diagnostic* probing trains a classifier on
representations, *behavioural* probing watches what the model does on a special dataset, and
*causal* probing changes a direction and measures the effect. This module has one part each.

**Diagnostic, measured in bits.**

- :func:`word_activations` caches every site's residual stream at each word's last token
  (tags from spaCy; the same convention as notebook 05: site 0 is the embedding, site ``k``
  the residual after ``k`` blocks), with the labels ``pos``, ``tag``, ``dep`` and ``number``
  (``"singular"``/``"plural"`` for common nouns, ``""`` for every other word).
- :func:`online_codelength` and :func:`mdl_probe`: the online (prequential) code length of
  the labels given the representations (Voita & Titov 2020, "Information-Theoretic Probing
  with Minimum Description Length"): the first block is sent with the uniform code, each later
  block with a probe trained on everything before it; compression = uniform / online. All
  sites are one batched model per block.
- :func:`bayesian_mi`: Bayesian (V-) information (Pimentel & Cotterell 2021, "A Bayesian
  Framework for Information-Theoretic Probing", arXiv:2109.03853; Xu et al. 2020), ``I =
  H(X) - H(X | R)`` with both entropies the held-out cross-entropies of models trained on the
  first ``n`` examples (a label prior, a probe), as a function of ``n``.
  :func:`random_projection` and :func:`random_features` give processed representations to
  compare.
- :func:`mi_1d` and :func:`sliced_mi`: sliced mutual information (Goldfeld & Greenewald 2021,
  "Sliced Mutual Information", arXiv:2110.05279), the mean MI of random one-dimensional
  projections, with its standard error over projections; the one-dimensional estimator is Ross
  (2014)'s nearest-neighbour estimator for a continuous and a discrete variable, computed for
  all projections at once (the one scikit-learn's ``mutual_info_classif`` runs per column).

**Behavioural.** :func:`agreement_pairs` builds subject-verb agreement minimal pairs from
sentences (spaCy finds a common-noun subject and its present-tense or *was/were* verb; the
verb's number is swapped), :func:`template_pairs` from templates with attractor nouns
(after Marvin & Linzen 2018, "Targeted Syntactic Evaluation of Language Models").
:func:`agreement_scores` scores each pair by ``log p(right verb) - log p(wrong verb)``.

**Causal.** :func:`number_directions` finds the subject-number directions at every site by
iterated nullspace projection (INLP: Ravfogel et al. 2020), :func:`remove_directions` projects
them out, and :func:`causal_number_probe` measures agreement accuracy and language-model loss
when they are removed (amnesic probing: Elazar et al. 2021) or flipped (a counterfactual
intervention, as Lasri et al. 2022), against as many random directions.

>>> import torch
>>> from interp_lib.info_probing import online_codelength, sliced_mi
>>> gen = torch.Generator().manual_seed(0)
>>> y = torch.arange(200) % 2
>>> x = (y[:, None] * 6.0 - 3.0) + torch.randn(200, 4, generator=gen)   # two far-apart classes
>>> bits = online_codelength(x[None], y, 2, [4, 50, 200])
>>> bits.shape, float(bits[0, 0])                      # the first 4 labels cost 1 bit each
(torch.Size([1, 3]), 4.0)
>>> bool(bits.sum() < 0.1 * 200)                        # the rest is almost free
True
>>> result = sliced_mi(x, y, n_projections=32)
>>> bool(result.mean[0] > 0.3)                          # well above 0 nats
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int

from interp_lib import validate
from interp_lib.fitting import Standardiser, fit_logistic
from interp_lib.hooks import hook_name, only
from interp_lib.inputs import padded_batch, to_tokens
from interp_lib.logprobs import next_token_loss
from interp_lib.validate import check_model, check_same_model, model_signature

__all__ = [
    "L2",
    "VOITA_FRACTIONS",
    "AgreementPairs",
    "AgreementResult",
    "BayesianMI",
    "CausalResult",
    "MDLResult",
    "NumberDirections",
    "SlicedMI",
    "WordData",
    "agreement_pairs",
    "agreement_scores",
    "bayesian_mi",
    "block_ends",
    "causal_number_probe",
    "control_labels",
    "mdl_probe",
    "mi_1d",
    "number_directions",
    "other_number",
    "prior_cross_entropy",
    "random_features",
    "random_orthonormal",
    "random_projection",
    "remove_directions",
    "site_hook_names",
    "sliced_mi",
    "template_pairs",
    "word_activations",
]

#: Voita & Titov's block boundaries, as fractions of the data: 0.1%, 0.2%, 0.4%, ... 100%.
VOITA_FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125,
                                      0.25, 0.5, 1.0)

LN2 = math.log(2.0)
#: The probes' L2 penalty (on the mean cross-entropy): stronger than notebook 05's, because the
#: online code and the data-size curves fit probes on a handful of examples too.
L2 = 1e-2
NUMBERS = ("singular", "plural")


def site_hook_names(cfg: Any) -> tuple[list[str], list[str]]:
    """The residual-stream sites of a model: hook names and labels. Site 0 is the embedding
    (the input of block 0), site ``k`` the residual after ``k`` blocks."""
    names = [hook_name("resid_pre", la) for la in range(cfg.n_layers)]
    names.append(hook_name("resid_post", cfg.n_layers - 1))
    labels = ["embed"] + [f"after block {la}" for la in range(cfg.n_layers)]
    return names, labels


def _site_index(sites: Any, n_sites: int, name: str = "sites") -> list[int]:
    if sites is None:
        return list(range(n_sites))
    if isinstance(sites, int | np.integer) and not isinstance(sites, bool):
        sites = [sites]
    if isinstance(sites, str) or not isinstance(sites, Sequence | np.ndarray):
        raise TypeError(f"{name} must be a list of site indices, got {type(sites).__name__}")
    out = [validate.int_in_range(s, name, 0, n_sites - 1) for s in sites]
    if not out:
        raise ValueError(f"{name} is empty: give at least one site index in 0..{n_sites - 1}")
    return out


# ---------------------------------------------------------------- word data


@dataclass
class WordData:
    """Every word's representation at every site, with its labels.

    ``activations[site, word, dim]`` (float16); ``labels[name][word]`` (``""`` where a label
    set does not apply, e.g. ``number`` on a verb); ``word_types[word]`` (lower-cased, for
    control tasks); ``sentence[word]`` and ``split[word]`` (``"train"`` or ``"test"``, by
    sentence). ``features`` says what the activations are (``"residual stream"``, or the
    processing applied), ``signature`` the model they came from."""

    activations: Float[torch.Tensor, "site word dim"]
    site_names: list[str]
    labels: dict[str, np.ndarray]
    word_types: np.ndarray
    sentence: np.ndarray
    split: np.ndarray
    signature: tuple[int, ...] | None = None
    features: str = "residual stream"

    @property
    def n_words(self) -> int:
        return int(self.activations.shape[1])

    @property
    def n_sites(self) -> int:
        return int(self.activations.shape[0])

    def label_array(self, label_set: str) -> np.ndarray:
        """The labels of ``label_set`` (one of :attr:`labels`), as strings."""
        validate.choice(label_set, "label_set", list(self.labels))
        return self.labels[label_set].astype(str)

    def at_sites(self, sites: Sequence[int]) -> WordData:
        """The same words at the chosen sites only."""
        index = _site_index(sites, self.n_sites)
        return dataclasses.replace(self, activations=self.activations[index],
                                   site_names=[self.site_names[i] for i in index])


def _check_word_data(data: Any, name: str = "data") -> WordData:
    if not isinstance(data, WordData):
        raise TypeError(f"{name} must be a WordData from word_activations(model, sentences), "
                        f"got {type(data).__name__}")
    return data


@torch.no_grad()
def word_activations(
    model: Any,
    sentences: Sequence[str],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    batch_size: int = 32,
    cache_dir: str | None = None,
) -> WordData:
    """Tag ``sentences`` with spaCy, align each word to its *last* token (the first position
    that has read the whole word) and keep every site's residual stream there, from one
    forward pass per batch of sentences. A ``test_fraction`` of the sentences (drawn with
    ``seed``) is the test split."""
    from interp_lib.tagging import tag_sentences, token_offsets, token_word_index

    check_model(model)
    sentences = validate.texts(sentences, "sentences", min_count=2)
    test_fraction = validate.fraction(test_fraction, "test_fraction")
    seed = validate.nonnegative_int(seed, "seed")
    batch_size = validate.positive_int(batch_size, "batch_size")
    bos = model.tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the model's tokenizer has no BOS token to start each sentence with")
    tagged = tag_sentences(sentences, cache_dir=cache_dir)
    rows, positions = [], []
    for text, tags in zip(sentences, tagged, strict=True):
        ids, spans = token_offsets(model.tokenizer, text)
        last: dict[int, int] = {}
        for t, w in enumerate(token_word_index(spans, tags.spans)):
            if w >= 0:
                last[w] = t + 1  # + 1 for BOS
        rows.append([bos, *ids])
        positions.append([last.get(w, -1) for w in range(len(tags))])
    longest = max(len(r) for r in rows)
    if longest > model.cfg.n_ctx:
        raise ValueError(f"sentences: one has {longest} tokens with BOS, more than the model's "
                         f"context of {model.cfg.n_ctx}; pass shorter sentences")
    names, site_names = site_hook_names(model.cfg)
    chunks = []
    for start in range(0, len(rows), batch_size):
        batch = list(range(start, min(start + batch_size, len(rows))))
        tokens, mask = padded_batch(model, [rows[i] for i in batch], name="sentences")
        _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=only(*names),
                                        return_type=None)
        for j, i in enumerate(batch):
            keep = torch.tensor([p for p in positions[i] if p >= 0], dtype=torch.long)
            chunks.append(torch.stack([cache[n][j, keep] for n in names]).half().cpu())
    activations = torch.cat(chunks, dim=1)

    labels: dict[str, list[str]] = {"pos": [], "tag": [], "dep": [], "number": []}
    types, sentence_of = [], []
    for i, tags in enumerate(tagged):
        for w in range(len(tags)):
            if positions[i][w] < 0:
                continue
            labels["pos"].append(tags.pos[w])
            labels["tag"].append(tags.tag[w])
            labels["dep"].append(tags.dep[w])
            labels["number"].append({"NN": "singular", "NNS": "plural"}.get(tags.tag[w], ""))
            start, end = tags.spans[w]
            types.append(tags.text[start:end].lower())
            sentence_of.append(i)
    rng = np.random.default_rng(seed)
    n_test = min(len(sentences) - 1, max(1, int(round(test_fraction * len(sentences)))))
    split_of = np.full(len(sentences), "train", dtype=object)
    split_of[rng.permutation(len(sentences))[:n_test]] = "test"
    sentence_of = np.array(sentence_of)
    return WordData(
        activations=activations, site_names=site_names,
        labels={k: np.array(v, dtype=object) for k, v in labels.items()},
        word_types=np.array(types, dtype=object), sentence=sentence_of,
        split=split_of[sentence_of].astype(str), signature=model_signature(model))


def control_labels(data: WordData, label_set: str, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's (2019) control task: each word *type* gets one label, drawn at random
    from the label distribution of the training words; the same type always gets the same
    label. Words the label set does not apply to keep ``""``."""
    data = _check_word_data(data)
    labels = data.label_array(label_set)
    seed = validate.nonnegative_int(seed, "seed")
    applies = labels != ""
    train = labels[applies & (data.split == "train")]
    if len(train) == 0:
        raise ValueError(f"label set {label_set!r} has no training words")
    values, counts = np.unique(train, return_counts=True)
    rng = np.random.default_rng(seed)
    types = sorted(set(data.word_types[applies].tolist()))
    table = dict(zip(types, rng.choice(values, size=len(types), p=counts / counts.sum()),
                     strict=True))
    return np.array([table[t] if a else "" for t, a in zip(data.word_types, applies,
                                                            strict=True)], dtype=object)


def _classes_and_targets(labels: np.ndarray, train: np.ndarray, test: np.ndarray
                         ) -> tuple[list[str], torch.Tensor, np.ndarray]:
    classes = sorted(set(labels[train].tolist()))
    if len(classes) < 2:
        raise ValueError("the label set has fewer than 2 classes among the training words")
    index = {c: i for i, c in enumerate(classes)}
    y_train = torch.tensor([index[c] for c in labels[train]], dtype=torch.long)
    y_test = np.array([index.get(c, -1) for c in labels[test]])  # -1: never seen in training
    return classes, y_train, y_test


def _labels_for(data: WordData, label_set: str, control: bool, seed: int) -> np.ndarray:
    labels = control_labels(data, label_set, seed) if control else data.label_array(label_set)
    return labels.astype(str)


# ---------------------------------------------------------------- MDL


def block_ends(n: int, fractions: Sequence[float] = VOITA_FRACTIONS) -> list[int]:
    """Where each block of the online code ends, for ``n`` examples: ``round(f * n)`` for
    each fraction (at least 1, repeats dropped). The first block is sent with the uniform
    code; ``fractions`` must increase and end at 1."""
    n = validate.positive_int(n, "n")
    if isinstance(fractions, str) or not isinstance(fractions, Sequence | np.ndarray):
        raise TypeError(f"fractions must be a list of numbers in (0, 1], got "
                        f"{type(fractions).__name__}")
    values = [validate.fraction(f, "fractions", closed=True) for f in fractions]
    increasing = all(b > a for a, b in zip(values, values[1:], strict=False))
    if len(values) < 2 or values[-1] != 1.0 or not increasing or values[0] <= 0:
        raise ValueError(f"fractions must increase from above 0 to exactly 1 (at least two), "
                         f"got {list(fractions)}")
    ends = sorted({min(n, max(1, int(round(f * n)))) for f in values})
    if len(ends) < 2:
        raise ValueError(f"n={n} examples are too few for two blocks; give more examples")
    return ends


def _check_ends(ends: Any, n: int) -> list[int]:
    if isinstance(ends, str) or not isinstance(ends, Sequence | np.ndarray | torch.Tensor):
        raise TypeError(f"ends must be a list of increasing ints, got {type(ends).__name__}")
    out = [validate.int_in_range(int(e) if hasattr(e, "item") else e, "ends", 1, n)
           for e in ends]
    if len(out) < 2 or any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise ValueError(f"ends must increase (at least two blocks), got {out}")
    return out


def online_codelength(
    x: Float[torch.Tensor, "site n d"],
    y: Int[torch.Tensor, " n"],
    n_classes: int,
    ends: Sequence[int],
    *,
    l2: float = L2,
    max_iter: int = 100,
) -> Float[torch.Tensor, "site block"]:
    """Bits per block of the online code of labels ``y`` given features ``x``, every site at
    once. Block 0 (examples ``[0, ends[0])``) costs ``ends[0] * log2(n_classes)`` (the
    uniform code); block ``i`` (examples ``[ends[i-1], ends[i])``) costs ``-sum log2
    p(y | x)`` under a logistic probe fitted (:func:`interp_lib.fitting.fit_logistic`,
    ``l2``, ``max_iter``) on the examples before it. The sum over blocks is the code length
    of the examples up to ``ends[-1]``, in the order given (shuffle first)."""
    x = validate.finite_tensor(x, "x")
    if x.ndim != 3:
        raise ValueError(f"x must be [site, n, d], got shape {list(x.shape)}")
    n_classes = validate.int_in_range(n_classes, "n_classes", 2, 10**6)
    y = _check_targets(y, x.shape[1], n_classes)
    ends = _check_ends(ends, x.shape[1])
    l2 = validate.finite_float(l2, "l2", positive=True)
    max_iter = validate.positive_int(max_iter, "max_iter")
    return _online_code(x.float(), y, n_classes, ends, l2, max_iter)[0]


def _online_code(x: torch.Tensor, y: torch.Tensor, n_classes: int, ends: list[int], l2: float,
                 max_iter: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bits per block, and the last block's probe (weights, biases)."""
    bits = torch.empty(x.shape[0], len(ends))
    bits[:, 0] = ends[0] * math.log2(n_classes)
    w = b = None
    for i in range(1, len(ends)):
        start, end = ends[i - 1], ends[i]
        w, b = fit_logistic(x[:, :start], y[:start], n_classes, l2, max_iter)
        logits = torch.baddbmm(b[:, None], x[:, start:end], w)
        target = y[start:end].expand(x.shape[0], -1)[..., None]
        bits[:, i] = -logits.log_softmax(-1).gather(-1, target)[..., 0].sum(-1) / LN2
    return bits, w, b


def _check_targets(y: Any, n: int, n_classes: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.is_floating_point() or y.dtype == torch.bool or y.ndim != 1:
        raise TypeError(f"y must be a 1-D tensor of integer class indices, got dtype {y.dtype} "
                        f"and shape {list(y.shape)}")
    if len(y) != n:
        raise ValueError(f"y has {len(y)} labels for {n} examples")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"y must hold class indices in 0..{n_classes - 1}, got "
                         f"{int(y.min())}..{int(y.max())}")
    return y.long()


@dataclass
class MDLResult:
    """Online code lengths of one label set at every site, with the test accuracy of the
    probe that codes the last block (trained on the first ``ends[-2]`` training words).

    ``block_bits[site, block]``: each block's cost (block 0 is the uniform code of the first
    ``ends[0]`` labels); ``codelength`` their sum, ``uniform`` the cost of every label with
    the uniform code (``n * log2 n_classes``); ``compression = uniform / codelength``."""

    label_set: str
    control: bool
    site_names: list[str]
    classes: list[str]
    ends: list[int]
    block_bits: Float[torch.Tensor, "site block"]
    accuracy: np.ndarray
    majority: float
    features: str = "residual stream"

    @property
    def n(self) -> int:
        return int(self.ends[-1])

    @property
    def uniform(self) -> float:
        return self.n * math.log2(len(self.classes))

    @property
    def codelength(self) -> np.ndarray:
        return self.block_bits.sum(1).double().numpy()

    @property
    def compression(self) -> np.ndarray:
        return self.uniform / self.codelength

    @property
    def name(self) -> str:
        return self.label_set + (" (control)" if self.control else "")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"label_set": self.name, "site": self.site_names,
                             "codelength_bits": self.codelength, "uniform_bits": self.uniform,
                             "compression": self.compression, "accuracy": self.accuracy,
                             "majority": self.majority})

    def figure(self, title: str | None = None):
        """Compression per site."""
        from interp_lib.plotting import line_over_layers

        return line_over_layers({self.name: self.compression}, layer_labels=self.site_names,
                                x_title="site", y_title="compression (uniform / online)",
                                title=title or f"MDL compression of {self.name}")


def mdl_probe(
    data: WordData,
    label_set: str,
    *,
    control: bool = False,
    sites: Sequence[int] | None = None,
    fractions: Sequence[float] = VOITA_FRACTIONS,
    l2: float = L2,
    max_iter: int = 100,
    seed: int = 0,
) -> MDLResult:
    """The MDL probe (Voita & Titov 2020) of ``label_set`` at every site (or ``sites``): the
    training words (those the label set applies to) in an order drawn with ``seed``, features
    standardised with all their representations (no labels are used for that, so the
    receiver can do the same), and :func:`online_codelength` over :func:`block_ends`.
    ``control=True`` codes :func:`control_labels` instead. The result also gives the test
    accuracy of the last block's probe (trained on the first half of the training words with
    the default fractions), for comparison: accuracy of a probe, bits of a code."""
    data = _check_word_data(data)
    validate.flag(control, "control")
    seed = validate.nonnegative_int(seed, "seed")
    l2 = validate.finite_float(l2, "l2", positive=True)
    max_iter = validate.positive_int(max_iter, "max_iter")
    index = _site_index(sites, data.n_sites)
    labels = _labels_for(data, label_set, control, seed)
    applies = labels != ""
    train = np.flatnonzero(applies & (data.split == "train"))
    test = np.flatnonzero(applies & (data.split == "test"))
    if len(test) == 0:
        raise ValueError(f"label set {label_set!r} has no test words")
    order = train[np.random.default_rng(seed).permutation(len(train))]
    classes, y, y_test = _classes_and_targets(labels, order, test)
    ends = block_ends(len(order), fractions)
    acts = data.activations[index]
    x = acts[:, torch.from_numpy(order)].float()
    scaler = Standardiser.fit(x)
    z = scaler(x)
    bits, w, b = _online_code(z, y, len(classes), ends, l2, max_iter)
    pred = torch.baddbmm(b[:, None], scaler(acts[:, torch.from_numpy(test)]), w).argmax(-1)
    accuracy = (pred.numpy() == y_test[None]).mean(1)
    majority = float((y_test == int(torch.bincount(y).argmax())).mean())
    return MDLResult(label_set, control, [data.site_names[i] for i in index], classes, ends,
                     bits, accuracy, majority, data.features)


# ---------------------------------------------------------------- Bayesian information


def prior_cross_entropy(y_train: Int[torch.Tensor, " n"], y_test: Int[torch.Tensor, " m"],
                        n_classes: int, alpha: float = 1.0) -> float:
    """``H_theta(X)`` in bits: the cross-entropy on ``y_test`` of the label prior estimated
    from ``y_train`` with add-``alpha`` (Laplace) smoothing, so that no class has
    probability 0."""
    n_classes = validate.int_in_range(n_classes, "n_classes", 2, 10**6)
    alpha = validate.finite_float(alpha, "alpha", positive=True)
    y_train = _check_targets(y_train, len(y_train), n_classes)
    y_test = _check_targets(y_test, len(y_test), n_classes)
    if len(y_test) == 0:
        raise ValueError("y_test is empty")
    counts = torch.bincount(y_train, minlength=n_classes).double() + alpha
    log_p = (counts / counts.sum()).log()
    return float(-log_p[y_test].mean() / LN2)


@dataclass
class BayesianMI:
    """``I_theta = H_theta(X) - H_theta(X | R)`` in bits per word, for each training-set size.

    ``prior_bits[size]``: held-out cross-entropy of the label prior fitted on the first
    ``sizes[i]`` training words; ``conditional_bits[size, site]``: that of a logistic probe
    on the same words; ``information = prior_bits - conditional_bits``. ``entropy`` is the
    test labels' own (plug-in) entropy, the most any representation could give."""

    label_set: str
    site_names: list[str]
    sizes: list[int]
    prior_bits: np.ndarray
    conditional_bits: np.ndarray
    entropy: float
    features: str = "residual stream"

    @property
    def information(self) -> np.ndarray:
        return self.prior_bits[:, None] - self.conditional_bits

    def to_frame(self):
        import pandas as pd

        rows = [{"features": self.features, "site": site, "n_train": n,
                 "prior_bits": float(self.prior_bits[i]),
                 "conditional_bits": float(self.conditional_bits[i, s]),
                 "information_bits": float(self.information[i, s])}
                for i, n in enumerate(self.sizes) for s, site in enumerate(self.site_names)]
        return pd.DataFrame(rows)

    def figure(self, title: str | None = None):
        """Information against training-set size (log axis), one line per site."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for s, site in enumerate(self.site_names):
            fig.add_scatter(x=self.sizes, y=self.information[:, s], mode="lines+markers",
                            name=site)
        fig.add_hline(y=self.entropy, line_dash="dot", annotation_text="H(X) of the test labels")
        fig.add_hline(y=0.0, line_dash="dot")
        fig.update_layout(title=title or f"Bayesian information about {self.label_set} "
                          f"({self.features})", xaxis_title="training words", xaxis_type="log",
                          yaxis_title="I = H(X) - H(X | R), bits")
        return fig


def _default_sizes(n: int) -> list[int]:
    sizes = [2 ** k for k in range(4, 30) if 2 ** k < n]
    return sizes + [n]


def bayesian_mi(
    data: WordData,
    label_set: str,
    sizes: Sequence[int] | None = None,
    *,
    sites: Sequence[int] | None = None,
    l2: float = L2,
    max_iter: int = 100,
    alpha: float = 1.0,
    seed: int = 0,
) -> BayesianMI:
    """Bayesian information about ``label_set`` at every site (or ``sites``) as a function
    of how many training words the agent has seen (``sizes``; default 16, 32, 64, ... and
    all of them). For each size, the first words of one order drawn with ``seed``: a label
    prior (:func:`prior_cross_entropy`) and a logistic probe (all sites batched) are fitted
    on them and scored on the test words. Features are standardised with all the training
    representations (no labels)."""
    data = _check_word_data(data)
    seed = validate.nonnegative_int(seed, "seed")
    l2 = validate.finite_float(l2, "l2", positive=True)
    max_iter = validate.positive_int(max_iter, "max_iter")
    alpha = validate.finite_float(alpha, "alpha", positive=True)
    index = _site_index(sites, data.n_sites)
    labels = data.label_array(label_set)
    applies = labels != ""
    train = np.flatnonzero(applies & (data.split == "train"))
    test = np.flatnonzero(applies & (data.split == "test"))
    if len(train) < 2 or len(test) == 0:
        raise ValueError(f"label set {label_set!r} needs training and test words")
    order = train[np.random.default_rng(seed).permutation(len(train))]
    if sizes is None:
        sizes = _default_sizes(len(order))
    if isinstance(sizes, str) or not isinstance(sizes, Sequence | np.ndarray):
        raise TypeError(f"sizes must be a list of ints, got {type(sizes).__name__}")
    sizes = [validate.int_in_range(s, "sizes", 1, len(order)) for s in sizes]
    if not sizes:
        raise ValueError("sizes is empty")
    classes = sorted(set(labels[train].tolist()) | set(labels[test].tolist()))
    lookup = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([lookup[c] for c in labels[order]])
    y_test = torch.tensor([lookup[c] for c in labels[test]])
    acts = data.activations[index]
    x = acts[:, torch.from_numpy(order)].float()
    scaler = Standardiser.fit(x)
    z, z_test = scaler(x), scaler(acts[:, torch.from_numpy(test)])
    k = len(classes)
    prior, conditional = [], []
    for n in sizes:
        prior.append(prior_cross_entropy(y[:n], y_test, k, alpha))
        w, b = fit_logistic(z[:, :n], y[:n], k, l2, max_iter)
        log_p = torch.baddbmm(b[:, None], z_test, w).log_softmax(-1)
        ce = -log_p.gather(-1, y_test.expand(len(index), -1)[..., None])[..., 0].mean(-1)
        conditional.append((ce / LN2).double().numpy())
    freq = torch.bincount(y_test, minlength=k).double() / len(y_test)
    entropy = float(-(freq[freq > 0] * freq[freq > 0].log2()).sum())
    return BayesianMI(label_set, [data.site_names[i] for i in index], sizes, np.array(prior),
                      np.stack(conditional), entropy, data.features)


def random_projection(data: WordData, dim: int, seed: int = 0) -> WordData:
    """The representations multiplied by one Gaussian ``[d, dim]`` matrix (the same for every
    site): a linear processing step that, for ``dim < d``, can only lose information."""
    data = _check_word_data(data)
    dim = validate.positive_int(dim, "dim")
    seed = validate.nonnegative_int(seed, "seed")
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(data.activations.shape[-1], dim, generator=gen) / math.sqrt(dim)
    acts = (data.activations.float() @ proj).half()
    return dataclasses.replace(data, activations=acts,
                               features=f"random projection to {dim} dims")


def random_features(data: WordData, width: int, seed: int = 0) -> WordData:
    """Random ReLU features of the representations: ``relu(z W / sqrt(d) + b)`` of the
    standardised representation ``z`` (training statistics), ``W`` Gaussian ``[d, width]``
    and ``b`` uniform in ``[-1, 1]``. A fixed nonlinear function: by the data-processing
    inequality it cannot add Shannon information, but a linear probe may read more from it."""
    data = _check_word_data(data)
    width = validate.positive_int(width, "width")
    seed = validate.nonnegative_int(seed, "seed")
    gen = torch.Generator().manual_seed(seed)
    d = data.activations.shape[-1]
    weight = torch.randn(d, width, generator=gen) / math.sqrt(d)
    bias = torch.rand(width, generator=gen) * 2 - 1
    train = torch.from_numpy(np.flatnonzero(data.split == "train"))
    scaler = Standardiser.fit(data.activations[:, train].float())
    acts = torch.relu(scaler(data.activations) @ weight + bias).half()
    return dataclasses.replace(data, activations=acts,
                               features=f"random ReLU features ({width})")


# ---------------------------------------------------------------- sliced MI


def _scale_and_jitter(z: torch.Tensor, seed: int | None) -> torch.Tensor:
    """What scikit-learn does to a continuous feature before its estimator: divide by the
    standard deviation, then add noise of 1e-10 times max(1, mean |z|) to break ties."""
    std = z.std(-1, correction=0, keepdim=True)
    z = z / torch.where(std > 0, std, torch.ones_like(std))
    if seed is None:
        return z
    noise = torch.from_numpy(np.random.RandomState(seed).standard_normal(z.shape[-1]))
    scale = z.abs().mean(-1, keepdim=True).clamp_min(1.0)
    return z + 1e-10 * scale * noise.to(z.dtype)


@torch.no_grad()
def mi_1d(
    z: Float[torch.Tensor, "proj n"],
    y: Int[torch.Tensor, " n"],
    *,
    n_neighbors: int = 3,
    clip: bool = False,
    seed: int | None = 0,
    chunk: int = 64,
) -> Float[torch.Tensor, " proj"]:
    """The mutual information (nats) between each row of ``z`` (a continuous variable) and
    the labels ``y``, by Ross's (2014) nearest-neighbour estimator, all rows at once:
    ``psi(N) + <psi(k)> - <psi(N_y)> - <psi(m)>``, with ``m`` the number of points within
    the distance of each point's ``k``-th nearest neighbour of its own class. It is the
    estimator of scikit-learn's ``mutual_info_classif`` (same scaling, same tie-breaking noise
    with ``seed``; ``seed=None`` adds none), without its clipping at 0 unless ``clip``: the
    estimate of independent variables then scatters around 0 rather than sitting above it.
    Classes with a single example are left out, as scikit-learn does. Rows are processed
    ``chunk`` at a time (one sort per class and row)."""
    z = validate.finite_tensor(z, "z")
    if z.ndim != 2:
        raise ValueError(f"z must be [proj, n], got shape {list(z.shape)}")
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    y = _check_targets(y, z.shape[1], int(y.max()) + 1 if len(y) and not y.is_floating_point()
                       else 1)
    n_neighbors = validate.positive_int(n_neighbors, "n_neighbors")
    validate.flag(clip, "clip")
    chunk = validate.positive_int(chunk, "chunk")
    if seed is not None:
        seed = validate.nonnegative_int(seed, "seed")
    counts = torch.bincount(y)
    keep = counts[y] > 1
    if int(keep.sum()) < 2 or int((counts > 1).sum()) < 1:
        raise ValueError("y needs at least one class with two examples")
    z = _scale_and_jitter(z.double(), seed)[:, keep]
    y = y[keep]
    n = len(y)
    label_counts = counts[y].double()
    k_all = torch.empty(n, dtype=torch.float64)
    out = []
    for start in range(0, z.shape[0], chunk):
        zc = z[start:start + chunk]
        radius = torch.empty_like(zc)      # distance to the k-th neighbour of the same class
        neighbour = torch.empty_like(zc)   # that neighbour's value
        for c in torch.unique(y):
            members = torch.nonzero(y == c)[:, 0]
            m = len(members)
            k = min(n_neighbors, m - 1)
            k_all[members] = k
            values, order = zc[:, members].sort(dim=1)
            offsets = torch.cat([torch.arange(-k, 0), torch.arange(1, k + 1)])
            where = (torch.arange(m)[:, None] + offsets[None]).clamp(0, m - 1)   # [m, 2k]
            valid = (torch.arange(m)[:, None] + offsets[None] >= 0) & \
                (torch.arange(m)[:, None] + offsets[None] < m)
            gaps = (values[:, where] - values[:, :, None]).abs().masked_fill(~valid, math.inf)
            kth = gaps.kthvalue(k, dim=-1)                                      # [proj, m]
            nb = values.gather(1, where[torch.arange(m)[None], kth.indices])
            radius[:, members] = torch.empty_like(nb).scatter_(1, order, kth.values)
            neighbour[:, members] = torch.empty_like(nb).scatter_(1, order, nb)
        # points strictly closer than the k-th neighbour, the point itself included (what
        # scikit-learn counts with a radius one float below that distance); the neighbour's own
        # value bounds its side exactly, so rounding cannot count it
        ordered = zc.sort(dim=1).values
        search = torch.searchsorted
        above = neighbour > zc
        upper = search(ordered, torch.where(above, neighbour, zc + radius), right=False)
        lower = search(ordered, torch.where(above, zc - radius, neighbour), right=True)
        within = upper - lower
        tied = radius == 0
        if bool(tied.any()):  # k same-class copies of the value: count the copies, as at radius 0
            copies = search(ordered, zc, right=True) - search(ordered, zc, right=False)
            within = torch.where(tied, copies, within)
        within = within.double()
        out.append(torch.special.digamma(torch.tensor(float(n), dtype=torch.float64))
                   + torch.special.digamma(k_all).mean()
                   - torch.special.digamma(label_counts).mean()
                   - torch.special.digamma(within).mean(-1))
    mi = torch.cat(out)
    return mi.clamp_min(0.0) if clip else mi


@dataclass
class SlicedMI:
    """Sliced mutual information per site, in nats: ``mean[site]`` over ``values[site, proj]``
    (the MI of each random unit projection), ``stderr[site]`` its standard error over
    projections (``std / sqrt(n_projections)``)."""

    site_names: list[str]
    values: Float[torch.Tensor, "site proj"]
    label_set: str = "labels"
    shuffled: bool = False
    features: str = "residual stream"

    @property
    def mean(self) -> np.ndarray:
        return self.values.mean(1).numpy()

    @property
    def stderr(self) -> np.ndarray:
        return (self.values.std(1) / math.sqrt(self.values.shape[1])).numpy()

    @property
    def n_projections(self) -> int:
        return int(self.values.shape[1])

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"label_set": self.label_set + (" (shuffled)" if self.shuffled
                                                           else ""),
                             "features": self.features, "site": self.site_names,
                             "sliced_mi_nats": self.mean, "stderr": self.stderr})

    def figure(self, title: str | None = None):
        """The mean per site with error bars of two standard errors."""
        import plotly.graph_objects as go

        fig = go.Figure(go.Scatter(x=list(range(len(self.site_names))), y=self.mean,
                                   error_y={"type": "data", "array": 2 * self.stderr},
                                   mode="lines+markers", name=self.label_set))
        fig.update_layout(title=title or f"Sliced MI with {self.label_set}",
                          yaxis_title="nats", xaxis={"title": "site", "tickmode": "array",
                                                     "tickvals": list(range(len(self.site_names))),
                                                     "ticktext": self.site_names})
        return fig


def sliced_mi(
    x: Float[torch.Tensor, "*site n d"] | WordData,
    y: Int[torch.Tensor, " n"] | str,
    n_projections: int = 128,
    *,
    sites: Sequence[int] | None = None,
    shuffle: bool = False,
    standardise: bool = False,
    max_examples: int | None = None,
    n_neighbors: int = 3,
    seed: int = 0,
) -> SlicedMI:
    """Sliced mutual information (Goldfeld & Greenewald 2021) between representations and
    labels: the mean of :func:`mi_1d` over ``n_projections`` directions drawn uniformly on the
    unit sphere (the same directions at every site), with its standard error.

    Either ``x`` is a tensor ``[n, d]`` or ``[site, n, d]`` and ``y`` its integer labels, or
    ``x`` is a :class:`WordData` and ``y`` the name of a label set (the words it applies to,
    both splits; ``sites`` chooses sites). ``shuffle`` pairs each projection with its own random
    permutation of the labels (a null with the same marginals: its SI should be 0 within its
    error, and its error includes the spread over permutations); ``standardise`` z-scores each
    feature first (an invertible map: MI is unchanged, SI is not); ``max_examples`` keeps a
    random subset of that many examples."""
    validate.flag(shuffle, "shuffle")
    validate.flag(standardise, "standardise")
    n_projections = validate.int_in_range(n_projections, "n_projections", 2, 10**6)
    seed = validate.nonnegative_int(seed, "seed")
    label_set, features = "labels", "features"
    if isinstance(x, WordData):
        if not isinstance(y, str):
            raise TypeError("with a WordData, y must be the name of a label set, e.g. 'number'")
        index = _site_index(sites, x.n_sites)
        labels = x.label_array(y)
        words = np.flatnonzero(labels != "")
        classes = sorted(set(labels[words].tolist()))
        if len(classes) < 2:
            raise ValueError(f"label set {y!r} has fewer than 2 classes")
        lookup = {c: i for i, c in enumerate(classes)}
        label_set, features = y, x.features
        site_names = [x.site_names[i] for i in index]
        values = x.activations[index][:, torch.from_numpy(words)].float()
        targets = torch.tensor([lookup[c] for c in labels[words]])
    else:
        values = validate.finite_tensor(x, "x").float()
        if values.ndim == 2:
            values = values[None]
        if values.ndim != 3:
            raise ValueError(f"x must be [n, d] or [site, n, d], got shape {list(values.shape)}")
        if sites is not None:
            values = values[_site_index(sites, values.shape[0])]
        site_names = [str(i) for i in range(values.shape[0])]
        targets = _check_targets(y, values.shape[1], 10**6)
    rng = np.random.default_rng(seed)
    if max_examples is not None:
        max_examples = validate.int_in_range(max_examples, "max_examples", 2, 10**9)
        if max_examples < values.shape[1]:
            keep = torch.from_numpy(np.sort(rng.choice(values.shape[1], max_examples,
                                                       replace=False)))
            values, targets = values[:, keep], targets[keep]
    if standardise:
        values = Standardiser.fit(values)(values)
    gen = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_projections, values.shape[-1], generator=gen)
    directions = directions / directions.norm(dim=1, keepdim=True)
    shuffles = None
    if shuffle:  # each projection its own permutation: the error over projections covers them
        shuffles = torch.from_numpy(np.stack([rng.permutation(len(targets))
                                              for _ in range(n_projections)]))
    per_site = []
    for v in values:
        z = directions @ v.T
        if shuffles is not None:
            z = z.gather(1, shuffles)
        per_site.append(mi_1d(z, targets, n_neighbors=n_neighbors, seed=seed))
    return SlicedMI(site_names, torch.stack(per_site).float(), label_set, shuffle,
                    features + (" (standardised)" if standardise else ""))


# ---------------------------------------------------------------- behavioural: minimal pairs

_IRREGULAR = {"is": "are", "was": "were", "has": "have", "does": "do", "goes": "go"}
_IRREGULAR.update({plural: singular for singular, plural in _IRREGULAR.items()})
_SINGULAR_IRREGULAR = {"is", "was", "has", "does", "goes"}


def other_number(verb: str, tag: str) -> str | None:
    """The verb with its number swapped, or ``None`` when there is no safe swap: ``is`` <->
    ``are``, ``was`` <-> ``were``, ``has`` <-> ``have``, ``does`` <-> ``do``; a regular
    present tense from ``VBZ`` (*watches*, *carries*, *runs*) to ``VBP`` (*watch*, *carry*,
    *run*) and back. Only lower-case alphabetic verbs are swapped.

    >>> other_number("carries", "VBZ"), other_number("watch", "VBP"), other_number("were", "VBD")
    ('carry', 'watches', 'was')
    """
    if not isinstance(verb, str) or not isinstance(tag, str):
        raise TypeError("verb and tag must be strings")
    if not verb.isalpha() or verb != verb.lower():
        return None
    if verb in _IRREGULAR:
        return _IRREGULAR[verb] if tag in ("VBZ", "VBP", "VBD") else None
    if tag == "VBZ":
        if verb.endswith("ies") and len(verb) > 4:
            return verb[:-3] + "y"
        if verb.endswith(("sses", "shes", "ches", "xes", "zzes", "oes")):
            return verb[:-2]
        if verb.endswith("s") and not verb.endswith("ss") and len(verb) > 2:
            return verb[:-1]
        return None
    if tag == "VBP":
        if verb in ("be", "am"):
            return None
        if verb.endswith("y") and len(verb) > 2 and verb[-2] not in "aeiou":
            return verb[:-1] + "ies"
        if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
            return verb + "es"
        return verb + "s"
    return None


def _verb_number(verb: str, tag: str) -> str | None:
    if tag == "VBZ" or (tag == "VBD" and verb == "was"):
        return "singular"
    if tag == "VBP" or (tag == "VBD" and verb == "were"):
        return "plural"
    return None


@dataclass
class AgreementPairs:
    """Subject-verb agreement minimal pairs: a prefix that ends right before the verb, the
    verb in the number of its subject (``good``) and in the other number (``bad``), both
    single tokens. Per pair: the subject's ``number``, the token position of the subject's
    last piece, the words between subject and verb (``distance``), how many nouns of the
    other number stand between them (``attractors``), where the pair comes from (``source``:
    ``"corpus"`` or ``"template"``; ``construction``: the template's name, or
    ``"sentence"``), a ``group`` (its sentence or template instance) and the ``split``
    (``"train"``/``"test"``, by group)."""

    prefixes: list[torch.Tensor]
    good: Int[torch.Tensor, " pair"]
    bad: Int[torch.Tensor, " pair"]
    number: np.ndarray
    subject_position: np.ndarray
    distance: np.ndarray
    attractors: np.ndarray
    source: np.ndarray
    construction: np.ndarray
    group: np.ndarray
    split: np.ndarray
    texts: list[str]
    verbs: list[tuple[str, str]]
    signature: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.prefixes)

    def __add__(self, other: AgreementPairs) -> AgreementPairs:
        if not isinstance(other, AgreementPairs):
            return NotImplemented
        if self.signature != other.signature:
            raise validate.ModelMismatchError("these pairs were tokenized for models of other "
                                              "sizes; build both with the same model")
        offset = int(self.group.max()) + 1 if len(self) else 0
        cat = np.concatenate
        return AgreementPairs(
            self.prefixes + other.prefixes, torch.cat([self.good, other.good]),
            torch.cat([self.bad, other.bad]), cat([self.number, other.number]),
            cat([self.subject_position, other.subject_position]),
            cat([self.distance, other.distance]), cat([self.attractors, other.attractors]),
            cat([self.source, other.source]), cat([self.construction, other.construction]),
            cat([self.group, other.group + offset]), cat([self.split, other.split]),
            self.texts + other.texts, self.verbs + other.verbs, self.signature)

    def subset(self, mask: np.ndarray) -> AgreementPairs:
        """The pairs where ``mask`` (a boolean array, one entry per pair) is true."""
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (len(self),):
            raise ValueError(f"mask must be a boolean array of shape ({len(self)},)")
        index = np.flatnonzero(mask)
        pick = torch.from_numpy(index)
        return AgreementPairs(
            [self.prefixes[i] for i in index], self.good[pick], self.bad[pick],
            self.number[index], self.subject_position[index], self.distance[index],
            self.attractors[index], self.source[index], self.construction[index],
            self.group[index], self.split[index], [self.texts[i] for i in index],
            [self.verbs[i] for i in index], self.signature)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"prefix": self.texts, "good": [g for g, _ in self.verbs],
                             "bad": [b for _, b in self.verbs], "number": self.number,
                             "distance": self.distance, "attractors": self.attractors,
                             "source": self.source, "construction": self.construction,
                             "split": self.split})


def _check_pairs(pairs: Any) -> AgreementPairs:
    if not isinstance(pairs, AgreementPairs):
        raise TypeError(f"pairs must be AgreementPairs from agreement_pairs(...) or "
                        f"template_pairs(...), got {type(pairs).__name__}")
    if len(pairs) == 0:
        raise ValueError("pairs is empty")
    return pairs


def _single_token(tokenizer: Any, word: str, cache: dict[str, int | None]) -> int | None:
    if word not in cache:
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        cache[word] = int(ids[0]) if len(ids) == 1 else None
    return cache[word]


def _split_groups(groups: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    n_test = min(len(unique) - 1, max(1, int(round(test_fraction * len(unique)))))
    test = set(rng.permutation(unique)[:n_test].tolist()) if len(unique) > 1 else set()
    return np.array(["test" if g in test else "train" for g in groups])


def _make_pairs(model, rows, test_fraction, seed) -> AgreementPairs:
    if not rows:
        raise ValueError("no minimal pair could be built: no subject-verb pair whose verb "
                         "has both numbers as single tokens of this model's vocabulary")
    groups = np.array([r["group"] for r in rows])
    return AgreementPairs(
        prefixes=[torch.tensor(r["ids"]) for r in rows],
        good=torch.tensor([r["good"] for r in rows]), bad=torch.tensor([r["bad"] for r in rows]),
        number=np.array([r["number"] for r in rows]),
        subject_position=np.array([r["subject"] for r in rows]),
        distance=np.array([r["distance"] for r in rows]),
        attractors=np.array([r["attractors"] for r in rows]),
        source=np.array([r["source"] for r in rows]),
        construction=np.array([r["construction"] for r in rows]), group=groups,
        split=_split_groups(groups, test_fraction, seed), texts=[r["text"] for r in rows],
        verbs=[r["verbs"] for r in rows], signature=model_signature(model))


def agreement_pairs(
    model: Any,
    sentences: Sequence[str],
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
    cache_dir: str | None = None,
) -> AgreementPairs:
    """Minimal pairs from real sentences. spaCy tags each sentence; for every present-tense
    verb (``VBZ``/``VBP``, or *was*/*were*) whose subject (``nsubj``/``nsubjpass`` of the verb,
    or of the word it is an auxiliary of) is a common noun (``NN``/``NNS``, not conjoined)
    that comes before it and agrees with it, the pair is the sentence up to the verb with the
    verb and its :func:`other_number`. Both forms must be single tokens of the model (so the
    two are scored at one position); a prefix longer than the model's context is left out
    (never cut). Pairs are split by sentence (``test_fraction``, ``seed``)."""
    from interp_lib.tagging import tag_sentences, token_offsets, token_word_index

    check_model(model)
    sentences = validate.texts(sentences, "sentences")
    test_fraction = validate.fraction(test_fraction, "test_fraction")
    seed = validate.nonnegative_int(seed, "seed")
    tokenizer = model.tokenizer
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the model's tokenizer has no BOS token")
    cache: dict[str, int | None] = {}
    rows = []
    for s, tags in enumerate(tag_sentences(sentences, cache_dir=cache_dir)):
        n = len(tags)
        children: list[list[int]] = [[] for _ in range(n)]
        for i, h in enumerate(tags.head):
            if h != i:
                children[h].append(i)
        words = [tags.text[a:b] for a, b in tags.spans]
        for v in range(n):
            number = _verb_number(words[v], tags.tag[v])
            start = tags.spans[v][0]
            if number is None or start == 0 or tags.text[start - 1] != " ":
                continue
            subjects = [i for i in children[v] if tags.dep[i] in ("nsubj", "nsubjpass")]
            if not subjects and tags.dep[v] in ("aux", "auxpass"):
                subjects = [i for i in children[tags.head[v]]
                            if tags.dep[i] in ("nsubj", "nsubjpass")]
            if not subjects:
                continue
            su = subjects[0]
            subject_number = {"NN": "singular", "NNS": "plural"}.get(tags.tag[su])
            if su > v or subject_number != number or any(
                    tags.dep[i] == "conj" for i in children[su]):
                continue
            other = other_number(words[v], tags.tag[v])
            good = _single_token(tokenizer, words[v], cache)
            bad = _single_token(tokenizer, other, cache) if other else None
            if good is None or bad is None or good == bad:
                continue
            prefix = tags.text[:start].rstrip()
            ids, spans = token_offsets(tokenizer, prefix)
            owner = token_word_index(spans, tags.spans[:v])
            pieces = [t for t, w in enumerate(owner) if w == su]
            if not pieces or len(ids) + 1 > model.cfg.n_ctx:
                continue
            rows.append({
                "ids": [bos, *ids], "good": good, "bad": bad, "number": number,
                "subject": pieces[-1] + 1, "distance": v - su - 1,
                "attractors": sum(1 for i in range(su + 1, v)
                                  if tags.tag[i] in ("NN", "NNS") and tags.tag[i] != tags.tag[su]),
                "source": "corpus", "construction": "sentence", "group": s, "text": prefix,
                "verbs": (words[v], other)})
    return _make_pairs(model, rows, test_fraction, seed)


#: Singular and plural nouns for the templates (words of the course model's corpus).
TEMPLATE_NOUNS: tuple[tuple[str, str], ...] = (
    ("ship", "ships"), ("whale", "whales"), ("captain", "captains"), ("sailor", "sailors"),
    ("boat", "boats"), ("officer", "officers"), ("nation", "nations"), ("law", "laws"),
    ("treaty", "treaties"), ("citizen", "citizens"), ("report", "reports"),
    ("army", "armies"), ("man", "men"), ("island", "islands"), ("king", "kings"),
    ("friend", "friends"))
#: Verbs for the templates, singular and plural; only pairs of single tokens are used.
TEMPLATE_VERBS: tuple[tuple[str, str], ...] = (("is", "are"), ("was", "were"), ("has", "have"))
#: Templates (after Marvin & Linzen 2018): the prefix before the verb, with its subject and
#: an attractor noun, and the number of words between subject and verb.
TEMPLATES: dict[str, tuple[str, int]] = {
    "simple": ("The {subject}", 0),
    "prepositional phrase": ("The {subject} of the {attractor}", 3),
    "prepositional phrase (near)": ("The {subject} near the {attractor}", 3),
    "object relative clause": ("The {subject} that the {attractor} saw", 4),
    "subject relative clause": ("The {subject} that saw the {attractor}", 4),
}


def template_pairs(
    model: Any,
    n: int = 500,
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> AgreementPairs:
    """``n`` minimal pairs from :data:`TEMPLATES`, spread evenly over the templates, subject
    and attractor numbers drawn independently (so half the attractors disagree with the
    subject), nouns from :data:`TEMPLATE_NOUNS` and verbs from :data:`TEMPLATE_VERBS` whose
    two forms are single tokens of the model. Drawn with ``seed`` without repeats."""
    check_model(model)
    n = validate.positive_int(n, "n")
    test_fraction = validate.fraction(test_fraction, "test_fraction")
    seed = validate.nonnegative_int(seed, "seed")
    tokenizer = model.tokenizer
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the model's tokenizer has no BOS token")
    cache: dict[str, int | None] = {}
    verbs = [(s, p, _single_token(tokenizer, s, cache), _single_token(tokenizer, p, cache))
             for s, p in TEMPLATE_VERBS]
    verbs = [v for v in verbs if v[2] is not None and v[3] is not None]
    if not verbs:
        raise ValueError("none of the template verbs has both numbers as single tokens of "
                         "this model's vocabulary")
    rng = np.random.default_rng(seed)
    per_template = [n // len(TEMPLATES) + (1 if i < n % len(TEMPLATES) else 0)
                    for i in range(len(TEMPLATES))]
    rows = []
    for (name, (template, distance)), count in zip(TEMPLATES.items(), per_template,
                                                    strict=True):
        has_attractor = "{attractor}" in template
        combos = [(s, a, sn, an, v)
                  for s in range(len(TEMPLATE_NOUNS))
                  for a in (range(len(TEMPLATE_NOUNS)) if has_attractor else [None])
                  if a != s
                  for sn in (0, 1) for an in ((0, 1) if has_attractor else (None,))
                  for v in range(len(verbs))]
        chosen = rng.permutation(len(combos))[:count]
        for c in chosen:
            s, a, sn, an, v = combos[c]
            subject = TEMPLATE_NOUNS[s][sn]
            attractor = TEMPLATE_NOUNS[a][an] if has_attractor else ""
            prefix = template.format(subject=subject, attractor=attractor)
            ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
            head = tokenizer("The " + subject, add_special_tokens=False)["input_ids"]
            singular, plural, id_sg, id_pl = verbs[v]
            rows.append({
                "ids": [bos, *ids], "good": id_sg if sn == 0 else id_pl,
                "bad": id_pl if sn == 0 else id_sg, "number": NUMBERS[sn],
                "subject": len(head), "distance": distance,
                "attractors": int(has_attractor and an != sn), "source": "template",
                "construction": name, "group": len(rows), "text": prefix,
                "verbs": (singular, plural) if sn == 0 else (plural, singular)})
    return _make_pairs(model, rows, test_fraction, seed)


def _final_hook_name() -> str:
    return "unembed.hook_in"


def distance_bin(distance: int) -> str:
    """The group a subject-verb distance falls in: ``"0"``, ``"1-2"``, ``"3-5"``,
    ``"6-10"`` or ``"11+"`` words between them."""
    for low, high in ((0, 0), (1, 2), (3, 5), (6, 10)):
        if low <= distance <= high:
            return str(low) if low == high else f"{low}-{high}"
    return "11+"


@dataclass
class AgreementResult:
    """Each pair's ``margin = log p(good verb) - log p(bad verb)`` (nats) at the end of its
    prefix; a pair is right when the margin is positive. ``representations[site, pair, d]``
    (when kept) are the residual stream at the last prefix token, where the verb is
    predicted, and ``subject_representations`` at the subject's last token."""

    pairs: AgreementPairs
    margin: np.ndarray
    representations: Float[torch.Tensor, "site pair d"] | None = None
    subject_representations: Float[torch.Tensor, "site pair d"] | None = None
    site_names: list[str] = field(default_factory=list)

    @property
    def correct(self) -> np.ndarray:
        return self.margin > 0

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    def by(self, column: str, *, split: str | None = None):
        """Accuracy, mean margin and count per group of ``column`` (``"distance"`` in bins,
        ``"attractors"`` (0, 1, 2+), ``"number"``, ``"source"``, ``"construction"``,
        ``"split"``), on one ``split`` or all pairs."""
        validate.choice(column, "column", ("distance", "attractors", "number", "source",
                                           "construction", "split"))
        if split is not None:
            validate.choice(split, "split", ("train", "test"))
        frame = self.to_frame()
        if split is not None:
            frame = frame[frame["split"] == split]
        if column == "distance":
            keys = frame["distance"].map(distance_bin)
            order = ["0", "1-2", "3-5", "6-10", "11+"]
        elif column == "attractors":
            keys = frame["attractors"].map(lambda a: str(a) if a < 2 else "2+")
            order = ["0", "1", "2+"]
        else:
            keys = frame[column].astype(str)
            order = sorted(keys.unique())
        grouped = frame.assign(group=keys).groupby("group").agg(
            accuracy=("correct", "mean"), mean_margin=("margin", "mean"),
            pairs=("margin", "size"))
        grouped = grouped.reindex([k for k in order if k in grouped.index])
        grouped.index.name = column
        return grouped.reset_index()

    def to_frame(self):
        frame = self.pairs.to_frame()
        frame["margin"] = self.margin
        frame["correct"] = self.correct
        return frame

    def figure(self, column: str = "distance", title: str | None = None):
        """Accuracy per group of ``column``, the number of pairs above each bar."""
        from interp_lib.plotting import bar

        groups = self.by(column)
        return bar(groups[column].tolist(), groups["accuracy"].to_numpy(),
                   text=[f"{n} pairs" for n in groups["pairs"]], y_title="accuracy",
                   x_title=column, title=title or f"Agreement accuracy by {column}")


def _gather_last(x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    return x[torch.arange(x.shape[0], device=x.device), last]


def _pair_margins(final: torch.Tensor, model: Any, good: torch.Tensor, bad: torch.Tensor
                  ) -> torch.Tensor:
    """log p(good) - log p(bad) from the unembedding's input at the predicting position: the
    softmax's normaliser cancels, so it is the logit difference."""
    w_u, b_u = model.W_U.detach(), model.b_U.detach()
    good, bad = good.to(w_u.device), bad.to(w_u.device)
    direction = (w_u[:, good] - w_u[:, bad]).T                   # [pair, d]
    return (final.float() * direction.float()).sum(-1) + (b_u[good] - b_u[bad]).float()


@torch.no_grad()
def agreement_scores(
    model: Any,
    pairs: AgreementPairs,
    *,
    batch_size: int = 64,
    keep_representations: bool = False,
) -> AgreementResult:
    """Score every pair: one forward pass per batch of right-padded prefixes, the two verbs'
    logits read at each prefix's last token (from the unembedding's input, two columns of
    ``W_U``: no ``[batch, pos, vocab]`` logits are kept). ``keep_representations`` also keeps
    every site's residual stream there, for :func:`number_directions`."""
    check_model(model)
    pairs = _check_pairs(pairs)
    check_same_model(model, pairs.signature, "the pairs")
    batch_size = validate.positive_int(batch_size, "batch_size")
    validate.flag(keep_representations, "keep_representations")
    names, site_names = site_hook_names(model.cfg)
    wanted = [_final_hook_name()] + (names if keep_representations else [])
    order = _by_length(pairs.prefixes)
    margins, reps, subject_reps = [], [], []
    for start in range(0, len(pairs), batch_size):
        chunk = torch.from_numpy(order[start:start + batch_size])
        tokens, mask = padded_batch(model, [pairs.prefixes[i] for i in chunk], name="pairs")
        last = mask.sum(1) - 1
        _, cache = model.run_with_cache(tokens, attention_mask=mask,
                                        names_filter=only(*wanted), return_type=None)
        final = _gather_last(cache[_final_hook_name()], last)
        margins.append(_pair_margins(final, model, pairs.good[chunk], pairs.bad[chunk]).cpu())
        if keep_representations:
            subject = torch.from_numpy(pairs.subject_position[chunk.numpy()]).to(last.device)
            reps.append(torch.stack([_gather_last(cache[n], last) for n in names]).float().cpu())
            subject_reps.append(torch.stack([_gather_last(cache[n], subject) for n in names])
                                .float().cpu())
    back = torch.from_numpy(np.argsort(order))
    margin = torch.cat(margins)[back].double().numpy()
    if not keep_representations:
        return AgreementResult(pairs, margin)
    return AgreementResult(pairs, margin, torch.cat(reps, dim=1)[:, back],
                           torch.cat(subject_reps, dim=1)[:, back], site_names)


def _by_length(rows: Sequence[torch.Tensor]) -> np.ndarray:
    """Row indices from shortest to longest: batches of similar lengths waste less padding."""
    return np.argsort(np.array([len(r) for r in rows]), kind="stable")


# ---------------------------------------------------------------- causal: number directions


def random_orthonormal(d: int, k: int, n: int = 1, seed: int = 0
                       ) -> Float[torch.Tensor, "n k d"]:
    """``n`` random sets of ``k`` orthonormal directions in ``d`` dimensions (QR of Gaussian
    matrices): uniformly random ``k``-dimensional subspaces, the control for removing
    ``k`` learned directions."""
    d = validate.positive_int(d, "d")
    k = validate.int_in_range(k, "k", 1, d)
    n = validate.positive_int(n, "n")
    seed = validate.nonnegative_int(seed, "seed")
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, d, k, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    return q.transpose(1, 2).float().contiguous()


def remove_directions(
    x: Float[torch.Tensor, "*batch d"],
    basis: Float[torch.Tensor, "k d"],
    mean: Float[torch.Tensor, " d"] | None = None,
    *,
    scale: float = 1.0,
) -> Float[torch.Tensor, "*batch d"]:
    """``x - scale * ((x - mean) B^T) B`` for orthonormal rows ``B = basis``: with ``scale``
    1 the component of ``x`` in the span of ``basis`` is replaced by that of ``mean`` (plain
    nullspace projection when ``mean`` is None), so no linear read-out along those directions
    is left; with ``scale`` 2 it is reflected through ``mean`` (a counterfactual flip)."""
    x = validate.finite_tensor(x, "x")
    basis = validate.finite_tensor(basis, "basis")
    if basis.ndim != 2 or basis.shape[1] != x.shape[-1]:
        raise ValueError(f"basis must be [k, d] with d = {x.shape[-1]} (x's last axis), got "
                         f"{list(basis.shape)}")
    gram = basis.double() @ basis.double().T
    if not torch.allclose(gram, torch.eye(len(basis), dtype=torch.float64), atol=1e-3):
        raise ValueError("basis rows must be orthonormal (use number_directions or "
                         "random_orthonormal, or orthonormalise them with torch.linalg.qr)")
    scale = validate.finite_float(scale, "scale")
    basis = basis.to(x.device, x.dtype)
    centred = x
    if mean is not None:
        mean = validate.finite_tensor(mean, "mean", shape=(x.shape[-1],), dims="[d]")
        centred = x - mean.to(x.device, x.dtype)
    return x - scale * (centred @ basis.T) @ basis


@dataclass
class NumberDirections:
    """Subject-number directions at each site, found by iterated nullspace projection.

    ``basis[site, k, d]``: orthonormal rows, the ``k``-th from a probe trained after the
    first ``k - 1`` were projected out; ``accuracy[site, k]`` that probe's accuracy on the
    test pairs (it falls towards ``majority`` as the number information is removed);
    ``mean[site]`` the training representations' mean and ``midpoint[site]`` the midpoint of
    the two numbers' means (the flip reflects through it)."""

    site_names: list[str]
    basis: Float[torch.Tensor, "site k d"]
    mean: Float[torch.Tensor, "site d"]
    midpoint: Float[torch.Tensor, "site d"]
    accuracy: np.ndarray
    majority: float
    n_train: int
    n_test: int
    position: str = "verb"
    signature: tuple[int, ...] | None = None

    @property
    def n_directions(self) -> int:
        return int(self.basis.shape[1])

    def to_frame(self):
        import pandas as pd

        rows = [{"site": site, "iteration": k + 1, "test_accuracy": float(self.accuracy[s, k]),
                 "majority": self.majority}
                for s, site in enumerate(self.site_names) for k in range(self.n_directions)]
        return pd.DataFrame(rows)

    def figure(self, title: str | None = None):
        """Each INLP iteration's probe accuracy, one line per site."""
        from interp_lib.plotting import line_over_layers

        series = {site: self.accuracy[s] for s, site in enumerate(self.site_names)}
        fig = line_over_layers(series, layer_labels=[str(k + 1) for k in
                                                     range(self.n_directions)],
                               x_title="INLP iteration (directions removed before it + 1)",
                               y_title="number-probe test accuracy",
                               title=title or "Subject-number probes, direction by direction")
        fig.add_hline(y=self.majority, line_dash="dot", annotation_text="majority class")
        return fig


def number_directions(
    scores: AgreementResult,
    *,
    position: str = "verb",
    n_directions: int = 8,
    l2: float = L2,
    max_iter: int = 100,
) -> NumberDirections:
    """Iterated nullspace projection (INLP, Ravfogel et al. 2020) of the subject's number at
    every site, from :func:`agreement_scores` representations (``keep_representations=True``)
    at the token that predicts the verb (``position="verb"``) or at the subject's last token
    (``"subject"``). Each iteration trains a logistic probe (all sites
    batched) on the training pairs, takes its direction (in the raw residual space),
    orthonormalises it against the earlier ones and projects it out of the data."""
    if not isinstance(scores, AgreementResult):
        raise TypeError(f"scores must be an AgreementResult, got {type(scores).__name__}")
    if scores.representations is None:
        raise ValueError("scores has no representations: call agreement_scores(model, pairs, "
                         "keep_representations=True)")
    validate.choice(position, "position", ("verb", "subject"))
    reps = (scores.representations if position == "verb"
            else scores.subject_representations).float()
    n_directions = validate.int_in_range(n_directions, "n_directions", 1, reps.shape[-1])
    l2 = validate.finite_float(l2, "l2", positive=True)
    max_iter = validate.positive_int(max_iter, "max_iter")
    pairs = scores.pairs
    train = torch.from_numpy(np.flatnonzero(pairs.split == "train"))
    test = torch.from_numpy(np.flatnonzero(pairs.split == "test"))
    y = torch.from_numpy((pairs.number == "plural").astype(np.int64))
    if len(train) < 2 or len(test) == 0 or len(torch.unique(y[train])) < 2:
        raise ValueError("number_directions needs training pairs of both numbers and test pairs")
    x_train, x_test = reps[:, train], reps[:, test]
    mean = x_train.mean(1)
    midpoint = 0.5 * (x_train[:, y[train] == 0].mean(1) + x_train[:, y[train] == 1].mean(1))
    sites, _, d = reps.shape
    basis = torch.zeros(sites, n_directions, d)
    accuracy = np.zeros((sites, n_directions))
    for k in range(n_directions):
        scaler = Standardiser.fit(x_train)
        w, b = fit_logistic(scaler(x_train), y[train], 2, l2, max_iter)
        pred = torch.baddbmm(b[:, None], scaler(x_test), w).argmax(-1)
        accuracy[:, k] = (pred == y[test][None]).double().mean(1).numpy()
        v = (w[:, :, 1] - w[:, :, 0]) / scaler.std                  # [site, d], raw space
        for _ in range(2):  # Gram-Schmidt twice, for round-off
            v = v - torch.einsum("sk,skd->sd", torch.einsum("sd,skd->sk", v, basis[:, :k]),
                                 basis[:, :k])
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        basis[:, k] = v
        x_train = x_train - ((x_train - mean[:, None]) * v[:, None]).sum(-1, keepdim=True) \
            * v[:, None]
        x_test = x_test - ((x_test - mean[:, None]) * v[:, None]).sum(-1, keepdim=True) \
            * v[:, None]
    majority = float(max((y[test] == 0).double().mean(), (y[test] == 1).double().mean()))
    return NumberDirections(scores.site_names, basis, mean, midpoint, accuracy, majority,
                            len(train), len(test), position, pairs.signature)


@dataclass
class CausalResult:
    """Agreement accuracy, mean margin and language-model loss with directions changed at
    each site (at every position), against the clean model.

    ``variants``: ``"number removed"`` (every number direction projected out to the mean),
    ``"number flipped"`` (the first direction reflected through the numbers' midpoint), then
    ``"random 1"``, ... (as many random orthonormal directions removed). ``accuracy[site,
    variant]``, ``margin[site, variant]`` (on the ``split`` pairs) and ``loss[site,
    variant]`` (nats per token on the text); ``clean_*`` without any change."""

    site_names: list[str]
    variants: list[str]
    accuracy: np.ndarray
    margin: np.ndarray
    loss: np.ndarray
    clean_accuracy: float
    clean_margin: float
    clean_loss: float
    n_directions: int
    n_pairs: int
    n_tokens: int
    random_bases: Float[torch.Tensor, "random k d"]

    @property
    def removed_accuracy(self) -> np.ndarray:
        return self.accuracy[:, 0]

    @property
    def flipped_accuracy(self) -> np.ndarray:
        return self.accuracy[:, 1]

    @property
    def random_accuracy(self) -> np.ndarray:
        """``[site, random draw]``."""
        return self.accuracy[:, 2:]

    @property
    def removed_loss(self) -> np.ndarray:
        return self.loss[:, 0]

    @property
    def flipped_loss(self) -> np.ndarray:
        return self.loss[:, 1]

    @property
    def random_loss(self) -> np.ndarray:
        return self.loss[:, 2:]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({
            "site": self.site_names, "clean_accuracy": self.clean_accuracy,
            "removed_accuracy": self.removed_accuracy,
            "random_accuracy_mean": self.random_accuracy.mean(1),
            "random_accuracy_min": self.random_accuracy.min(1),
            "flipped_accuracy": self.flipped_accuracy, "clean_loss": self.clean_loss,
            "removed_loss": self.removed_loss, "random_loss_mean": self.random_loss.mean(1),
            "flipped_loss": self.flipped_loss})

    def figure(self, title: str | None = None):
        """Agreement accuracy per site: clean, number removed, number flipped, and the
        random removals (mean, with their range)."""
        import plotly.graph_objects as go

        xs = list(range(len(self.site_names)))
        rand = self.random_accuracy
        fig = go.Figure()
        fig.add_scatter(x=xs, y=self.removed_accuracy, mode="lines+markers",
                        name=f"{self.n_directions} number directions removed")
        fig.add_scatter(x=xs, y=rand.mean(1), mode="lines+markers",
                        name=f"{self.n_directions} random directions removed (mean, range)",
                        error_y={"type": "data", "symmetric": False,
                                 "array": rand.max(1) - rand.mean(1),
                                 "arrayminus": rand.mean(1) - rand.min(1)})
        fig.add_scatter(x=xs, y=self.flipped_accuracy, mode="lines+markers",
                        name="number direction flipped")
        fig.add_hline(y=self.clean_accuracy, line_dash="dot", annotation_text="clean")
        fig.add_hline(y=0.5, line_dash="dash", annotation_text="chance")
        fig.update_layout(title=title or "Agreement accuracy when the number directions are "
                          "changed at one site", yaxis_title="accuracy (test pairs)",
                          xaxis={"title": "site changed", "tickmode": "array", "tickvals": xs,
                                 "ticktext": self.site_names})
        return fig


def _variant_hook(bases: torch.Tensor, centres: torch.Tensor, scales: torch.Tensor):
    """A hook for a batch that holds ``V`` copies of the same rows, variant-major: copy ``v``
    gets ``x - scale_v * ((x - centre_v) B_v^T) B_v``."""
    def hook(x, hook=None):
        views = x.view(bases.shape[0], -1, *x.shape[1:])                # [V, b, pos, d]
        b, c, s = bases.to(x.dtype), centres.to(x.dtype), scales.to(x.dtype)
        coef = torch.einsum("vbpd,vkd->vbpk", views - c[:, None, None], b)
        out = views - s[:, None, None, None] * torch.einsum("vbpk,vkd->vbpd", coef, b)
        return out.reshape(x.shape)

    return hook


def _variants(directions: NumberDirections, site: int, random_bases: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    k, d = directions.basis.shape[1:]
    flip = torch.zeros(k, d)
    flip[0] = directions.basis[site, 0]
    bases = torch.stack([directions.basis[site], flip, *random_bases])
    centres = torch.stack([directions.mean[site], directions.midpoint[site]]
                          + [directions.mean[site]] * len(random_bases))
    scales = torch.tensor([1.0, 2.0] + [1.0] * len(random_bases))
    return bases, centres, scales


@torch.no_grad()
def causal_number_probe(
    model: Any,
    pairs: AgreementPairs,
    directions: NumberDirections,
    tokens: Int[torch.Tensor, "batch pos"],
    *,
    n_random: int = 5,
    split: str = "test",
    sites: Sequence[int] | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> CausalResult:
    """Amnesic and counterfactual probing of grammatical number. At each site (all, or
    ``sites``) the residual stream at every position is changed in one of ``2 + n_random``
    ways (see :class:`CausalResult`), and the agreement accuracy on the ``split`` pairs and
    the next-token loss on ``tokens`` are measured. The variants of one site run as one
    batch (the rows repeated once per variant, each copy with its own change); the clean
    run, the same for every site, runs once."""
    check_model(model)
    pairs = _check_pairs(pairs)
    if not isinstance(directions, NumberDirections):
        raise TypeError(f"directions must be NumberDirections from number_directions(...), got "
                        f"{type(directions).__name__}")
    check_same_model(model, pairs.signature, "the pairs")
    check_same_model(model, directions.signature, "the number directions")
    tokens = to_tokens(model, tokens, name="tokens")
    n_random = validate.positive_int(n_random, "n_random")
    validate.choice(split, "split", ("train", "test", "all"))
    batch_size = validate.positive_int(batch_size, "batch_size")
    seed = validate.nonnegative_int(seed, "seed")
    index = _site_index(sites, len(directions.site_names))
    chosen = pairs if split == "all" else pairs.subset(pairs.split == split)
    if len(chosen) == 0:
        raise ValueError(f"no {split} pairs")
    names, _ = site_hook_names(model.cfg)
    k, d = directions.basis.shape[1:]
    random_bases = random_orthonormal(d, k, n_random, seed)

    order = _by_length(chosen.prefixes)
    back = torch.from_numpy(np.argsort(order))

    def measure(fwd_hooks, copies):
        margins = []
        for start in range(0, len(chosen), batch_size):
            chunk = torch.from_numpy(order[start:start + batch_size])
            toks, mask = padded_batch(model, [chosen.prefixes[i] for i in chunk], name="pairs")
            captured = {}

            def capture(x, hook=None, captured=captured):
                captured["x"] = x

            model.run_with_hooks(toks.repeat(copies, 1), attention_mask=mask.repeat(copies, 1),
                                 fwd_hooks=[*fwd_hooks, (_final_hook_name(), capture)],
                                 return_type=None)
            final = _gather_last(captured["x"], (mask.sum(1) - 1).repeat(copies))
            good = chosen.good[chunk].repeat(copies)
            bad = chosen.bad[chunk].repeat(copies)
            margins.append(_pair_margins(final, model, good, bad).view(copies, -1).cpu())
        margin = torch.cat(margins, dim=1)[:, back].double()                # [copies, pair]
        budget = max(1, int(2 ** 26 // (copies * tokens.shape[1] * model.cfg.d_vocab)))
        losses = []
        for start in range(0, tokens.shape[0], budget):
            rows = tokens[start:start + budget]
            with model.hooks(fwd_hooks=fwd_hooks):
                logits = model(rows.repeat(copies, 1))
            losses.append(next_token_loss(logits, rows.repeat(copies, 1))
                          .view(copies, -1).double().cpu())
        loss = torch.cat(losses, dim=1).mean(1)
        return (margin > 0).double().mean(1).numpy(), margin.mean(1).numpy(), loss.numpy()

    clean_acc, clean_margin, clean_loss = measure([], 1)
    accuracy, margin, loss = [], [], []
    for site in index:
        bases, centres, scales = _variants(directions, site, random_bases)
        hook = _variant_hook(bases.to(model.cfg.device), centres.to(model.cfg.device),
                             scales.to(model.cfg.device))
        acc, mar, los = measure([(names[site], hook)], len(bases))
        accuracy.append(acc)
        margin.append(mar)
        loss.append(los)
    variants = ["number removed", "number flipped"] + [f"random {r + 1}"
                                                         for r in range(n_random)]
    return CausalResult([directions.site_names[i] for i in index], variants,
                        np.stack(accuracy), np.stack(margin), np.stack(loss),
                        float(clean_acc[0]), float(clean_margin[0]), float(clean_loss[0]), k,
                        len(chosen), int(tokens.shape[0] * (tokens.shape[1] - 1)),
                        random_bases)
