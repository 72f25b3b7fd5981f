"""Sparse autoencoders and superposition: a dictionary of rarely active features for a site.

**Superposition, in a toy.** Elhage et al. 2022 ("Toy Models of Superposition") squeeze ``n``
sparse features into ``m < n`` dimensions, ``h = W x``, and read them back with
``x' = ReLU(Wᵀ h + b)``. When features are rarely active the model stores more of them than it
has dimensions, as directions that are not orthogonal (five features in two dimensions make a
pentagon). :func:`train_toy_models` trains several such models at once, one per sparsity level
(:class:`ToyModels`).

**A sparse autoencoder** (:class:`SparseAutoencoder`) undoes that: it maps an activation ``x``
to many latents, ``a = TopK(ReLU(W_enc (x - b_dec) + b_enc))`` (only the ``k`` largest kept:
Gao et al. 2024, "Scaling and evaluating sparse autoencoders"), and back, ``x' = a W_dec +
b_dec``, with unit-norm decoder rows (each latent's *direction*). Trained to reconstruct, its
latents are read as the model's features (Cunningham et al. 2023, "Sparse Autoencoders Find
Highly Interpretable Features in Language Models"; Bricken et al. 2023, "Towards
Monosemanticity"). A ReLU + L1 variant (``activation="relu"``) is there for comparison. The
parameters are named and laid out as in EleutherAI's ``sparsify`` (``encoder.weight``,
``encoder.bias``, ``W_dec``, ``b_dec``; ``cfg.json`` + ``sae.safetensors``), so a saved
dictionary loads there too.

**On a language model**: :func:`collect_activations` caches a site's activations over token
windows in chunks (only the hooks asked for, and the forward pass stops after the last layer
it needs); :func:`train_sae` trains on the cache (AuxK loss for dead latents, decoder rows
renormalised after every step, seeded); :func:`evaluate_sae` gives the field's metrics on
held-out text: L0, fraction of variance unexplained, the loss with the SAE spliced in against
the clean and zero-ablated loss ("loss recovered"), dead and dense latent fractions.

**Reading a feature**: by its inputs (:func:`unit_activations`: top-activating contexts with
per-token highlighting, activation density), its outputs (:func:`logit_effects`: its decoder
direction through the unembedding; :func:`intervene`: ablate or clamp it and watch the
next-token distribution) and its *intermediate features* (:func:`feature_attribution`: which
latents of an SAE at an earlier site drive it, gradient x activation checked against
ablation). :func:`features_vs_neurons` patches ``k`` features against ``k`` neurons of the same
MLP for the same behaviour.

A small SAE for the course model ships with the package (:func:`load_sae`; its card is
``interp_lib/sae_model/SAE_CARD.md``).

>>> import torch
>>> from interp_lib.sae import SparseAutoencoder, fraction_of_variance_unexplained
>>> sae = SparseAutoencoder(d_in=8, d_sae=32, k=4, seed=0)
>>> x = torch.randn(5, 8)
>>> latents = sae.encode(x)
>>> latents.shape, bool(((latents > 0).sum(-1) <= 4).all())   # at most k latents per row
(torch.Size([5, 32]), True)
>>> exact = SparseAutoencoder.from_directions(torch.eye(8))   # +e_i and -e_i: reconstructs
>>> float(fraction_of_variance_unexplained(x, exact(x))) < 1e-10
True
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int

from interp_lib import validate
from interp_lib.hooks import hook_name, only
from interp_lib.inputs import to_tokens
from interp_lib.logprobs import next_token_loss
from interp_lib.validate import check_model, check_same_model, model_signature

__all__ = [
    "SHIPPED_DIR",
    "Activations",
    "ContextView",
    "FeatureAttribution",
    "FeatureRecovery",
    "InterventionEffect",
    "LogitEffects",
    "PatchingComparison",
    "SaeMetrics",
    "SaeTrainer",
    "SparseAutoencoder",
    "SwapPairs",
    "ToyModels",
    "TrainingLog",
    "UnitActivations",
    "collect_activations",
    "direct_logit_effect",
    "evaluate_sae",
    "feature_attribution",
    "feature_recovery",
    "features_vs_neurons",
    "fraction_of_variance_unexplained",
    "intervene",
    "load_sae",
    "logit_effects",
    "shipped_card",
    "shipped_sites",
    "swap_pairs",
    "text_windows",
    "toy_forward",
    "train_sae",
    "train_toy_models",
    "training_text",
    "unit_activations",
]

#: Where the course model's SAEs are shipped: one folder per site (``cfg.json``,
#: ``sae.safetensors``), ``metrics.json`` and ``SAE_CARD.md``.
SHIPPED_DIR = Path(__file__).resolve().parent / "sae_model"

ACTIVATIONS = ("topk", "relu")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny tensors (the toy models) run faster on one thread: the thread pool's
    synchronisation costs more than the arithmetic. Restores the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ================================================================ toy models of superposition


@dataclass
class ToyModels:
    """Toy models of superposition (Elhage et al. 2022), one per *instance*, trained together:
    ``W[instance, hidden, feature]`` embeds the features, ``b[instance, feature]`` is the output
    bias, and ``x' = ReLU(Wᵀ W x + b)``. In instance ``i`` each feature is present with
    probability ``feature_probability[i]`` (then uniform in [0, 1]) and counts
    ``importance[feature]`` in the loss; ``loss[i]`` is the final training loss."""

    W: Float[torch.Tensor, "instance hidden feature"]
    b: Float[torch.Tensor, "instance feature"]
    feature_probability: Float[torch.Tensor, " instance"]
    importance: Float[torch.Tensor, " feature"]
    loss: Float[torch.Tensor, " instance"]
    steps: int
    seed: int

    @property
    def n_instances(self) -> int:
        return int(self.W.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.W.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.W.shape[2])

    def sample(self, n: int, *, seed: int = 0) -> Float[torch.Tensor, "batch instance feature"]:
        """``n`` feature vectors per instance, drawn as in training (seeded)."""
        n = validate.positive_int(n, "n")
        gen = torch.Generator().manual_seed(validate.nonnegative_int(seed, "seed"))
        return _toy_batch(gen, n, self.feature_probability, self.n_features)

    def hidden(self, x: Float[torch.Tensor, "batch instance feature"]
               ) -> Float[torch.Tensor, "batch instance hidden"]:
        """The hidden layer ``h = W x`` of every instance."""
        x = self._check_x(x)
        return torch.einsum("ihf,bif->bih", self.W, x)

    def reconstruct(self, x: Float[torch.Tensor, "batch instance feature"]
                    ) -> Float[torch.Tensor, "batch instance feature"]:
        """``ReLU(Wᵀ W x + b)`` for every instance."""
        return toy_forward(self.W, self.b, self._check_x(x))

    def _check_x(self, x: Any) -> torch.Tensor:
        return validate.finite_tensor(x, "x", shape=(None, self.n_instances, self.n_features),
                                      dims="[batch, instance, feature]").float()

    def norms(self) -> Float[torch.Tensor, "instance feature"]:
        """``‖W_i‖``: how strongly each feature is embedded (near 1 when represented, near 0
        when the model gave up on it)."""
        return self.W.norm(dim=1)

    def represented(self, threshold: float = 0.5) -> torch.Tensor:
        """``[instance, feature]``: the features whose embedding norm exceeds ``threshold``."""
        threshold = validate.finite_float(threshold, "threshold", positive=True)
        return self.norms() > threshold

    def features_per_dimension(self, threshold: float = 0.5
                               ) -> Float[torch.Tensor, " instance"]:
        """Represented features per hidden dimension: 1 or less without superposition, more
        with it (up to ``n_features / n_hidden``)."""
        return self.represented(threshold).sum(-1).float() / self.n_hidden

    def dimensionality(self) -> Float[torch.Tensor, "instance feature"]:
        """Elhage et al.'s feature dimensionality ``D_i = ‖W_i‖² / Σ_j (Ŵ_i · W_j)²``: 1 for a
        feature with a dimension of its own, 1/2 for one of an antipodal pair, 2/5 in a
        pentagon, 0 for a feature not represented."""
        norms = self.norms()
        unit = self.W / norms.clamp_min(1e-8)[:, None, :]
        overlap = torch.einsum("ihf,ihg->ifg", unit, self.W).pow(2).sum(-1)
        return torch.where(norms > 1e-4, norms.pow(2) / overlap.clamp_min(1e-12),
                           torch.zeros_like(norms))

    def hidden_activations(self, instance: int, n: int, *, seed: int = 0
                           ) -> Float[torch.Tensor, "batch hidden"]:
        """``n`` hidden vectors of one instance (what an SAE on the toy trains on)."""
        instance = validate.int_in_range(instance, "instance", 0, self.n_instances - 1)
        return self.hidden(self.sample(n, seed=seed))[:, instance]

    def to_frame(self):
        """One row per instance: feature probability, loss, represented features per
        dimension, the mean dimensionality of represented features."""
        import pandas as pd

        dims = self.dimensionality()
        rep = self.represented()
        mean_dim = [(float(d[r].mean()) if bool(r.any()) else float("nan"))
                    for d, r in zip(dims, rep, strict=True)]
        return pd.DataFrame({
            "feature_probability": self.feature_probability.numpy(),
            "one_over_1_minus_S": (1 / self.feature_probability).numpy(),
            "loss": self.loss.numpy(),
            "represented": rep.sum(-1).numpy(),
            "features_per_dimension": self.features_per_dimension().numpy(),
            "mean_dimensionality": mean_dim,
        })

    def directions_figure(self, instances: Sequence[int] | None = None,
                          title: str | None = None):
        """Each feature's embedding ``W[:, i]`` as a vector in the plane, one panel per
        instance (models with two hidden dimensions only)."""
        from interp_lib.plotting import directions

        if self.n_hidden != 2:
            raise ValueError(f"directions_figure draws 2-dimensional hidden layers; these have "
                             f"{self.n_hidden} (use features_per_dimension_figure)")
        chosen = list(range(self.n_instances)) if instances is None else [
            validate.int_in_range(i, "instances", 0, self.n_instances - 1) for i in instances]
        panels = {f"p = {float(self.feature_probability[i]):.3g}": self.W[i].T for i in chosen}
        return directions(panels, labels=[f"feature {f}" for f in range(self.n_features)],
                          title=title or "Learned feature directions W[:, i] by feature "
                          "probability p")

    def features_per_dimension_figure(self, title: str | None = None):
        """Represented features per hidden dimension against ``1 / (1 - S)`` (S: sparsity, the
        probability that a feature is absent), on a log axis."""
        from interp_lib.plotting import line

        x = torch.log10(1 / self.feature_probability)
        return line(x.tolist(), {"features per dimension": self.features_per_dimension()},
                    x_title="log10 of 1 / (1 - S) = 1 / feature probability",
                    y_title="represented features / hidden dimensions",
                    hlines={1.0: "one feature per dimension"},
                    title=title or f"Superposition grows with sparsity ({self.n_features} "
                    f"features, {self.n_hidden} dimensions)")


def _toy_batch(gen: torch.Generator, n: int, probability: torch.Tensor, n_features: int
               ) -> torch.Tensor:
    shape = (n, len(probability), n_features)
    present = torch.rand(shape, generator=gen) < probability[None, :, None]
    return torch.rand(shape, generator=gen) * present


def toy_forward(W: Float[torch.Tensor, "instance hidden feature"],
                b: Float[torch.Tensor, "instance feature"],
                x: Float[torch.Tensor, "batch instance feature"]
                ) -> Float[torch.Tensor, "batch instance feature"]:
    """The toy model's reconstruction ``ReLU(Wᵀ W x + b)``, for every instance at once."""
    W = validate.finite_tensor(W, "W", shape=(None, None, None), dims="[instance, hidden, "
                               "feature]")
    b = validate.finite_tensor(b, "b", shape=(W.shape[0], W.shape[2]), dims="[instance, feature]")
    x = validate.finite_tensor(x, "x", shape=(None, W.shape[0], W.shape[2]),
                               dims="[batch, instance, feature]")
    hidden = torch.einsum("ihf,bif->bih", W, x)
    return torch.relu(torch.einsum("ihf,bih->bif", W, hidden) + b)


def train_toy_models(
    n_features: int = 5,
    n_hidden: int = 2,
    feature_probability: Sequence[float] = (1.0, 0.3, 0.1, 0.03, 0.01),
    *,
    importance: float | Sequence[float] | torch.Tensor = 1.0,
    steps: int = 3000,
    batch_size: int = 1024,
    lr: float = 1e-2,
    seed: int = 0,
) -> ToyModels:
    """Train one toy model of superposition per feature probability, all in one batched
    optimisation (the instances share nothing but the optimiser loop).

    Args:
        feature_probability: one instance per value in (0, 1]; ``1 - p`` is the sparsity S.
        importance: a weight per feature ``[n_features]``, or a number ``r`` meaning weights
            ``r ** i`` (Elhage et al.'s decaying importance; 1 gives equal weights).
        steps, batch_size, lr: Adam on the importance-weighted squared error.
    """
    n_features = validate.positive_int(n_features, "n_features")
    n_hidden = validate.positive_int(n_hidden, "n_hidden")
    if n_hidden >= n_features:
        raise ValueError(f"n_hidden ({n_hidden}) must be smaller than n_features "
                         f"({n_features}): superposition needs fewer dimensions than features")
    if isinstance(feature_probability, str | bytes) or not isinstance(
            feature_probability, Sequence | torch.Tensor | np.ndarray):
        raise TypeError("feature_probability must be a sequence of probabilities, one per "
                        f"instance, got {type(feature_probability).__name__}")
    probs = [validate.fraction(p, "feature_probability", closed=True) for p in
             list(feature_probability)]
    if not probs or min(probs) <= 0:
        raise ValueError("feature_probability needs at least one value, each in (0, 1]")
    if isinstance(importance, int | float) and not isinstance(importance, bool):
        rate = validate.finite_float(importance, "importance", positive=True)
        weights = rate ** torch.arange(n_features, dtype=torch.float32)
    else:
        weights = validate.finite_tensor(importance, "importance", shape=(n_features,),
                                         dims="[n_features]").float()
        if bool((weights < 0).any()):
            raise ValueError("importance must be non-negative")
    steps = validate.positive_int(steps, "steps")
    batch_size = validate.positive_int(batch_size, "batch_size")
    lr = validate.finite_float(lr, "lr", positive=True)
    seed = validate.nonnegative_int(seed, "seed")
    probability = torch.tensor(probs, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    n_inst = len(probs)
    with _one_thread(), torch.enable_grad():
        W = (torch.randn(n_inst, n_hidden, n_features, generator=gen)
             * math.sqrt(2.0 / (n_hidden + n_features))).requires_grad_()
        b = torch.zeros(n_inst, n_features, requires_grad=True)
        optimiser = torch.optim.Adam([W, b], lr=lr)
        for _ in range(steps):
            x = _toy_batch(gen, batch_size, probability, n_features)
            per_instance = (weights * (x - toy_forward(W, b, x)).pow(2)).mean(0).sum(-1)
            optimiser.zero_grad(set_to_none=True)
            per_instance.sum().backward()
            optimiser.step()
    return ToyModels(W.detach().clone(), b.detach().clone(), probability, weights,
                     per_instance.detach().clone(), steps, seed)


@dataclass
class FeatureRecovery:
    """For each true direction (``[hidden, feature]`` columns): the best cosine similarity
    with any SAE decoder direction, and which latent it is."""

    cosine: Float[torch.Tensor, " feature"]
    latent: Int[torch.Tensor, " feature"]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"feature": range(len(self.cosine)), "best_latent": self.latent,
                             "cosine": self.cosine.numpy()})


def feature_recovery(sae: SparseAutoencoder,
                     true_directions: Float[torch.Tensor, "d_in feature"]) -> FeatureRecovery:
    """How well ``sae``'s decoder directions recover known feature directions (one per
    column of ``true_directions``): for each, the largest cosine with any latent."""
    _check_sae(sae)
    true = validate.finite_tensor(true_directions, "true_directions",
                                  shape=(sae.d_in, None), dims="[d_in, feature]").float()
    norms = true.norm(dim=0)
    if bool((norms == 0).any()):
        raise ValueError("true_directions has a zero column: a direction needs a length")
    dec = sae.W_dec.detach().float()
    cos = (dec / dec.norm(dim=1, keepdim=True).clamp_min(1e-12)) @ (true / norms)
    best, which = cos.max(0)
    return FeatureRecovery(best, which)


# ================================================================ the sparse autoencoder


class SparseAutoencoder(torch.nn.Module):
    """A sparse autoencoder for activations of width ``d_in``, with ``d_sae`` latents.

    ``pre = (x - b_dec) W_encᵀ + b_enc``; latents ``a = TopK_k(ReLU(pre))`` (``activation=
    "topk"``: all but the ``k`` largest set to 0) or ``ReLU(pre)`` (``"relu"``, trained with an
    L1 penalty); reconstruction ``a W_dec + b_dec``. ``W_enc = encoder.weight [d_sae, d_in]``,
    ``W_dec [d_sae, d_in]`` (row ``i`` is latent ``i``'s unit-norm direction). ``site`` is the
    hook name the SAE reads, ``signature`` the model shape it was trained on (see
    :func:`interp_lib.validate.model_signature`); ``info`` holds anything else to save (the
    training config). Initialised with random unit decoder rows and ``W_enc = W_dec`` (seeded).
    """

    def __init__(self, d_in: int, d_sae: int, k: int | None = None, *,
                 activation: str = "topk", site: str | None = None,
                 signature: Sequence[int] | None = None, seed: int = 0,
                 info: dict | None = None):
        super().__init__()
        d_in = validate.positive_int(d_in, "d_in")
        d_sae = validate.positive_int(d_sae, "d_sae")
        validate.choice(activation, "activation", ACTIVATIONS)
        if activation == "topk":
            if k is None:
                raise ValueError("a TopK SAE needs k, the number of latents kept per input")
            k = validate.int_in_range(k, "k", 1, d_sae)
        elif k is not None:
            raise ValueError("k is for activation='topk'; a ReLU SAE keeps every positive "
                             "latent (its sparsity comes from the L1 penalty)")
        if site is not None and not isinstance(site, str):
            raise TypeError(f"site must be a hook name (str) or None, got {type(site).__name__}")
        seed = validate.nonnegative_int(seed, "seed")
        self.k, self.activation, self.site = k, activation, site
        self.signature = tuple(int(s) for s in signature) if signature is not None else None
        self.info = dict(info or {})
        gen = torch.Generator().manual_seed(seed)
        directions = torch.randn(d_sae, d_in, generator=gen)
        directions /= directions.norm(dim=1, keepdim=True)
        self.encoder = torch.nn.Linear(d_in, d_sae)
        with torch.no_grad():
            self.encoder.weight.copy_(directions)
            self.encoder.bias.zero_()
        self.W_dec = torch.nn.Parameter(directions.clone())
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))

    # ------------------------------------------------------------ shape and parameters

    @property
    def d_in(self) -> int:
        return int(self.W_dec.shape[1])

    @property
    def d_sae(self) -> int:
        return int(self.W_dec.shape[0])

    @property
    def W_enc(self) -> torch.Tensor:  # noqa: N802 - the field's name
        return self.encoder.weight

    @property
    def b_enc(self) -> torch.Tensor:
        return self.encoder.bias

    def extra_repr(self) -> str:
        sparsity = f"k={self.k}" if self.activation == "topk" else "ReLU"
        return f"d_in={self.d_in}, d_sae={self.d_sae}, {sparsity}, site={self.site!r}"

    @classmethod
    def from_directions(cls, directions: Float[torch.Tensor, "d_in n"], *,
                        site: str | None = None) -> SparseAutoencoder:
        """An SAE whose latents are ``+directions[:, i]`` and ``-directions[:, i]`` for each
        column (unit-normalised), with ``k`` = the number of columns: for orthonormal
        directions that span the space it reconstructs every input exactly (a feature
        dictionary with one latent per true direction and sign)."""
        dirs = validate.finite_tensor(directions, "directions", shape=(None, None),
                                      dims="[d_in, n]").float()
        norms = dirs.norm(dim=0)
        if bool((norms == 0).any()):
            raise ValueError("directions has a zero column")
        unit = (dirs / norms).T                                    # [n, d_in]
        both = torch.cat([unit, -unit])                            # [2n, d_in]
        sae = cls(dirs.shape[0], both.shape[0], k=dirs.shape[1], site=site)
        with torch.no_grad():
            sae.W_dec.copy_(both)
            sae.encoder.weight.copy_(both)
        return sae

    # ------------------------------------------------------------ the forward pass

    def pre_activations(self, x: Float[torch.Tensor, "*batch d_in"]
                        ) -> Float[torch.Tensor, "*batch d_sae"]:
        """``(x - b_dec) W_encᵀ + b_enc``: every latent's input, before ReLU and TopK."""
        return torch.nn.functional.linear(x - self.b_dec, self.encoder.weight,
                                          self.encoder.bias)

    def encode_topk(self, x: Float[torch.Tensor, "*batch d_in"]
                    ) -> tuple[Float[torch.Tensor, "*batch k"], Int[torch.Tensor, "*batch k"]]:
        """The ``k`` kept latents of each input: ``(values, indices)`` (TopK SAEs only)."""
        if self.activation != "topk":
            raise ValueError("encode_topk is for TopK SAEs; use encode")
        return torch.relu(self.pre_activations(x)).topk(self.k, dim=-1)

    def encode(self, x: Float[torch.Tensor, "*batch d_in"]) -> Float[torch.Tensor, "*batch d_sae"]:
        """The latents ``a`` (dense, with zeros): TopK of the ReLU, or the ReLU."""
        acts = torch.relu(self.pre_activations(x))
        if self.activation == "relu":
            return acts
        values, indices = acts.topk(self.k, dim=-1)
        return torch.zeros_like(acts).scatter_(-1, indices, values)

    def decode(self, latents: Float[torch.Tensor, "*batch d_sae"]
               ) -> Float[torch.Tensor, "*batch d_in"]:
        """``a W_dec + b_dec``."""
        return latents @ self.W_dec + self.b_dec

    def forward(self, x: Float[torch.Tensor, "*batch d_in"]) -> Float[torch.Tensor, "*batch d_in"]:
        """The reconstruction ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    # ------------------------------------------------------------ saving and loading

    def config(self) -> dict:
        """What ``cfg.json`` holds: sparsify's fields, plus this library's under
        ``"interp_lib"`` (site, model signature, info)."""
        return {"activation": self.activation, "k": self.k or 0, "num_latents": self.d_sae,
                "expansion_factor": max(1, self.d_sae // self.d_in), "normalize_decoder": True,
                "multi_topk": False, "skip_connection": False, "transcode": False,
                "d_in": self.d_in,
                "interp_lib": {"site": self.site, "signature": list(self.signature or []),
                               "info": self.info}}

    def save(self, path: str | Path, *, dtype: torch.dtype = torch.float32) -> Path:
        """Write ``path/cfg.json`` and ``path/sae.safetensors`` (``dtype``: float16 to ship
        small); return the folder."""
        from safetensors.torch import save_file

        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        if not isinstance(path, str | Path):
            raise TypeError(f"path must be a folder path, got {type(path).__name__}")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {name: p.detach().to("cpu", dtype).contiguous()
                   for name, p in self.state_dict().items()}
        save_file(tensors, str(folder / "sae.safetensors"))
        (folder / "cfg.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | None = None
             ) -> SparseAutoencoder:
        """An SAE saved by :meth:`save` (or by sparsify: TopK only), as float32."""
        from safetensors.torch import load_file

        folder = Path(path)
        if not (folder / "cfg.json").is_file() or not (folder / "sae.safetensors").is_file():
            raise FileNotFoundError(f"{folder} holds no SAE (cfg.json and sae.safetensors)")
        cfg = json.loads((folder / "cfg.json").read_text())
        ours = cfg.get("interp_lib", {})
        activation = cfg.get("activation", "topk")
        sae = cls(int(cfg["d_in"]), int(cfg["num_latents"]),
                  k=int(cfg["k"]) if activation == "topk" else None, activation=activation,
                  site=ours.get("site"), signature=ours.get("signature") or None,
                  info=ours.get("info"))
        tensors = load_file(str(folder / "sae.safetensors"))
        sae.load_state_dict({k: v.float() for k, v in tensors.items()})
        return sae.to(device) if device is not None else sae


def _check_sae(sae: Any, name: str = "sae") -> SparseAutoencoder:
    if not isinstance(sae, SparseAutoencoder):
        raise TypeError(f"{name} must be a SparseAutoencoder (interp_lib.sae), got "
                        f"{type(sae).__name__}")
    return sae


def fraction_of_variance_unexplained(x: Float[torch.Tensor, "*batch d"],
                                     reconstruction: Float[torch.Tensor, "*batch d"]
                                     ) -> Float[torch.Tensor, ""]:
    """FVU: ``Σ ‖x - x'‖² / Σ ‖x - mean(x)‖²`` over all rows (the mean is over rows): 0 for a
    perfect reconstruction, 1 for predicting the mean."""
    x = validate.finite_tensor(x, "x").detach()
    reconstruction = validate.finite_tensor(reconstruction, "reconstruction",
                                            shape=tuple(x.shape), dims="the shape of x").detach()
    rows = x.reshape(-1, x.shape[-1]).double()
    error = (rows - reconstruction.reshape(rows.shape).double()).pow(2).sum()
    total = (rows - rows.mean(0)).pow(2).sum()
    if float(total) == 0:
        raise ValueError("x has no variance (every row is the same): FVU is undefined")
    return (error / total).float()


# ================================================================ sites and activations


_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
# order inside a block, for "is this site earlier than that one"
_WITHIN = {"hook_resid_pre": 0, "ln1.hook_scale": 1, "attn.hook_q": 2, "attn.hook_k": 2,
           "attn.hook_v": 2, "attn.hook_pattern": 3, "attn.hook_z": 4, "hook_attn_out": 5,
           "hook_resid_mid": 6, "hook_mlp_in": 7, "mlp.hook_pre": 8, "mlp.hook_post": 9,
           "hook_mlp_out": 10, "hook_resid_post": 11}
_WRITES_RESIDUAL = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out",
                    "hook_mlp_out")


def _check_site(model: Any, site: Any, name: str = "site") -> str:
    """A hook name inside a block of ``model`` (``blocks.L....``)."""
    if not isinstance(site, str):
        raise TypeError(f"{name} must be a hook name such as {hook_name('resid_pre', 0)!r}, got "
                        f"{type(site).__name__}")
    match = _BLOCK.match(site)
    if match is None or site not in model.hook_dict:
        raise ValueError(f"{name} {site!r} is not a hook inside a block of this model; use "
                         f"interp_lib.hooks.hook_name, e.g. {hook_name('resid_pre', 0)!r}")
    if int(match.group(1)) >= model.cfg.n_layers:
        raise ValueError(f"{name} {site!r}: the model has {model.cfg.n_layers} layers")
    return site


def _site_layer(site: str) -> int:
    return int(_BLOCK.match(site).group(1))


def _site_order(site: str) -> tuple[int, int]:
    layer, rest = _BLOCK.match(site).groups()
    return int(layer), _WITHIN.get(rest, 12)


def _site_width(model: Any, site: str) -> int | None:
    rest = _BLOCK.match(site).group(2)
    if rest in _WRITES_RESIDUAL or rest == "hook_mlp_in":
        return int(model.cfg.d_model)
    if rest in ("mlp.hook_pre", "mlp.hook_post"):
        return int(model.cfg.d_mlp)
    return None


def _check_sae_fits(model: Any, sae: SparseAutoencoder, name: str = "sae") -> str:
    """The SAE's site, checked against the model (its width, and its recorded shape)."""
    _check_sae(sae, name)
    if sae.site is None:
        raise ValueError(f"{name} has no site: set sae.site to the hook name it reads")
    site = _check_site(model, sae.site, f"{name}.site")
    check_same_model(model, sae.signature, name)
    width = _site_width(model, site)
    if width is not None and width != sae.d_in:
        raise ValueError(f"{name} reads vectors of width {sae.d_in} but {site} has width "
                         f"{width} on this model")
    return site


def _stop_layer(model: Any, sites: Sequence[str]) -> int | None:
    """The ``stop_at_layer`` that computes every site and nothing after: a block's
    ``hook_resid_pre`` is the residual stream before the block (what the forward pass returns
    when it stops there); anything else inside block L needs block L. ``None``: run it all."""
    needed = [(_site_layer(s) if s.endswith(".hook_resid_pre") else _site_layer(s) + 1)
              for s in sites]
    stop = max(needed)
    return None if stop >= model.cfg.n_layers else stop


def _site_values(model: Any, tokens: torch.Tensor, sites: Sequence[str]
                 ) -> dict[str, torch.Tensor]:
    """Each site's activations on ``tokens``, from one forward pass that caches only them and
    stops after the last layer it needs."""
    stop = _stop_layer(model, sites)
    returned = [s for s in sites if stop is not None and s.endswith(".hook_resid_pre")
                and _site_layer(s) == stop]
    hooked = [s for s in sites if s not in returned]
    if hooked:
        out, cache = model.run_with_cache(tokens, names_filter=only(*hooked),
                                          stop_at_layer=stop)
        values = {s: cache[s] for s in hooked}
    else:
        out, values = model(tokens, stop_at_layer=stop), {}
    for s in returned:
        values[s] = out
    return values


def _windows(model: Any, tokens: Any, name: str = "tokens") -> torch.Tensor:
    tokens = to_tokens(model, tokens, name=name)
    if tokens.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 positions (BOS and one token), got "
                         f"{tokens.shape[1]}")
    return tokens


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@dataclass
class Activations:
    """A site's activations over token windows: ``values[site]`` is ``[row, d]`` with one row
    per token, window by window (position 0, BOS, left out when ``skip_bos``). ``tokens`` are
    the windows; :meth:`location` maps rows back to ``(window, position)``. ``path`` is set
    when the values live in memory-mapped files on disk."""

    values: dict[str, torch.Tensor]
    tokens: Int[torch.Tensor, "window pos"]
    skip_bos: bool
    signature: tuple[int, ...]
    path: Path | None = None

    @property
    def sites(self) -> list[str]:
        return list(self.values)

    @property
    def n_rows(self) -> int:
        return int(self.tokens.shape[0] * (self.tokens.shape[1] - int(self.skip_bos)))

    @property
    def nbytes(self) -> int:
        return sum(v.element_size() * v.numel() for v in self.values.values())

    def __getitem__(self, site: str) -> torch.Tensor:
        if site not in self.values:
            raise KeyError(f"no activations for {site!r}; these are for {self.sites}")
        return self.values[site]

    def location(self, rows: Int[torch.Tensor, " n"]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(window, position)`` of each row."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        per = self.tokens.shape[1] - int(self.skip_bos)
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.n_rows):
            raise ValueError(f"rows must lie in 0..{self.n_rows - 1}")
        return rows // per, rows % per + int(self.skip_bos)

    def summary(self) -> str:
        where = f"memory-mapped in {self.path}" if self.path else "in memory"
        return (f"{self.n_rows:,} tokens ({self.tokens.shape[0]} windows of "
                f"{self.tokens.shape[1]}{', BOS left out' if self.skip_bos else ''}) x "
                f"{len(self.values)} site(s): {self.nbytes / 2**20:.1f} MB {where}")


def collect_activations(
    model: Any,
    tokens: Int[torch.Tensor, "window pos"],
    sites: str | Sequence[str],
    *,
    batch_size: int = 8,
    skip_bos: bool = True,
    budget_mb: float = 512.0,
    path: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Activations:
    """Cache ``sites``' activations over token windows, ``batch_size`` windows per forward
    pass, into one preallocated ``[rows, d]`` tensor per site, on ``device`` (the CPU by
    default; a GPU keeps them next to the SAE that trains on them).

    Each pass caches only the sites (``names_filter``) and stops after the last layer they
    need (``stop_at_layer``). The stored values must fit in ``budget_mb`` (megabytes); larger
    collections need ``path``, a folder where they are written chunk by chunk to
    memory-mapped ``.npy`` files (one per site) instead of memory. The transient memory of a
    forward pass is bounded by ``batch_size`` and not counted in the budget.
    """
    check_model(model)
    if isinstance(sites, str):
        sites = [sites]
    if isinstance(sites, Sequence) and not sites:
        raise ValueError("sites is empty: give at least one hook name")
    sites = [_check_site(model, s, "sites") for s in sites]
    if len(set(sites)) != len(sites):
        raise ValueError("sites lists a hook twice")
    tokens = _windows(model, tokens)
    batch_size = validate.positive_int(batch_size, "batch_size")
    skip_bos = validate.flag(skip_bos, "skip_bos")
    budget_mb = validate.finite_float(budget_mb, "budget_mb", positive=True)
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
    n_windows, n_pos = tokens.shape
    start = int(skip_bos)
    n_rows = n_windows * (n_pos - start)
    widths = {s: _site_width(model, s) for s in sites}
    if any(w is None for w in widths.values()):  # an unusual site: measure it on one window
        with torch.no_grad():
            probe = _site_values(model, tokens[:1], sites)
        widths = {s: int(probe[s].shape[-1]) for s in sites}
    element = torch.tensor([], dtype=dtype).element_size()
    megabytes = n_rows * sum(widths.values()) * element / 2**20
    if path is None and megabytes > budget_mb:
        raise ValueError(f"{n_rows:,} tokens x {sum(widths.values())} values need "
                         f"{megabytes:.0f} MB, over budget_mb={budget_mb:g}: pass path= to "
                         "write them to disk, fewer windows, or a larger budget")
    device = torch.device(device)
    folder = None
    if path is not None:
        if device.type != "cpu":
            raise ValueError("path= writes memory-mapped files, which live on the CPU; leave "
                             "device at 'cpu'")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        if dtype == torch.bfloat16:
            raise ValueError("bfloat16 cannot be memory-mapped with numpy; use float16 or "
                             "float32 with path=")
        np_dtype = np.float16 if dtype == torch.float16 else np.float32
        maps = {s: np.lib.format.open_memmap(folder / f"{s}.npy", mode="w+", dtype=np_dtype,
                                             shape=(n_rows, widths[s])) for s in sites}
        out = {s: torch.from_numpy(maps[s]) for s in sites}
    else:
        out = {s: torch.empty(n_rows, widths[s], dtype=dtype, device=device) for s in sites}
    per = n_pos - start
    with torch.no_grad():
        for chunk in _batches(n_windows, batch_size):
            values = _site_values(model, tokens[chunk], sites)
            rows = slice(chunk.start * per, chunk.stop * per)
            for s in sites:
                out[s][rows] = values[s][:, start:].reshape(-1, widths[s]).to(device, dtype)
    if folder is not None:
        for m in maps.values():
            m.flush()
    return Activations(out, tokens.cpu(), skip_bos, model_signature(model), folder)


# ================================================================ training


@dataclass
class TrainingLog:
    """What :func:`train_sae` did: ``history`` has one entry every ``log_every`` steps (step,
    tokens seen, the batch's FVU, the auxiliary loss, latents dead at that point), plus the
    totals and the config."""

    history: list[dict[str, float]]
    steps: int
    tokens: int
    seconds: float
    config: dict[str, Any]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.history)

    def figure(self, title: str | None = None):
        """Training FVU and the dead fraction over tokens seen."""
        from interp_lib.plotting import line_panels

        frame = self.to_frame()
        return line_panels(frame["tokens"].tolist(), {
            "reconstruction (FVU of the batch)": {"FVU": frame["fvu"]},
            "dead latents (fraction)": {"dead": frame["dead_fraction"]}},
            x_title="tokens seen", title=title or "SAE training")


class SaeTrainer:
    """One optimiser step at a time on batches of activations (what :func:`train_sae` runs on
    the cache, and what a loop that computes activations batch by batch can call).

    Loss: FVU of the batch (squared error over the batch's total variance), plus for TopK
    ``aux_k_coefficient`` x the AuxK loss (Gao et al. 2024, appendix A.2: the ``d_in / 2``
    largest *dead* latents, those that have not fired for ``dead_after_tokens`` tokens,
    reconstruct the residual error), or for ReLU ``l1_coefficient`` x the mean L1 norm of the
    latents divided by the batch's RMS norm. Adam; the learning rate decays linearly to 0
    over the last ``decay_fraction`` of ``total_steps``; after each step the decoder rows are
    renormalised (and their gradient's component along them removed before it)."""

    def __init__(self, sae: SparseAutoencoder, *, total_steps: int, lr: float = 1e-3,
                 aux_k_coefficient: float = 1 / 32, l1_coefficient: float = 5.0,
                 dead_after_tokens: int = 100_000, decay_fraction: float = 0.2):
        self.sae = _check_sae(sae)
        self.total_steps = validate.positive_int(total_steps, "total_steps")
        self.lr = validate.finite_float(lr, "lr", positive=True)
        self.aux_k_coefficient = validate.finite_float(aux_k_coefficient, "aux_k_coefficient",
                                                       nonnegative=True)
        self.l1_coefficient = validate.finite_float(l1_coefficient, "l1_coefficient",
                                                    nonnegative=True)
        self.dead_after_tokens = validate.positive_int(dead_after_tokens, "dead_after_tokens")
        self.decay_fraction = validate.probability(decay_fraction, "decay_fraction")
        self.optimiser = torch.optim.Adam(sae.parameters(), lr=self.lr)
        device = sae.W_dec.device
        self.tokens_since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=device)
        self.steps = 0
        self.tokens = 0

    def dead(self) -> torch.Tensor:
        """``[d_sae]``: latents that have not fired for ``dead_after_tokens`` tokens."""
        return self.tokens_since_fired >= self.dead_after_tokens

    def _lr(self) -> float:
        decay_start = (1 - self.decay_fraction) * self.total_steps
        if self.steps < decay_start or self.decay_fraction == 0:
            return self.lr
        return self.lr * max(0.0, (self.total_steps - self.steps) /
                             (self.total_steps - decay_start))

    def losses(self, x: Float[torch.Tensor, "batch d_in"],
               dead: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss terms on ``x`` (with gradients): ``fvu``, ``extra`` (AuxK for TopK, with
        ``dead`` latents, default :meth:`dead`; the scaled L1 norm for ReLU), ``total``, and
        ``fired`` (the latents active on some row)."""
        sae = self.sae
        x = x.to(sae.W_dec.device, torch.float32)
        if x.ndim != 2 or x.shape[1] != sae.d_in or x.shape[0] < 2:
            raise ValueError(f"x must be [batch >= 2, d_in={sae.d_in}], got {list(x.shape)}")
        dead = self.dead() if dead is None else dead.to(torch.bool)
        total = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        acts = torch.relu(sae.pre_activations(x))
        if sae.activation == "topk":
            values, indices = acts.topk(sae.k, dim=-1)
            recon = torch.nn.functional.embedding_bag(
                indices, sae.W_dec, per_sample_weights=values, mode="sum") + sae.b_dec
            fired = indices[values > 0]
        else:
            recon = acts @ sae.W_dec + sae.b_dec
            fired = (acts > 0).any(0).nonzero()[:, 0]
        error = x - recon
        fvu = error.pow(2).sum() / total
        extra = torch.zeros((), device=x.device)
        total_loss = fvu
        n_dead = int(dead.sum())
        if sae.activation == "topk" and n_dead and self.aux_k_coefficient > 0:
            k_aux = max(1, sae.d_in // 2)  # scaled down when fewer latents are dead
            scale = min(n_dead / k_aux, 1.0)
            aux_values, aux_indices = acts.masked_fill(~dead, -1.0).topk(min(k_aux, n_dead),
                                                                         dim=-1)
            predicted = torch.nn.functional.embedding_bag(
                aux_indices, sae.W_dec, per_sample_weights=aux_values.clamp_min(0),
                mode="sum")
            extra = scale * (predicted - error.detach()).pow(2).sum() / total
            total_loss = fvu + self.aux_k_coefficient * extra
        elif sae.activation == "relu" and self.l1_coefficient > 0:
            extra = acts.sum(-1).mean() / (total / x.shape[0]).sqrt()
            total_loss = fvu + self.l1_coefficient * extra
        return {"fvu": fvu, "extra": extra, "total": total_loss, "fired": fired,
                "n_dead": torch.tensor(n_dead)}

    def step(self, x: Float[torch.Tensor, "batch d_in"]) -> dict[str, float]:
        """One step on ``x``; returns the batch's FVU, the auxiliary (or L1) loss and the
        number of dead latents."""
        sae = self.sae
        with torch.enable_grad():
            terms = self.losses(x)
            self.optimiser.zero_grad(set_to_none=True)
            terms["total"].backward()
        with torch.no_grad():
            grad = sae.W_dec.grad
            if grad is not None:
                grad -= (grad * sae.W_dec).sum(-1, keepdim=True) * sae.W_dec
            for group in self.optimiser.param_groups:
                group["lr"] = self._lr()
            self.optimiser.step()
            sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[terms["fired"]] = 0
        self.steps += 1
        self.tokens += int(x.shape[0])
        return {"fvu": float(terms["fvu"].detach()), "extra_loss": float(terms["extra"].detach()),
                "dead": int(terms["n_dead"])}


def train_sae(
    data: Activations | Float[torch.Tensor, "token d_in"],
    *,
    d_sae: int,
    k: int | None = None,
    site: str | None = None,
    activation: str = "topk",
    epochs: int = 1,
    batch_size: int = 1024,
    lr: float = 1e-3,
    aux_k_coefficient: float = 1 / 32,
    l1_coefficient: float = 5.0,
    dead_after_tokens: int | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
    log_every: int = 20,
) -> tuple[SparseAutoencoder, TrainingLog]:
    """Train an SAE on cached activations: ``epochs`` passes over the rows in a seeded random
    order, ``batch_size`` rows per :class:`SaeTrainer` step.

    Args:
        data: :class:`Activations` (give ``site`` if it holds several) or a ``[token, d_in]``
            tensor.
        d_sae, k, activation: the dictionary (see :class:`SparseAutoencoder`).
        dead_after_tokens: a latent counts as dead after this many tokens without firing
            (default: one pass over the data, at most 10 M).
        max_tokens: stop after this many tokens (a short schedule), whatever ``epochs`` says.
        seed: the initialisation and the order of the rows.
    Returns ``(sae, log)``; the SAE is in eval mode, on the data's device.
    """
    signature = None
    if isinstance(data, Activations):
        if site is None:
            if len(data.sites) != 1:
                raise ValueError(f"data holds {data.sites}: say which with site=")
            site = data.sites[0]
        elif site not in data.values:
            raise ValueError(f"site {site!r} is not in data (it holds {data.sites})")
        rows, signature = data[site], data.signature
    else:
        rows = validate.finite_tensor(data, "data", shape=(None, None), dims="[token, d_in]")
        if site is not None and not isinstance(site, str):
            raise TypeError(f"site must be a hook name or None, got {type(site).__name__}")
    n_rows, d_in = int(rows.shape[0]), int(rows.shape[1])
    d_sae = validate.positive_int(d_sae, "d_sae")
    epochs = validate.positive_int(epochs, "epochs")
    batch_size = validate.int_in_range(batch_size, "batch_size", 2, max(2, n_rows))
    if n_rows < 2:
        raise ValueError(f"data has {n_rows} row(s); training needs at least 2")
    seed = validate.nonnegative_int(seed, "seed")
    log_every = validate.positive_int(log_every, "log_every")
    dead_after = (min(n_rows, 10_000_000) if dead_after_tokens is None
                  else validate.positive_int(dead_after_tokens, "dead_after_tokens"))
    budget = (epochs * n_rows if max_tokens is None
              else min(epochs * n_rows, validate.positive_int(max_tokens, "max_tokens")))
    steps_per_epoch = n_rows // batch_size
    total_steps = max(1, min(epochs * steps_per_epoch, budget // batch_size))
    config = {"d_in": d_in, "d_sae": d_sae, "k": k, "activation": activation, "site": site,
              "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "aux_k_coefficient": aux_k_coefficient, "l1_coefficient": l1_coefficient,
              "dead_after_tokens": dead_after, "steps": total_steps, "seed": seed,
              "tokens_in_data": n_rows}
    sae = SparseAutoencoder(d_in, d_sae, k, activation=activation, site=site,
                            signature=signature, seed=seed, info={"training": config})
    device = rows.device
    sae = sae.to(device)
    trainer = SaeTrainer(sae, total_steps=total_steps, lr=lr,
                         aux_k_coefficient=aux_k_coefficient, l1_coefficient=l1_coefficient,
                         dead_after_tokens=dead_after)
    sample = rows[torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))[:8192]]
    with torch.no_grad():  # start the decoder bias at the data's mean (Gao et al. 2024)
        sae.b_dec.copy_(sample.float().mean(0).to(device))
    order_gen = torch.Generator().manual_seed(seed + 1)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    while trainer.steps < total_steps:
        order = torch.randperm(n_rows, generator=order_gen)
        for b in range(steps_per_epoch):
            if trainer.steps >= total_steps:
                break
            batch = rows[order[b * batch_size:(b + 1) * batch_size]]
            out = trainer.step(batch)
            if trainer.steps % log_every == 0 or trainer.steps in (1, total_steps):
                history.append({"step": trainer.steps, "tokens": trainer.tokens,
                                "fvu": out["fvu"], "extra_loss": out["extra_loss"],
                                "dead_fraction": out["dead"] / d_sae})
    seconds = time.perf_counter() - start
    sae.eval()
    config["seconds"] = round(seconds, 2)
    return sae, TrainingLog(history, trainer.steps, trainer.tokens, seconds, config)


# ================================================================ metrics


@dataclass
class SaeMetrics:
    """An SAE measured on token windows, the field's way: ``l0`` (latents active per token),
    ``fvu``, next-token losses with the site clean, replaced by the SAE's reconstruction
    (``loss_sae``) and zero-ablated (``loss_zero``), ``loss_recovered = (loss_zero - loss_sae)
    / (loss_zero - loss_clean)``, and the latents' firing ``frequency``, from which the dead
    (never fired) and dense (firing on more than ``dense_threshold`` of tokens) fractions.
    The site is replaced at every position but BOS; losses are the mean over every predicted
    token."""

    site: str
    n_tokens: int
    l0: float
    fvu: float
    loss_clean: float
    loss_sae: float
    loss_zero: float
    frequency: Float[torch.Tensor, " d_sae"]
    dense_threshold: float
    signature: tuple[int, ...]
    tokens_digest: str = ""

    @property
    def loss_recovered(self) -> float:
        return (self.loss_zero - self.loss_sae) / (self.loss_zero - self.loss_clean)

    @property
    def dead_fraction(self) -> float:
        return float((self.frequency == 0).float().mean())

    @property
    def dense_fraction(self) -> float:
        return float((self.frequency > self.dense_threshold).float().mean())

    def as_dict(self) -> dict[str, float]:
        return {"n_tokens": self.n_tokens, "l0": self.l0, "fvu": self.fvu,
                "loss_clean": self.loss_clean, "loss_sae": self.loss_sae,
                "loss_zero": self.loss_zero, "loss_recovered": self.loss_recovered,
                "dead_fraction": self.dead_fraction, "dense_fraction": self.dense_fraction}

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"metric": list(self.as_dict()),
                             "value": list(self.as_dict().values())})

    def summary(self) -> str:
        return (f"{self.site} on {self.n_tokens:,} tokens: L0 {self.l0:.1f}, FVU {self.fvu:.3f}, "
                f"loss clean {self.loss_clean:.3f} / with the SAE {self.loss_sae:.3f} / zero-"
                f"ablated {self.loss_zero:.3f} nats -> loss recovered {self.loss_recovered:.3f}; "
                f"dead {self.dead_fraction:.1%}, dense (> {self.dense_threshold:g}) "
                f"{self.dense_fraction:.1%}")

    def density_figure(self, title: str | None = None):
        """Histogram of log10 firing frequency over latents (dead latents left out, counted in
        the title)."""
        from interp_lib.plotting import histogram

        alive = self.frequency[self.frequency > 0]
        if alive.numel() == 0:
            raise ValueError("every latent is dead: nothing to draw")
        dead = int((self.frequency == 0).sum())
        return histogram(torch.log10(alive), bins=40, x_title="log10 firing frequency",
                         y_title="latents", vlines={math.log10(self.dense_threshold): "dense"},
                         title=title or f"Activation density of {len(self.frequency)} latents "
                         f"({dead} dead, not shown)")


def _splice(x: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    """``x`` with positions 1.. replaced (BOS, position 0, kept)."""
    out = x.clone()
    out[:, 1:] = replacement.to(out.dtype)
    return out


def evaluate_sae(
    model: Any,
    sae: SparseAutoencoder,
    tokens: Int[torch.Tensor, "window pos"],
    *,
    batch_size: int = 8,
    dense_threshold: float = 0.1,
    baseline: SaeMetrics | None = None,
) -> SaeMetrics:
    """:class:`SaeMetrics` of ``sae`` on ``tokens`` (held-out windows), ``batch_size`` windows
    at a time. Each batch runs the clean, spliced and zero-ablated versions as one stacked
    forward pass; for a ``hook_resid_pre`` site the layers below it run once and the three
    versions start from the site (``start_at_layer``). ``baseline``: the metrics of another SAE
    at the same site on the same tokens, whose clean and zero-ablated losses are reused (only
    the spliced version runs)."""
    check_model(model)
    site = _check_sae_fits(model, sae)
    tokens = _windows(model, tokens)
    batch_size = validate.positive_int(batch_size, "batch_size")
    dense_threshold = validate.fraction(dense_threshold, "dense_threshold")
    digest = _digest(tokens)
    if baseline is not None:
        if not isinstance(baseline, SaeMetrics):
            raise TypeError(f"baseline must be SaeMetrics from evaluate_sae, got "
                            f"{type(baseline).__name__}")
        if baseline.site != site or baseline.tokens_digest != digest:
            raise ValueError("baseline was measured at another site or on other tokens; its "
                             "clean and zero-ablated losses do not apply here")
        check_same_model(model, baseline.signature, "baseline")
    copies = 1 if baseline is not None else 3
    sae = sae.to(model.cfg.device)
    fired = torch.zeros(sae.d_sae, dtype=torch.long)
    sums = {"err": 0.0, "sq": 0.0, "l0": 0.0}
    x_sum = torch.zeros(sae.d_in, dtype=torch.float64)
    losses = torch.zeros(3, dtype=torch.float64)  # clean, spliced, zero-ablated
    n_rows = n_pred = 0
    from_site = site.endswith(".hook_resid_pre")
    with torch.no_grad():
        for chunk in _batches(tokens.shape[0], batch_size):
            batch = tokens[chunk]
            b = batch.shape[0]
            stacked_tokens = batch.repeat(copies, 1)
            if from_site:
                x = _site_values(model, batch, [site])[site]
                latents = sae.encode(x[:, 1:])
                recon = sae.decode(latents)
                versions = [_splice(x, recon)] if copies == 1 else [
                    x, _splice(x, recon), _splice(x, torch.zeros_like(recon))]
                logits = model(torch.cat(versions), start_at_layer=_site_layer(site))
            else:
                seen: dict[str, torch.Tensor] = {}

                def hook(act, hook=None, seen=seen, b=b):
                    x = act[:b]
                    seen["latents"] = sae.encode(x[:, 1:])
                    seen["x"] = x
                    recon = sae.decode(seen["latents"])
                    out = act.clone()
                    if copies == 1:
                        out[:, 1:] = recon.to(out.dtype)
                    else:
                        out[b:2 * b, 1:] = recon.to(out.dtype)
                        out[2 * b:, 1:] = 0.0
                    return out

                logits = model.run_with_hooks(stacked_tokens, fwd_hooks=[(site, hook)])
                x, latents = seen["x"], seen["latents"]
                recon = sae.decode(latents)
            rows = x[:, 1:].reshape(-1, sae.d_in).double()
            sums["err"] += float((rows - recon.reshape(rows.shape).double()).pow(2).sum())
            sums["sq"] += float(rows.pow(2).sum())
            x_sum += rows.sum(0).cpu()
            active = latents.reshape(-1, sae.d_sae) > 0
            sums["l0"] += float(active.sum())
            fired += active.sum(0).cpu()
            n_rows += rows.shape[0]
            loss = next_token_loss(logits, stacked_tokens).double()  # [copies b, pos - 1]
            sums_by_copy = loss.reshape(copies, b, -1).sum((1, 2)).cpu()
            if copies == 1:
                losses[1] += sums_by_copy[0]
            else:
                losses += sums_by_copy
            n_pred += b * loss.shape[1]
    total = sums["sq"] - float(x_sum.pow(2).sum()) / n_rows
    loss_clean, loss_sae, loss_zero = (losses / n_pred).tolist()
    if baseline is not None:
        loss_clean, loss_zero = baseline.loss_clean, baseline.loss_zero
    return SaeMetrics(site, n_rows, sums["l0"] / n_rows, sums["err"] / total, loss_clean,
                      loss_sae, loss_zero, fired.float() / n_rows, dense_threshold,
                      model_signature(model), digest)


def _digest(tokens: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(tokens.cpu().numpy().tobytes()).hexdigest()[:16]


# ================================================================ reading features: inputs


class ContextView:
    """Top-activating contexts of one unit, each token shaded by the unit's activation (plain
    HTML: renders offline, in Jupyter, Colab and the course pages). ``str()`` gives the same
    as text, the peak token in ⟦brackets⟧."""

    def __init__(self, title: str, rows: list[tuple[list[str], list[float], int]],
                 scale: float):
        self.title, self.rows, self.scale = title, rows, scale

    def text(self) -> str:
        lines = [self.title]
        for tokens, values, peak in self.rows:
            shown = "".join(f"⟦{t}⟧" if i == peak else t for i, t in enumerate(tokens))
            lines.append(f"  {values[peak]:6.2f}  {shown!r}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        def cell(token: str, value: float, peak: bool) -> str:
            alpha = max(0.0, min(1.0, value / self.scale)) if self.scale > 0 else 0.0
            shown = html.escape(token).replace("\n", "⏎").replace(" ", "&nbsp;")
            border = "border-bottom:2px solid #333;" if peak else ""
            return (f'<span title="{value:.3f}" style="background:rgba(255,120,0,{alpha:.2f});'
                    f'{border}padding:1px 0">{shown}</span>')

        body = "".join(
            f'<div style="margin:2px 0"><span style="color:#666;display:inline-block;'
            f'width:4.5em">{values[peak]:.2f}</span>'
            + "".join(cell(t, v, i == peak) for i, (t, v) in enumerate(zip(tokens, values,
                                                                         strict=True)))
            + "</div>"
            for tokens, values, peak in self.rows)
        return (f'<div style="font-family:monospace;font-size:13px;line-height:1.6">'
                f'<div style="font-weight:bold">{html.escape(self.title)}</div>{body}</div>')


@dataclass
class UnitActivations:
    """Statistics of many units (an SAE's latents, or a site's own units such as MLP neurons)
    over token windows, gathered batch by batch without holding a ``[token, unit]`` matrix of
    the corpus: each unit's firing ``frequency`` (share of tokens where it is > 0), ``mean``
    and ``max`` activation, and its ``top`` largest activations (``top_values``) with their
    rows (``top_rows``; :meth:`location` gives window and position). BOS is left out."""

    source: str
    site: str
    tokens: Int[torch.Tensor, "window pos"]
    frequency: Float[torch.Tensor, " unit"]
    mean: Float[torch.Tensor, " unit"]
    max: Float[torch.Tensor, " unit"]
    top_values: Float[torch.Tensor, "unit top"]
    top_rows: Int[torch.Tensor, "unit top"]
    signature: tuple[int, ...]
    sae: SparseAutoencoder | None = None

    @property
    def n_units(self) -> int:
        return int(self.frequency.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0] * (self.tokens.shape[1] - 1))

    def _unit(self, unit: Any) -> int:
        return validate.int_in_range(unit, "unit", 0, self.n_units - 1)

    def location(self, unit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(window, position)`` of the unit's top activations, largest first."""
        rows = self.top_rows[self._unit(unit)]
        per = self.tokens.shape[1] - 1
        return rows // per, rows % per + 1

    def top_tokens(self, unit: int) -> Int[torch.Tensor, " top"]:
        """The token at each of the unit's top activations."""
        window, pos = self.location(unit)
        return self.tokens[window, pos]

    def token_share(self, unit: int | None = None) -> Float[torch.Tensor, "..."]:
        """The share of a unit's top activations (those > 0) that fall on its most common
        token: 1 when it fires on one token only. ``None``: every unit, ``[unit]`` (NaN for a
        unit that never fired)."""
        units = range(self.n_units) if unit is None else [self._unit(unit)]
        shares = []
        for u in units:
            positive = self.top_values[u] > 0
            if not bool(positive.any()):
                shares.append(float("nan"))
                continue
            counts = torch.bincount(self.top_tokens(u)[positive])
            shares.append(float(counts.max()) / int(positive.sum()))
        out = torch.tensor(shares)
        return out if unit is None else out[0]

    def values_on(self, model: Any, windows: Int[torch.Tensor, "n pos"],
                  unit: int | Sequence[int], *, batch_size: int = 16
                  ) -> Float[torch.Tensor, "n pos *unit"]:
        """The unit's activation at every position of ``windows`` (BOS gets 0): ``[n, pos]``,
        or ``[n, pos, unit]`` for a list of units."""
        check_model(model)
        check_same_model(model, self.signature, "these unit activations")
        single = not isinstance(unit, Sequence)
        units = [self._unit(unit)] if single else [self._unit(u) for u in unit]
        if not units:
            raise ValueError("unit: give at least one unit")
        windows = _windows(model, windows, "windows")
        batch_size = validate.positive_int(batch_size, "batch_size")
        parts = []
        with torch.no_grad():
            sae = self.sae.to(model.cfg.device) if self.sae is not None else None
            for chunk in _batches(windows.shape[0], batch_size):
                x = _site_values(model, windows[chunk], [self.site])[self.site]
                acts = sae.encode(x) if sae is not None else x
                parts.append(acts[..., units].float().cpu())
        acts = torch.cat(parts)
        acts[:, 0] = 0.0
        return acts[..., 0] if single else acts

    def contexts(self, model: Any, unit: int, *, n: int = 8, before: int = 12,
                 after: int = 3, title: str | None = None) -> ContextView:
        """The unit's ``n`` top contexts (``before`` tokens before the peak, ``after`` after),
        every token shaded by the unit's activation there."""
        unit = self._unit(unit)
        n = validate.positive_int(n, "n")
        before = validate.nonnegative_int(before, "before")
        after = validate.nonnegative_int(after, "after")
        check_model(model)
        window, pos = self.location(unit)
        keep = self.top_values[unit] > 0
        window, pos = window[keep][:n], pos[keep][:n]
        if len(window) == 0:
            return ContextView(title or f"{self.source} {unit}: never active", [], 0.0)
        values = self.values_on(model, self.tokens[window], unit)
        rows = []
        for i, (w, p) in enumerate(zip(window.tolist(), pos.tolist(), strict=True)):
            lo, hi = max(1, p - before), min(self.tokens.shape[1], p + after + 1)
            pieces = [model.tokenizer.decode([t]) for t in self.tokens[w, lo:hi].tolist()]
            rows.append((pieces, values[i, lo:hi].tolist(), p - lo))
        scale = float(self.top_values[unit, 0])
        head = title or (f"{self.source} {unit}: fires on {float(self.frequency[unit]):.2%} of "
                         f"tokens, max {scale:.2f}")
        return ContextView(head, rows, scale)

    def density_figure(self, title: str | None = None):
        """Histogram of log10 firing frequency over units (those that never fired left out)."""
        from interp_lib.plotting import histogram

        alive = self.frequency[self.frequency > 0]
        if alive.numel() == 0:
            raise ValueError("no unit ever fired: nothing to draw")
        return histogram(torch.log10(alive), bins=40, x_title="log10 firing frequency",
                         y_title="units", title=title or f"Activation density: {self.source}")

    def to_frame(self):
        """One row per unit: frequency, mean, max, share of the top token."""
        import pandas as pd

        return pd.DataFrame({"unit": range(self.n_units), "frequency": self.frequency.numpy(),
                             "mean": self.mean.numpy(), "max": self.max.numpy(),
                             "top_token_share": self.token_share().numpy()})


def _units(model: Any, source: Any) -> tuple[str, SparseAutoencoder | None, str]:
    if isinstance(source, SparseAutoencoder):
        return _check_sae_fits(model, source, "source"), source, "latent"
    if isinstance(source, str):
        site = _check_site(model, source, "source")
        kind = "neuron" if site.endswith(("mlp.hook_post", "mlp.hook_pre")) else "unit"
        return site, None, kind
    raise TypeError(f"source must be a SparseAutoencoder or a hook name (e.g. "
                    f"{hook_name('mlp_post', 0)!r} for neurons), got {type(source).__name__}")


def unit_activations(
    model: Any,
    tokens: Int[torch.Tensor, "window pos"],
    source: SparseAutoencoder | str,
    *,
    top: int = 20,
    batch_size: int = 16,
) -> UnitActivations:
    """:class:`UnitActivations` of ``source`` over ``tokens``: an SAE (its latents at its site)
    or a hook name (the site's own units: ``hook_name("mlp_post", layer)`` for neurons). Per
    batch, each unit's top ``top`` activations are merged into a running top list."""
    check_model(model)
    site, sae, kind = _units(model, source)
    tokens = _windows(model, tokens)
    top = validate.positive_int(top, "top")
    batch_size = validate.positive_int(batch_size, "batch_size")
    per = tokens.shape[1] - 1
    best_v = best_r = None
    count = total = peak = None
    with torch.no_grad():
        if sae is not None:
            sae = sae.to(model.cfg.device)
        for chunk in _batches(tokens.shape[0], batch_size):
            x = _site_values(model, tokens[chunk], [site])[site][:, 1:]
            acts = sae.encode(x) if sae is not None else x
            acts = acts.reshape(-1, acts.shape[-1]).float().cpu()
            if count is None:
                n_units = acts.shape[1]
                count = torch.zeros(n_units, dtype=torch.long)
                total = torch.zeros(n_units, dtype=torch.float64)
                peak = torch.full((n_units,), -float("inf"))
                best_v = torch.empty(n_units, 0)
                best_r = torch.empty(n_units, 0, dtype=torch.long)
            count += (acts > 0).sum(0)
            total += acts.double().sum(0)
            peak = torch.maximum(peak, acts.max(0).values)
            m = min(top, acts.shape[0])
            values, rows = acts.topk(m, dim=0)                       # [m, unit]
            rows = rows + chunk.start * per
            merged_v = torch.cat([best_v, values.T], 1)
            merged_r = torch.cat([best_r, rows.T], 1)
            order = merged_v.topk(min(top, merged_v.shape[1]), dim=1)
            best_v, best_r = order.values, merged_r.gather(1, order.indices)
    n_tokens = tokens.shape[0] * per
    name = f"{kind} of the SAE at {site}" if sae is not None else f"{kind} at {site}"
    return UnitActivations(name, site, tokens.cpu(), count.float() / n_tokens,
                           (total / n_tokens).float(), peak, best_v, best_r,
                           model_signature(model), sae)


# ================================================================ reading features: outputs


def direct_logit_effect(model: Any, direction: Float[torch.Tensor, "*n d_model"]
                        ) -> Float[torch.Tensor, "*n vocab"]:
    """``direction`` (one or more residual-stream vectors) through the final LayerNorm's
    centring (for LayerNorm models) and the unembedding: the direct effect on the logits of
    adding it to the final residual stream, up to the LayerNorm's positive scale."""
    check_model(model)
    direction = validate.finite_tensor(direction, "direction").float()
    if direction.shape[-1] != model.cfg.d_model:
        raise ValueError(f"direction must end in d_model={model.cfg.d_model}, got shape "
                         f"{list(direction.shape)}")
    direction = direction.to(model.cfg.device)
    if getattr(model.cfg, "normalization_type", "LN") in ("LN", "LNPre"):
        direction = direction - direction.mean(-1, keepdim=True)
    return direction @ model.W_U.detach()


@dataclass
class LogitEffects:
    """The chosen features' decoder directions read through the unembedding
    (:func:`direct_logit_effect`): for each, the ``top`` tokens it directly promotes most
    (``promoted_ids``, ``promoted_values``) and suppresses most, up to the final LayerNorm's
    positive scale. Only these are kept, never a ``[feature, vocab]`` matrix."""

    features: list[int]
    promoted_ids: Int[torch.Tensor, "feature top"]
    promoted_values: Float[torch.Tensor, "feature top"]
    suppressed_ids: Int[torch.Tensor, "feature top"]
    suppressed_values: Float[torch.Tensor, "feature top"]
    token_strings: dict[int, str] = field(repr=False)

    def _row(self, feature: int) -> int:
        if feature not in self.features:
            raise ValueError(f"feature {feature} was not computed; these are "
                             f"{self.features[:10]}{'...' if len(self.features) > 10 else ''}")
        return self.features.index(feature)

    def _k(self, k: int) -> int:
        return validate.int_in_range(k, "k", 1, self.promoted_ids.shape[1])

    def promoted(self, feature: int, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` tokens whose logits the feature raises most."""
        row, k = self._row(feature), self._k(k)
        return [(self.token_strings[int(i)], float(v)) for i, v in
                zip(self.promoted_ids[row, :k], self.promoted_values[row, :k], strict=True)]

    def suppressed(self, feature: int, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` tokens whose logits the feature lowers most."""
        row, k = self._row(feature), self._k(k)
        return [(self.token_strings[int(i)], float(v)) for i, v in
                zip(self.suppressed_ids[row, :k], self.suppressed_values[row, :k], strict=True)]

    def top_promoted(self) -> Int[torch.Tensor, " feature"]:
        """Each feature's most promoted token id."""
        return self.promoted_ids[:, 0]

    def to_frame(self, k: int = 5):
        """One row per feature: its top ``k`` promoted and suppressed tokens."""
        import pandas as pd

        return pd.DataFrame({"feature": self.features,
                             "promoted": [[t for t, _ in self.promoted(f, k)]
                                          for f in self.features],
                             "suppressed": [[t for t, _ in self.suppressed(f, k)]
                                            for f in self.features]})


def logit_effects(model: Any, sae: SparseAutoencoder, features: int | Sequence[int] | None = None,
                  *, top: int = 20, batch_size: int = 256) -> LogitEffects:
    """:class:`LogitEffects` of ``features`` (latent indices; ``None``: every latent) of
    ``sae``, whose site must write to the residual stream (a residual stream, attention or MLP
    output), ``batch_size`` features at a time."""
    check_model(model)
    site = _check_sae_fits(model, sae)
    if not site.endswith(_WRITES_RESIDUAL):
        raise ValueError(f"{site} does not write to the residual stream, so its features "
                         "have no direct path to the logits")
    chosen = list(range(sae.d_sae)) if features is None else _feature_list(features, sae)
    top = validate.int_in_range(top, "top", 1, model.cfg.d_vocab)
    batch_size = validate.positive_int(batch_size, "batch_size")
    rows = sae.W_dec.detach()[chosen]
    parts = []
    with torch.no_grad():
        for chunk in _batches(len(chosen), batch_size):
            values = direct_logit_effect(model, rows[chunk])
            up, down = values.topk(top, dim=-1), (-values).topk(top, dim=-1)
            parts.append((up.indices.cpu(), up.values.cpu(), down.indices.cpu(),
                          -down.values.cpu()))
    ids = [torch.cat(column) for column in zip(*parts, strict=True)]
    wanted = torch.unique(torch.cat([ids[0].flatten(), ids[2].flatten()])).tolist()
    strings = {i: model.tokenizer.decode([i]) for i in wanted}
    return LogitEffects(chosen, ids[0], ids[1], ids[2], ids[3], strings)


def _feature_list(features: Any, sae: SparseAutoencoder, name: str = "features") -> list[int]:
    if isinstance(features, int | np.integer) and not isinstance(features, bool):
        features = [features]
    if not isinstance(features, Sequence) or isinstance(features, str) or not features:
        raise TypeError(f"{name} must be a latent index or a non-empty list of them")
    return [validate.int_in_range(f, name, 0, sae.d_sae - 1) for f in features]


@dataclass
class InterventionEffect:
    """What changing one feature does to the next-token distribution, at the ``n_positions``
    positions changed: the mean KL divergence from the clean distribution, the change in loss
    there, and the tokens whose log-probability rose and fell most on average
    (``logprob_change[vocab]``: the mean change of every token's log-probability)."""

    feature: int
    mode: str
    value: float
    n_positions: int
    kl: float
    loss_change: float
    raised: list[tuple[str, float]]
    lowered: list[tuple[str, float]]
    logprob_change: Float[torch.Tensor, " vocab"] = field(repr=False,
                                                          default_factory=lambda: torch.zeros(0))

    def rank_lowered(self, token: int) -> int:
        """Where ``token`` comes among the tokens whose log-probability fell most (0: the most
        lowered of all)."""
        if self.logprob_change.numel() == 0:
            raise ValueError("no position was changed: nothing was lowered")
        token = validate.int_in_range(token, "token", 0, self.logprob_change.numel() - 1)
        return int((self.logprob_change < self.logprob_change[token]).sum())

    def summary(self) -> str:
        how = "ablated (set to 0 where active)" if self.mode == "ablate" else \
            f"clamped to {self.value:g} everywhere"
        return (f"feature {self.feature} {how}: {self.n_positions} positions, mean KL "
                f"{self.kl:.4f} nats, loss change {self.loss_change:+.4f}; raised "
                f"{[t for t, _ in self.raised[:5]]}, lowered {[t for t, _ in self.lowered[:5]]}")


def intervene(
    model: Any,
    sae: SparseAutoencoder,
    tokens: Int[torch.Tensor, "window pos"],
    feature: int,
    *,
    clamp: float | None = None,
    top: int = 10,
    batch_size: int = 8,
) -> InterventionEffect:
    """Ablate ``feature`` (``clamp=None``: set it to 0 where it is active) or clamp it (set it
    to ``clamp`` at every position but BOS) and measure the next-token distribution at the
    positions changed. Only the feature's own term changes: ``x + (new - a) W_dec[feature]``
    (the SAE's error and every other latent stay as they were)."""
    check_model(model)
    site = _check_sae_fits(model, sae)
    tokens = _windows(model, tokens)
    feature = validate.int_in_range(feature, "feature", 0, sae.d_sae - 1)
    if clamp is not None:
        clamp = validate.finite_float(clamp, "clamp")
    top = validate.positive_int(top, "top")
    batch_size = validate.positive_int(batch_size, "batch_size")
    sae = sae.to(model.cfg.device)
    direction = sae.W_dec.detach()[feature]
    kl_sum = loss_sum = 0.0
    shift = torch.zeros(model.cfg.d_vocab, dtype=torch.float64)
    n = 0
    with torch.no_grad():
        for chunk in _batches(tokens.shape[0], batch_size):
            batch = tokens[chunk]
            b = batch.shape[0]
            seen: dict[str, torch.Tensor] = {}

            def hook(act, hook=None, seen=seen, b=b):
                a = sae.encode(act[:b])[..., feature]
                if clamp is None:
                    changed = a > 0
                    new = torch.zeros_like(a)
                else:
                    changed = torch.ones_like(a, dtype=torch.bool)
                    new = torch.full_like(a, clamp)
                changed[:, 0] = False
                seen["changed"] = changed
                out = act.clone()
                delta = torch.where(changed, new - a, torch.zeros_like(a))
                out[b:] = act[:b] + delta[..., None] * direction
                return out

            logits = model.run_with_hooks(batch.repeat(2, 1), fwd_hooks=[(site, hook)])
            changed = seen["changed"][:, :-1].cpu()                   # predicting positions
            if not bool(changed.any()):
                continue
            clean = logits[:b, :-1].float().log_softmax(-1).cpu()[changed]
            edited = logits[b:, :-1].float().log_softmax(-1).cpu()[changed]
            kl_sum += float((clean.exp() * (clean - edited)).sum())
            targets = batch[:, 1:].cpu()[changed]
            loss_sum += float((clean - edited).gather(-1, targets[:, None]).sum())
            shift += (edited - clean).double().sum(0)
            n += int(changed.sum())
    if n == 0:
        return InterventionEffect(feature, "ablate" if clamp is None else "clamp",
                                  0.0 if clamp is None else clamp, 0, 0.0, 0.0, [], [])
    shift /= n
    up, down = shift.topk(top), (-shift).topk(top)
    word = model.tokenizer.decode
    return InterventionEffect(
        feature, "ablate" if clamp is None else "clamp", 0.0 if clamp is None else clamp, n,
        kl_sum / n, loss_sum / n,
        [(word([int(i)]), float(v)) for v, i in zip(up.values, up.indices, strict=True)],
        [(word([int(i)]), -float(v)) for v, i in zip(down.values, down.indices, strict=True)],
        shift.float())


# ================================================================ intermediate features


@dataclass
class FeatureAttribution:
    """Which latents of an ``upstream`` SAE (at an earlier site) drive ``feature`` of a
    ``downstream`` SAE: ``values[upstream latent]`` is gradient x activation of the
    downstream feature's total activation (summed over the positions where it is active), with
    the upstream SAE spliced in (its error term kept, so the forward pass is unchanged).
    ``checked`` holds, for the top latents, the attribution and the change actually measured
    when that latent is ablated everywhere (first-order: attribution ≈ activation lost)."""

    upstream_site: str
    downstream_site: str
    feature: int
    target: float
    values: Float[torch.Tensor, " upstream"]
    checked: list[tuple[int, float, float]]

    def top(self, k: int = 10) -> list[tuple[int, float]]:
        """The ``k`` upstream latents with the largest attribution."""
        k = validate.int_in_range(k, "k", 1, len(self.values))
        best = self.values.topk(k)
        return [(int(i), float(v)) for v, i in zip(best.values, best.indices, strict=True)]

    def check_frame(self):
        """The checked latents: attribution vs the downstream activation lost on ablation."""
        import pandas as pd

        return pd.DataFrame(self.checked, columns=["upstream_latent", "attribution",
                                                   "ablation_effect"])

    def agreement(self) -> float:
        """Pearson correlation of attribution and ablation effect over the checked latents
        (NaN with fewer than 3)."""
        if len(self.checked) < 3:
            return float("nan")
        a = torch.tensor([[c[1], c[2]] for c in self.checked], dtype=torch.float64)
        a = a - a.mean(0)
        denominator = float(a[:, 0].norm() * a[:, 1].norm())
        return float(a[:, 0] @ a[:, 1]) / denominator if denominator > 0 else float("nan")


def _downstream_total(sae: SparseAutoencoder, y: torch.Tensor, feature: int) -> torch.Tensor:
    """The feature's activation summed over positions 1.. where it is active (TopK: kept)."""
    latents = sae.encode(y[:, 1:])
    return latents[..., feature].double().sum()


def feature_attribution(
    model: Any,
    upstream: SparseAutoencoder,
    downstream: SparseAutoencoder,
    tokens: Int[torch.Tensor, "window pos"],
    feature: int,
    *,
    check: int = 5,
) -> FeatureAttribution:
    """:class:`FeatureAttribution` of ``downstream``'s ``feature`` to ``upstream``'s latents on
    ``tokens``: one forward and one backward pass (``torch.autograd.grad``, so no gradient is
    left on the model) stopping at the downstream site, then ``check`` ablations of the top
    latents, stacked into one more forward pass."""
    check_model(model)
    up_site = _check_sae_fits(model, upstream, "upstream")
    down_site = _check_sae_fits(model, downstream, "downstream")
    if _site_order(up_site) >= _site_order(down_site):
        raise ValueError(f"upstream site {up_site} must come before downstream site "
                         f"{down_site} in the forward pass")
    tokens = _windows(model, tokens)
    feature = validate.int_in_range(feature, "feature", 0, downstream.d_sae - 1)
    check = validate.nonnegative_int(check, "check")
    upstream, downstream = upstream.to(model.cfg.device), downstream.to(model.cfg.device)
    stop = _stop_layer(model, [down_site])
    b = tokens.shape[0]
    store: dict[str, Any] = {}

    def splice_up(act, hook=None):
        latents = upstream.encode(act[:, 1:]).detach().requires_grad_(True)
        error = (act[:, 1:] - upstream.decode(latents)).detach()
        store["latents"] = latents
        out = act.clone()
        out[:, 1:] = upstream.decode(latents) + error
        return out

    def read_down(act, hook=None):
        store["y"] = act

    def downstream_value(run_tokens, up_hook):
        hooks = [(up_site, up_hook)]
        if stop is not None and down_site.endswith(".hook_resid_pre") \
                and _site_layer(down_site) == stop:
            y = None
            with model.hooks(fwd_hooks=hooks):
                y = model(run_tokens, stop_at_layer=stop)
        else:
            with model.hooks(fwd_hooks=hooks + [(down_site, read_down)]):
                model(run_tokens, stop_at_layer=stop)
            y = store.pop("y")
        return y

    with torch.enable_grad():
        y = downstream_value(tokens, splice_up)
        target = _downstream_total(downstream, y, feature)
        latents = store["latents"]
        if target.requires_grad:
            (grad,) = torch.autograd.grad(target, latents)
        else:  # the feature never fired: no gradient path
            grad = torch.zeros_like(latents)
    values = (grad * latents).detach().sum((0, 1)).float().cpu()
    checked: list[tuple[int, float, float]] = []
    if check:
        chosen = values.topk(min(check, len(values))).indices.tolist()
        directions = upstream.W_dec.detach()

        def ablate_each(act, hook=None):
            lat = upstream.encode(act[:b, 1:])
            out = act.clone()
            for i, j in enumerate(chosen):
                rows = slice((i + 1) * b, (i + 2) * b)
                out[rows, 1:] = act[:b, 1:] - lat[..., j, None] * directions[j]
            return out

        with torch.no_grad():
            y = downstream_value(tokens.repeat(len(chosen) + 1, 1), ablate_each)
            totals = [float(_downstream_total(downstream, y[i * b:(i + 1) * b], feature))
                      for i in range(len(chosen) + 1)]
        checked = [(j, float(values[j]), totals[0] - totals[i + 1])
                   for i, j in enumerate(chosen)]
    return FeatureAttribution(up_site, down_site, feature, float(target.detach()), values,
                              checked)


# ================================================================ features vs neurons


@dataclass
class SwapPairs:
    """Clean and corrupted prompts that differ in their last token, with each one's answer
    (the model's top prediction after it): ``clean [pair, pos]``, ``corrupted``,
    ``clean_answer [pair]``, ``corrupted_answer``; the two answers differ in every pair."""

    clean: Int[torch.Tensor, "pair pos"]
    corrupted: Int[torch.Tensor, "pair pos"]
    clean_answer: Int[torch.Tensor, " pair"]
    corrupted_answer: Int[torch.Tensor, " pair"]

    def __len__(self) -> int:
        return int(self.clean.shape[0])


def swap_pairs(model: Any, tokens: Int[torch.Tensor, "window pos"], *, length: int = 24,
               n_pairs: int = 64, seed: int = 0) -> SwapPairs:
    """Prompts of ``length`` tokens cut from ``tokens`` (each window's start), paired with the
    same prompt whose last token is taken from another prompt (a seeded permutation); pairs
    whose two top predictions agree are dropped, and the first ``n_pairs`` kept."""
    check_model(model)
    tokens = _windows(model, tokens)
    length = validate.int_in_range(length, "length", 2, tokens.shape[1])
    n_pairs = validate.positive_int(n_pairs, "n_pairs")
    seed = validate.nonnegative_int(seed, "seed")
    clean = tokens[:, :length]
    n = clean.shape[0]
    if n < 2:
        raise ValueError("swap_pairs needs at least 2 windows to swap last tokens between")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    donors = clean[perm.to(clean.device), -1]
    keep = donors != clean[:, -1]
    corrupted = clean.clone()
    corrupted[:, -1] = donors
    with torch.no_grad():
        a = model(clean)[:, -1].argmax(-1)
        c = model(corrupted)[:, -1].argmax(-1)
    keep &= a != c
    index = keep.nonzero()[:, 0][:n_pairs]
    if len(index) == 0:
        raise ValueError("no pair has different answers: give more or longer windows")
    return SwapPairs(clean[index].cpu(), corrupted[index].cpu(), a[index].cpu(),
                     c[index].cpu())


@dataclass
class PatchingComparison:
    """Patching ``k`` SAE features against ``k`` neurons of the same MLP, from the corrupted
    prompt into the clean one at the last position. ``feature_effect[k]`` and
    ``neuron_effect[k]`` are the share of the whole MLP output's patching effect on the logit
    difference (clean answer - corrupted answer) that the ``k`` best units reach (chosen per
    pair by attribution patching: gradient x change), as a ratio of sums over pairs."""

    ks: list[int]
    feature_effect: Float[torch.Tensor, " k"]
    neuron_effect: Float[torch.Tensor, " k"]
    full_effect: float
    n_pairs: int
    feature_site: str
    neuron_site: str
    units_changed: dict[str, float]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"k": self.ks, "features": self.feature_effect.numpy(),
                             "neurons": self.neuron_effect.numpy()})

    def figure(self, title: str | None = None):
        from interp_lib.plotting import line

        return line(self.ks, {"SAE features": self.feature_effect,
                              "neurons": self.neuron_effect},
                    x_title="units patched (k)", y_title="share of the whole MLP's effect",
                    hlines={1.0: "the whole MLP output"},
                    title=title or "Patching k features vs k neurons")

    def features_win(self) -> list[int]:
        """The ``k`` at which the features reach more than the neurons."""
        return [k for k, f, n in zip(self.ks, self.feature_effect, self.neuron_effect,
                                     strict=True) if float(f) > float(n)]


def _logit_diff(logits: torch.Tensor, good: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    last = logits[:, -1]
    return last.gather(-1, good[:, None])[:, 0] - last.gather(-1, bad[:, None])[:, 0]


def features_vs_neurons(
    model: Any,
    sae: SparseAutoencoder,
    pairs: SwapPairs,
    *,
    ks: Sequence[int] = (1, 2, 4, 8, 16, 32),
    batch_size: int = 128,
) -> PatchingComparison:
    """:class:`PatchingComparison` for an SAE on an MLP's output (``hook_mlp_out`` of layer
    L) against the neurons of that MLP (``mlp.hook_post`` of layer L), on ``pairs``.

    One forward and backward pass on the clean prompts gives the gradient of the logit
    difference at the MLP output; each unit's estimated effect is that gradient times the
    unit's change (features: ``Δa_j W_dec[j]``; neurons: ``Δpost_i W_out[i]``). For every k the
    ``k`` units with the most negative estimate (those that move the logit difference most
    towards the corrupted answer) are patched (all of a kind when k exceeds its count), all
    pairs, ks and both kinds stacked into forward passes of ``batch_size`` prompts."""
    check_model(model)
    site = _check_sae_fits(model, sae)
    if not site.endswith(".hook_mlp_out"):
        raise ValueError(f"features_vs_neurons compares an SAE on an MLP output "
                         f"(hook_mlp_out) with that MLP's neurons; this SAE reads {site}")
    if not isinstance(pairs, SwapPairs):
        raise TypeError(f"pairs must be SwapPairs (from swap_pairs), got "
                        f"{type(pairs).__name__}")
    if isinstance(ks, int) or not isinstance(ks, Sequence) or not ks:
        raise TypeError("ks must be a non-empty list of unit counts")
    layer = _site_layer(site)
    neuron_site = hook_name("mlp_post", layer)
    d_mlp = int(model.cfg.d_mlp)
    ks = [validate.int_in_range(k, "ks", 1, max(sae.d_sae, d_mlp)) for k in ks]
    batch_size = validate.positive_int(batch_size, "batch_size")
    device = model.cfg.device
    clean, corrupted = pairs.clean.to(device), pairs.corrupted.to(device)
    good, bad = pairs.clean_answer.to(device), pairs.corrupted_answer.to(device)
    sae = sae.to(device)
    w_out = model.W_out[layer].detach()                             # [d_mlp, d_model]
    n = clean.shape[0]
    with torch.no_grad():
        corr = _site_values(model, corrupted, [neuron_site, site])
        post_c, out_c = corr[neuron_site][:, -1], corr[site][:, -1]
    store: dict[str, torch.Tensor] = {}

    def leaf(act, hook=None):
        store["post"] = act[:, -1].detach()
        return None

    def grad_leaf(act, hook=None):
        out = act.clone()
        last = act[:, -1].detach().requires_grad_(True)
        store["out"] = last
        out[:, -1] = last
        return out

    with torch.enable_grad():
        with model.hooks(fwd_hooks=[(neuron_site, leaf), (site, grad_leaf)]):
            logits = model(clean)
        ld_clean = _logit_diff(logits, good, bad)
        (grad,) = torch.autograd.grad(ld_clean.sum(), store["out"])   # [pair, d_model]
    ld_clean = ld_clean.detach()
    post = store["post"]
    out_clean = store["out"].detach()
    a_clean, a_corr = sae.encode(out_clean), sae.encode(out_c)
    feature_delta = a_corr - a_clean                                 # [pair, d_sae]
    neuron_delta = post_c - post                                     # [pair, d_mlp]
    feature_est = feature_delta * (grad @ sae.W_dec.detach().T)
    neuron_est = neuron_delta * (grad @ w_out.T)
    f_order = feature_est.topk(min(max(ks), sae.d_sae), dim=-1, largest=False).indices
    n_order = neuron_est.topk(min(max(ks), d_mlp), dim=-1, largest=False).indices
    shifts = [out_c - out_clean]                                     # the whole MLP output
    for k in ks:  # a k above a kind's count patches all of that kind
        fi, ni = f_order[:, :k], n_order[:, :k]
        f_shift = (feature_delta.gather(1, fi)[..., None] * sae.W_dec.detach()[fi]).sum(1)
        n_shift = (neuron_delta.gather(1, ni)[..., None] * w_out[ni]).sum(1)
        shifts += [f_shift, n_shift]
    stacked = torch.cat(shifts)                                      # [(1 + 2K) pair, d_model]
    copies = len(shifts)
    prompts, goods, bads = clean.repeat(copies, 1), good.repeat(copies), bad.repeat(copies)
    parts = []
    with torch.no_grad():
        for chunk in _batches(copies * n, batch_size):
            shift = stacked[chunk]

            def patch(act, hook=None, shift=shift):
                out = act.clone()
                out[:, -1] = act[:, -1] + shift.to(act.dtype)
                return out

            logits = model.run_with_hooks(prompts[chunk], fwd_hooks=[(site, patch)])
            parts.append(_logit_diff(logits, goods[chunk], bads[chunk]))
    ld = torch.cat(parts).reshape(copies, n)
    moved = (ld_clean[None] - ld).sum(1)                             # [copies]
    full = float(moved[0])
    if abs(full) < 1e-6:
        raise ValueError("patching the whole MLP output does not change the logit difference "
                         "on these pairs: choose another layer or other pairs")
    effects = (moved[1:] / full).reshape(len(ks), 2)
    changed = {"features": float((feature_delta != 0).sum(-1).float().mean()),
               "neurons": float((neuron_delta != 0).sum(-1).float().mean())}
    return PatchingComparison(ks, effects[:, 0].cpu(), effects[:, 1].cpu(), full / n, n,
                              site, neuron_site, changed)


# ================================================================ the shipped SAEs


def training_text() -> str:
    """The text the shipped SAEs were trained on: the shipped probe sentences, then the topic
    sentences not among them, in corpus order, as one running text (held out from the course
    model's training, and disjoint from :func:`interp_lib.data.sample_text`, on which the SAEs
    are evaluated)."""
    from interp_lib.data import probe_sentences, topic_sentences

    probe = probe_sentences()
    seen = set(probe)
    extra = [s for group in topic_sentences().values() for s in group if s not in seen]
    return " ".join(probe + list(dict.fromkeys(extra)))


def text_windows(model: Any, text: str, length: int = 128, n_windows: int | None = None
                 ) -> Int[torch.Tensor, "window length"]:
    """Every whole window of ``length`` tokens (BOS + ``length - 1``) in ``text``, or the first
    ``n_windows`` of them."""
    from interp_lib.data import NotEnoughTextError, token_windows

    check_model(model)
    if n_windows is not None:
        return token_windows(model, text, validate.positive_int(n_windows, "n_windows"), length)
    try:
        return token_windows(model, text, 10**9, length)
    except NotEnoughTextError as err:
        if err.available == 0:
            raise
        return token_windows(model, text, err.available, length)


def shipped_sites() -> list[str]:
    """The sites of the course model for which an SAE ships with the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "cfg.json").is_file())


def shipped_card() -> dict[str, Any]:
    """The shipped SAEs' ``metrics.json``: per site, the training config and the metrics
    measured on the held-out sample text (what ``SAE_CARD.md`` reports)."""
    path = SHIPPED_DIR / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this copy ships no SAE "
                                "(retrain with scripts/train_sae.py)")
    return json.loads(path.read_text())


def load_sae(site: str, *, model: Any = None, device: str | torch.device | None = None
             ) -> SparseAutoencoder:
    """The shipped SAE for ``site`` (a hook name; :func:`shipped_sites` lists them), trained on
    the course model; with ``model``, refused unless the model has the course model's shape."""
    if not isinstance(site, str):
        raise TypeError(f"site must be a hook name, got {type(site).__name__}")
    available = shipped_sites()
    if site not in available:
        raise ValueError(f"no SAE ships for {site!r}; the shipped ones are {available}")
    sae = SparseAutoencoder.load(SHIPPED_DIR / site, device=device)
    if model is not None:
        check_model(model)
        check_same_model(model, sae.signature, f"the shipped SAE for {site}")
        sae = sae.to(model.cfg.device)
    return sae.eval()
