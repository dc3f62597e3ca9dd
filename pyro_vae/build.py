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

from .config import Config
from .data import data_max
from .errors import ConfigError
from .guides import build_guide
from .likelihoods import build_likelihood
from .networks import build_decoder, build_encoder_body
from .priors import VampPrior, build_prior
from .vae import VAE

__all__ = ["build_vae"]


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
        body, features = build_encoder_body(cfg.network, data_shape, cfg.hidden, 1.0 / largest)
        encoder = build_guide(cfg, body, features)
    if decoder is None:
        outputs = getattr(likelihood, "num_outputs", None) or int(torch.Size(data_shape).numel())
        decoder = build_decoder(cfg.network, cfg.latent_dim, data_shape, cfg.hidden, outputs)
    if prior is None:
        prior = build_prior(cfg, encoder, data_shape, largest)
    if isinstance(prior, VampPrior) and prior.encoder is not encoder:
        raise ConfigError(
            "the VampPrior holds another encoder than this VAE's: its components would not be "
            "this model's posteriors and that encoder would not train; build it with "
            "VampPrior(encoder, ...) and pass the same encoder=encoder"
        )
    vae = VAE(encoder=encoder, decoder=decoder, prior=prior, likelihood=likelihood)
    check_shapes(vae, data_shape)
    return vae


def check_shapes(vae: VAE, data_shape: tuple[int, ...]) -> None:
    """Run a batch of 2 through every part; raise ConfigError naming the part that does not fit."""
    x = torch.zeros(2, *data_shape)
    with torch.no_grad():
        p_z = vae.prior()
        q_z = vae.encoder(x)
        if q_z.event_shape != p_z.event_shape or len(p_z.event_shape) != 1:
            raise ConfigError(
                f"the encoder's q(z|x) has event shape {tuple(q_z.event_shape)} but the prior's "
                f"p(z) has {tuple(p_z.event_shape)}; both must be (latent_dim,)"
            )
        if q_z.batch_shape != (2,):
            raise ConfigError(
                f"the encoder's q(z|x) for a batch of 2 has batch shape {tuple(q_z.batch_shape)}; "
                "it must be (2,): declare the latent dimension as an event dimension (.to_event(1))"
            )
        p_x = vae.likelihood(vae.decoder(q_z.sample()))
        if tuple(p_x.event_shape) != data_shape or p_x.batch_shape != (2,):
            raise ConfigError(
                f"p(x|z) has batch shape {tuple(p_x.batch_shape)} and event shape "
                f"{tuple(p_x.event_shape)}; expected (2,) and the data shape {data_shape}"
            )
