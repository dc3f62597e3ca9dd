"""Scoring a trained VAE on held-out data.

Chunks of datapoints draw their noise from streams keyed by (seed, chunk index),
so a result does not depend on how the chunks are shared out: evaluated across
several ranks (each takes every world_size-th chunk, then the sums are reduced)
it equals the single-process number.

Example:
    >>> from pyro_vae import Config, build_vae
    >>> vae = build_vae(Config(latent_dim=2, hidden=[16]), (1, 28, 28))
    >>> x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.5))
    >>> bool(-600 < elbo_per_datapoint(vae, x, seed=0) < -500)   # untrained: about 784 log(1/2)
    True
"""

from __future__ import annotations

import contextlib

import torch

from .distributed import DistContext, all_reduce_sum
from .runtime import isolated_rng
from .vae import VAE

__all__ = ["elbo_per_datapoint", "chunk_rng"]


def chunk_rng(seed: int | None, chunk: int, device: torch.device):
    """The random stream of one evaluation chunk (the caller's stream when seed is None)."""
    if seed is None:
        return contextlib.nullcontext()
    return isolated_rng(seed * 1_000_003 + chunk, device)


@torch.no_grad()
def elbo_per_datapoint(
    vae: VAE,
    x: torch.Tensor,
    batch_size: int = 1000,
    num_particles: int = 1,
    seed: int | None = None,
    ctx: DistContext | None = None,
) -> float:
    """The Monte Carlo ELBO averaged over the datapoints of ``x`` (nats per datapoint)."""
    ctx = ctx or DistContext()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for chunk, batch in enumerate(x.split(batch_size)):
        if chunk % ctx.world_size != ctx.rank:
            continue
        with chunk_rng(seed, chunk, x.device):
            total += vae.log_weights(batch, num_particles).log_w.mean(0).sum().double()
    return float(all_reduce_sum(total, ctx)) / len(x)
