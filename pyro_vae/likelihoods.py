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
from .standardize import Standardize

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
    "scale_from_data",
]

SCALE_MODES = ("fixed", "learned", "per-pixel")
MIN_PIXEL_SCALE = 1e-3  # keeps densities finite on constant pixels (MNIST's empty corners)
LEVELS = 256
DEFAULT_SCALE = 0.1  # where a scale starts unless told: suits pixels in [0, 1], not other data
# A scale started from data lies in [MIN_START, MAX_START]; a per-pixel one is at least
# PIXEL_FLOOR times the overall spread (a pixel constant in the training data, such as
# MNIST's corners, would otherwise start with a near-infinite density and gradient).
MIN_START, MAX_START, PIXEL_FLOOR = 10 * MIN_PIXEL_SCALE, 1e6, 0.1


def bits_per_dim(log_prob: float, data_shape: tuple[int, ...]) -> float:
    """A per-datapoint log-likelihood (nats) as bits per dimension: -log p / (D ln 2).

    Example:
        >>> bits_per_dim(-784 * math.log(2), (1, 28, 28))
        1.0
    """
    return -log_prob / (math.prod(data_shape) * math.log(2))


def scale_from_data(x: torch.Tensor, per_pixel: bool = False) -> torch.Tensor:
    """Where a likelihood's scale should start on training data ``x`` (``[N, *data_shape]``):
    the standard deviation of its observed entries (NaN = missing, ignored).

    One number (a 0-d tensor): the root mean of the pixels' variances about their own means,
    the spread one shared scale has around a location that starts at each pixel's mean (see
    ``start_location_from_data`` in ``pyro_vae.app.build``), not the spread of all entries
    pooled, which a table's offsets between features inflate. Or with ``per_pixel`` one
    per pixel (a ``data_shape`` tensor; a pixel never observed takes the overall standard
    deviation of all entries). Values are clamped into [0.01, 1e6], each pixel's to at
    least 0.1 times that overall standard deviation.

    Example:
        >>> x = torch.tensor([[0.0, 10.0], [2.0, float("nan")], [4.0, 30.0]])
        >>> scale_from_data(x, per_pixel=True)
        tensor([ 1.6330, 10.0000])
        >>> scale_from_data(x)  # sqrt((1.633^2 + 10^2) / 2), though all entries spread 11.8
        tensor(7.1647)
        >>> lik = GaussianLikelihood((2,), scale_value=scale_from_data(x))
    """
    values = x.detach().float()
    observed = values[~torch.isnan(values)]
    overall = observed.std(correction=0) if observed.numel() else values.new_tensor(1.0)
    overall = overall.nan_to_num(MIN_START, MAX_START, MAX_START).clamp(MIN_START, MAX_START)
    variance = (values - values.nanmean(0, keepdim=True)).square().nanmean(0)
    if not per_pixel:
        pooled = variance.nanmean().sqrt() if bool(torch.isfinite(variance).any()) else overall
        return pooled.nan_to_num(MIN_START, MAX_START, MAX_START).clamp(MIN_START, MAX_START)
    spread = variance.sqrt().nan_to_num(float(overall), MAX_START, MAX_START)
    return spread.clamp(max(PIXEL_FLOOR * float(overall), MIN_START), MAX_START)


def _positive(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + MIN_PIXEL_SCALE


def _unpositive(value: torch.Tensor) -> torch.Tensor:
    """The raw values whose :func:`_positive` is ``value`` (for any value softplus can
    reach; float64 arithmetic, float32 result)."""
    y = value.double() - MIN_PIXEL_SCALE
    small = y.clamp(max=30)
    return torch.where(y < 30, small.expm1().log(), y + (-y).expm1().neg().log()).float()


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

    ``scale_value`` is the fixed scale, or where a learned one starts: a number, or a
    tensor (0-d; or, per pixel, of ``data_shape``, as :func:`scale_from_data` gives).
    The default, 0.1, suits pixels in [0, 1]; ``pyro-vae train`` starts the scale from the
    training data's spread unless ``likelihood_scale_value`` is set; from Python do the
    same with ``scale_value=scale_from_data(x_train, per_pixel=...)``.

    With ``standardize`` it holds a fixed per-feature :class:`~pyro_vae.standardize.Standardize`
    (``self.standardization``, identity until set): the decoder's output and the scale are
    then in units of each feature's standard deviation about its mean, and the distribution
    is ``family(mean + std * output, std * scale)``, a density of x in the data's own
    units. ``pyro-vae train`` sets it from the training data (so a table's units no longer
    matter); from Python, ``lik.standardization.set(*standardization_from_data(x_train))``.

    Example:
        >>> lik = GaussianLikelihood((2,), scale_mode="fixed", scale_value=1.0, standardize=True)
        >>> lik.standardization.set(torch.tensor([0.0, 500.0]), torch.tensor([1.0, 100.0]))
        >>> p = lik(torch.zeros(1, 2))
        >>> p.mean, p.stddev.round(decimals=2)
        (tensor([[  0., 500.]]), tensor([[  1., 100.]]))
    """

    support = "real"
    family: ClassVar[Callable[..., dist.TorchDistribution]]

    def __init__(
        self,
        data_shape: tuple[int, ...],
        scale_mode: str = "learned",
        scale_value: float | torch.Tensor = DEFAULT_SCALE,
        standardize: bool = False,
    ):
        super().__init__(data_shape)
        self.standardization = Standardize(self.data_shape) if standardize else None
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"unknown scale mode {scale_mode!r}; expected one of {SCALE_MODES}")
        self.scale_mode = scale_mode
        shape = self.data_shape if scale_mode == "per-pixel" else ()
        raw = torch.zeros(shape)
        if scale_mode == "fixed":
            self.register_buffer("raw_scale", raw, persistent=False)
        else:
            self.raw_scale = nn.Parameter(raw)
        self.set_scale(scale_value)

    @torch.no_grad()
    def set_scale(self, value: float | torch.Tensor) -> None:
        """Set the scale (a fixed one, or where a learned one is now) to ``value``: a number,
        or a tensor that broadcasts to the scale's shape (``()``, or ``data_shape`` per pixel).

        Example:
            >>> lik = GaussianLikelihood((2,), scale_mode="per-pixel")
            >>> lik.set_scale(torch.tensor([0.5, 2.0]))
            >>> lik.pixel_scale.detach()
            tensor([0.5000, 2.0000])
        """
        shape = self.raw_scale.shape
        value = torch.as_tensor(value).detach().to("cpu", torch.float64)
        if torch.broadcast_shapes(value.shape, shape) != shape:
            raise ValueError(
                f"a scale of shape {tuple(value.shape)} does not fit the {self.scale_mode} "
                f"scale's shape {tuple(shape)}"
            )
        if not bool((value > MIN_PIXEL_SCALE).all() & torch.isfinite(value).all()):
            shown = f", got {float(value)}" if value.numel() == 1 else ""
            raise ValueError(f"the scale must be finite and exceed {MIN_PIXEL_SCALE}{shown}")
        self.raw_scale.copy_(_unpositive(value).expand(shape))

    @property
    def pixel_scale(self) -> torch.Tensor:
        """The scale of each pixel's distribution (a scalar or a ``data_shape`` map)."""
        return _positive(self.raw_scale)

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        (loc,) = self.split(params)
        scale = self.pixel_scale.expand(loc.shape)
        if self.standardization is not None:
            loc, scale = self.standardization.undo(loc), self.standardization.std * scale
        return self.event(type(self).family(loc, scale))


class GaussianLikelihood(LocationScaleLikelihood):
    """Normal pixels: mean from the decoder, scale fixed, learned, or learned per pixel.

    The scale starts at ``scale_value``, by default 0.1 (pixels in [0, 1]); ``pyro-vae
    train`` starts it at the training data's standard deviation instead (per pixel for a
    per-pixel scale) unless ``likelihood_scale_value`` is set. From Python, for data of
    another scale: ``GaussianLikelihood((10,), scale_value=scale_from_data(x_train))``.

    Example:
        >>> lik = GaussianLikelihood((1, 2, 2), scale_mode="per-pixel", scale_value=0.5)
        >>> lik.pixel_scale.shape, lik(torch.zeros(3, 4)).mean.shape
        (torch.Size([1, 2, 2]), torch.Size([3, 1, 2, 2]))
    """

    family = dist.Normal


class LaplaceLikelihood(LocationScaleLikelihood):
    """Laplace pixels: location from the decoder, scale fixed, learned, or learned per pixel.

    The scale starts as :class:`GaussianLikelihood`'s does (``scale_value``, default 0.1;
    ``pyro-vae train`` starts it from the data's standard deviation unless told).

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
