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

import functools
import inspect
from typing import NamedTuple

import torch

from ..errors import ModelError
from ..vae import VAE, GuideModule, check_kl_scale, check_num_data, scored_from_parts

__all__ = ["structured_vae", "vae_arguments", "VAEArguments", "plate_scale"]


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
        vae = fn.owner
    else:
        vae = getattr(fn, "__self__", None)
        own = getattr(type(vae), role, None)
        if not isinstance(vae, VAE) or getattr(fn, "__func__", None) is not own:
            return None
    return scored_from_parts(vae)


class VAEArguments(NamedTuple):
    """A VAE's ``model``/``guide`` arguments as the fast path needs them.

    ``labels`` is ``{"y": y}`` for a model that takes labels (a CVAE), else empty: pass
    it on as ``vae.log_weights(x, n, path_derivative, **labels)``.
    """

    x: torch.Tensor
    num_data: int | None
    kl_scale: float | torch.Tensor
    labels: dict[str, torch.Tensor]


def vae_arguments(vae: VAE, *args, **kwargs) -> VAEArguments:
    """The arguments of ``vae.model``/``vae.guide``, bound by its own signature; an
    objective needs observed data.

    Example:
        >>> from pyro_vae import mlp_vae
        >>> vae_arguments(mlp_vae((1, 28, 28), 2, [8]), torch.zeros(3, 784), 100).num_data
        100
    """
    values = _positional_values(type(vae), args) if not kwargs else None
    if values is None:
        try:
            bound = _signature(type(vae)).bind(vae, *args, **kwargs)
        except TypeError as err:
            raise ModelError(
                f"{type(vae).__name__}.model cannot take these arguments: {err}"
            ) from None
        bound.apply_defaults()
        values = bound.arguments
    x = values["x"]
    if x is None or not values.get("observe", True):
        raise ModelError(
            "an objective scores observed data: call it with a batch x (and observe=True); "
            "model(None, ...) only generates"
        )
    labels = {"y": values["y"]} if "y" in values else {}
    num_data, kl_scale = values.get("num_data"), values.get("kl_scale", 1.0)
    check_num_data(num_data, len(x))
    check_kl_scale(kl_scale)
    return VAEArguments(x, num_data, kl_scale, labels)


@functools.cache
def _signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.model)


@functools.cache
def _positional(cls: type) -> tuple[tuple[str, ...], frozenset[str], dict[str, object]]:
    """``model``'s names taken by position, its required names (``self`` excluded), its
    defaults."""
    params = list(_signature(cls).parameters.values())[1:]
    names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    required = frozenset(p.name for p in params if p.default is p.empty and p.kind not in variadic)
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    return names, required, defaults


def _positional_values(cls: type, args: tuple) -> dict[str, object] | None:
    """What ``Signature.bind`` + ``apply_defaults`` give for a call by position alone (the
    training step's), without their cost; None where that shortcut does not apply."""
    names, required, defaults = _positional(cls)
    if len(args) > len(names) or not required.issubset(names[: len(args)]):
        return None
    values = dict(defaults)
    values.update(zip(names, args, strict=False))
    return values


def plate_scale(x: torch.Tensor, num_data: int | None) -> float:
    """The factor Pyro's data plate applies: dataset size over minibatch size."""
    return 1.0 if num_data is None else num_data / x.shape[0]
