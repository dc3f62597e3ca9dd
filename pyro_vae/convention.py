"""The convention any model follows to be trained, evaluated and compared by pyro-vae.

A model is an ``nn.Module`` with two methods, ``model`` and ``guide``, taking the same
arguments: a batch ``x`` first, then optionally labels ``y``, ``num_data`` (the dataset
size, for a ``pyro.plate("data", num_data, subsample=...)``) and ``kl_scale`` (a weight
on the latent sites, for beta-VAE and KL warm-up), each by name. Per-datapoint sites
sit inside ``pyro.plate("data")``; global ones (a hierarchical prior's scale) outside.
The built-in :class:`~pyro_vae.VAE` follows it, and so does a subclass with its own
``model``/``guide`` or any module of yours:

.. code-block:: python

    class CVAE(pyro_vae.VAE):
        def model(self, x, y, num_data=None): ...
        def guide(self, x, y, num_data=None): ...

:func:`loss_modules` gives the two ``nn.Module`` s that ``objective(model, guide)`` needs
(Pyro's ``ELBO.__call__``), each called ``(x, num_data, kl_scale, y)``; where the model
takes no ``num_data`` its sites are scaled by ``num_data / batch`` here, so every loss is
on the scale of the whole dataset.

Example:
    >>> import pyro, pyro.distributions as dist, torch
    >>> class Tiny(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.loc = torch.nn.Parameter(torch.zeros(1))
    ...     def model(self, x, y):
    ...         with pyro.plate("data", len(x)):
    ...             z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...             pyro.sample("x", dist.Normal(z + y, 1.0), obs=x)
    ...     def guide(self, x, y):
    ...         with pyro.plate("data", len(x)):
    ...             pyro.sample("z", dist.Normal(self.loc, 1.0))
    >>> convention_of(Tiny())
    Convention(takes_labels=True, takes_num_data=False, takes_kl_scale=False)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from pyro import poutine
from torch import nn

from ._private import unwrap_handlers
from .errors import ModelError
from .parts import likelihood_contract
from .vae import VAE, scored_from_parts

__all__ = [
    "Convention",
    "convention_of",
    "loss_modules",
    "standard_vae",
    "data_support",
    "ModelCall",
    "GuideCall",
]


@dataclass(frozen=True)
class Convention:
    """Which optional arguments a model's ``model`` and ``guide`` accept."""

    takes_labels: bool
    takes_num_data: bool
    takes_kl_scale: bool


def convention_of(owner: nn.Module) -> Convention:
    """Read the convention from the signatures; ModelError names what is missing or differs."""
    name = type(owner).__name__
    for role in ("model", "guide"):
        if not callable(getattr(owner, role, None)):
            raise ModelError(
                f"{name} has no {role}() method: a model for pyro-vae is an nn.Module with "
                "model(x, ...) and guide(x, ...) methods taking the same arguments"
            )
    if not isinstance(owner, nn.Module):
        raise ModelError(f"{name} is not a torch.nn.Module: its parameters could not be trained")
    names = [_argument_names(getattr(owner, role)) for role in ("model", "guide")]
    for optional in ("y", "num_data", "kl_scale"):
        if (optional in names[0]) != (optional in names[1]):
            raise ModelError(
                f"{name}.model and {name}.guide must take the same arguments; only one of them "
                f"takes {optional!r}"
            )
    return Convention("y" in names[0], "num_data" in names[0], "kl_scale" in names[0])


def _argument_names(fn) -> set[str]:
    """The named arguments of ``fn``, read through Pyro's handlers: a method decorated with
    ``config_enumerate`` (or any poutine) shows only ``(*args, **kwargs)`` itself."""
    params = inspect.signature(fn).parameters
    if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values()):
        params = inspect.signature(unwrap_handlers(fn)).parameters
    return {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def standard_vae(owner: nn.Module) -> VAE | None:
    """``owner`` if it is a VAE (or CVAE) scored from its parts (the fast path), else None;
    see :func:`pyro_vae.vae.scored_from_parts`."""
    return scored_from_parts(owner)


class _Call(nn.Module):
    """Calls ``owner.<role>`` with the arguments its signature accepts."""

    role = ""

    def __init__(self, owner: nn.Module):
        super().__init__()
        self.owner = owner
        self.convention = convention_of(owner)

    def forward(
        self,
        x: torch.Tensor,
        num_data: int | None = None,
        kl_scale: float | torch.Tensor = 1.0,
        y: torch.Tensor | None = None,
    ):
        c, kwargs = self.convention, {}
        if c.takes_labels:
            if y is None:
                raise ModelError(
                    f"{type(self.owner).__name__}.{self.role} takes labels y but the data has "
                    "none: use a dataset with labels (an .npz with an array y)"
                )
            kwargs["y"] = y
        if c.takes_kl_scale:
            kwargs["kl_scale"] = kl_scale
        elif not (not torch.is_tensor(kl_scale) and kl_scale == 1.0):
            raise ModelError(
                f"{type(self.owner).__name__}.{self.role} takes no kl_scale argument, so beta "
                "and KL warm-up cannot weigh its latent sites; add kl_scale to model and guide "
                "(see pyro_vae.vae.latent_weight) or set kl_warmup = 0"
            )
        method = getattr(self.owner, self.role)
        if c.takes_num_data:
            return method(x, num_data=num_data, **kwargs)
        if num_data is None or num_data == len(x):
            return method(x, **kwargs)
        with poutine.scale(scale=num_data / len(x)):
            return method(x, **kwargs)


class ModelCall(_Call):
    """``owner.model`` as the forward of a module (for ``objective(model, guide)``)."""

    role = "model"


class GuideCall(_Call):
    """``owner.guide`` as the forward of a module."""

    role = "guide"


def loss_modules(owner: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The (model, guide) modules to build a loss from: ``objective(*loss_modules(owner))``.

    A standard VAE keeps its own pair, which the objectives recognise for their fast path;
    any other model is wrapped so that it is called ``(x, num_data, kl_scale, y)``.
    """
    vae = standard_vae(owner)
    if vae is not None:
        return vae, vae.guide_module()
    return ModelCall(owner), GuideCall(owner)


def data_support(model: nn.Module) -> str:
    """The data a model scores: its likelihood's support, else its own ``support``, else real."""
    likelihood = getattr(model, "likelihood", None)
    if isinstance(likelihood, nn.Module):
        return likelihood_contract(likelihood, ()).support
    return str(getattr(model, "support", "real"))
