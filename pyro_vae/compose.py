"""Assemble a VAE from typed arguments: the default parts, any of them replaced by yours.

The core's builder: typed arguments, no config, no names. (The command line's
``Config`` is turned into parts by :func:`pyro_vae.app.build.build_vae`.)

Example:
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[64])
    >>> vae.sample(3).shape
    torch.Size([3, 1, 28, 28])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from .guides import NormalGuide
from .likelihoods import BernoulliLikelihood
from .networks import check_sizes, mlp_decoder, mlp_encoder, with_input_transform
from .parts import likelihood_contract
from .priors import StandardNormalPrior
from .vae import VAE

__all__ = ["mlp_vae"]


def mlp_vae(
    data_shape: Sequence[int],
    latent_dim: int = 10,
    hidden: Sequence[int] = (400,),
    *,
    likelihood: nn.Module | None = None,
    prior: nn.Module | None = None,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    activation: str = "relu",
) -> VAE:
    """A VAE with MLP networks of ``activation`` units (relu, softplus or tanh), a Normal
    guide, N(0, I) and a Bernoulli likelihood by default.

    Any part given replaces the default; the parts are checked against their contracts
    (:mod:`pyro_vae.parts`) before the VAE is returned.
    """
    check_sizes(data_shape=data_shape, latent_dim=latent_dim, hidden=hidden)
    data_shape = tuple(data_shape)
    likelihood = likelihood if likelihood is not None else BernoulliLikelihood(data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    if encoder is None:
        body, features = mlp_encoder(data_shape, hidden, activation)
        body = with_input_transform(body, contract.support)
        encoder = NormalGuide(body, features, latent_dim)
    if decoder is None:
        outputs = contract.num_outputs or math.prod(data_shape)
        decoder = mlp_decoder(latent_dim, data_shape, hidden, outputs, activation)
    if prior is None:
        prior = StandardNormalPrior(latent_dim)
    return VAE(encoder, decoder, prior, likelihood, data_shape=data_shape)
