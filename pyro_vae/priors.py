"""Priors p(z): modules whose call returns a Pyro distribution with event shape ``(latent_dim,)``.

Write your own the same way and pass it to :class:`pyro_vae.VAE`; the registry
below only lets config files and the command line name the built-ins.

Example:
    >>> prior = StandardNormalPrior(latent_dim=2)
    >>> prior().event_shape, prior().batch_shape
    (torch.Size([2]), torch.Size([]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from torch import nn

__all__ = ["PRIORS", "StandardNormalPrior", "build_prior"]


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


@dataclass(frozen=True)
class PriorSpec:
    build: Callable[..., nn.Module]
    description: str


PRIORS: dict[str, PriorSpec] = {
    "standard-normal": PriorSpec(
        lambda cfg, encoder, data_shape: StandardNormalPrior(cfg.latent_dim),
        "N(0, I), the classic VAE prior",
    ),
}


def build_prior(cfg, encoder: nn.Module, data_shape: tuple[int, ...]) -> nn.Module:
    """The built-in prior named by ``cfg.prior``; ``encoder`` is q(z|x) (the VampPrior uses it)."""
    return PRIORS[cfg.prior].build(cfg, encoder, data_shape)
