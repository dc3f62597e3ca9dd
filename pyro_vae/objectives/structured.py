"""Recognising a :class:`pyro_vae.VAE`'s own model/guide pair, for the objectives' fast path.

Example:
    >>> from pyro_vae import Config, build_vae
    >>> vae = build_vae(Config(latent_dim=2, hidden=[16]), (1, 28, 28))
    >>> structured_vae(vae.model, vae.guide) is vae
    True
    >>> structured_vae(vae.model, lambda x: None) is None
    True
"""

from __future__ import annotations

import torch

from ..vae import VAE, GuideModule

__all__ = ["structured_vae", "vae_arguments", "plate_scale"]


def structured_vae(model, guide) -> VAE | None:
    """The VAE whose unmodified ``model`` and ``guide`` these are, else None.

    Accepts the classic pair (``vae.model``, ``vae.guide``) and the module pair
    (``vae``, ``vae.guide_module()``). A subclass that overrides ``model`` or
    ``guide`` is not recognised, so it always goes through Pyro's tracing.
    """
    model_owner = _owner(model, "model")
    return (
        model_owner if model_owner is not None and model_owner is _owner(guide, "guide") else None
    )


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
    x: torch.Tensor, num_data: int | None = None, kl_scale: float | torch.Tensor = 1.0
) -> tuple[torch.Tensor, int | None, float | torch.Tensor]:
    """The arguments of ``VAE.model``/``VAE.guide``, bound by name."""
    return x, num_data, kl_scale


def plate_scale(x: torch.Tensor, num_data: int | None) -> float:
    """The factor Pyro's data plate applies: dataset size over minibatch size."""
    return 1.0 if num_data is None else num_data / x.shape[0]
