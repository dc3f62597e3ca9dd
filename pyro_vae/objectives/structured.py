"""Recognising a :class:`pyro_vae.VAE`'s own model/guide pair, for the objectives' fast path.

Example:
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> structured_vae(vae.model, vae.guide) is vae
    True
    >>> structured_vae(vae.model, lambda x: None) is None
    True
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from ..vae import VAE, GuideModule

__all__ = ["structured_vae", "vae_arguments", "plate_scale"]


def structured_vae(model, guide) -> VAE | None:
    """The VAE whose unmodified ``model`` and ``guide`` these are, else None.

    Accepts the classic pair (``vae.model``, ``vae.guide``) and the module pair
    (``vae``, ``vae.guide_module()``). A subclass that overrides ``model`` or
    ``guide`` is not recognised, so it always goes through Pyro's tracing; so does a
    VAE whose prior has global latents (their terms are not per datapoint).
    """
    model_owner = _owner(model, "model")
    if model_owner is None or model_owner is not _owner(guide, "guide"):
        return None
    return None if model_owner.has_global_latents else model_owner


def _owner(fn, role: str) -> VAE | None:
    if role == "model" and isinstance(fn, VAE):
        vae = fn
    elif role == "guide" and isinstance(fn, GuideModule):
        vae = fn.vae
    else:
        vae = getattr(fn, "__self__", None)
        if not isinstance(vae, VAE) or getattr(fn, "__func__", None) is not getattr(VAE, role):
            return None
    unchanged = all(
        getattr(type(vae), name) is getattr(VAE, name) for name in ("model", "guide", "forward")
    )
    return vae if unchanged else None


def vae_arguments(
    x: torch.Tensor | None,
    num_data: int | None = None,
    kl_scale: float | torch.Tensor = 1.0,
    *,
    batch_size: int | None = None,
    observe: bool = True,
) -> tuple[torch.Tensor, int | None, float | torch.Tensor]:
    """The arguments of ``VAE.model``/``VAE.guide``, bound by name; an objective needs data."""
    if x is None or not observe:
        raise ModelError(
            "an objective scores observed data: call it with a batch x (and observe=True); "
            "model(None, batch_size=n) only generates"
        )
    return x, num_data, kl_scale


def plate_scale(x: torch.Tensor, num_data: int | None) -> float:
    """The factor Pyro's data plate applies: dataset size over minibatch size."""
    return 1.0 if num_data is None else num_data / x.shape[0]
