"""Likelihoods p(x|z): modules mapping decoder outputs to a Pyro distribution over x.

Each declares the data it needs (``support``, see :mod:`pyro_vae.data`), how many
decoder outputs it takes per pixel (``params_per_pixel``), and the ``scale`` its
log-likelihoods live on: ``binary`` (nats of a probability mass on binarized pixels),
``continuous`` (nats of a density, not comparable with masses) or ``8-bit`` (nats of
a mass over 256 levels, also reported as bits per dimension). Numbers on different
scales must never be ranked against each other.

Example:
    >>> lik = BernoulliLikelihood(data_shape=(1, 28, 28))
    >>> p = lik(torch.zeros(5, 784))
    >>> p.batch_shape, p.event_shape
    (torch.Size([5]), torch.Size([1, 28, 28]))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import pyro.distributions as dist
import torch
from torch import nn

__all__ = ["LIKELIHOODS", "Likelihood", "BernoulliLikelihood", "build_likelihood"]


class Likelihood(nn.Module):
    """Base class: knows the data shape and splits flat decoder outputs into per-pixel maps."""

    support: ClassVar[str] = "unit"
    params_per_pixel: ClassVar[int] = 1
    scale: ClassVar[str] = "continuous"
    units: ClassVar[str] = "nats (density)"

    def __init__(self, data_shape: tuple[int, ...]):
        super().__init__()
        self.data_shape = tuple(data_shape)

    @property
    def num_outputs(self) -> int:
        """How many numbers the decoder must output per datapoint."""
        return self.params_per_pixel * math.prod(self.data_shape)

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The flat decoder outputs as ``params_per_pixel`` maps shaped ``[..., *data_shape]``."""
        maps = params.unflatten(-1, (self.params_per_pixel, *self.data_shape))
        return maps.unbind(-1 - len(self.data_shape))

    def event(self, d: dist.TorchDistribution) -> dist.TorchDistribution:
        return d.to_event(len(self.data_shape))


class BernoulliLikelihood(Likelihood):
    """Bernoulli pixels on logits; the data must be binary (binarize grey images)."""

    support = "binary"
    scale = "binary"
    units = "nats"

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        (logits,) = self.split(params)
        return self.event(dist.Bernoulli(logits=logits))


@dataclass(frozen=True)
class LikelihoodSpec:
    build: Callable[..., Likelihood]
    description: str


LIKELIHOODS: dict[str, LikelihoodSpec] = {
    "bernoulli": LikelihoodSpec(
        lambda cfg, data_shape: BernoulliLikelihood(data_shape),
        "Bernoulli on logits; binary data (binarized dynamically by default); nats",
    ),
}


def build_likelihood(cfg, data_shape: tuple[int, ...]) -> Likelihood:
    """The built-in likelihood named by ``cfg.likelihood`` for data of ``data_shape``."""
    return LIKELIHOODS[cfg.likelihood].build(cfg, data_shape)
