"""Count likelihoods p(x|z): Poisson, negative binomial and zero-inflated negative binomial.

For data whose values are counts (gene expression, word counts, the 0..16 pixels of
``digits``): support ``counts`` (non-negative integers, kept as they are and checked by
:func:`pyro_vae.data.prepare_data`) and scale ``counts`` (nats of a probability mass on
counts: comparable across these three, never with binary, density or 8-bit numbers).

The decoder gives each feature's mean through a softplus, ``mu = softplus(a) + 1e-6``
(finite and positive for any output a; the floor keeps log mu finite). The negative
binomial has mean mu and variance ``mu + mu^2 / theta``; its concentration theta (the
inverse dispersion, Pyro's ``total_count`` and ``GammaPoisson`` concentration) is learned
per feature, as scVI's ``dispersion="gene"``; theta -> infinity is the Poisson. The
zero-inflated NB adds a structural zero with probability pi (the gate): by default one
gate per feature *and datapoint*, a second decoder output per feature as in scVI
(``gate="datapoint"``), or one learned gate per feature shared by all datapoints
(``gate="feature"``); either starts at the logit ``gate_logit``, -2 (12 % zeros added).
The built-in encoders see counts as log(1 + x) (see :func:`pyro_vae.networks.input_transform`).
Training starts a built-in model at the data: each decoded mean at its feature's training
mean (:meth:`CountLikelihood.raw_for_mean`) and each concentration at its moment estimate
(:func:`concentration_from_data`), so the model starts near independent per-feature counts.

=====================  ========  ========  ============================================
name                   support   scale     parameters per feature
=====================  ========  ========  ============================================
poisson                counts    counts    mean (decoded)
negative-binomial      counts    counts    mean (decoded); concentration (learned)
zinb                   counts    counts    mean and gate logit (decoded); concentration
=====================  ========  ========  ============================================

Example:
    >>> lik = NegativeBinomialLikelihood((3,), concentration=2.0)
    >>> p = lik(torch.zeros(5, 3))
    >>> p.batch_shape, p.event_shape, lik.concentration.tolist()
    (torch.Size([5]), torch.Size([3]), [2.0, 2.0, 2.0])
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .parts import Likelihood

__all__ = [
    "GATES",
    "MIN_MEAN",
    "MAX_START_CONCENTRATION",
    "MIN_START_CONCENTRATION",
    "CountLikelihood",
    "concentration_from_data",
    "PoissonLikelihood",
    "NegativeBinomialLikelihood",
    "ZeroInflatedNegativeBinomialLikelihood",
]

MIN_MEAN = 1e-6  # keeps every decoded mean positive, and its log finite
GATES = ("datapoint", "feature")
MIN_START_CONCENTRATION = 0.01  # a start for the most overdispersed features
MAX_START_CONCENTRATION = 1e3  # a start for features as spread as a Poisson or less: ~Poisson


def concentration_from_data(x: torch.Tensor) -> torch.Tensor:
    """Where each feature's negative binomial concentration theta starts: the method of
    moments on the observed training counts of ``x`` (``[N, *data_shape]``, NaN = missing),
    theta = mean^2 / (variance - mean), clamped to [0.01, 1000], one per feature (flattened);
    a feature no more spread
    than a Poisson (variance <= mean: all zeros, or underdispersed) starts at 1000, where
    the NB is a Poisson to within 0.1 % of its variance at mean 1.

    The spread about each feature's mean is the most a decoder that ignores z leaves, so
    this theta is the least the model needs: a start at 1 on Poisson(3) counts has variance
    12 for 3, and 30 default epochs of learning rate 1e-3 moved it too little to recover.

    Example:
        >>> x = torch.tensor([[0.0, 2.0], [4.0, 2.0], [8.0, 2.0]])  # mean 4, var 32/3; constant
        >>> concentration_from_data(x)
        tensor([   2.4000, 1000.0000])
    """
    x = x.detach().double().flatten(1)
    mean = x.nanmean(0)
    variance = ((x - mean) ** 2).nanmean(0)
    excess = variance - mean
    theta = torch.where(excess > 0, mean**2 / excess, torch.full_like(mean, math.inf))
    theta = theta.nan_to_num(MAX_START_CONCENTRATION)  # a feature never observed
    theta = theta.clamp(MIN_START_CONCENTRATION, MAX_START_CONCENTRATION)
    return theta.float()


class CountLikelihood(Likelihood):
    """A likelihood of non-negative integer counts; its decoder outputs start with the means."""

    support = "counts"
    scale = "counts"
    units = "nats (counts)"

    @staticmethod
    def mean_of(raw: torch.Tensor) -> torch.Tensor:
        """The mean count of each feature from a raw decoder output: ``softplus(raw) + 1e-6``."""
        return F.softplus(raw) + MIN_MEAN

    @staticmethod
    def raw_for_mean(mean: torch.Tensor) -> torch.Tensor:
        """The raw decoder output whose :meth:`mean_of` is ``mean`` (at least 0.001: a
        feature that is always 0 starts at a mean of 0.001), finite for any mean.

        Example:
            >>> raw = CountLikelihood.raw_for_mean(torch.tensor([0.0, 3.0, 1e6]))
            >>> CountLikelihood.mean_of(raw)
            tensor([1.0000e-03, 3.0000e+00, 1.0000e+06])
        """
        target = mean.double().clamp(min=1e-3) - MIN_MEAN
        return (target + torch.log(-torch.expm1(-target))).to(mean.dtype)  # softplus^-1


class PoissonLikelihood(CountLikelihood):
    """Poisson counts with decoded means (variance = mean: no overdispersion).

    Example:
        >>> p = PoissonLikelihood((2,))(torch.zeros(1, 2))
        >>> p.log_prob(torch.tensor([[0.0, 0.0]]))   # 2 log e^{-softplus(0)}
        tensor([-1.3863])
    """

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        (raw,) = self.split(params)
        return self.event(dist.Poisson(self.mean_of(raw)))


class NegativeBinomialLikelihood(CountLikelihood):
    """Negative binomial counts: decoded mean mu, learned concentration theta per feature.

    Variance ``mu + mu^2 / theta``; ``concentration`` is where theta starts (the same for
    every feature). Scored by Pyro's ``NegativeBinomial(total_count=theta, logits=log mu -
    log theta)``.

    Example:
        >>> lik = NegativeBinomialLikelihood((1, 2, 2))
        >>> round(lik(torch.zeros(3, 4)).variance[0, 0, 0, 0].item(), 4)   # mu + mu^2, mu = log 2
        1.1736
    """

    def __init__(self, data_shape: tuple[int, ...], concentration: float = 1.0):
        super().__init__(data_shape)
        if not concentration > 0:
            raise ConfigError(
                f"{type(self).__name__}: concentration must be positive (where theta starts), "
                f"got {concentration}"
            )
        self.log_concentration = nn.Parameter(torch.full(self.data_shape, math.log(concentration)))

    @property
    def concentration(self) -> torch.Tensor:
        """theta of each feature (``data_shape``): the inverse dispersion, learned."""
        return self.log_concentration.exp()

    @torch.no_grad()
    def set_concentration(self, theta: torch.Tensor) -> None:
        """Start theta at ``theta`` (positive, of ``data_shape``), e.g.
        :func:`concentration_from_data` of the training counts."""
        self.log_concentration.copy_(theta.reshape(self.data_shape).log())

    def negative_binomial(self, raw_mean: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pyro's ``total_count`` and ``logits`` for means ``mean_of(raw_mean)``."""
        log_theta = self.log_concentration.expand(raw_mean.shape)
        logits = self.mean_of(raw_mean).log() - log_theta
        return {"total_count": log_theta.exp(), "logits": logits}

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        (raw,) = self.split(params)
        return self.event(dist.NegativeBinomial(**self.negative_binomial(raw)))


class ZeroInflatedNegativeBinomialLikelihood(NegativeBinomialLikelihood):
    """Zero-inflated NB: a zero with probability pi (the gate), else NB(mu, theta).

    ``gate="datapoint"`` (the default, scVI's): the decoder outputs a gate logit per feature
    beside each mean, so every datapoint has its own gates. ``gate="feature"``: one learned
    gate logit per feature, shared by every datapoint, starting at ``gate_logit``.

    Example:
        >>> lik = ZeroInflatedNegativeBinomialLikelihood((2,), gate="feature", gate_logit=0.0)
        >>> lik.num_outputs, round(lik(torch.zeros(4, 2)).mean[0, 0].item(), 4)  # softplus(0) / 2
        (2, 0.3466)
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        concentration: float = 1.0,
        gate: str = "datapoint",
        gate_logit: float = -2.0,
    ):
        super().__init__(data_shape, concentration)
        if gate not in GATES:
            raise ConfigError(
                f"{type(self).__name__}: gate {gate!r} is not one of {', '.join(GATES)}"
            )
        self.gate = gate
        self.gate_logit = float(gate_logit)
        self.params_per_pixel = 2 if gate == "datapoint" else 1
        if gate == "feature":
            self.gate_logits = nn.Parameter(torch.full(self.data_shape, float(gate_logit)))

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        if self.gate == "datapoint":
            raw, gate_logits = self.split(params)
        else:
            (raw,) = self.split(params)
            gate_logits = self.gate_logits.expand(raw.shape)
        nb = self.negative_binomial(raw)
        return self.event(dist.ZeroInflatedNegativeBinomial(**nb, gate_logits=gate_logits))

    def extra_repr(self) -> str:
        return f"gate={self.gate}"
