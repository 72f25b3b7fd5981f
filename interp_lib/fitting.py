"""Linear models fitted for many sites at once: what probes and steering train.

Every function takes features ``x [site, n, d]`` (one block of examples per site: a layer,
a head) and integer labels ``y [n]`` shared by all sites, and fits one model per site in one
batched computation; the sites' losses are independent, so optimising their sum optimises
each. :class:`Standardiser` centres and scales features with the training statistics.

>>> import torch
>>> from interp_lib.fitting import fit_logistic, predict
>>> x = torch.tensor([[[-2.0], [-1.0], [1.0], [2.0]]])        # one site, 4 examples
>>> y = torch.tensor([0, 0, 1, 1])
>>> w, b = fit_logistic(x, y, n_classes=2, l2=1e-3, max_iter=50)
>>> predict(x, w, b).tolist()
[[0, 0, 1, 1]]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

__all__ = ["Standardiser", "fit_logistic", "fit_ridge", "predict"]


@dataclass
class Standardiser:
    """Per-site feature mean and standard deviation ``[site, d]`` from training features."""

    mean: Float[torch.Tensor, "site d"]
    std: Float[torch.Tensor, "site d"]

    @classmethod
    def fit(cls, x: Float[torch.Tensor, "site n d"], min_std: float = 1e-4) -> Standardiser:
        x = x.float()
        return cls(x.mean(1), x.std(1).clamp_min(min_std))

    def __call__(self, x: Float[torch.Tensor, "site n d"]) -> Float[torch.Tensor, "site n d"]:
        return (x.float() - self.mean[:, None]) / self.std[:, None]


def fit_logistic(x: Float[torch.Tensor, "site n d"], y: Int[torch.Tensor, " n"],
                 n_classes: int, l2: float, max_iter: int
                 ) -> tuple[Float[torch.Tensor, "site d c"], Float[torch.Tensor, "site c"]]:
    """Multinomial logistic regression for every site at once: minimises
    ``sum_site mean_n CE + l2 * ||W_site||^2 / 2`` with L-BFGS (strong Wolfe line search).
    Returns weights ``[site, d, classes]`` and biases ``[site, classes]``."""
    sites, _, d = x.shape
    x = x.float()
    w = torch.zeros(sites, d, n_classes, requires_grad=True)
    b = torch.zeros(sites, 1, n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6,
                            tolerance_change=1e-9)
    targets = y.expand(sites, -1).reshape(-1)

    def closure():
        opt.zero_grad()
        logits = torch.baddbmm(b, x, w)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, n_classes), targets,
                                                 reduction="sum") / y.numel()
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()[:, 0]


def fit_ridge(x: Float[torch.Tensor, "site n d"], y: Int[torch.Tensor, " n"], n_classes: int,
              l2: float) -> tuple[Float[torch.Tensor, "site d c"], Float[torch.Tensor, "site c"]]:
    """Closed-form ridge regression onto one-hot labels (centred), every site at once; the
    bias is the class frequencies."""
    sites, n, d = x.shape
    onehot = torch.nn.functional.one_hot(y, n_classes).double()
    xd = x.double()
    gram = xd.transpose(1, 2) @ xd + l2 * n * torch.eye(d, dtype=torch.float64)
    target = onehot - onehot.mean(0)
    w = torch.linalg.solve(gram, xd.transpose(1, 2) @ target.expand(sites, -1, -1))
    b = onehot.mean(0).expand(sites, -1)
    return w.float(), b.float()


def predict(x: Float[torch.Tensor, "site n d"], w: Float[torch.Tensor, "site d c"],
            b: Float[torch.Tensor, "site c"]) -> Int[torch.Tensor, "site n"]:
    """Class indices ``[site, n]`` of a batch of fitted linear models."""
    return torch.baddbmm(b[:, None], x.float(), w).argmax(-1)
