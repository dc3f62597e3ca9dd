"""A two-layer linear-Gaussian VAE (z2 -> z1 -> x) with a closed-form marginal and exact guide.

p(z2) = N(0, I), p(z1|z2) = N(A z2 + c, s1^2 I), p(x|z1) = N(W z1 + b, s0^2 I), with A a
scaled identity block and W orthogonal columns times strengths, so that
p(x) = N(W c + b, W (A A^T + s1^2 I) W^T + s0^2 I) and both exact conditionals of the
guide's order, p(z1|x) and p(z2|z1, x) = p(z2|z1), are diagonal Gaussians that the
stacked VAE's guide q(z1|x) q(z2|z1) represents exactly. The guide starts there.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from linear_gaussian import GaussianNoise, LinearEncoder
from torch import nn

from pyro_vae.families.stacked import StackedVAE
from pyro_vae.priors import StandardNormalPrior


class LinearGaussianStack:
    """The stacked VAE, its data and its exact log p(x)."""

    def __init__(self, data_dim=5, dims=(3, 2), s0=0.5, s1=0.6, seed=0):
        d1, d2 = dims
        generator = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(data_dim, d1, generator=generator))
        strengths = torch.linspace(1.5, 0.8, d1)
        self.W, self.b = q * strengths, torch.randn(data_dim, generator=generator)
        self.A = torch.zeros(d1, d2)
        self.A[range(d2), range(d2)] = torch.linspace(1.2, 0.7, d2)
        self.c = torch.randn(d1, generator=generator)
        self.s0, self.s1 = s0, s1
        decoder, down = nn.Linear(d1, data_dim), nn.Linear(d2, d1)
        encoder, up = LinearEncoder(data_dim, d1), LinearEncoder(d1, d2)
        prior_var_1 = (self.A**2).sum(1) + s1**2  # diagonal of A A^T + s1^2 I
        post_var_1 = 1.0 / (1.0 / prior_var_1 + strengths**2 / s0**2)
        post_var_2 = 1.0 / (1.0 + (self.A**2).sum(0) / s1**2)
        with torch.no_grad():
            decoder.weight.copy_(self.W)
            decoder.bias.copy_(self.b)
            down.weight.copy_(self.A)
            down.bias.copy_(self.c)
            gain = post_var_1[:, None] * self.W.T / s0**2
            encoder.loc.weight.copy_(gain)
            encoder.loc.bias.copy_(post_var_1 * self.c / prior_var_1 - gain @ self.b)
            encoder.log_scale.copy_(0.5 * post_var_1.log())
            up_gain = post_var_2[:, None] * self.A.T / s1**2
            up.loc.weight.copy_(up_gain)
            up.loc.bias.copy_(-up_gain @ self.c)
            up.log_scale.copy_(0.5 * post_var_2.log())
        self.vae = StackedVAE(
            encoder,
            decoder,
            StandardNormalPrior(d2),
            GaussianNoise(s0),
            [up],
            [nn.Sequential(down, GaussianNoise(s1))],
        )

    def marginal(self) -> dist.MultivariateNormal:
        cov_1 = self.A @ self.A.T + self.s1**2 * torch.eye(len(self.c))
        cov = self.W @ cov_1 @ self.W.T + self.s0**2 * torch.eye(len(self.b))
        return dist.MultivariateNormal(self.W @ self.c + self.b, cov)

    def data(self, n: int, seed: int = 1) -> torch.Tensor:
        torch.manual_seed(seed)
        return self.marginal().sample((n,))

    def guide_parameters(self) -> list[torch.Tensor]:
        return [*self.vae.encoder.parameters(), *self.vae.guide_layers.parameters()]

    def model_parameters(self) -> list[torch.Tensor]:
        return [*self.vae.decoder.parameters(), *self.vae.prior_layers.parameters()]

    def perturb_guide(self, amount: float, seed: int = 2) -> None:
        """Move the guide away from the exact posterior by Gaussian noise of size ``amount``."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.guide_parameters():
                p.add_(amount * torch.randn(p.shape, generator=generator))
