"""Likelihoods p(x|z): modules mapping decoder outputs to a Pyro distribution over x.

Each declares the data it needs (``support``, see :mod:`pyro_vae.data`), how many
decoder outputs it takes per pixel (``params_per_pixel``), and the ``scale`` its
log-likelihoods live on: ``binary`` (nats of a probability mass on binarized pixels),
``continuous`` (nats of a density, not comparable with masses) or ``8-bit`` (nats of
a mass over 256 levels, also reported as bits per dimension). Numbers on different
scales must never be ranked against each other.

=====================  ==========  ==========  ==============================================
name                   support     scale       parameters per pixel
=====================  ==========  ==========  ==============================================
bernoulli              binary      binary      logit
continuous-bernoulli   unit        continuous  logit
gaussian               real        continuous  mean (scale: fixed, learned or per pixel)
laplace                real        continuous  location (scale: fixed, learned or per pixel)
beta                   open-unit   continuous  two concentrations
discretized-logistic   levels      8-bit       location and scale in level units
categorical-256        levels      8-bit       256 logits
=====================  ==========  ==========  ==============================================

Example:
    >>> lik = BernoulliLikelihood(data_shape=(1, 28, 28))
    >>> p = lik(torch.zeros(5, 784))
    >>> p.batch_shape, p.event_shape
    (torch.Size([5]), torch.Size([1, 28, 28]))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .distributions import BernoulliPixels, DiscretizedLogistic, LevelsCategorical
from .parts import Likelihood

__all__ = [
    "SCALE_MODES",
    "Likelihood",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "GaussianLikelihood",
    "LaplaceLikelihood",
    "BetaLikelihood",
    "DiscretizedLogisticLikelihood",
    "CategoricalLikelihood",
    "bits_per_dim",
]

SCALE_MODES = ("fixed", "learned", "per-pixel")
MIN_PIXEL_SCALE = 1e-3  # keeps densities finite on constant pixels (MNIST's empty corners)
LEVELS = 256


def bits_per_dim(log_prob: float, data_shape: tuple[int, ...]) -> float:
    """A per-datapoint log-likelihood (nats) as bits per dimension: -log p / (D ln 2).

    Example:
        >>> bits_per_dim(-784 * math.log(2), (1, 28, 28))
        1.0
    """
    return -log_prob / (math.prod(data_shape) * math.log(2))


def _positive(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + MIN_PIXEL_SCALE


def _unpositive(value: float) -> float:
    """The raw value whose :func:`_positive` is ``value``."""
    return math.log(math.expm1(value - MIN_PIXEL_SCALE))


class BernoulliLikelihood(Likelihood):
    """Bernoulli pixels on logits; the data must be binary (binarize grey images)."""

    support = "binary"
    scale = "binary"
    units = "nats"

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        (logits,) = self.split(params)
        return BernoulliPixels(dist.Bernoulli(logits=logits), len(self.data_shape))


class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli pixels on logits (Loaiza-Ganem & Cunningham 2019); data in [0, 1].

    A proper density on [0, 1], unlike the Bernoulli applied to grey pixels.

    Example:
        >>> p = ContinuousBernoulliLikelihood((1, 2, 2))(torch.zeros(3, 4))
        >>> p.log_prob(torch.full((3, 1, 2, 2), 0.3))   # the uniform density: log 1
        tensor([0., 0., 0.])
    """

    support = "unit"

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        (logits,) = self.split(params)
        return self.event(dist.ContinuousBernoulli(logits=logits))


class LocationScaleLikelihood(Likelihood):
    """Decoder gives the location; the scale is fixed, one learned scalar, or learned per pixel.

    ``scale_value`` is the fixed scale, or where a learned one starts.
    """

    support = "real"
    family: ClassVar[Callable[..., dist.TorchDistribution]]

    def __init__(
        self, data_shape: tuple[int, ...], scale_mode: str = "learned", scale_value: float = 0.1
    ):
        super().__init__(data_shape)
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"unknown scale mode {scale_mode!r}; expected one of {SCALE_MODES}")
        if not scale_value > MIN_PIXEL_SCALE:
            raise ValueError(f"the scale must exceed {MIN_PIXEL_SCALE}, got {scale_value}")
        self.scale_mode = scale_mode
        shape = self.data_shape if scale_mode == "per-pixel" else ()
        raw = torch.full(shape, _unpositive(scale_value))
        if scale_mode == "fixed":
            self.register_buffer("raw_scale", raw, persistent=False)
        else:
            self.raw_scale = nn.Parameter(raw)

    @property
    def pixel_scale(self) -> torch.Tensor:
        """The scale of each pixel's distribution (a scalar or a ``data_shape`` map)."""
        return _positive(self.raw_scale)

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        (loc,) = self.split(params)
        return self.event(type(self).family(loc, self.pixel_scale.expand(loc.shape)))


class GaussianLikelihood(LocationScaleLikelihood):
    """Normal pixels: mean from the decoder, scale fixed, learned, or learned per pixel.

    Example:
        >>> lik = GaussianLikelihood((1, 2, 2), scale_mode="per-pixel", scale_value=0.5)
        >>> lik.pixel_scale.shape, lik(torch.zeros(3, 4)).mean.shape
        (torch.Size([1, 2, 2]), torch.Size([3, 1, 2, 2]))
    """

    family = dist.Normal


class LaplaceLikelihood(LocationScaleLikelihood):
    """Laplace pixels: location from the decoder, scale fixed, learned, or learned per pixel.

    Example:
        >>> lik = LaplaceLikelihood((1, 2, 2), scale_mode="fixed", scale_value=0.5)
        >>> list(lik.parameters()), lik(torch.zeros(3, 4)).base_dist.stddev[0, 0, 0]
        ([], tensor([0.7071, 0.7071]))
    """

    family = dist.Laplace


class BetaLikelihood(Likelihood):
    """Beta pixels; data strictly inside (0, 1) (8-bit level v becomes (v + 0.5) / 256).

    Example:
        >>> p = BetaLikelihood((1, 2, 2))(torch.zeros(3, 8))
        >>> p.mean[0, 0]   # equal concentrations: mean 1/2
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])
    """

    support = "open-unit"
    params_per_pixel = 2
    missing_fill = 0.5  # its density at 0 is 0 or infinite

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        raw_a, raw_b = self.split(params)
        return self.event(dist.Beta(_positive(raw_a), _positive(raw_b)))


class DiscretizedLogisticLikelihood(Likelihood):
    """A logistic density integrated over each of the 256 levels of 8-bit data.

    Location and scale are in level units: ``loc = 127.5 (1 + a)`` and
    ``scale = 127.5 softplus(b) + 0.1275``, with (a, b) the decoder outputs, so an
    untrained decoder starts mid-grey and wide.

    Example:
        >>> p = DiscretizedLogisticLikelihood((1, 2, 2))(torch.zeros(3, 8))
        >>> levels = torch.arange(256.0).view(256, 1, 1, 1, 1).expand(256, 3, 1, 2, 2)
        >>> p.base_dist.log_prob(levels).exp().sum(0).allclose(torch.ones(3, 1, 2, 2))
        True
    """

    support = "levels"
    params_per_pixel = 2
    scale = "8-bit"
    units = "nats (8-bit levels)"

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        raw_loc, raw_scale = self.split(params)
        half = (LEVELS - 1) / 2
        return self.event(DiscretizedLogistic(half * (1 + raw_loc), half * _positive(raw_scale)))


class CategoricalLikelihood(Likelihood):
    """A free 256-way categorical per pixel of 8-bit data (256 decoder outputs per pixel).

    The MLP decoder's last layer then has 256 x pixels outputs; the conv decoder
    outputs 256 channels, which is much smaller.

    Example:
        >>> p = CategoricalLikelihood((1, 2, 2))(torch.zeros(3, 1024))
        >>> p.batch_shape, p.event_shape, p.mean[0, 0, 0, 0]
        (torch.Size([3]), torch.Size([1, 2, 2]), tensor(127.5000))
    """

    support = "levels"
    params_per_pixel = LEVELS
    scale = "8-bit"
    units = "nats (8-bit levels)"

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        logits = params.unflatten(-1, (LEVELS, *self.data_shape)).movedim(
            -1 - len(self.data_shape), -1
        )
        return self.event(LevelsCategorical(logits=logits))
