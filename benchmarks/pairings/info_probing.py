"""Pairings of interp_lib.info_probing (notebook 10), loaded by benchmarks/run.py.

- ``mdl``: the online code of parts of speech at every site, one batched probe per block
  (``online_codelength``), vs scikit-learn's ``LogisticRegression`` fitted site by site and
  block by block (same features, same penalty); the difference is the largest relative gap in
  a site's code length.
- ``sliced_mi``: the one-dimensional MI of every random projection at every site in one
  batched call (``mi_1d``), vs scikit-learn's ``mutual_info_classif`` projection by
  projection (the same estimator and tie-breaking noise); max abs difference in nats.
- ``agreement_scores``: minimal pairs scored in padded batches, two unembedding columns read
  at each prefix's end, vs ``agreement_scores_loop`` (one forward per pair, full
  log-softmax); max abs difference of the margins.
- ``causal_number_probe``: every site's variants (number directions removed or flipped,
  random directions removed) stacked in one batch per site, vs
  ``causal_number_probe_loop`` (one forward per site, variant and pair or text); max abs
  difference of the mean margins and losses.
"""

from __future__ import annotations

import math


def pairings(model, quick, Pairing, max_abs):
    import numpy as np
    import torch

    from interp_lib.data import probe_sentences, sample_text, token_windows
    from interp_lib.fitting import Standardiser
    from interp_lib.info_probing import (
        L2,
        agreement_scores,
        causal_number_probe,
        mi_1d,
        number_directions,
        online_codelength,
        random_orthonormal,
        template_pairs,
        word_activations,
    )
    from interp_lib.reference import agreement_scores_loop, causal_number_probe_loop

    big = model.cfg.n_layers * model.cfg.d_model >= 4096
    # short sentences: random-shaped models use the tiny test tokenizer (many pieces a word)
    short = [s for s in probe_sentences() if len(s.split()) <= 14]
    data = word_activations(model, short[: 120 if quick else (400 if big else 900)])

    # MDL: parts of speech, the classes below 2% of the words merged (so that every class is in
    # the first block: scikit-learn's probabilities cover only the classes it was fitted on)
    pos = data.label_array("pos")
    values, counts = np.unique(pos, return_counts=True)
    rare = set(values[counts < 0.02 * len(pos)].tolist())
    pos = np.array(["OTHER" if p in rare else p for p in pos])
    words = np.flatnonzero(data.split == "train")
    words = words[np.random.default_rng(0).permutation(len(words))]
    classes = sorted(set(pos[words].tolist()))
    n_classes = len(classes)
    x = data.activations[:, torch.from_numpy(words)].float()
    z = Standardiser.fit(x)(x)
    y = torch.tensor([classes.index(p) for p in pos[words]])
    n = len(words)
    ends = sorted({max(16, int(round(f * n))) for f in (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)})

    def sklearn_mdl():
        from sklearn.linear_model import LogisticRegression

        out = np.zeros((z.shape[0], len(ends)))
        out[:, 0] = ends[0] * math.log2(n_classes)
        for site in range(z.shape[0]):
            for i in range(1, len(ends)):
                start, end = ends[i - 1], ends[i]
                # the same penalty: l2 / 2 ||W||^2 on the mean loss is C = 1 / (l2 n) on the sum
                clf = LogisticRegression(C=1.0 / (L2 * start), max_iter=1000)
                clf.fit(z[site, :start].numpy(), y[:start].numpy())
                if len(clf.classes_) != n_classes:
                    raise ValueError("a class is missing from a block: merge more rare classes")
                p = clf.predict_proba(z[site, start:end].numpy())
                out[site, i] = -np.log2(p[np.arange(end - start), y[start:end].numpy()]).sum()
        return out

    def mdl_gap(ours, theirs):
        ours, theirs = ours.sum(1).double().numpy(), theirs.sum(1)
        return float(np.max(np.abs(ours - theirs) / theirs))

    # sliced MI: the same projections of the nouns' representations at every site
    labels = data.label_array("number")
    nouns = np.flatnonzero(labels != "")
    targets = torch.from_numpy((labels[nouns] == "plural").astype(np.int64))
    reps = data.activations[:, torch.from_numpy(nouns)].float()
    n_proj = 16 if quick else 128
    directions = torch.randn(n_proj, reps.shape[-1], generator=torch.Generator().manual_seed(0))
    directions = directions / directions.norm(dim=1, keepdim=True)
    projections = torch.einsum("kd,snd->skn", directions, reps)          # [site, proj, n]

    def sklearn_sliced():
        from sklearn.feature_selection import mutual_info_classif

        return torch.tensor([[mutual_info_classif(p.double().numpy()[:, None], targets.numpy(),
                                                  random_state=0)[0] for p in site]
                             for site in projections])

    def ours_sliced():
        return mi_1d(projections.reshape(-1, projections.shape[-1]), targets, clip=True,
                     seed=0).view(projections.shape[:2])

    # behavioural and causal: template pairs (any tokenizer has " is" and " are")
    pairs = template_pairs(model, n=40 if quick else (150 if big else 300), seed=0)
    scores = agreement_scores(model, pairs, keep_representations=True)
    dirs = number_directions(scores, n_directions=2 if quick else 8)
    small = pairs.subset(np.arange(len(pairs)) < (20 if quick else (40 if big else 80)))
    try:
        text = sample_text()
    except FileNotFoundError:
        text = " ".join(short) * 4
    windows = token_windows(model, text, n_windows=2 if quick else 4,
                            length=16 if quick else 64)
    n_random = 2 if quick else 3
    k = dirs.basis.shape[1]
    random_bases = random_orthonormal(dirs.basis.shape[2], k, n_random, seed=0)  # the library's

    def causal_diff(a, b):
        return max(max_abs(torch.tensor(a.margin), torch.tensor(b.margin)),
                   max_abs(torch.tensor(a.loss), torch.tensor(b.loss)),
                   abs(a.clean_loss - b.clean_loss), abs(a.clean_margin - b.clean_margin))

    n_test = int((small.split == "test").sum())
    return [
        Pairing("mdl", "online_codelength (all sites, batched per block)",
                "scikit-learn LogisticRegression per site and block",
                f"{z.shape[0]} sites x {n} words, {n_classes} POS classes, {len(ends)} blocks",
                lambda: online_codelength(z, y, n_classes, ends), sklearn_mdl, mdl_gap, 0.01,
                "max relative code-length gap"),
        Pairing("sliced_mi", "mi_1d (all projections and sites at once)",
                "scikit-learn mutual_info_classif per projection",
                f"{projections.shape[0]} sites x {n_proj} projections x {len(nouns)} nouns",
                ours_sliced, sklearn_sliced, max_abs, 1e-6),
        Pairing("agreement_scores", "agreement_scores (padded batches)",
                "agreement_scores_loop (one forward per pair)", f"{len(pairs)} pairs",
                lambda: agreement_scores(model, pairs).margin,
                lambda: agreement_scores_loop(model, pairs),
                lambda a, b: max_abs(torch.tensor(a), torch.tensor(b)), 1e-3),
        Pairing("causal_number_probe", "causal_number_probe (variants stacked per site)",
                "causal_number_probe_loop (one forward per variant and pair)",
                f"{len(dirs.site_names)} sites x {2 + n_random} variants x ({n_test} pairs + "
                f"{windows.shape[0]} x {windows.shape[1]} tokens)",
                lambda: causal_number_probe(model, small, dirs, windows, n_random=n_random),
                lambda: causal_number_probe_loop(model, small, dirs, windows, random_bases),
                causal_diff, 1e-3),
    ]

