"""Attribution patching (``interp_lib.attribution_patching``, notebook 12), on the induction
task of notebook 03 (clean = BOS r_1..r_n r_1..r_k, corrupted = BOS s_1..s_n r_1..r_k, metric
the logit of r_{k+1} minus that of s_{k+1} at the last position).

- ``attribution_patching``: AtP's estimate of every cell of the four kinds of exact patching
  (residual stream, attention and MLP outputs per (layer, position), head outputs per (layer,
  head)) from one clean forward, one corrupted forward and one backward, vs
  ``attribution_patching_loop`` (one clean forward, one corrupted forward and one backward per
  kind and layer, the dot products cell by cell). The difference is the largest cell
  difference relative to the largest cell.
- ``activation_patching``: exact patching of every cell of the four kinds, each patched run
  resumed from the recorded corrupted run at its layer and position
  (``patching.activation_patching``), vs TransformerLens's own ``get_act_patch_*`` (one whole
  forward per cell, ``reference.activation_patching_tl``).
- ``atp_vs_exact_patching``: AtP's estimate vs that exact patching
  (``patching.activation_patching``): the time AtP saves. The "difference" is 1 - Pearson
  correlation of the normalised cells of all four kinds, so how well the first-order estimate
  ranks the cells, not a rounding error; the tolerance only asks that they correlate.
"""

from __future__ import annotations


def _induction_pair(model, n: int, k: int, batch: int):
    import torch

    from interp_lib.data import repeated_tokens
    from interp_lib.metrics import logit_diff_metric

    r = repeated_tokens(model, n=n, batch=batch, seed=5)[:, : n + 1]
    s = repeated_tokens(model, n=n, batch=batch, seed=6)[:, 1: n + 1]
    clean = torch.cat([r, r[:, 1: k + 1]], dim=1)
    corrupted = torch.cat([r[:, :1], s, r[:, 1: k + 1]], dim=1)
    return clean, corrupted, logit_diff_metric(r[:, k + 1], s[:, k])


def pairings(model, quick, Pairing, max_abs):
    import torch

    from interp_lib.attribution_patching import attribution_patching
    from interp_lib.patching import PATCH_KINDS, activation_patching
    from interp_lib.reference import activation_patching_tl, attribution_patching_loop

    cfg = model.cfg
    n, k, batch = (6, 3, 2) if quick else (12, 6, 3)
    clean, corrupted, metric = _induction_pair(model, n, k, batch)
    n_pos = clean.shape[1]
    kinds = list(PATCH_KINDS)
    cells = 3 * cfg.n_layers * n_pos + cfg.n_layers * cfg.n_heads
    sizes = (f"batch {batch} x {n_pos} positions; {cells} cells ({cfg.n_layers} layers x "
             f"{n_pos} positions x 3 kinds + {cfg.n_layers * cfg.n_heads} heads)")

    def relative(ours, loop):
        top = max(float(loop[kind].abs().max()) for kind in kinds) or 1.0
        return max(max_abs(ours.grid(kind).values - ours.corrupted_value, loop[kind])
                   for kind in kinds) / top

    def exact_all():
        return {kind: activation_patching(model, clean, corrupted, metric, kind=kind)
                for kind in kinds}

    def exact_raw():
        return {kind: activation_patching(model, clean, corrupted, metric, kind=kind,
                                          normalise=False).values for kind in kinds}

    def exact_tl():
        return {kind: activation_patching_tl(model, clean, corrupted, metric, kind=kind)
                for kind in kinds}

    def max_cell_difference(ours, theirs):
        return max(max_abs(ours[kind], theirs[kind]) for kind in kinds)

    def one_minus_correlation(ours, exact):
        a = torch.cat([ours.grid(kind).values.flatten() for kind in kinds]).double()
        b = torch.cat([exact[kind].values.flatten() for kind in kinds]).double()
        return 1.0 - float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    def atp():
        return attribution_patching(model, clean, corrupted, metric, kinds=kinds,
                                    normalise=False)

    def atp_normalised():
        return attribution_patching(model, clean, corrupted, metric, kinds=kinds)

    return [
        Pairing("attribution_patching", "attribution_patching (1 backward for every cell)",
                f"attribution_patching_loop (1 backward per kind and layer: {4 * cfg.n_layers})",
                sizes, atp, lambda: attribution_patching_loop(model, clean, corrupted, metric,
                                                              kinds),
                relative, 1e-4, "max rel diff", grad=True),
        Pairing("activation_patching", "activation_patching (4 kinds, resumed runs)",
                f"TransformerLens get_act_patch_* (1 forward per cell: {cells})", sizes,
                exact_raw, exact_tl, max_cell_difference, 1e-4),
        Pairing("atp_vs_exact_patching", "attribution_patching (2 forwards + 1 backward)",
                f"activation_patching, exact (resumed, {cells} cells)", sizes,
                atp_normalised, exact_all, one_minus_correlation, 0.9, "1 - correlation",
                grad=True),
    ]
