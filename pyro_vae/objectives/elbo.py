"""``elbo``: Pyro's Trace_ELBO, with a fast path for :class:`pyro_vae.VAE`.

For a VAE's own ``model``/``guide`` pair the estimator is computed from the
distributions the parts return (:meth:`VAE.log_weights`), skipping Pyro's
tracing and its per-site ``.item()`` host syncs. The numbers are the same as
Trace_ELBO's for the same random draws (tested); any other model/guide pair goes
through Trace_ELBO itself.

``beta`` weighs the latent sites in model and guide alike (beta-VAE; see
:mod:`.beta`), on top of the ``kl_scale`` argument a VAE's model and guide take.

Example:
    >>> import torch
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> loss = FastTrace_ELBO()(vae, vae.guide_module())
    >>> loss(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from pyro.infer import Trace_ELBO

from .base import SurrogateLoss, checked_option
from .beta import scale_latents
from .enumerated import enumerated_elbo_loss, enumerated_pair
from .structured import plate_scale, structured_vae, vae_arguments

__all__ = ["FastTrace_ELBO"]


def _is_one(weight: float | torch.Tensor) -> bool:
    """True for a plain number 1 (a tensor weight may change under JIT or warm-up: keep it)."""
    return not torch.is_tensor(weight) and weight == 1


class FastTrace_ELBO(SurrogateLoss, Trace_ELBO):
    """Trace_ELBO (reparameterized, ``kl_scale``-weighted z site) with a VAE fast path.

    Particles are vectorized. The loss is the negative ELBO of the minibatch scaled
    to the dataset size (``num_data / batch``), like Trace_ELBO. ``beta`` multiplies
    the weight of the latent sites (1 is the plain ELBO).
    """

    path_derivative: ClassVar[bool] = False

    def __init__(self, num_particles: int = 1, beta: float = 1.0, **kwargs):
        checked_option(self, "num_particles", num_particles, minimum=1, integer=True)
        super().__init__(num_particles=num_particles, vectorize_particles=True, **kwargs)
        self.beta = checked_option(self, "beta", beta, minimum=0)

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        m2 = enumerated_pair(model, guide)
        if m2 is not None:  # the label summed exactly (see .enumerated)
            return enumerated_elbo_loss(self, m2, args, kwargs, self.beta)
        vae = structured_vae(model, guide)
        if vae is None:
            model, guide = scale_latents(model, self.beta), scale_latents(guide, self.beta)
            return self.traced_loss(model, guide, args, kwargs)
        x, num_data, kl_scale, labels = vae_arguments(vae, *args, **kwargs)
        terms = vae.log_weights(x, self.num_particles, self.path_derivative, **labels)
        weight = kl_scale * self.beta
        latent = terms.log_prior - terms.log_q
        elbo = terms.log_lik + (latent if _is_one(weight) else weight * latent)
        return elbo.sum() * (-plate_scale(x, num_data) / self.num_particles)

    def traced_loss(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> torch.Tensor:
        """The loss of any other model/guide pair: Pyro's own Trace_ELBO."""
        return Trace_ELBO.differentiable_loss(self, model, guide, *args, **kwargs)
