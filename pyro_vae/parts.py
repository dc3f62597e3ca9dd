"""The contract of each swappable part, written once: what ``forward`` returns, and defaults.

Every part is an ``nn.Module`` whose call returns a Pyro distribution (the pattern of
zuko's ``LazyDistribution``):

=============  ======================  ==================================================
part           ``forward(...)``        returns
=============  ======================  ==================================================
prior          ``prior()``             p(z): batch shape ``()``, event shape ``(latent_dim,)``
guide          ``encoder(x)``          q(z|x): batch shape ``(batch,)``, event ``(latent_dim,)``
decoder        ``decoder(z)``          a tensor ``[..., num_outputs]`` of raw parameters
likelihood     ``likelihood(params)``  p(x|z): batch ``(...)``, event shape the data shape
=============  ======================  ==================================================

Subclass :class:`Prior`, :class:`Guide` and :class:`Likelihood` to inherit the
defaults, or pass any module that behaves the same way: :func:`check_parts` runs a
batch of two through the parts when the VAE is built and names the part that does not
fit. A likelihood declares the data it needs and the units of its numbers; a plain
module that declares nothing gets the defaults of :class:`Likelihood` below
(``support = "real"``, a density).

A prior may hold **global** latent variables (one draw for the whole dataset, such as
a learned scale shared by every z): sample them with ``pyro.sample`` inside ``forward``
(the VAE calls the prior once per model run, outside the ``data`` plate) and give them
a guide in :meth:`Prior.guide`.

Example:
    >>> import pyro.distributions as dist
    >>> class WidePrior(Prior):
    ...     def forward(self):
    ...         return dist.Normal(torch.zeros(2), 3.0).to_event(1)
    >>> WidePrior()().event_shape
    torch.Size([2])
    >>> likelihood_contract(torch.nn.Identity(), (1, 28, 28)).support   # the defaults
    'real'
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import Distribution

from .errors import ModelError

__all__ = [
    "Prior",
    "Guide",
    "Likelihood",
    "LikelihoodContract",
    "likelihood_contract",
    "prior_has_globals",
    "check_parts",
    "SUPPORTS",
    "SCALES",
]

# The data a likelihood accepts (see pyro_vae.data.prepare_data):
SUPPORTS = {
    "binary": "values 0 and 1 (binarize grey images)",
    "unit": "floats in [0, 1]",
    "open-unit": "floats strictly inside (0, 1)",
    "real": "any finite float (standardized tables, for example)",
    "levels": "8-bit levels 0..255",
    "counts": "non-negative integers",
}
# The scale its log-likelihoods live on; numbers on different scales are never ranked together:
SCALES = {
    "binary": "nats of a probability mass on binary data",
    "continuous": "nats of a density (not comparable with masses)",
    "8-bit": "nats of a mass over 256 levels, also bits per dimension",
    "counts": "nats of a probability mass on counts",
}


class Prior(nn.Module, ABC):
    """p(z): ``forward()`` returns a distribution with event shape ``(latent_dim,)``.

    Global latents: sample them in ``forward`` and set ``has_globals = True``;
    :meth:`guide` then samples their variational distribution.
    """

    has_globals: ClassVar[bool] = False

    @abstractmethod
    def forward(self) -> Distribution:
        """p(z), batch shape ``()``."""

    def guide(self) -> None:
        """q of the prior's global latent variables (``pyro.sample`` sites); none by default."""


class Guide(nn.Module, ABC):
    """q(z|x): ``forward(x)`` returns a reparameterizable distribution, batch ``(batch,)``."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Distribution:
        """q(z|x) with event shape ``(latent_dim,)``."""


class Likelihood(nn.Module):
    """p(x|z): ``forward(params)`` maps decoder outputs to a distribution over one datapoint.

    Declares, as class attributes, what the data must be (``support``, one of
    :data:`SUPPORTS`), the ``scale`` and ``units`` of its log-likelihoods (one of
    :data:`SCALES`) and ``params_per_pixel``; ``num_outputs`` is how many numbers
    the decoder must output per datapoint. ``missing_fill`` is a value inside the support
    where log p and its gradients are finite: it stands in for a missing entry before that
    entry is masked out (see :mod:`pyro_vae.missing`).
    """

    support: ClassVar[str] = "real"
    params_per_pixel: ClassVar[int] = 1
    missing_fill: ClassVar[float] = 0.0
    scale: ClassVar[str] = "continuous"
    units: ClassVar[str] = "nats (density)"

    def __init__(self, data_shape: tuple[int, ...]):
        super().__init__()
        self.data_shape = tuple(data_shape)

    @property
    def num_outputs(self) -> int:
        """How many numbers the decoder must output per datapoint."""
        return self.params_per_pixel * math.prod(self.data_shape)

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The flat decoder outputs as ``params_per_pixel`` maps shaped ``[..., *data_shape]``.

        Views of ``params``: one map is a reshape (no ``unbind``, whose backward would copy
        the whole gradient once more: 0.3 ms of a 1024-batch MNIST step).
        """
        if self.params_per_pixel == 1:
            return (params.unflatten(-1, self.data_shape),)
        maps = params.unflatten(-1, (self.params_per_pixel, *self.data_shape))
        return maps.unbind(-1 - len(self.data_shape))

    def event(self, d: dist.TorchDistribution) -> dist.TorchDistribution:
        return d.to_event(len(self.data_shape))


@dataclass(frozen=True)
class LikelihoodContract:
    """What a likelihood module declares, with :class:`Likelihood`'s defaults filled in."""

    support: str
    scale: str
    units: str
    num_outputs: int | None  # None: one decoder output per data value


def likelihood_contract(likelihood: nn.Module, data_shape: tuple[int, ...]) -> LikelihoodContract:
    """Read a likelihood's declarations once; ModelError names a declaration that is invalid."""
    if isinstance(likelihood, type):
        raise ModelError(
            f"likelihood {likelihood.__name__} is a class; pass an instance, e.g. "
            f"{likelihood.__name__}({tuple(data_shape)})"
        )
    support = getattr(likelihood, "support", Likelihood.support)
    scale = getattr(likelihood, "scale", Likelihood.scale)
    units = getattr(likelihood, "units", Likelihood.units)
    num_outputs = getattr(likelihood, "num_outputs", None)
    name = type(likelihood).__name__
    if support not in SUPPORTS:
        raise ModelError(
            f"likelihood {name}: support {support!r} is not one of {', '.join(SUPPORTS)}; "
            "declare the data it accepts as a class attribute, e.g. support = 'real'"
        )
    if scale not in SCALES:
        raise ModelError(
            f"likelihood {name}: scale {scale!r} is not one of {', '.join(SCALES)}; "
            "declare it as a class attribute, e.g. scale = 'continuous'"
        )
    if num_outputs is not None and (isinstance(num_outputs, bool) or int(num_outputs) < 1):
        raise ModelError(f"likelihood {name}: num_outputs must be a positive int: {num_outputs}")
    return LikelihoodContract(support, scale, str(units), num_outputs and int(num_outputs))


def prior_has_globals(prior: nn.Module) -> bool:
    """Whether the prior samples global latent variables of its own (see :class:`Prior`)."""
    if getattr(type(prior), "has_globals", None) is None and "has_globals" not in vars(prior):
        return False  # read without nn.Module.__getattr__'s AttributeError (every step asks)
    return bool(getattr(prior, "has_globals", False))


def _call(part: str, fn, *args, expect: str):
    try:
        out = fn(*args)
    except Exception as err:  # a user's module: name it, keep the cause
        shapes = ", ".join(str(tuple(a.shape)) for a in args if torch.is_tensor(a)) or "no input"
        raise ModelError(
            f"the {part} ({type(fn).__name__}) fails on input of shape {shapes}: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; "
            f"it must {expect}"
        ) from err
    return out


def check_parts(
    encoder: nn.Module,
    decoder: nn.Module,
    prior: nn.Module,
    likelihood: nn.Module,
    data_shape: tuple[int, ...],
) -> None:
    """Run a batch of 2 through every part; raise ModelError naming the part that does not fit."""
    data_shape = tuple(data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    x = torch.zeros(2, *data_shape, device=_device_of(encoder, decoder, prior, likelihood))
    with torch.no_grad(), _without_pyro_sites():
        p_z = _call("prior", prior, expect="take no input and return p(z), a distribution")
        if not isinstance(p_z, Distribution) or len(p_z.event_shape) != 1 or p_z.batch_shape:
            raise ModelError(
                f"the prior ({type(prior).__name__}) must return a distribution with batch "
                f"shape () and event shape (latent_dim,); got {_describe(p_z)} (use .to_event(1))"
            )
        latent_dim = p_z.event_shape[0]
        q_z = _call("encoder", encoder, x, expect=f"map a batch [batch, *{data_shape}] to q(z|x)")
        if not isinstance(q_z, Distribution) or q_z.event_shape != p_z.event_shape:
            raise ModelError(
                f"the encoder ({type(encoder).__name__}) returns {_describe(q_z)} but the prior's "
                f"p(z) has event shape ({latent_dim},); q(z|x) must have the same event shape"
            )
        if q_z.batch_shape != (2,):
            raise ModelError(
                f"the encoder's q(z|x) for a batch of 2 has batch shape {tuple(q_z.batch_shape)}; "
                "it must be (2,): declare the latent dimension as an event dimension (.to_event(1))"
            )
        if not q_z.has_rsample:
            raise ModelError(
                f"the encoder ({type(encoder).__name__}) returns {_describe(q_z)}, which has no "
                "rsample: a VAE draws z = f(x, noise) to differentiate through it, so q(z|x) must "
                "be reparameterizable (Normal, Laplace, a flow, ...); for discrete latents write "
                "the model and guide for Pyro's SVI with TraceGraph_ELBO or TraceEnum_ELBO"
            )
        z = q_z.sample()
        outputs = contract.num_outputs or math.prod(data_shape)
        params = _call(
            "decoder", decoder, z, expect=f"map z [..., {latent_dim}] to [..., {outputs}] outputs"
        )
        if torch.is_tensor(params) and params.shape[-1:] != (outputs,):
            raise ModelError(
                f"the decoder ({type(decoder).__name__}) outputs {tuple(params.shape)} for z of "
                f"shape {tuple(z.shape)}; the likelihood ({type(likelihood).__name__}) needs "
                f"{outputs} numbers per datapoint: set the decoder's output width to {outputs}"
            )
        p_x = _call("likelihood", likelihood, params, expect="map decoder outputs to p(x|z)")
        if (
            not isinstance(p_x, Distribution)
            or tuple(p_x.event_shape) != data_shape
            or p_x.batch_shape != (2,)
        ):
            raise ModelError(
                f"the likelihood ({type(likelihood).__name__}) returns {_describe(p_x)}; expected "
                f"batch shape (2,) and event shape the data shape {data_shape}"
            )


def _describe(d: object) -> str:
    if isinstance(d, Distribution):
        name = type(d).__name__
        if isinstance(d, torch.distributions.Independent):
            name += f"({type(d.base_dist).__name__})"
        return (
            f"{name} with batch shape {tuple(d.batch_shape)} and event shape {tuple(d.event_shape)}"
        )
    return f"a {type(d).__name__}, not a distribution"


def _device_of(*modules: nn.Module) -> torch.device:
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            return tensor.device
    return torch.device("cpu")


def _without_pyro_sites():
    """Run the parts once outside any inference: a prior's global sites are just sampled."""
    from pyro import poutine

    return poutine.block()
