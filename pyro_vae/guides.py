"""Guides q(z|x): amortized encoders whose call returns a reparameterizable Pyro distribution.

Example:
    >>> from pyro_vae.networks import build_encoder_body
    >>> body, features = build_encoder_body("mlp", (1, 28, 28), hidden=[64])
    >>> q = NormalGuide(body, features, latent_dim=2)(torch.zeros(5, 1, 28, 28))
    >>> q.batch_shape, q.event_shape, q.has_rsample
    (torch.Size([5]), torch.Size([2]), True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GUIDES", "NormalGuide", "bounded_scale", "build_guide", "MIN_SCALE", "MAX_SCALE"]

MIN_SCALE = 1e-4
MAX_SCALE = 1e2


def bounded_scale(raw: torch.Tensor) -> torch.Tensor:
    """A positive, bounded scale from an unbounded network output.

    ``softplus`` grows linearly (no ``exp`` overflow), the clamp keeps it below
    MAX_SCALE and the offset keeps it above MIN_SCALE, so log q(z|x) stays finite
    even when a bad step sends the raw output far out.
    """
    return F.softplus(raw).clamp(max=MAX_SCALE) + MIN_SCALE


class NormalGuide(nn.Module):
    """q(z|x) = N(loc(x), diag(scale(x)^2)), sampled as z = loc + scale * eps."""

    def __init__(self, body: nn.Module, features: int, latent_dim: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        loc, raw_scale = self.head(self.body(x)).chunk(2, dim=-1)
        return dist.Normal(loc, bounded_scale(raw_scale)).to_event(1)


@dataclass(frozen=True)
class GuideSpec:
    build: Callable[..., nn.Module]
    description: str


GUIDES: dict[str, GuideSpec] = {
    "normal": GuideSpec(
        lambda cfg, body, features: NormalGuide(body, features, cfg.latent_dim),
        "diagonal Normal with amortized mean and scale",
    ),
}


def build_guide(cfg, body: nn.Module, features: int) -> nn.Module:
    """The built-in guide named by ``cfg.guide`` on top of an encoder body."""
    return GUIDES[cfg.guide].build(cfg, body, features)
