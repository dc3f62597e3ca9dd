"""``graph``: Pyro's TraceGraph_ELBO as a differentiable loss.

Schulman et al., "Gradient Estimation Using Stochastic Computation Graphs", NeurIPS
2015; Mnih & Gregor 2014 (baselines). For reparameterized sites the estimator is
the ELBO's; for non-reparameterizable guide sites (discrete latents) it adds score-
function terms with only the downstream costs, and optional baselines, which lowers
their variance.

Pyro's TraceGraph_ELBO has no ``differentiable_loss``, so it cannot be a torch loss;
here the value is the negative ELBO and the gradient that of Pyro's surrogate (the
baseline loss included), so it trains with torch.optim and with SVI alike. It always
goes through Pyro's tracing: for a VAE with a reparameterized guide it computes the
same estimator as ``elbo``, more slowly. ``beta`` and KL warm-up apply as in ``elbo``.

Example:
    >>> import torch
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> loss = Graph_ELBO()(vae, vae.guide_module())
    >>> loss(torch.ones(3, 1, 28, 28)).requires_grad
    True
"""

from __future__ import annotations

from collections.abc import Callable

from pyro.infer import TraceGraph_ELBO

from .base import SurrogateLoss, checked_option
from .beta import scale_latents

__all__ = ["Graph_ELBO"]


class Graph_ELBO(SurrogateLoss, TraceGraph_ELBO):
    """TraceGraph_ELBO with ``differentiable_loss`` (value: -ELBO; gradient: Pyro's surrogate)."""

    def __init__(self, num_particles: int = 1, beta: float = 1.0, **kwargs):
        checked_option(self, "num_particles", num_particles, minimum=1, integer=True)
        super().__init__(num_particles=num_particles, vectorize_particles=True, **kwargs)
        self.beta = checked_option(self, "beta", beta, minimum=0)

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        model, guide = scale_latents(model, self.beta), scale_latents(guide, self.beta)
        elbo, surrogate = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        return -elbo.detach() + (surrogate - surrogate.detach())
