"""Build a VAE from a Config, with any part replaced by your own module.

Example:
    >>> import torch, pyro.distributions as dist
    >>> class WidePrior(torch.nn.Module):
    ...     def forward(self):
    ...         return dist.Normal(torch.zeros(2), 3 * torch.ones(2)).to_event(1)
    >>> vae = build_vae(Config(latent_dim=2, hidden=[32]), (1, 28, 28), prior=WidePrior())
    >>> vae.prior().stddev
    tensor([3., 3.])
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import data_max
from ..errors import ConfigError
from ..networks import with_input_scale
from ..priors import VampPrior
from ..vae import VAE
from .config import Config
from .registry import GUIDES, LIKELIHOODS, NETWORKS, PRIORS

__all__ = ["build_vae", "build_likelihood", "build_encoder", "build_decoder", "build_prior"]


def build_vae(
    cfg: Config,
    data_shape: tuple[int, ...],
    *,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    prior: nn.Module | None = None,
    likelihood: nn.Module | None = None,
) -> VAE:
    """A :class:`VAE` for data of ``data_shape`` from the built-ins named in ``cfg``.

    Any part given as a keyword replaces the built-in; no registry is involved.
    The built-in encoder sees 8-bit levels divided by 255 when the likelihood
    models levels (``support == "levels"``); the VampPrior gets the encoder.
    A user likelihood may declare ``num_outputs`` (decoder outputs per datapoint);
    otherwise the decoder outputs one number per pixel.
    """
    data_shape = tuple(data_shape)
    if likelihood is None:
        likelihood = build_likelihood(cfg, data_shape)
    largest = data_max(getattr(likelihood, "support", "real"))
    if encoder is None:
        encoder = build_encoder(cfg, data_shape, 1.0 / largest)
    if decoder is None:
        outputs = getattr(likelihood, "num_outputs", None) or int(torch.Size(data_shape).numel())
        decoder = build_decoder(cfg, data_shape, outputs)
    if prior is None:
        prior = build_prior(cfg, encoder, data_shape, largest)
    if isinstance(prior, VampPrior) and prior.encoder is not encoder:
        raise ConfigError(
            "the VampPrior holds another encoder than this VAE's: its components would not be "
            "this model's posteriors and that encoder would not train; build it with "
            "VampPrior(encoder, ...) and pass the same encoder=encoder"
        )
    return VAE(encoder, decoder, prior, likelihood, data_shape=data_shape)


def build_likelihood(cfg: Config, data_shape: tuple[int, ...]) -> nn.Module:
    """The built-in likelihood named by ``cfg.likelihood`` for data of ``data_shape``."""
    return LIKELIHOODS[cfg.likelihood].build(cfg, data_shape)


def build_encoder(cfg: Config, data_shape: tuple[int, ...], input_scale: float = 1.0) -> nn.Module:
    """The built-in guide ``cfg.guide`` on the built-in network body ``cfg.network``."""
    body, features = NETWORKS[cfg.network].encoder(data_shape, list(cfg.hidden))
    return GUIDES[cfg.guide].build(cfg, with_input_scale(body, input_scale), features)


def build_decoder(cfg: Config, data_shape: tuple[int, ...], outputs: int) -> nn.Module:
    """The built-in decoder network ``cfg.network`` with ``outputs`` numbers per datapoint."""
    return NETWORKS[cfg.network].decoder(cfg.latent_dim, data_shape, list(cfg.hidden), outputs)


def build_prior(
    cfg: Config, encoder: nn.Module, data_shape: tuple[int, ...], data_max: float = 1.0
) -> nn.Module:
    """The built-in prior ``cfg.prior``; the VampPrior gets ``encoder`` and ``data_max``."""
    return PRIORS[cfg.prior].build(cfg, encoder, data_shape, data_max)
