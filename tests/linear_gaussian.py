"""A linear-Gaussian VAE whose marginal likelihood and exact posterior are known in closed form.

p(z) = N(0, I_d), p(x|z) = N(W z + b, noise^2 I_D) with orthogonal columns in W, so
p(x) = N(b, W W^T + noise^2 I) and the exact posterior has a diagonal covariance
that a diagonal Normal guide can represent.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae import VAE
from pyro_vae.priors import StandardNormalPrior


class LinearEncoder(nn.Module):
    def __init__(self, data_dim: int, latent_dim: int):
        super().__init__()
        self.loc = nn.Linear(data_dim, latent_dim)
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, x):
        loc = self.loc(x)
        return dist.Normal(loc, self.log_scale.exp().expand_as(loc)).to_event(1)


class GaussianNoise(nn.Module):
    def __init__(self, noise: float):
        super().__init__()
        self.noise = noise

    def forward(self, mean):
        return dist.Normal(mean, self.noise).to_event(1)


class LinearGaussian:
    """The VAE, its data and its exact log p(x); the guide starts at the exact posterior."""

    def __init__(self, data_dim=4, latent_dim=2, noise=0.5, seed=0):
        generator = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(data_dim, latent_dim, generator=generator))
        strengths = torch.linspace(1.5, 0.8, latent_dim)
        self.W = q * strengths
        self.b = torch.randn(data_dim, generator=generator)
        self.noise = noise
        decoder = nn.Linear(latent_dim, data_dim)
        encoder = LinearEncoder(data_dim, latent_dim)
        with torch.no_grad():
            decoder.weight.copy_(self.W)
            decoder.bias.copy_(self.b)
            post_var = 1.0 / (1.0 + strengths**2 / noise**2)
            gain = post_var[:, None] * self.W.T / noise**2
            encoder.loc.weight.copy_(gain)
            encoder.loc.bias.copy_(-gain @ self.b)
            encoder.log_scale.copy_(0.5 * post_var.log())
        self.vae = VAE(encoder, decoder, StandardNormalPrior(latent_dim), GaussianNoise(noise))

    def marginal(self) -> dist.MultivariateNormal:
        cov = self.W @ self.W.T + self.noise**2 * torch.eye(len(self.b))
        return dist.MultivariateNormal(self.b, cov)

    def data(self, n: int, seed: int = 1) -> torch.Tensor:
        torch.manual_seed(seed)
        return self.marginal().sample((n,))

    def perturb_guide(self, amount: float, seed: int = 2) -> None:
        """Move the guide away from the exact posterior by Gaussian noise of size ``amount``."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.vae.encoder.parameters():
                p.add_(amount * torch.randn(p.shape, generator=generator))

    def encoder_parameters(self) -> list[torch.Tensor]:
        return list(self.vae.encoder.parameters())

    def decoder_parameters(self) -> list[torch.Tensor]:
        return list(self.vae.decoder.parameters())
