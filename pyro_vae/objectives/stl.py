"""``stl``: the sticking-the-landing (path-derivative) gradient of the ELBO.

Roeder, Wu & Duvenaud, "Sticking the Landing: Simple, Lower-Variance Gradient
Estimators for Variational Inference", NeurIPS 2017.

The reparameterized ELBO gradient with respect to the guide's parameters phi has two
parts: the path through z = g(eps, phi) and the score term -d log q_phi(z)/d phi, whose
expectation is zero. STL drops the score term by evaluating log q with phi held fixed
(:func:`pyro_vae.vae.path_log_prob`), so the gradient has the same expectation and a
variance that vanishes as q approaches the exact posterior. The value of the loss and
the gradients of the model's parameters are exactly those of ``elbo``.

Limits: it needs a reparameterizable guide, and its variance is not lower than the
standard estimator's when q is far from the posterior. For a flow guide, evaluating
log q at a sample costs an inverse pass of the flow. ``beta`` and KL warm-up apply
as in ``elbo``.

Example:
    >>> import torch
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> x = torch.ones(3, 1, 28, 28)
    >>> _ = torch.manual_seed(0); a = STL_ELBO()(vae, vae.guide_module())(x)
    >>> _ = torch.manual_seed(0); b = FastTrace_ELBO()(vae, vae.guide_module())(x)
    >>> bool(torch.allclose(a, b))  # same value; only the guide's gradient differs
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .elbo import FastTrace_ELBO
from .traces import traced_elbo

__all__ = ["STL_ELBO"]


class STL_ELBO(FastTrace_ELBO):
    """The ELBO with the sticking-the-landing gradient for the guide."""

    path_derivative = True

    def traced_loss(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> torch.Tensor:
        elbo = traced_elbo(
            self, model, guide, args, kwargs, self.num_particles, "stl", path_derivative=True
        )
        return -elbo
