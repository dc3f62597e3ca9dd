"""Imputing missing entries with a trained VAE: the conditional mean and multiple imputations.

Mattei & Frellsen, "MIWAE: Deep Generative Modelling and Imputation of Incomplete Data
Sets", ICML 2019, section 4. With z_1..z_K ~ q(z|x_obs) (the encoder sees the missing
entries filled, :mod:`pyro_vae.missing`) and importance weights
w_k = p(x_obs|z_k) p(z_k) / q(z_k|x_obs), normalized to sum to one:

- the single imputation is E[x_mis|x_obs] ~ sum_k w_k E[x_mis|z_k], self-normalized
  importance sampling (consistent as K grows; the decoder's mean at each particle);
- each of M multiple imputations picks one particle with probability w_k (sampling
  importance resampling) and draws x_mis ~ p(x_mis|z_k): approximate draws from
  p(x_mis|x_obs), whose spread is the uncertainty of the imputation.

Particles stream through in chunks (the weights' running maximum rescales the sums, and
the resampling is a running Gumbel-max), so memory stays bounded whatever K. Observed
entries are returned as given.

Example:
    >>> from pyro_vae import mlp_vae
    >>> from pyro_vae.missing import mark_missing
    >>> vae = mlp_vae((6,), latent_dim=2, hidden=[8])
    >>> x = mark_missing(torch.ones(4, 6), torch.tensor([True] * 3 + [False] * 3))
    >>> result = impute(vae, x, k=50, draws=3)
    >>> result.mean.shape, result.draws.shape, bool(result.mean[:, :3].eq(1).all())
    (torch.Size([4, 6]), torch.Size([3, 4, 6]), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .convention import convention_of, data_support, standard_vae
from .data import check_support
from .errors import ModelError
from .estimators import MAX_SAMPLES, chunk_plan, chunk_rng, decoding_cap
from .missing import allow_missing, observed
from .vae import as_model_input, count

__all__ = ["Imputation", "impute"]


@dataclass
class Imputation:
    """What :func:`impute` returns; observed entries hold the data in every tensor.

    ``mean`` ``[N, *shape]``: the single imputation E[x_mis|x_obs]; ``draws``
    ``[M, N, *shape]``: M multiple imputations; ``observed`` the boolean mask (True =
    observed); ``ess_fraction`` ``[N]``: the effective sample size of each datapoint's K
    normalized weights as a fraction of K (small values: few particles carry the estimate).
    """

    mean: torch.Tensor
    draws: torch.Tensor
    observed: torch.Tensor
    ess_fraction: torch.Tensor
    k: int


@torch.no_grad()
def impute(
    model: nn.Module,
    x: torch.Tensor,
    k: int = 1000,
    draws: int = 0,
    *,
    seed: int = 0,
    max_samples: int = MAX_SAMPLES,
    progress: Callable[[int], Any] | None = None,
) -> Imputation:
    """Fill the missing (NaN) entries of ``x`` with ``model``, a VAE trained on such data.

    ``k`` importance samples per datapoint, ``draws`` multiple imputations. The model is
    prepared with :func:`~pyro_vae.missing.allow_missing` (which changes nothing on
    complete data). Each chunk of datapoints draws from its own stream keyed by ``seed``;
    ``progress``, when given, is called with the number of datapoints each chunk finished
    (a progress bar's ``update``).
    """
    k, draws = count(k, "k"), count(draws, "draws", minimum=0)
    vae = standard_vae(model)
    labels = convention_of(model).takes_labels
    if vae is None or labels:
        why = "it conditions on labels y" if labels else "its model() and guide() are its own"
        raise ModelError(
            f"impute() supports VAEs built from their parts (encoder, decoder, prior, "
            f"likelihood; one or several latent layers) without labels, as mlp_vae() builds "
            f"them; {type(model).__name__} is not one: {why}. Impute with such a VAE trained "
            "on data with missing entries"
        )
    likelihood = type(getattr(vae, "likelihood", vae)).__name__
    x = as_model_input(vae, x)  # a NumPy array, or another dtype: the model's numbers
    check_support(x, "x", "", data_support(vae), likelihood)  # observed entries only
    allow_missing(vae)
    was_training = vae.training
    vae.eval()
    max_samples = decoding_cap(max_samples, vae.outputs_per_sample(x.device))
    points, particles = chunk_plan(len(x), k, max_samples, batch_size=len(x))
    means, samples, ess = [], [], []
    for index, start in enumerate(range(0, len(x), points)):
        chunk = vae.shaped(x[start : start + points])
        with chunk_rng(seed, index, x.device):
            mean, drawn, fraction = _impute_chunk(vae, chunk, k, draws, particles)
        means.append(mean)
        samples.append(drawn)
        ess.append(fraction)
        if progress is not None:
            progress(len(chunk))
    vae.train(was_training)
    x = vae.shaped(x)
    seen = observed(x)
    mean = torch.where(seen, x, torch.cat(means).to(x.dtype))
    drawn = torch.where(seen, x, torch.cat(samples, 1).to(x.dtype))
    return Imputation(mean, drawn, seen, torch.cat(ess), k)


def _impute_chunk(
    vae: nn.Module, x: torch.Tensor, k: int, draws: int, particles: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """E[x|x_obs] (all entries), ``draws`` resampled draws of x, and the ESS fraction."""
    n, extra = len(x), (1,) * (x.dim() - 1)
    top = torch.full((n,), -math.inf, dtype=torch.float64, device=x.device)
    total = total_sq = torch.zeros(n, dtype=torch.float64, device=x.device)
    weighted = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    best = torch.full((draws, n), -math.inf, dtype=torch.float64, device=x.device)
    chosen = None
    for first in range(0, k, particles):
        terms = vae.log_weights(x, min(particles, k - first))
        log_w = terms.log_w.double()
        new_top = torch.maximum(top, log_w.max(0).values)
        rescale = (top - new_top).exp()
        w = (log_w - new_top).exp()
        total = total * rescale + w.sum(0)
        total_sq = total_sq * rescale**2 + (w**2).sum(0)
        decoded = _likelihood_at(vae, terms.z).mean.double()
        weighted = weighted * rescale.view(n, *extra) + (w.view(*w.shape, *extra) * decoded).sum(0)
        top = new_top
        if draws:  # Gumbel-max over the particles seen so far: one resampled particle per draw
            u = torch.rand((draws, *log_w.shape), dtype=torch.float64, device=x.device)
            scores, index = (log_w - (-u.clamp_min(1e-300).log()).log()).max(1)
            z = terms.z[index, torch.arange(n, device=x.device)]
            better = scores > best
            best = torch.where(better, scores, best)
            chosen = z if chosen is None else torch.where(better.unsqueeze(-1), z, chosen)
    mean = weighted / total.view(n, *extra)
    drawn = _likelihood_at(vae, chosen).sample() if draws else x.new_zeros((0, *x.shape))
    return mean, drawn, total**2 / total_sq / k


def _likelihood_at(vae: nn.Module, z: torch.Tensor):
    """p(x|z) at particles ``z`` of ``log_weights`` (a stacked VAE's joined layers: x depends
    on the bottom one alone)."""
    dims = getattr(vae, "latent_dims", None)
    if dims is not None and len(dims) > 1:
        z = z[..., : dims[0]]
    return vae.likelihood(vae.decoder(z))
