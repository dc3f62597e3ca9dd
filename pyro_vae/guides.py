"""Guides q(z|x): amortized encoders whose call returns a reparameterizable Pyro distribution.

- ``normal``: q(z|x) = N(loc(x), diag(scale(x)^2));
- ``iaf``: that Normal followed by inverse autoregressive flow steps conditioned on
  the encoder's features (Kingma et al. 2016), a richer posterior family.

Example:
    >>> from pyro_vae.networks import mlp_encoder
    >>> body, features = mlp_encoder((1, 28, 28), hidden=[64])
    >>> q = NormalGuide(body, features, latent_dim=2)(torch.zeros(5, 1, 28, 28))
    >>> q.batch_shape, q.event_shape, q.has_rsample
    (torch.Size([5]), torch.Size([2]), True)
"""

from __future__ import annotations

import warnings

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
import torch.nn.functional as F
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from .distributions import ReparameterizedNormal

__all__ = [
    "NormalGuide",
    "IAFGuide",
    "bounded_scale",
    "unbounded_scale",
    "MIN_SCALE",
    "MAX_SCALE",
]

MIN_SCALE = 1e-4
MAX_SCALE = 1e2


def bounded_scale(raw: torch.Tensor) -> torch.Tensor:
    """A positive, bounded scale from an unbounded network output.

    ``softplus`` grows linearly (no ``exp`` overflow), the clamp keeps it below
    MAX_SCALE and the offset keeps it above MIN_SCALE, so log q(z|x) stays finite
    even when a bad step sends the raw output far out.
    """
    return F.softplus(raw).clamp(max=MAX_SCALE) + MIN_SCALE


def unbounded_scale(scale: torch.Tensor) -> torch.Tensor:
    """The raw value whose :func:`bounded_scale` is ``scale`` (for initializing parameters).

    Example:
        >>> bounded_scale(unbounded_scale(torch.tensor([0.1, 1.0, 5.0])))
        tensor([0.1000, 1.0000, 5.0000])
    """
    return torch.log(torch.expm1(scale - MIN_SCALE))


class NormalGuide(nn.Module):
    """q(z|x) = N(loc(x), diag(scale(x)^2)), sampled as z = loc + scale * eps."""

    def __init__(self, body: nn.Module, features: int, latent_dim: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(features, 2 * latent_dim)

    def base(self, h: torch.Tensor) -> dist.TorchDistribution:
        """The Normal q(z|x) from the body's features ``h``."""
        loc, raw_scale = self.head(h).chunk(2, dim=-1)
        return ReparameterizedNormal(loc, bounded_scale(raw_scale)).to_event(1)

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        return self.base(self.body(x))


class IAFGuide(NormalGuide):
    """q(z|x): z_0 ~ N(loc(x), diag(scale(x)^2)), then ``depth`` IAF steps conditioned on x.

    As in Kingma et al. (2016), the encoder also outputs a context vector c(x) (a
    linear head on its features, ``width = max(32, 4 latent_dim)`` numbers). Each
    step is Pyro's ``AffineAutoregressive`` in its numerically stable form,
    z_t = s_t * z_{t-1} + (1 - s_t) * m_t with s_t = sigmoid(...) in (0, 1) and
    (m_t, s_t) from a masked network of (z_{t-1}, c(x)) with one hidden layer of
    ``width`` units; the autoregressive order alternates between steps. Sampling is
    one parallel pass per step and stays reparameterized; log q of the guide's own
    samples reuses the cached forward pass, log q of any other z (the VampPrior
    scores such z) inverts each step with latent_dim sequential passes.

    Example:
        >>> from pyro_vae.networks import mlp_encoder
        >>> guide = IAFGuide(*mlp_encoder((1, 28, 28), [32]), latent_dim=2, depth=3)
        >>> q = guide(torch.zeros(5, 1, 28, 28))
        >>> q.batch_shape, q.event_shape, q.has_rsample, len(q.transforms)
        (torch.Size([5]), torch.Size([2]), True, 3)
    """

    def __init__(self, body: nn.Module, features: int, latent_dim: int, depth: int = 2):
        super().__init__(body, features, latent_dim)
        width = max(32, 4 * latent_dim)
        self.context = nn.Linear(features, width)
        order = torch.arange(latent_dim)
        steps = []
        with warnings.catch_warnings():
            # in 1-D an autoregressive step is an affine map of the context only; Pyro warns
            warnings.filterwarnings("ignore", "ConditionalAutoRegressiveNN input_dim = 1")
            for i in range(depth):
                arn = ConditionalAutoRegressiveNN(
                    latent_dim, width, [width], permutation=order.flip(0) if i % 2 else order
                )
                steps.append(T.ConditionalAffineAutoregressive(arn, stable=True))
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> dist.TorchDistribution:
        h = self.body(x)
        c = self.context(h)
        return dist.TransformedDistribution(self.base(h), [s.condition(c) for s in self.steps])
