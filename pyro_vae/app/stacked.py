"""The stacked VAE in the application: ``--latent-dim 100 50`` builds it from a Config.

Between x and z_1 the parts are the VAE's own (``--network``, ``--hidden``, ``--activation``,
``--guide``, ``--likelihood``); between consecutive layers p(z_l|z_l+1) and q(z_l+1|z_l) are
diagonal Gaussians from MLPs of ``--latent-hidden`` sizes and ``--latent-activation`` units (ReLU by
default; Burda et al. 2016 used tanh); ``--prior`` is the prior of the top layer. A VampPrior
there mixes q(z_L|u_k) along the guide's mean path
(:meth:`pyro_vae.families.StackedVAE.top_guide`).

Example:
    >>> cfg = Config(latent_dim=[8, 4], hidden=[32], latent_hidden=[16])
    >>> build_stacked_vae(cfg, (1, 28, 28)).latent_dims
    (8, 4)
"""

from __future__ import annotations

import math

from torch import nn

from ..data import data_max
from ..errors import ConfigError
from ..families.stacked import StackedVAE, TopGuide, conditional_layer
from ..parts import likelihood_contract
from .build import build_decoder, build_encoder, build_likelihood, build_prior
from .config import Config

__all__ = ["build_stacked_vae"]


def build_stacked_vae(
    cfg: Config,
    data_shape: tuple[int, ...],
    *,
    prior: nn.Module | None = None,
    likelihood: nn.Module | None = None,
) -> StackedVAE:
    """The :class:`StackedVAE` of layers ``cfg.latent_dims`` (bottom first) for ``data_shape``."""
    dims = cfg.latent_dims
    if len(dims) < 2:
        raise ConfigError(f"latent_dim: {cfg.latent_dim} is one layer; the plain vae is built")
    data_shape = tuple(data_shape)
    if likelihood is None:
        likelihood = build_likelihood(cfg, data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    bottom = cfg.replace(latent_dim=dims[0])
    encoder = build_encoder(bottom, data_shape, contract.support)
    decoder = build_decoder(bottom, data_shape, contract.num_outputs or math.prod(data_shape))
    pairs = list(zip(dims, dims[1:], strict=False))
    act = cfg.latent_activation
    guide_layers = nn.ModuleList(conditional_layer(a, cfg.latent_hidden, b, act) for a, b in pairs)
    prior_layers = [conditional_layer(b, cfg.latent_hidden, a, act) for a, b in pairs]
    if prior is None:
        top = cfg.replace(latent_dim=dims[-1])
        prior = build_prior(
            top, TopGuide(encoder, guide_layers), data_shape, data_max(contract.support)
        )
    return StackedVAE(
        encoder, decoder, prior, likelihood, guide_layers, prior_layers, data_shape=data_shape
    )
