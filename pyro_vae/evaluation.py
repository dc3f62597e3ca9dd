"""Scoring a trained VAE on held-out data.

Example:
    >>> from pyro_vae import Config, build_vae
    >>> vae = build_vae(Config(latent_dim=2, hidden=[16]), (1, 28, 28))
    >>> x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.5))
    >>> bool(-600 < elbo_per_datapoint(vae, x) < -500)   # untrained: about 784 * log(1/2)
    True
"""

from __future__ import annotations

import torch

from .vae import VAE

__all__ = ["elbo_per_datapoint"]


@torch.no_grad()
def elbo_per_datapoint(
    vae: VAE, x: torch.Tensor, batch_size: int = 1000, num_particles: int = 1
) -> float:
    """The Monte Carlo ELBO averaged over the datapoints of ``x`` (nats per datapoint)."""
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for chunk in x.split(batch_size):
        total += vae.log_weights(chunk, num_particles).log_w.mean(0).sum().double()
    return float(total) / len(x)
