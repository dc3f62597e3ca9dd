"""M2, the semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (NeurIPS 2014).

The generative model is p(y) p(z) p(x|y,z): a label y ~ Cat(1/C) (uniform, fixed), a
style code z ~ p(z) independent of it, and the datapoint decoded from both. The guide is
q(y|x) q(z|x,y): q(y|x) is a classifier network and q(z|x,y) an encoder that sees the
label. A labelled datapoint observes y; for an unlabelled one y is latent, and the
objectives sum over its C values exactly (Pyro's parallel enumeration of the guide's y
site, ``config_enumerate`` with ``TraceEnum_ELBO``; see :mod:`pyro_vae.objectives.enumerated`
for the same sum computed from the parts).

Five swappable parts, each an ``nn.Module``:

- ``classifier(x)``: logits of q(y|x), ``[batch, C]``;
- ``encoder(x, y)``: q(z|x,y) with batch shape ``broadcast(y.shape, (batch,))``: labels
  ``y`` of shape ``[C, 1]`` score every label of every datapoint at once;
- ``decoder(z, y)``: raw parameters ``[..., num_outputs]`` of p(x|y,z);
- ``prior()`` and ``likelihood(params)``: the same contracts as for :class:`pyro_vae.VAE`
  (:mod:`pyro_vae.parts`), so the built-in priors and likelihoods compose with M2.

``model(x, y=None, num_data=None, kl_scale=1.0)`` and ``guide(...)`` follow
:mod:`pyro_vae.convention`, with ``y=None`` for a batch of unlabelled datapoints (as in
Pyro's ``examples/vae/ss_vae_M2.py``); ``kl_scale`` weighs the z site.

Example:
    >>> m2 = mlp_m2((1, 28, 28), num_classes=10, latent_dim=4, hidden=[32])
    >>> x = torch.zeros(5, 1, 28, 28)
    >>> m2.classify(x).shape, m2.sample(3, torch.tensor([0, 1, 2])).shape
    (torch.Size([5]), torch.Size([3, 1, 28, 28]))
    >>> terms = m2.label_terms(x, num_particles=2)   # every label of every datapoint
    >>> tuple(terms.log_w.shape), tuple(terms.z.shape)
    ((2, 10, 5), (2, 10, 5, 4))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import pyro_method
from torch import nn

from .._private import am_i_wrapped
from ..distributions import ReparameterizedNormal
from ..errors import ModelError
from ..guides import bounded_scale
from ..likelihoods import BernoulliLikelihood
from ..networks import (
    MLPBody,
    activation_unit,
    check_sizes,
    mlp_decoder,
    mlp_encoder,
    with_input_transform,
)
from ..parts import likelihood_contract, prior_has_globals
from ..priors import StandardNormalPrior, VampPrior
from ..vae import (
    AmortizedModel,
    LogWeights,
    as_model_input,
    count,
    data_plate,
    latent_weight,
    path_log_prob,
)
from .labels import check_class_labels

__all__ = [
    "M2",
    "LabelTerms",
    "M2Encoder",
    "M2Decoder",
    "Classifier",
    "mlp_m2",
    "standard_m2",
]


_UNLABELLED_HINT = (
    "; -1 marks an unlabelled row, which M2's model and guide take as y=None for the whole "
    "batch: pass the labelled and unlabelled rows in separate calls, or train with "
    "pyro_vae.semisupervised.SemiSupervisedLoss, which splits a batch by its labels"
)


class LabelTerms(NamedTuple):
    """The terms of every label's log weight for unlabelled datapoints.

    ``log_lik``, ``log_prior`` and ``log_q`` (log p(x|y,z), log p(z), log q(z|x,y)) are
    ``[particles, classes, batch]``, with one draw z ~ q(z|x,y) per particle and label
    (``z`` is ``[particles, classes, batch, latent_dim]``); ``log_py`` is log p(y),
    ``[classes, 1]``, and ``log_qy`` is log q(y|x), ``[classes, batch]``.
    """

    log_lik: torch.Tensor
    log_prior: torch.Tensor
    log_q: torch.Tensor
    log_py: torch.Tensor
    log_qy: torch.Tensor
    z: torch.Tensor

    @property
    def log_w(self) -> torch.Tensor:
        """log p(x, y, z) - log q(z|x,y) per particle, label and datapoint."""
        return self.log_lik + self.log_py + self.log_prior - self.log_q


class Classifier(nn.Module):
    """q(y|x) as logits: a network body and a Linear layer to ``num_classes`` outputs."""

    def __init__(self, body: nn.Module, features: int, num_classes: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class M2Encoder(nn.Module):
    """q(z|x,y) = N(loc, diag(scale^2)), the label added to the last hidden layer's input.

    ``body`` maps x to the pre-activation of its last hidden layer (``features``
    numbers); a learned vector per label is added, then ``activation`` (ReLU by default)
    and a Linear head give loc and scale. For a one-hidden-layer MLP this is exactly the
    layer on the concatenation [x, one_hot(y)] of Pyro's example; the body runs once per
    datapoint however many labels are scored.
    """

    def __init__(
        self,
        body: nn.Module,
        features: int,
        latent_dim: int,
        num_classes: int,
        activation: nn.Module | None = None,
    ):
        super().__init__()
        self.body = body
        self.activation = activation if activation is not None else nn.ReLU()
        self.label = nn.Embedding(num_classes, features)
        nn.init.uniform_(self.label.weight, -(features**-0.5), features**-0.5)
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dist.TorchDistribution:
        hidden = self.activation(self.body(x) + self.label(y))
        loc, raw_scale = self.head(hidden).chunk(2, dim=-1)
        return ReparameterizedNormal(loc, bounded_scale(raw_scale)).to_event(1)


class M2Decoder(nn.Module):
    """p(x|y,z)'s parameters: ``network`` applied to the concatenation [z, one_hot(y)]."""

    def __init__(self, network: nn.Module, num_classes: int):
        super().__init__()
        self.network = network
        self.num_classes = num_classes

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(y, self.num_classes).to(z.dtype)
        return self.network(torch.cat([z, one_hot.expand(*z.shape[:-1], -1)], -1))


class M2(AmortizedModel):
    """The semi-supervised VAE: p(y) p(z) p(x|y,z) with the guide q(y|x) q(z|x,y).

    ``data_shape`` (default: the likelihood's) is the shape of one datapoint; flat rows
    are reshaped to it. The prior must have no global latents and cannot be the
    VampPrior (whose components are q(z|u) at pseudo-inputs u, and q(z|x,y) needs a
    label too).
    """

    name_prefix = "m2_"

    def __init__(
        self,
        classifier: nn.Module,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        likelihood: nn.Module,
        num_classes: int,
        *,
        data_shape: Sequence[int] | None = None,
    ):
        if data_shape is None:
            data_shape = getattr(likelihood, "data_shape", None)
        super().__init__(data_shape)
        if num_classes < 2:
            raise ModelError(f"M2 needs at least 2 classes, got num_classes={num_classes}")
        if isinstance(prior, VampPrior) or prior_has_globals(prior):
            raise ModelError(
                f"M2 cannot use the prior {type(prior).__name__}: its p(z) must not need q(z|x) "
                "(the VampPrior) nor sample global latents; use standard-normal, learned-normal, "
                "mog, flow, laplace or student-t"
            )
        self.classifier = classifier
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        self.num_classes = num_classes
        self.register_buffer("label_logits", torch.zeros(num_classes))  # p(y) = 1/C

    def label_prior(self) -> dist.Categorical:
        """p(y): uniform over the classes."""
        return dist.Categorical(logits=self.label_logits)

    @pyro_method
    def model(
        self,
        x: torch.Tensor | None,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_scale: float | torch.Tensor = 1.0,
        *,
        batch_size: int | None = None,
        observe: bool = True,
    ) -> torch.Tensor:
        """p(y) p(z) p(x|y,z) for a minibatch; ``y=None`` leaves the labels latent.

        ``model(None, batch_size=n)`` generates ``n`` datapoints (``y`` given fixes their
        labels); ``observe=False`` draws fresh ``x`` beside given data (posterior predictive
        with ``Predictive`` and the guide). Returns the datapoints, observed or drawn.
        """
        y = self.checked_labels(y, x)
        if x is not None:
            x = self.shaped(x)
        p_z = self.prior()
        with data_plate(x, num_data, batch_size if y is None else len(y)):
            y = pyro.sample("y", self.label_prior(), obs=y)
            with latent_weight(kl_scale):
                z = pyro.sample("z", p_z)
            return pyro.sample("x", self.likelihood(self.decoder(z, y)), obs=x if observe else None)

    @pyro_method
    def guide(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
        kl_scale: float | torch.Tensor = 1.0,
        *,
        batch_size: int | None = None,
        observe: bool = True,
    ) -> None:
        """q(y|x) q(z|x,y); with ``y`` given only q(z|x,y). Enumerate y with
        ``config_enumerate(m2.guide)`` and ``TraceEnum_ELBO(max_plate_nesting=1)``.
        ``batch_size`` and ``observe`` are the model's, taken so that ``Predictive`` can
        pass both the same arguments."""
        if x is None:
            raise ModelError("the guide q(y, z|x) needs data: call it with a batch x")
        y = self.checked_labels(y, x)
        x = self.shaped(x)
        with data_plate(x, num_data):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x)))
            with latent_weight(kl_scale):
                pyro.sample("z", self.encoder(x, y))

    # -- the fast path: log weights from the parts ----------------------------------------------

    def label_terms(
        self, x: torch.Tensor, num_particles: int = 1, path_derivative: bool = False
    ) -> LabelTerms:
        """Every label's log-weight terms for unlabelled ``x``: one z per particle and label.

        The same numbers as tracing the guide with y enumerated in parallel, then the
        model, with the same random draws; under a Pyro handler the parts' parameters are
        announced to Pyro (classic ``SVI``). ``path_derivative``: log q(z|x,y) with the
        gradient through z only (:func:`pyro_vae.vae.path_log_prob`, for DReG).
        """
        method = self._announced_label_terms if am_i_wrapped() else self._label_terms
        return method(x, count(num_particles, "num_particles"), path_derivative)

    def _label_terms(self, x: torch.Tensor, num_particles: int, path_derivative: bool):
        x = self.shaped(x)
        labels = torch.arange(self.num_classes, device=x.device).unsqueeze(-1)  # [C, 1]
        q = self.encoder(x, labels)  # batch [C, batch]
        z = q.rsample((num_particles,))
        log_q = path_log_prob(q, z) if path_derivative else q.log_prob(z)
        log_lik = self.likelihood(self.decoder(z, labels)).log_prob(x)
        log_qy = torch.log_softmax(self.classifier(x), -1).T
        log_py = self.label_prior().log_prob(labels)
        return LabelTerms(log_lik, self.prior().log_prob(z), log_q, log_py, log_qy, z)

    _announced_label_terms = pyro_method(_label_terms)

    def labelled_terms(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        num_particles: int = 1,
        path_derivative: bool = False,
    ) -> LogWeights:
        """log w = log p(x, y, z) - log q(z|x,y) of labelled data, ``[particles, batch]``
        terms; ``log_lik`` holds log p(x, y|z) = log p(x|y,z) + log p(y)."""
        method = self._announced_labelled_terms if am_i_wrapped() else self._labelled_terms
        num_particles = count(num_particles, "num_particles")
        return method(x, self.checked_labels(y, x), num_particles, path_derivative)

    def _labelled_terms(
        self, x: torch.Tensor, y: torch.Tensor, num_particles: int, path_derivative: bool
    ) -> LogWeights:
        x = self.shaped(x)
        q = self.encoder(x, y)
        z = q.rsample((num_particles,))
        log_q = path_log_prob(q, z) if path_derivative else q.log_prob(z)
        log_lik = self.likelihood(self.decoder(z, y)).log_prob(x) + self.label_prior().log_prob(y)
        p_z = self.prior()
        return LogWeights(log_lik, p_z.log_prob(z), log_q, z, q, p_z)

    _announced_labelled_terms = pyro_method(_labelled_terms)

    def checked_labels(self, y: torch.Tensor | None, x: torch.Tensor | None) -> torch.Tensor | None:
        """``y`` as given: class indices, one per row of ``x`` (None: unlabelled), checked
        while Pyro's validation is on (as on a run's first step), else without a host sync."""
        if y is not None and (not torch.is_tensor(y) or dist.is_validation_enabled()):
            num_data = None if x is None else len(x)
            check_class_labels(y, self.num_classes, "M2", num_data, _UNLABELLED_HINT)
        return y

    # -- helpers for users and plots ---------------------------------------------------------------

    @torch.no_grad()
    def label_probs(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x), ``[batch, num_classes]``."""
        return torch.softmax(self.classifier(self.shaped(x)), -1)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable label under q(y|x), ``[batch]``."""
        return self.classifier(self.shaped(x)).argmax(-1)

    @torch.no_grad()
    def encode(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z|x,y) (``y`` default: q(y|x)'s most probable)."""
        x = self.shaped(x)
        q = self.encoder(x, self.classify(x) if y is None else y)
        return q.mean, q.stddev

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean datapoint E[x|y,z] (probabilities for Bernoulli pixels)."""
        return self.likelihood(self.decoder(as_model_input(self, z), y)).mean

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` mean images E[x|y,z], z ~ p(z), with labels ``y`` (default y ~ p(y))."""
        return self.draw(n, y)[1].mean

    def draw(self, n: int, y: torch.Tensor | None = None) -> tuple[torch.Tensor, dist.Distribution]:
        """``n`` latents z ~ p(z) and p(x|y, z) at them, labels ``y`` (default y ~ p(y))."""
        z = self.prior().sample((count(n, "n", minimum=0),))
        y = self.label_prior().sample((n,)) if y is None else self.checked_labels(y, z).to(z.device)
        return z, self.likelihood(self.decoder(z, y))

    @torch.no_grad()
    def analogies(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The style E[z|x,y] of each datapoint decoded with every label,
        ``[batch, num_classes, *data_shape]`` (the M2 paper's analogies)."""
        z = self.encode(x, y)[0]
        labels = torch.arange(self.num_classes, device=z.device).unsqueeze(-1)
        return self.decode(z.expand(self.num_classes, *z.shape), labels).transpose(0, 1)


def standard_m2(model: object) -> M2 | None:
    """``model`` if it is an M2 with the built-in ``model``/``guide`` (scored from its parts)."""
    if not isinstance(model, M2):
        return None
    unchanged = all(getattr(type(model), n) is getattr(M2, n) for n in ("model", "guide"))
    return model if unchanged else None


def mlp_m2(
    data_shape: Sequence[int],
    num_classes: int,
    latent_dim: int = 50,
    hidden: Sequence[int] = (500,),
    *,
    likelihood: nn.Module | None = None,
    prior: nn.Module | None = None,
    activation: str = "relu",
) -> M2:
    """An M2 with MLP networks of ``activation`` units (relu, softplus or tanh), a
    Bernoulli likelihood and N(0, I) by default.

    The classifier and the encoder of z each have their own MLP body of sizes ``hidden``;
    the decoder mirrors it. The defaults (50 latent dimensions, one hidden layer of 500)
    are the sizes of Pyro's ``ss_vae_M2.py`` example.
    """
    check_sizes(
        data_shape=data_shape, num_classes=num_classes, latent_dim=latent_dim, hidden=hidden
    )
    data_shape = tuple(data_shape)
    likelihood = likelihood if likelihood is not None else BernoulliLikelihood(data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    body, features = mlp_encoder(data_shape, hidden, activation)
    classifier = Classifier(with_input_transform(body, contract.support), features, num_classes)
    pre_activation = MLPBody([math.prod(data_shape), *hidden], len(data_shape), False, activation)
    encoder = M2Encoder(
        with_input_transform(pre_activation, contract.support),
        hidden[-1],
        latent_dim,
        num_classes,
        activation_unit(activation),
    )
    outputs = contract.num_outputs or math.prod(data_shape)
    decoder = M2Decoder(
        mlp_decoder(latent_dim + num_classes, data_shape, hidden, outputs, activation), num_classes
    )
    prior = prior if prior is not None else StandardNormalPrior(latent_dim)
    return M2(classifier, encoder, decoder, prior, likelihood, num_classes, data_shape=data_shape)
