"""Grammar probes: where in depth a model's residual stream encodes parts of speech, tags and
dependency labels (Alethea Power, "Looking for Grammar in All the Right Places", 2020), with the
controls that make a probe's accuracy mean something (Hewitt & Liang 2019).

Pipeline:

1. :func:`probe_sentences` — public-domain sentences shipped with the package (held-out documents
   of the course model's corpus).
2. :func:`build_probe_data` — tag them with spaCy (cached on disk), align words to tokens by
   character offsets (the *last* subword piece of a word carries its labels: in a left-to-right
   model it is the first to have seen the whole word), run the model once in padded batches and
   keep every site's residual stream at those positions, in float16. Sites: ``0`` is the
   embedding (the input of block 0), ``k`` the residual after ``k`` blocks. Labels per word:
   ``pos``, ``tag``, ``dep`` of the word itself (incoming) and ``*_next`` of the next word
   (outgoing); ``token``: the token itself (the input reconstruction of the logit-lens post).
   Split by sentence.
3. :func:`train_probes` — one linear probe per site, all sites trained as one batched model
   (multinomial logistic regression, L-BFGS; or closed-form ridge), with accuracy and macro-F1
   on the test sentences against the majority class; ``control=True`` trains on a control task
   instead (each word type gets a fixed random label drawn from the label distribution), and
   :attr:`ProbeResult.selectivity` is task minus control accuracy.
4. :func:`shuffled_weights` — the same model with every weight tensor's entries shuffled (a
   context; restored on exit): a second control with the same sizes and weight statistics but
   nothing learned.
5. :func:`probe_head_importance` and :func:`probe_accuracy_without` — which heads a probe at
   site ``k`` needs: mask-gradient importance of the heads below it, and the probe's accuracy
   when heads are zero-ablated.

>>> import tempfile
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib.data import probe_sentences
>>> from interp_lib.probes import build_probe_data, train_probes
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> short = [s for s in probe_sentences() if len(s.split()) < 12][:40]
>>> data = build_probe_data(model, short)
>>> data.activations.shape[0], data.site_names
(3, ['embed', 'after block 0', 'after block 1'])
>>> result = train_probes(data, "pos")
>>> len(result.accuracy) == 3 and 0 <= result.majority <= 1
True
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float

from interp_lib import validate
from interp_lib.fitting import Standardiser, fit_logistic, fit_ridge
from interp_lib.grid import LabelledGrid
from interp_lib.hooks import hook_name, scale_heads_hook, zero_ablation
from interp_lib.inputs import padded_batch
from interp_lib.validate import check_model, check_same_model, model_signature

__all__ = [
    "LABEL_SETS",
    "ProbeData",
    "ProbeResult",
    "build_probe_data",
    "probe_ablation_effects",
    "probe_accuracy_without",
    "probe_head_importance",
    "shuffled_weights",
    "train_probes",
]

#: Label sets :func:`build_probe_data` provides.
LABEL_SETS: tuple[str, ...] = ("pos", "tag", "dep", "pos_next", "tag_next", "dep_next", "token")

# ---------------------------------------------------------------- data


@dataclass
class ProbeData:
    """Every word's residual stream at every site, with its labels.

    ``activations[site, word]`` (float16); ``labels[name][word]``; ``word_types[word]`` (the
    lower-cased word, for control tasks); ``sentence[word]``, ``position[word]`` (token position
    of its last piece, BOS = 0) and ``split[word]`` (``"train"``, ``"dev"`` or ``"test"``, by
    sentence). ``tokens`` keeps each sentence's token ids for re-running the model."""

    activations: Float[torch.Tensor, "site word d_model"]
    site_names: list[str]
    labels: dict[str, np.ndarray]
    word_types: np.ndarray
    next_types: np.ndarray
    sentence: np.ndarray
    position: np.ndarray
    split: np.ndarray
    tokens: list[torch.Tensor]
    sentences: list[str] = field(repr=False)
    #: the sizes of the model the activations came from (:func:`validate.model_signature`)
    model_signature: tuple[int, ...] | None = None

    @property
    def n_words(self) -> int:
        return int(self.activations.shape[1])

    @property
    def n_tokens(self) -> int:
        """Tokens in all sentences, BOS excluded."""
        return int(sum(len(t) - 1 for t in self.tokens))


def _check_model_fits(model: Any, rows: list[list[int]]) -> None:
    longest = max(len(r) for r in rows)
    if longest > model.cfg.n_ctx:
        raise ValueError(
            f"a sentence has {longest} tokens with BOS, more than the context of "
            f"{model.cfg.n_ctx}; pass shorter sentences")


@torch.no_grad()
def build_probe_data(
    model: Any,
    sentences: Sequence[str],
    *,
    batch_size: int = 32,
    seed: int = 0,
    fractions: tuple[float, float] = (0.8, 0.1),
    cache_dir: str | Path | None = None,
) -> ProbeData:
    """Tag ``sentences`` with spaCy, align words to the model's tokens and cache every site's
    residual stream at each word's last token (see the module docstring). ``fractions`` are
    the train and dev shares of the sentences (the rest is test), drawn with ``seed``."""
    from interp_lib.tagging import tag_sentences, token_offsets, token_word_index

    check_model(model)
    sentences = validate.texts(sentences, "sentences", min_count=3)
    batch_size = validate.positive_int(batch_size, "batch_size")
    validate.nonnegative_int(seed, "seed")
    if not isinstance(fractions, tuple | list) or len(fractions) != 2:
        raise TypeError(f"fractions must be (train, dev) shares, got {fractions!r}")
    train_share, dev_share = (validate.fraction(f, name) for f, name in
                              zip(fractions, ("fractions[0]", "fractions[1]"), strict=True))
    if train_share + dev_share >= 1:
        raise ValueError(f"fractions must leave sentences for the test set: train {train_share} "
                         f"+ dev {dev_share} >= 1")
    if len(sentences) < 3:
        raise ValueError("give at least 3 sentences (train, dev and test need one each)")
    tagged = tag_sentences(sentences, cache_dir=cache_dir)
    tokenizer = model.tokenizer
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the model's tokenizer has no BOS token")
    rows, word_pos = [], []
    for sent, tags in zip(sentences, tagged, strict=True):
        ids, spans = token_offsets(tokenizer, sent)
        owner = token_word_index(spans, tags.spans)
        last = {}
        for t, w in enumerate(owner):
            if w >= 0:
                last[w] = t + 1  # + 1 for BOS
        rows.append([bos, *ids])
        word_pos.append([last.get(w, -1) for w in range(len(tags))])
    _check_model_fits(model, rows)

    cfg = model.cfg
    names = [hook_name("resid_pre", la) for la in range(cfg.n_layers)]
    names.append(hook_name("resid_post", cfg.n_layers - 1))
    site_names = ["embed"] + [f"after block {la}" for la in range(cfg.n_layers)]
    chunks = []
    order = list(range(len(rows)))
    for start in range(0, len(rows), batch_size):
        batch = order[start: start + batch_size]
        tokens, mask = padded_batch(model, [rows[i] for i in batch])
        _, cache = model.run_with_cache(tokens, attention_mask=mask,
                                        names_filter=lambda n: n in names)
        stacked = torch.stack([cache[n] for n in names])  # [site, batch, pos, d]
        for j, i in enumerate(batch):
            keep = [p for p in word_pos[i] if p >= 0]
            chunks.append(stacked[:, j, keep].to(torch.float16).cpu())
    activations = torch.cat(chunks, dim=1)

    labels: dict[str, list] = {name: [] for name in LABEL_SETS}
    types, next_types, sent_of, pos_of = [], [], [], []
    for i, tags in enumerate(tagged):
        n = len(tags)
        for w in range(n):
            if word_pos[i][w] < 0:
                continue
            for key in ("pos", "tag", "dep"):
                values = getattr(tags, key)
                labels[key].append(values[w])
                labels[f"{key}_next"].append(values[w + 1] if w + 1 < n else "<end>")
            labels["token"].append(str(rows[i][word_pos[i][w]]))
            start, end = tags.spans[w]
            types.append(tags.text[start:end].lower())
            if w + 1 < n:
                start, end = tags.spans[w + 1]
                next_types.append(tags.text[start:end].lower())
            else:
                next_types.append("<end>")
            sent_of.append(i)
            pos_of.append(word_pos[i][w])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(sentences))
    n_train = max(1, int(round(fractions[0] * len(sentences))))
    n_dev = max(1, int(round(fractions[1] * len(sentences))))
    split_of = np.empty(len(sentences), dtype=object)
    split_of[perm[:n_train]] = "train"
    split_of[perm[n_train: n_train + n_dev]] = "dev"
    split_of[perm[n_train + n_dev:]] = "test"
    if not (split_of == "test").any():
        raise ValueError("no test sentences left: give more sentences or smaller fractions")
    sent_of = np.array(sent_of)
    return ProbeData(
        activations=activations, site_names=site_names,
        labels={k: np.array(v, dtype=object) for k, v in labels.items()},
        word_types=np.array(types, dtype=object),
        next_types=np.array(next_types, dtype=object), sentence=sent_of,
        position=np.array(pos_of), split=split_of[sent_of].astype(str),
        tokens=[torch.tensor(r) for r in rows], sentences=sentences,
        model_signature=model_signature(model),
    )


# ---------------------------------------------------------------- probes


@dataclass
class ProbeResult:
    """Per-site test accuracy and macro-F1 of one label set's probes, with what they are
    compared with. ``weights[site]``, ``bias[site]``, ``mean``/``std`` (feature
    standardisation from the training words) and ``classes`` make the probes usable again."""

    label_set: str
    site_names: list[str]
    accuracy: np.ndarray
    macro_f1: np.ndarray
    majority: float
    classes: list[str]
    weights: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    control: bool = False
    method: str = "logistic"
    n_train: int = 0
    n_test: int = 0
    control_accuracy: np.ndarray | None = None

    @property
    def best_site(self) -> int:
        return int(np.argmax(self.accuracy))

    @property
    def selectivity(self) -> np.ndarray:
        """Task accuracy minus control-task accuracy, per site (needs ``control_accuracy``)."""
        if self.control_accuracy is None:
            raise ValueError("no control accuracy: use with_control(train_probes(..., "
                             "control=True)) first")
        return self.accuracy - self.control_accuracy

    def with_control(self, control: ProbeResult) -> ProbeResult:
        """This result with ``control``'s accuracies attached as the control task."""
        if not control.control or control.label_set != self.label_set:
            raise ValueError("pass the control-task result of the same label set")
        return dataclasses.replace(self, control_accuracy=control.accuracy)

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame({"site": self.site_names, "accuracy": self.accuracy,
                              "macro_f1": self.macro_f1, "majority": self.majority})
        if self.control_accuracy is not None:
            frame["control_accuracy"] = self.control_accuracy
            frame["selectivity"] = self.selectivity
        frame.insert(0, "label_set", self.label_set + (" (control)" if self.control else ""))
        return frame

    def predict(self, site: int, activations: torch.Tensor) -> torch.Tensor:
        """Class indices for ``[n, d_model]`` activations at ``site`` (an index into
        :attr:`site_names`)."""
        return self.logits(site, activations).argmax(-1)

    def logits(self, site: int, activations: torch.Tensor) -> torch.Tensor:
        """Class logits ``[n, classes]`` for ``[n, d_model]`` activations at ``site``."""
        site = validate.int_in_range(site, "site", 0, len(self.site_names) - 1)
        width = self.weights.shape[1]
        activations = validate.finite_tensor(activations, "activations", shape=(None, width),
                                             dims="[n, d_model]")
        x = (activations.float() - self.mean[site]) / self.std[site]
        return x @ self.weights[site] + self.bias[site]


def control_labels(data: ProbeData, label_set: str, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task: every word type gets one label, drawn at random from
    the label distribution of the training words; the same type always gets the same label.
    The type is that of the word the label belongs to: the next word's for ``*_next`` sets
    (and, for ``"token"``, the word itself)."""
    labels = _labels(data, label_set)
    train = labels[data.split == "train"]
    values, counts = np.unique(train.astype(str), return_counts=True)
    rng = np.random.default_rng(seed)
    of = data.next_types if label_set.endswith("_next") else data.word_types
    types = sorted(set(of.tolist()))
    drawn = rng.choice(values, size=len(types), p=counts / counts.sum())
    table = dict(zip(types, drawn, strict=True))
    return np.array([table[t] for t in of], dtype=object)


def _labels(data: ProbeData, label_set: str) -> np.ndarray:
    return data.labels[validate.choice(label_set, "label_set", data.labels)]


def _macro_f1(pred: np.ndarray, true: np.ndarray) -> float:
    scores = []
    for c in np.unique(true):
        tp = np.sum((pred == c) & (true == c))
        fp = np.sum((pred == c) & (true != c))
        fn = np.sum((pred != c) & (true == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def train_probes(
    data: ProbeData,
    label_set: str,
    *,
    control: bool = False,
    method: str = "logistic",
    l2: float = 1e-3,
    max_iter: int = 100,
    sites: Sequence[int] | None = None,
    min_count: int = 1,
    seed: int = 0,
) -> ProbeResult:
    """A linear probe of ``label_set`` at every site (or ``sites``), trained as one batched
    model on the training words and scored on the test words.

    ``method``: ``"logistic"`` (multinomial logistic regression, L2 penalty ``l2``, L-BFGS
    for up to ``max_iter`` iterations) or ``"ridge"`` (closed form on one-hot targets, a fast
    baseline). ``control=True`` uses :func:`control_labels` instead of the real labels.
    Classes seen fewer than ``min_count`` times in training are dropped (with their words);
    test words whose label never occurs in training are counted as errors. For the
    ``"token"`` set, use ``min_count`` to keep the frequent tokens only.
    """
    if not isinstance(data, ProbeData):
        raise TypeError(f"data must be ProbeData from build_probe_data, got {type(data).__name__}")
    validate.choice(method, "method", ("logistic", "ridge"))
    validate.flag(control, "control")
    l2 = validate.finite_float(l2, "l2", nonnegative=True)
    max_iter = validate.positive_int(max_iter, "max_iter")
    min_count = validate.positive_int(min_count, "min_count")
    validate.nonnegative_int(seed, "seed")
    if sites is not None and (isinstance(sites, int | str) or not hasattr(sites, "__iter__")):
        raise TypeError(f"sites must be a list of site indices or None, got {sites!r}")
    labels = control_labels(data, label_set, seed) if control else _labels(data, label_set)
    labels = labels.astype(str)
    site_index = list(range(len(data.site_names))) if sites is None else [
        validate.int_in_range(s, "sites", 0, len(data.site_names) - 1) for s in sites]
    if not site_index:
        raise ValueError(f"sites must be indices in 0..{len(data.site_names) - 1}")
    train = data.split == "train"
    test = data.split == "test"
    counts = Counter(labels[train].tolist())
    classes = sorted(c for c, n in counts.items() if n >= min_count)
    if len(classes) < 2:
        raise ValueError(f"label set {label_set!r} has fewer than 2 classes in training")
    index = {c: i for i, c in enumerate(classes)}
    keep_train = train & np.isin(labels, classes)
    keep_test = test & (np.isin(labels, classes) if min_count > 1 else True)
    y_train = torch.tensor([index[c] for c in labels[keep_train]])
    y_test = np.array([index.get(c, -1) for c in labels[keep_test]])

    acts = data.activations[site_index]
    x_train = acts[:, torch.from_numpy(np.flatnonzero(keep_train))].float()
    scaler = Standardiser.fit(x_train)
    x_train = scaler(x_train)
    if method == "logistic":
        torch.manual_seed(seed)
        w, b = fit_logistic(x_train, y_train, len(classes), l2, max_iter)
    else:
        w, b = fit_ridge(x_train, y_train, len(classes), l2)
    x_test = scaler(acts[:, torch.from_numpy(np.flatnonzero(keep_test))])
    pred = (torch.baddbmm(b[:, None], x_test, w)).argmax(-1).numpy()
    accuracy = (pred == y_test[None]).mean(1)
    macro = np.array([_macro_f1(p, y_test) for p in pred])
    majority_class = index[Counter(labels[keep_train].tolist()).most_common(1)[0][0]]
    return ProbeResult(
        label_set=label_set, site_names=[data.site_names[i] for i in site_index],
        accuracy=accuracy, macro_f1=macro, majority=float((y_test == majority_class).mean()),
        classes=classes, weights=w, bias=b, mean=scaler.mean, std=scaler.std, control=control,
        method=method, n_train=int(keep_train.sum()), n_test=int(keep_test.sum()),
    )


# ---------------------------------------------------------------- controls


@contextmanager
def shuffled_weights(model: Any, seed: int = 0) -> Iterator[Any]:
    """A context in which the entries of every weight tensor of ``model`` are randomly
    permuted: the same architecture, sizes and weight statistics, none of the learned
    structure. Probes that reach the same accuracy inside it read what any random network
    computes from its input, not what training taught. The weights are restored on exit, also
    on error (one model in memory plus a copy of its weights)."""
    check_model(model)
    validate.nonnegative_int(seed, "seed")
    gen = torch.Generator().manual_seed(seed)
    saved = []
    seen: set[int] = set()
    try:
        with torch.no_grad():
            for param in model.parameters():
                if id(param) in seen or param.numel() < 2:
                    continue
                seen.add(id(param))
                saved.append((param, param.data.clone()))
                flat = param.data.flatten()
                order = torch.randperm(flat.numel(), generator=gen).to(flat.device)
                param.data.copy_(flat[order].view_as(param))
        yield model
    finally:
        with torch.no_grad():
            for param, original in saved:
                param.data.copy_(original)


# ---------------------------------------------------------------- heads a probe needs


def _site_activations(model: Any, data: ProbeData, site: int, which: np.ndarray,
                      batch_size: int = 32) -> tuple[torch.Tensor, np.ndarray]:
    """Residual stream at ``site`` for the words selected by ``which`` (recomputed, so that
    hooks active around the call apply); returns activations and the selected word indices."""
    cfg = model.cfg
    name = (hook_name("resid_pre", site) if site < cfg.n_layers
            else hook_name("resid_post", cfg.n_layers - 1))
    words = np.flatnonzero(which)
    by_sentence: dict[int, list[int]] = {}
    for w in words:
        by_sentence.setdefault(int(data.sentence[w]), []).append(int(w))
    sentences = sorted(by_sentence)
    outs, order = [], []
    for start in range(0, len(sentences), batch_size):
        batch = sentences[start: start + batch_size]
        tokens, mask = padded_batch(model, [data.tokens[i] for i in batch])
        captured = {}

        def capture(act, hook, captured=captured):
            captured["x"] = act  # not detached: gradients flow back to head masks

        model.run_with_hooks(tokens, attention_mask=mask,
                             fwd_hooks=[(name, capture)], return_type=None,
                             stop_at_layer=min(site + 1, cfg.n_layers))
        for j, i in enumerate(batch):
            ws = by_sentence[i]
            outs.append(captured["x"][j, torch.tensor(data.position[ws])])
            order.extend(ws)
    return torch.cat(outs), np.array(order)


def _probe_loss_and_accuracy(model, data, probe, site_in_probe, site, which):
    acts, order = _site_activations(model, data, site, which)
    labels = data.labels[probe.label_set][order].astype(str)
    index = {c: i for i, c in enumerate(probe.classes)}
    y = torch.tensor([index.get(c, -1) for c in labels])
    logits = probe.logits(site_in_probe, acts.cpu())
    known = y >= 0
    loss = torch.nn.functional.cross_entropy(logits[known], y[known])
    accuracy = float((logits.argmax(-1) == y).float().mean())
    return loss, accuracy


def _probe_site(probe: ProbeResult, data: ProbeData, site: int) -> int:
    if not isinstance(data, ProbeData):
        raise TypeError(f"data must be ProbeData from build_probe_data, got {type(data).__name__}")
    if not isinstance(probe, ProbeResult):
        raise TypeError(f"probe must be a ProbeResult from train_probes, got "
                        f"{type(probe).__name__}")
    site = validate.int_in_range(site, "site", 0, len(data.site_names) - 1)
    name = data.site_names[site]
    if name not in probe.site_names:
        raise ValueError(f"the probe has no site {name!r}; it was trained on {probe.site_names}")
    return probe.site_names.index(name)


def probe_head_importance(model: Any, data: ProbeData, probe: ProbeResult, site: int,
                          *, split: str = "test", normalise: bool = True) -> LabelledGrid:
    """``|d probe loss / d head mask|`` for every head, the probe reading ``site`` (Michel et
    al. 2019: L2-normalised within each layer when ``normalise``), from one backward pass over
    the ``split`` words. Heads in blocks at or after ``site`` cannot affect it and get 0."""
    check_model(model)
    check_same_model(model, data.model_signature, "the probe data")
    validate.choice(split, "split", ("train", "dev", "test"))
    validate.flag(normalise, "normalise")
    cfg = model.cfg
    k = _probe_site(probe, data, site)
    if site == 0:
        raise ValueError("site 0 is the embedding: no head comes before it")
    masks = torch.ones(cfg.n_layers, cfg.n_heads, requires_grad=True)
    with torch.enable_grad():  # the rows of the mask must stay in the graph
        hooks = [(hook_name("z", la), scale_heads_hook(masks[la]))
                 for la in range(min(site, cfg.n_layers))]
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        loss, _ = _probe_loss_and_accuracy(model, data, probe, k, site, data.split == split)
        (grad,) = torch.autograd.grad(loss, masks)
    importance = grad.abs().detach()
    importance[site:] = 0.0
    if normalise:
        norms = importance.norm(dim=1, keepdim=True).clamp_min(1e-12)
        importance = torch.where(importance.sum(1, keepdim=True) > 0, importance / norms,
                                 importance)
    return LabelledGrid.layer_head(importance, f"|d {probe.label_set} probe loss / d head mask|"
                                   + (" (per-layer L2)" if normalise else ""))


@torch.no_grad()
def probe_ablation_effects(model: Any, data: ProbeData, probe: ProbeResult, site: int,
                           *, split: str = "test") -> LabelledGrid:
    """The drop in the probe's accuracy at ``site`` when each head below it is zero-ablated
    alone (one forward pass over the ``split`` sentences per head: the exhaustive reference
    for :func:`probe_head_importance`). Heads at or after ``site`` get 0."""
    check_model(model)
    check_same_model(model, data.model_signature, "the probe data")
    _probe_site(probe, data, site)
    cfg = model.cfg
    if site == 0:
        raise ValueError("site 0 is the embedding: no head comes before it")
    base = probe_accuracy_without(model, data, probe, site, [], split=split)
    drops = torch.zeros(cfg.n_layers, cfg.n_heads)
    for layer in range(min(site, cfg.n_layers)):
        for head in range(cfg.n_heads):
            drops[layer, head] = base - probe_accuracy_without(
                model, data, probe, site, [(layer, head)], split=split)
    return LabelledGrid.layer_head(drops, f"drop in {probe.label_set} probe accuracy",
                                   baseline=base)


@torch.no_grad()
def probe_accuracy_without(model: Any, data: ProbeData, probe: ProbeResult, site: int,
                           heads: Sequence[Any], *, split: str = "test") -> float:
    """The probe's accuracy at ``site`` on the ``split`` words when ``heads`` are
    zero-ablated (an empty list: the plain accuracy, recomputed)."""
    check_model(model)
    check_same_model(model, data.model_signature, "the probe data")
    validate.choice(split, "split", ("train", "dev", "test"))
    k = _probe_site(probe, data, site)
    with zero_ablation(model, list(heads) or None):
        _, accuracy = _probe_loss_and_accuracy(model, data, probe, k, site, data.split == split)
    return accuracy
