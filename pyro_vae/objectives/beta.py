"""beta-VAE and KL warm-up: a weight on the latent sites, in the model and the guide alike.

beta-VAE (Higgins et al. 2017) maximizes E_q[log p(x|z)] - beta KL(q(z|x) || p(z));
KL warm-up / annealing (Bowman et al. 2016; Sonderby et al. 2016) raises that weight
linearly from 0 to 1 over the first epochs. Both weigh log p(z) - log q(z|x), which
is a KL term only in an ELBO: the ELBO-type objectives (``elbo``, ``analytic-kl``,
``graph``, ``stl``) accept them; the particle objectives (``iwae``, ``dreg``,
``renyi``, ``tail-adaptive``) put that difference inside a logsumexp, where a weight
no longer scales a KL term, and refuse them with a clear error.

For a VAE the weight is the ``kl_scale`` argument of ``VAE.model``/``VAE.guide``
(the trainer passes the warm-up weight there); a beta objective multiplies it by
``b``. For any other model/guide, :func:`scale_latents` scales every latent sample
site (unobserved in the model, every site in the guide) under Pyro's tracing.

Example:
    >>> [kl_warmup_scale(epoch, warmup_epochs=4) for epoch in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    >>> kl_warmup_scale(0, warmup_epochs=0)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable

from pyro.poutine.messenger import Messenger

__all__ = ["LatentScale", "scale_latents", "kl_warmup_scale"]


class LatentScale(Messenger):
    """Multiply the scale of every latent (unobserved) sample site by ``scale``."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = self.scale * msg["scale"]


def scale_latents(fn: Callable, scale: float) -> Callable:
    """``fn`` with its latent sites weighted by ``scale`` (``fn`` itself when scale is 1)."""
    return fn if scale == 1 else LatentScale(scale)(fn)


def kl_warmup_scale(epoch: int, warmup_epochs: int) -> float:
    """The KL weight of 0-based ``epoch``: linear from 0 at epoch 0 to 1 at ``warmup_epochs``."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, epoch / warmup_epochs)
