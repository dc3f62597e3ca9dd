"""The conditional VAE: the label y enters the encoder q(z|x, y) and the decoder p(x|z, y).

Sohn et al. (2015), Kingma et al. (2014, "M1+M2": the M2 model with every label seen).
The prior is either any unconditional p(z) (the VAE's own priors) or a learned
conditional p(z|y) (:class:`ConditionalNormalPrior`). Labels are class indices
``y`` of shape ``[batch]``; the parts receive them as one-hot rows ``[batch, num_classes]``:

==========  ============================  ==============================================
part        call                          returns
==========  ============================  ==============================================
prior       ``prior()`` or ``prior(y)``   p(z) (batch ``()``), or p(z|y) (batch ``(batch,)``)
                                          when the prior declares ``takes_labels = True``
encoder     ``encoder(x, y)``             q(z|x, y): batch ``(batch,)``, event ``(latent_dim,)``
decoder     ``decoder(z, y)``             raw parameters ``[..., batch, num_outputs]``
likelihood  ``likelihood(params)``        p(x|z, y), as for the VAE
==========  ============================  ==============================================

:class:`LabelledEncoder` and :class:`LabelledDecoder` join the one-hot label to a
network's features or input, so every guide, network and likelihood of the VAE serves
here too. ``CVAE.model``/``CVAE.guide`` take ``(x, num_data, kl_scale, y)``, the order
in which the trainer calls a loss (:mod:`pyro_vae.convention`); pass ``y`` by name.
:meth:`CVAE.log_weights` is the objectives' and the evaluation's fast path, with ``y``.

Example:
    >>> cvae = mlp_cvae((1, 28, 28), num_classes=10, latent_dim=2, hidden=[32])
    >>> x, y = torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    >>> cvae.log_weights(x, 3, y=y).log_w.shape
    torch.Size([3, 4])
    >>> cvae.sample(torch.tensor([7, 7])).shape           # two images of class 7
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from .._private import am_i_wrapped
from ..errors import ModelError
from ..guides import NormalGuide, bounded_scale, unbounded_scale
from ..likelihoods import BernoulliLikelihood
from ..networks import MLPBody, check_sizes, mlp_decoder, mlp_encoder, with_input_transform
from ..parts import _call, _describe, likelihood_contract
from ..priors import StandardNormalPrior
from ..vae import (
    VAE,
    LogWeights,
    _moments,
    as_model_input,
    count,
    data_plate,
    latent_weight,
    path_log_prob,
)
from .labels import check_class_labels

__all__ = [
    "CVAE",
    "ConditionalNormalPrior",
    "LabelledEncoder",
    "LabelledDecoder",
    "join_label",
    "mlp_cvae",
    "check_conditional_parts",
]


def join_label(h: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """``h [..., batch, F]`` with the one-hot ``label [batch, C]`` appended (``F + C`` features).

    Example:
        >>> join_label(torch.zeros(3, 2, 4), torch.eye(2)).shape   # 3 particles, batch 2
        torch.Size([3, 2, 6])
    """
    return torch.cat([h, label.to(h.dtype).expand(*h.shape[:-1], label.shape[-1])], -1)


class LabelledEncoder(nn.Module):
    """q(z|x, y): ``guide`` applied to the ``body``'s features of x joined with the label.

    ``guide`` is any guide of :mod:`pyro_vae.guides` (or yours) built on an identity body
    with ``features + num_classes`` inputs, so the label enters every guide family alike.
    """

    def __init__(self, body: nn.Module, guide: nn.Module):
        super().__init__()
        self.body = body
        self.guide = guide

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dist.Distribution:
        return self.guide(join_label(self.body(x), label))


class LabelledDecoder(nn.Module):
    """p(x|z, y)'s parameters: ``network`` (built for ``latent_dim + num_classes`` inputs)
    applied to z joined with the label."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.network(join_label(z, label))


class ConditionalNormalPrior(nn.Module):
    """A learned p(z|y) = N(loc(y), diag(scale(y)^2)) from a small network of the one-hot label.

    As the prior network of Pyro's ``examples/cvae``: an MLP (``hidden`` layers, ReLU)
    to a location and a scale; with zero outputs the scale is 1. ``hidden=()`` makes it
    a per-class table (a single linear map of a one-hot row).

    Example:
        >>> prior = ConditionalNormalPrior(num_classes=3, latent_dim=2)
        >>> p = prior(torch.eye(3)[[0, 2]])
        >>> p.batch_shape, p.event_shape
        (torch.Size([2]), torch.Size([2]))
    """

    takes_labels: ClassVar[bool] = True

    def __init__(self, num_classes: int, latent_dim: int, hidden: Sequence[int] = (64,)):
        super().__init__()
        self.net = MLPBody([num_classes, *hidden, 2 * latent_dim], 1, final_activation=False)
        self.register_buffer("offset", unbounded_scale(torch.ones(())), persistent=False)

    def forward(self, label: torch.Tensor) -> dist.TorchDistribution:
        loc, raw_scale = self.net(label).chunk(2, dim=-1)
        return dist.Normal(loc, bounded_scale(raw_scale + self.offset)).to_event(1)


class CVAE(VAE):
    """A conditional VAE from a prior, a labelled encoder and decoder, and a likelihood.

    ``num_classes`` labels 0..num_classes-1. ``prior`` is unconditional (``prior()``),
    or conditional (``prior(one_hot)``) when it declares ``takes_labels = True``. The
    parts are checked with a batch of two (:func:`check_conditional_parts`) when
    ``data_shape`` is known, unless ``check=False``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        likelihood: nn.Module,
        num_classes: int,
        *,
        data_shape: Sequence[int] | None = None,
        check: bool = True,
    ):
        super().__init__(encoder, decoder, prior, likelihood, data_shape=data_shape, check=False)
        if num_classes < 1:
            raise ModelError(f"a CVAE needs num_classes >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.register_buffer("classes", torch.arange(self.num_classes), persistent=False)
        if check and self.data_shape is not None:
            check_conditional_parts(self, self.data_shape)

    @property
    def conditional_prior(self) -> bool:
        """Whether the prior is p(z|y) (called with the label) rather than p(z)."""
        return bool(getattr(self.prior, "takes_labels", False))

    def one_hot(self, y: torch.Tensor | None) -> torch.Tensor:
        """Class indices ``[batch]`` as one-hot rows ``[batch, num_classes]`` (float).

        Checked (an integer tensor of labels in range) while Pyro's validation is on, as on
        a run's first step; afterwards without a host sync.
        """
        if y is None or not torch.is_tensor(y):
            raise ModelError(
                "a CVAE conditions on labels: pass y= (class indices [batch], a tensor), e.g. "
                "cvae.model(x, y=y) or the loss as loss(x, num_data, 1.0, y)"
            )
        if pyro.distributions.is_validation_enabled():
            check_class_labels(y, self.num_classes, "CVAE")
        return (y.unsqueeze(-1) == self.classes).to(torch.get_default_dtype())

    def _labels(self, y: torch.Tensor | None, x: torch.Tensor | None, num_data) -> torch.Tensor:
        if torch.is_tensor(num_data):
            raise ModelError(
                "num_data is a tensor: pass the labels by name, cvae.model(x, y=y) (the "
                "arguments are x, num_data, kl_scale, y)"
            )
        label = self.one_hot(y)
        if x is not None and len(x) != len(label):
            raise ModelError(f"{len(x)} datapoints but {len(label)} labels; give one label each")
        return label

    def _prior(self, label: torch.Tensor) -> dist.Distribution:
        """p(z|y), batch ``(batch,)``; or p(z) (given one draw of its global latents)."""
        return self.prior(label) if self.conditional_prior else self.prior_given_globals()

    @pyro_method
    def model(
        self,
        x: torch.Tensor | None,
        num_data: int | None = None,
        kl_scale: float | torch.Tensor = 1.0,
        y: torch.Tensor | None = None,
        *,
        observe: bool = True,
    ) -> torch.Tensor:
        """p(z|y) (or p(z)) p(x|z, y) for a minibatch with labels ``y``.

        ``model(None, y=labels)`` generates one datapoint per label; ``observe=False``
        draws fresh ``x`` beside given data. Returns the datapoints (observed or drawn).
        """
        label = self._labels(y, x, num_data)
        if x is not None:
            x = self.shaped(x)
        p_z = None if self.conditional_prior else self.prior()  # global latents: once
        with data_plate(x, num_data, len(label)):
            if p_z is None:
                p_z = self.prior(label)
            with latent_weight(kl_scale):
                z = pyro.sample("z", p_z)
            p_x = self.likelihood(self.decoder(z, label))
            return pyro.sample("x", p_x, obs=x if observe else None)

    @pyro_method
    def guide(
        self,
        x: torch.Tensor | None,
        num_data: int | None = None,
        kl_scale: float | torch.Tensor = 1.0,
        y: torch.Tensor | None = None,
        *,
        observe: bool = True,
    ) -> None:
        """q(z|x, y) for a minibatch; the same ``kl_scale`` as the model."""
        if self.has_global_latents:
            self.prior.guide()
        if x is None:
            raise ModelError(
                "the guide q(z|x, y) needs data: call it with a batch x (to generate, run the "
                "model alone: cvae.model(None, y=labels))"
            )
        label = self._labels(y, x, num_data)
        x = self.shaped(x)
        with data_plate(x, num_data), latent_weight(kl_scale):
            pyro.sample("z", self.encoder(x, label))

    def log_weights(
        self,
        x: torch.Tensor,
        num_particles: int = 1,
        path_derivative: bool = False,
        y: torch.Tensor | None = None,
    ) -> LogWeights:
        """The terms of log p(x|z, y) + log p(z|y) - log q(z|x, y), ``[num_particles, batch]``.

        The same numbers as running ``guide`` then ``model`` under Pyro's tracing with
        the same random draws (see :meth:`VAE.log_weights`).
        """
        num_particles = count(num_particles, "num_particles")
        if am_i_wrapped():
            return self._announced_log_weights(x, num_particles, path_derivative, y)
        return self._log_weights(x, num_particles, path_derivative, y)

    def _log_weights(
        self,
        x: torch.Tensor,
        num_particles: int,
        path_derivative: bool = False,
        y: torch.Tensor | None = None,
    ) -> LogWeights:
        label = self._labels(y, x, None)
        x = self.shaped(x)
        q = self.encoder(x, label)
        z = q.rsample((num_particles,))
        p_x = self.likelihood(self.decoder(z, label))
        p_z = self._prior(label)
        log_q = path_log_prob(q, z) if path_derivative else q.log_prob(z)
        return LogWeights(p_x.log_prob(x), p_z.log_prob(z), log_q, z, q, p_z)

    _announced_log_weights = pyro_method(_log_weights)

    def outputs_per_sample(self, device: torch.device) -> int:
        """How many numbers the decoder outputs for one latent sample (no random draws)."""
        label = as_model_input(self, torch.zeros(1, self.num_classes, device=device))
        p_z = self.prior(label) if self.conditional_prior else self.prior()
        z = as_model_input(self, torch.zeros((1, *p_z.event_shape), device=device))
        return self.decoder(z, label).numel()

    # -- helpers for users and plots --------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of q(z|x, y), each ``[batch, latent_dim]``."""
        return _moments(self.encoder(self.shaped(x), self._labels(y, x, None)))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean image E[x|z, y] for latent codes ``z [batch, latent_dim]`` and labels ``y``."""
        z = as_model_input(self, z)
        return self.likelihood(self.decoder(z, self.one_hot(y))).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E[x|z, y] at the posterior mean z = E[z|x, y]."""
        return self.decode(self.encode(x, y)[0], y)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, mean: bool = True) -> torch.Tensor:
        """One image per label in ``y``: E[x|z, y] (a draw of x when ``mean=False``), z ~ p(z|y)."""
        p_x = self.draw(y)[1]
        return p_x.mean if mean else p_x.sample()

    def draw(self, y: torch.Tensor) -> tuple[torch.Tensor, dist.Distribution]:
        """One latent z ~ p(z|y) per label in ``y``, and p(x|z, y) at them."""
        label = self.one_hot(y)
        p_z = self._prior(label)
        z = p_z.sample() if self.conditional_prior else p_z.sample((len(label),))
        return z, self.likelihood(self.decoder(z, label))


def check_conditional_parts(cvae: CVAE, data_shape: tuple[int, ...]) -> None:
    """Run a batch of 2 (labels 0 and the last class) through every part of ``cvae``;
    raise ModelError naming the part that does not fit."""
    data_shape = tuple(data_shape)
    contract = likelihood_contract(cvae.likelihood, data_shape)
    device = cvae.classes.device
    x = torch.zeros(2, *data_shape, device=device)
    label = cvae.one_hot(torch.tensor([0, cvae.num_classes - 1], device=device))
    if cvae.conditional_prior and cvae.has_global_latents:
        raise ModelError(
            f"the prior ({type(cvae.prior).__name__}) is conditional and has global latents; "
            "a CVAE's p(z|y) is per datapoint: drop one of the two"
        )
    with torch.no_grad(), pyro.poutine.block():
        if cvae.conditional_prior:
            p_z = _call("prior", cvae.prior, label, expect="map one-hot labels to p(z|y)")
            batch, wanted = (2,), "batch shape (2,) for 2 labels"
        else:
            p_z = _call(
                "prior",
                cvae.prior,
                expect="take no input and return p(z) (p(z|y) declares takes_labels = True)",
            )
            batch, wanted = (), "batch shape ()"
        if not isinstance(p_z, dist.Distribution) or len(p_z.event_shape) != 1:
            raise ModelError(
                f"the prior ({type(cvae.prior).__name__}) must return a distribution with event "
                f"shape (latent_dim,); got {_describe(p_z)} (use .to_event(1))"
            )
        if p_z.batch_shape != batch:
            raise ModelError(
                f"the prior ({type(cvae.prior).__name__}) returns {_describe(p_z)}; expected "
                f"{wanted} (a prior that takes labels declares takes_labels = True)"
            )
        q_z = _call("encoder", cvae.encoder, x, label, expect="map (x, one-hot y) to q(z|x, y)")
        if (
            not isinstance(q_z, dist.Distribution)
            or q_z.event_shape != p_z.event_shape
            or q_z.batch_shape != (2,)
        ):
            raise ModelError(
                f"the encoder ({type(cvae.encoder).__name__}) returns {_describe(q_z)}; q(z|x, y) "
                f"must have batch shape (2,) for 2 datapoints and the prior's event shape "
                f"{tuple(p_z.event_shape)}"
            )
        outputs = contract.num_outputs or math.prod(data_shape)
        z = q_z.sample()
        params = _call(
            "decoder", cvae.decoder, z, label, expect=f"map (z, one-hot y) to {outputs} outputs"
        )
        if not torch.is_tensor(params) or params.shape != (2, outputs):
            raise ModelError(
                f"the decoder ({type(cvae.decoder).__name__}) outputs {_describe_params(params)} "
                f"for 2 datapoints; the likelihood ({type(cvae.likelihood).__name__}) needs "
                f"[2, {outputs}]"
            )
        p_x = _call("likelihood", cvae.likelihood, params, expect="map decoder outputs to p(x|z)")
        if not isinstance(p_x, dist.Distribution) or tuple(p_x.event_shape) != data_shape:
            raise ModelError(
                f"the likelihood ({type(cvae.likelihood).__name__}) returns {_describe(p_x)}; "
                f"expected event shape the data shape {data_shape}"
            )


def _describe_params(params: object) -> str:
    return str(tuple(params.shape)) if torch.is_tensor(params) else f"a {type(params).__name__}"


def mlp_cvae(
    data_shape: Sequence[int],
    num_classes: int,
    latent_dim: int = 10,
    hidden: Sequence[int] = (400,),
    *,
    conditional_prior: bool = False,
    likelihood: nn.Module | None = None,
    prior: nn.Module | None = None,
    activation: str = "relu",
) -> CVAE:
    """A CVAE with MLP networks of ``activation`` units (relu, softplus or tanh), a Normal
    guide and a Bernoulli likelihood by default.

    The prior is N(0, I), a learned :class:`ConditionalNormalPrior` with
    ``conditional_prior``, or ``prior`` when given.

    Example:
        >>> mlp_cvae((1, 28, 28), 10, 2, [32], conditional_prior=True).conditional_prior
        True
    """
    check_sizes(
        data_shape=data_shape, num_classes=num_classes, latent_dim=latent_dim, hidden=hidden
    )
    data_shape = tuple(data_shape)
    likelihood = likelihood if likelihood is not None else BernoulliLikelihood(data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    body, features = mlp_encoder(data_shape, hidden, activation)
    body = with_input_transform(body, contract.support)
    encoder = LabelledEncoder(body, NormalGuide(nn.Identity(), features + num_classes, latent_dim))
    outputs = contract.num_outputs or math.prod(data_shape)
    decoder = LabelledDecoder(
        mlp_decoder(latent_dim + num_classes, data_shape, hidden, outputs, activation)
    )
    if prior is not None and conditional_prior:
        raise ModelError("give either prior= or conditional_prior=True, not both")
    if prior is None and conditional_prior:
        prior = ConditionalNormalPrior(num_classes, latent_dim)
    elif prior is None:
        prior = StandardNormalPrior(latent_dim)
    return CVAE(encoder, decoder, prior, likelihood, num_classes, data_shape=data_shape)
