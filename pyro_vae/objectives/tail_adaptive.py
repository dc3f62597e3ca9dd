"""``tail-adaptive``: gradients of the tail-adaptive f-divergence, per datapoint.

Wang, Liu & Liu, "Variational Inference with Tail-adaptive f-Divergence", NeurIPS 2018.

For each datapoint, the k particles are weighted by rho_i = F(w_i)^beta, where
F(w_i) = (1/k) #{j : w_j >= w_i} is the empirical survival function of the importance
weights and beta = ``tail_beta`` (the paper's -1 by default): the heavier the tail of
w, the more the largest weights count, without the instability of using w itself.
The gradient is -sum_i rho~_i grad log w_i (reparameterized, rho~ normalized over
the k particles and detached).

The f-divergence itself is not estimated (as in the paper and in Pyro); the loss's
**value** is the plain ELBO averaged over the k particles, so training curves stay
meaningful. Pyro's ``TraceTailAdaptive_ELBO`` ranks the particles of the whole batch
at once (one summed log weight per particle), computes the ranks incorrectly
(pyro-ppl/pyro#3170, open in 1.9.2: it uses the argsort as the ranks, and gives the
largest weight to the smallest w), refuses subsampling and reports an infinite loss;
this one ranks per datapoint, scales to the dataset like the others and refuses beta /
KL warm-up. With k = 1 it is the ELBO.

Example:
    >>> import torch
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> loss = TailAdaptive_ELBO(k=5)(vae, vae.guide_module())
    >>> bool(torch.isfinite(loss(torch.ones(3, 1, 28, 28))))
    True
"""

from __future__ import annotations

import torch

from .base import Latents, ParticleObjective, checked_option

__all__ = ["TailAdaptive_ELBO", "tail_weights"]


class TailAdaptive_ELBO(ParticleObjective):
    """The ELBO's value with the tail-adaptive gradient over k particles."""

    name = "tail-adaptive"

    def __init__(self, k: int = 5, tail_beta: float = -1.0, num_particles: int = 1, **kwargs):
        super().__init__(k=k, num_particles=num_particles, **kwargs)
        self.tail_beta = checked_option(self, "tail_beta", tail_beta)

    def bound_loss(self, log_w: torch.Tensor, latents: Latents) -> torch.Tensor:
        value = -log_w.detach().mean((0, 1)).sum()
        surrogate = -(tail_weights(log_w.detach(), self.tail_beta) * log_w).sum(1).mean(0).sum()
        return value + (surrogate - surrogate.detach())


def tail_weights(log_w: torch.Tensor, beta: float) -> torch.Tensor:
    """Normalized weights F(w_i)^beta over dim 1 of ``[sets, k, batch]`` log weights.

    Example:
        >>> tail_weights(torch.tensor([[[0.0], [2.0], [1.0]]]), beta=-1.0).flatten()
        tensor([0.1818, 0.5455, 0.2727])
    """
    at_least = (log_w.unsqueeze(1) >= log_w.unsqueeze(2)).sum(2)  # #{j: w_j >= w_i}
    survival = at_least.to(log_w.dtype) / log_w.shape[1]
    rho = survival.pow(beta)
    return rho / rho.sum(1, keepdim=True)
