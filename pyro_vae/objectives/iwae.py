"""``iwae``: the importance-weighted bound, per datapoint, vectorized over particles.

Burda, Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.

For each datapoint, with z_1..z_k ~ q(z|x) and w_i = p(x, z_i) / q(z_i|x),
L_k = log (1/k) sum_i w_i, a lower bound on log p(x) that is non-decreasing in k
(L_1 is the ELBO). The loss is -sum over the minibatch of L_k, scaled to the dataset
size; its gradient is the plain reparameterized one. ``num_particles`` averages that
many independent k-particle bounds (MIWAE, Rainforth et al. 2018).

Limits: Pyro's ``RenyiELBO(alpha=0)`` computes the same bound but cannot serve as a
torch loss (no ``differentiable_loss``), silently becomes one bound for the whole
batch when a site is outside ``pyro.plate("data")``, and puts scales inside the
logsumexp. Here the first is a loss like any other, the other two raise
:class:`~pyro_vae.errors.ModelError`, and beta / KL warm-up are refused. The guide
gradient's signal-to-noise ratio falls as k grows (Rainforth et al. 2018); ``dreg``
fixes that.

Example:
    >>> import torch
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> loss = IWAE_ELBO(k=5)(vae, vae.guide_module())
    >>> loss(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([])
"""

from __future__ import annotations

import math

import torch

from .base import Latents, ParticleObjective

__all__ = ["IWAE_ELBO"]


class IWAE_ELBO(ParticleObjective):
    """The k-particle importance-weighted bound (k=1 is the ELBO)."""

    name = "iwae"

    def __init__(self, k: int = 5, num_particles: int = 1, **kwargs):
        super().__init__(k=k, num_particles=num_particles, **kwargs)

    def bound_loss(self, log_w: torch.Tensor, latents: Latents) -> torch.Tensor:
        bound = torch.logsumexp(log_w, dim=1) - math.log(self.k)
        return -bound.mean(0).sum()
