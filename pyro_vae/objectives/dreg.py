"""``dreg``: doubly reparameterized gradients of the importance-weighted bound.

Tucker, Lawson, Gu & Maddison, "Doubly Reparameterized Gradient Estimators for
Monte Carlo Objectives", ICLR 2019 (arXiv 2018).

The value is the IWAE bound L_k. The model's parameters get the IWAE gradient
sum_i w~_i d log w_i / d theta (w~ the normalized weights). The guide's parameters get
sum_i w~_i^2 (d log w_i / d z_i)(d z_i / d phi), with log w_i evaluated with phi held
fixed: the same expectation as the IWAE gradient, without its score term, so the
signal-to-noise ratio no longer falls as k grows.

One backward pass computes both: log q uses the path derivative
(:func:`pyro_vae.vae.path_log_prob`), which gives the bound's gradient
w~_i d log w_i / d z_i at each z_i, and a hook multiplies the gradient flowing into
z_i by the detached w~_i once more. Parameters shared by model and guide (a VampPrior's
encoder) get the model's IWAE term plus the guide's doubly reparameterized term.

Limits: needs a reparameterizable guide; beta and KL warm-up are refused (as for
``iwae``); every sample site must be inside ``pyro.plate("data")``.

Example:
    >>> import torch
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> x = torch.ones(3, 1, 28, 28)
    >>> _ = torch.manual_seed(0); a = DReG_ELBO(k=4)(vae, vae.guide_module())(x)
    >>> _ = torch.manual_seed(0); b = IWAE_ELBO(k=4)(vae, vae.guide_module())(x)
    >>> bool(torch.allclose(a, b))  # same bound; only the guide's gradient differs
    True
"""

from __future__ import annotations

import torch

from .base import Latents
from .iwae import IWAE_ELBO

__all__ = ["DReG_ELBO"]


class DReG_ELBO(IWAE_ELBO):
    """The IWAE bound with doubly reparameterized gradients for the guide."""

    name = "dreg"
    path_derivative = True

    def bound_loss(self, log_w: torch.Tensor, latents: Latents) -> torch.Tensor:
        if torch.is_grad_enabled():
            normalized = torch.softmax(log_w.detach(), dim=1)
            for z, shape in latents:
                if z.requires_grad:
                    z.register_hook(_scaled_by(normalized.reshape(shape)))
        return super().bound_loss(log_w, latents)


def _scaled_by(weights: torch.Tensor):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * weights

    return hook
