"""``analytic-kl``: the ELBO with KL(q(z|x) || p(z)) in closed form where one is known.

Pyro's TraceMeanField_ELBO (Kingma & Welling 2014, eq. 10): E_q[log p(x|z)] estimated
by Monte Carlo, minus the KL term computed exactly when ``torch.distributions`` has a
registered ``kl_divergence`` for the pair (Normal/Normal, Independent/Independent...),
which lowers the variance of the estimate and of its gradient.

Limits: with a prior or guide that has no registered KL (a mixture, a VampPrior, a
flow) Pyro silently falls back to Monte Carlo. Here the fallback is logged (once per
pair, logger ``pyro_vae.objectives.analytic_kl``) and ``kl_method`` records which
ran ("analytic" or "monte-carlo"). It needs a mean-field guide: a traced guide whose
site is computed from another latent raises ModelError rather than return a biased
ELBO. ``beta`` and KL warm-up apply as in ``elbo``. A
:class:`~pyro_vae.families.StackedVAE` is scored by Monte Carlo (``kl_method``
"monte-carlo"): each layer's KL term is conditional on draws of the layers around it;
only the top layer's, given z_{L-1}, could be closed-form, which is not done.

Example:
    >>> import torch
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> objective = AnalyticKL_ELBO()
    >>> objective(vae, vae.guide_module())(torch.ones(3, 1, 28, 28)).shape
    torch.Size([])
    >>> objective.kl_method
    'analytic'
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch
from pyro.distributions import Distribution
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import kl_divergence

from .base import SurrogateLoss, checked_option
from .beta import scale_latents
from .enumerated import check_enumerable, enumerated_pair
from .structured import plate_scale, structured_vae, vae_arguments
from .traces import refuse_dependent_guide

__all__ = ["AnalyticKL_ELBO"]

logger = logging.getLogger(__name__)
_MEAN_FIELD_WHY = (
    "Pyro's TraceMeanField_ELBO takes each site's closed-form KL at the guide's own draws of "
    "the other latents, which is the ELBO only for a mean-field guide"
)


class AnalyticKL_ELBO(SurrogateLoss, TraceMeanField_ELBO):
    """TraceMeanField_ELBO with a VAE fast path and a logged Monte Carlo fallback."""

    def __init__(self, num_particles: int = 1, beta: float = 1.0, **kwargs):
        checked_option(self, "num_particles", num_particles, minimum=1, integer=True)
        super().__init__(num_particles=num_particles, vectorize_particles=True, **kwargs)
        self.beta = checked_option(self, "beta", beta, minimum=0)
        self.kl_method: str | None = None
        self._reported: set[tuple[str, str, str]] = set()

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        if enumerated_pair(model, guide) is not None:  # M2's label has no KL to take
            check_enumerable(self)
        vae = structured_vae(model, guide)
        if vae is None:
            model, guide = scale_latents(model, self.beta), scale_latents(guide, self.beta)
            return TraceMeanField_ELBO.differentiable_loss(self, model, guide, *args, **kwargs)
        x, num_data, kl_scale, labels = vae_arguments(vae, *args, **kwargs)
        terms = vae.log_weights(x, self.num_particles, **labels)
        if terms.q is None:  # stacked layers (see above)
            kl, self.kl_method = None, "monte-carlo"
        else:
            kl = self._closed_form_kl("z", terms.q, terms.p)
        if kl is None:
            kl = (terms.log_q - terms.log_prior).mean(0)
        elbo = terms.log_lik.mean(0) - (kl_scale * self.beta) * kl
        return -elbo.sum() * plate_scale(x, num_data)

    def _get_trace(self, model, guide, args, kwargs):
        """Pyro's traces, refused first when the guide is not mean-field: Pyro's own check
        of the site order would otherwise print a warning ahead of the error."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        refuse_dependent_guide(guide_trace, "analytic-kl", _MEAN_FIELD_WHY)
        for warning in caught:  # a mean-field guide's warnings are the user's to see
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        return model_trace, guide_trace

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        for name, site in model_trace.nodes.items():
            if site["type"] == "sample" and not site["is_observed"] and name in guide_trace.nodes:
                self._closed_form_kl(name, guide_trace.nodes[name]["fn"], site["fn"])
        return super()._differentiable_loss_particle(model_trace, guide_trace)

    def _closed_form_kl(self, site: str, q: Distribution, p: Distribution) -> torch.Tensor | None:
        """KL(q || p) if registered (else None, logged once per pair); sets ``kl_method``."""
        try:
            kl = kl_divergence(q, p)
        except NotImplementedError:
            self.kl_method = "monte-carlo"
            key = (site, _describe(q), _describe(p))
            if key not in self._reported:
                self._reported.add(key)
                logger.warning(
                    "analytic-kl: no closed-form KL is registered for site %r between q = %s "
                    "and p = %s; using a Monte Carlo estimate of the KL there (the same "
                    "estimator as 'elbo')",
                    *key,
                )
            return None
        self.kl_method = "analytic"
        return kl


def _describe(d: Distribution) -> str:
    if isinstance(d, torch.distributions.Independent):
        return f"Independent({_describe(d.base_dist)})"
    return type(d).__name__
