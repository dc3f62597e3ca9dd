"""The VAE: a PyroModule whose ``model`` and ``guide`` are a few lines each.

Four swappable parts, each an ``nn.Module``:

- ``prior()`` returns p(z) (event shape ``(latent_dim,)``);
- ``encoder(x)`` returns q(z|x), reparameterizable;
- ``decoder(z)`` returns raw parameters and ``likelihood(params)`` returns p(x|z).

Both training styles work on the same object:

- classic Pyro: ``SVI(vae.model, vae.guide, pyro.optim.Adam(...), Trace_ELBO()).step(x)``;
- torch style: ``loss = Trace_ELBO()(vae, vae.guide_module())`` is an ``nn.Module``
  trained with ``torch.optim`` (pass modules: bound methods give it no parameters).

Each instance gets its own Pyro name (``vae0``, ``vae1``, ...), so two VAEs in
one process never share entries in Pyro's global parameter store.

Example:
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[64])
    >>> x = torch.zeros(5, 1, 28, 28)
    >>> loc, scale = vae.encode(x)
    >>> loc.shape, vae.reconstruct(x).shape, vae.sample(3).shape
    (torch.Size([5, 2]), torch.Size([5, 1, 28, 28]), torch.Size([3, 1, 28, 28]))
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import operator
from collections.abc import Sequence
from typing import ClassVar, NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule, pyro_method
from torch import nn

from ._private import am_i_wrapped, set_pyro_name
from .distributions import score_through_value
from .errors import ConfigError, ModelError
from .parts import check_parts, prior_has_globals

__all__ = [
    "AmortizedModel",
    "check_kl_scale",
    "count",
    "check_num_data",
    "as_model_input",
    "VAE",
    "GuideModule",
    "LogWeights",
    "path_log_prob",
    "scored_from_parts",
]

_names = itertools.count()


class LogWeights(NamedTuple):
    """Per-particle, per-datapoint terms of log w = log p(x|z) + log p(z) - log q(z|x).

    Each tensor is ``[num_particles, batch]``; ``z`` is ``[num_particles, batch, latent_dim]``;
    ``q`` and ``p`` are the guide q(z|x) and prior p(z) the terms came from.
    """

    log_lik: torch.Tensor
    log_prior: torch.Tensor
    log_q: torch.Tensor
    z: torch.Tensor
    q: dist.Distribution | None = None
    p: dist.Distribution | None = None

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_lik + self.log_prior - self.log_q


def data_plate(
    x: torch.Tensor | None, num_data: int | None, batch_size: int | None = None
) -> pyro.plate:
    """The plate over datapoints: ``x`` is a minibatch of a dataset of ``num_data`` points.

    Pyro scales every site inside by ``num_data / batch``. ``x`` is already the
    minibatch, so the subsample indices are only its positions (no random draw).
    Without data the plate holds ``batch_size`` (default 1) datapoints to generate.
    """
    if x is None:
        return pyro.plate("data", batch_size or 1)
    batch = x.shape[0]
    check_num_data(num_data, batch)
    if num_data is None or num_data == batch:
        return pyro.plate("data", batch)
    return pyro.plate("data", num_data, subsample=torch.arange(batch, device=x.device))


def check_num_data(num_data: object, batch: int) -> None:
    """ModelError unless ``num_data`` is None or a whole number of datapoints, at least the
    minibatch's ``batch``: the size of the dataset the minibatch is drawn from, by which
    the data plate scales it (a smaller one shrinks the loss, 0 empties it).

    Example:
        >>> check_num_data(64, 128)
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ModelError: num_data=64 is smaller than the minibatch of 128 ...
    """
    if num_data is None:
        return
    if torch.is_tensor(num_data) and num_data.numel() == 1 and not num_data.is_floating_point():
        num_data = int(num_data)
    if (
        isinstance(num_data, bool)
        or not isinstance(num_data, (int, float))
        or not math.isfinite(num_data)
        or num_data != int(num_data)
    ):
        raise ModelError(
            f"num_data must be a whole number of datapoints (the dataset's size), got "
            f"{num_data!r}; pass the labels and other arguments by name (model(x, y=y))"
        )
    if num_data < batch:
        raise ModelError(
            f"num_data={num_data:g} is smaller than the minibatch of {batch} datapoints; it is "
            "the size of the whole dataset the minibatch is drawn from (None for a full batch)"
        )


def count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (a NumPy or 0-dim tensor integer too); ConfigError
    naming ``name`` for anything else (a float, a bool, a negative number).

    Example:
        >>> count(np.int64(5), "k")
        5
        >>> count(0, "num_particles")
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: num_particles must be an int >= 1, got 0
    """
    if type(value) is int and value >= minimum:  # the usual case, on every training step
        return value
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or number < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


def check_kl_scale(kl_scale: float | torch.Tensor) -> None:
    """ModelError unless the KL weight ``kl_scale`` is >= 0 and finite (a tensor is checked
    while Pyro's validation is on: reading it costs a host sync).

    Example:
        >>> check_kl_scale(-1.0)
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ModelError: kl_scale must be a finite weight >= 0 of the KL term ...
    """
    if torch.is_tensor(kl_scale):
        if not is_validation_enabled():
            return
        bad = bool((~torch.isfinite(kl_scale) | (kl_scale < 0)).any())
    else:
        bad = not (isinstance(kl_scale, (int, float)) and 0 <= kl_scale < math.inf)
    if bad:
        raise ModelError(
            f"kl_scale must be a finite weight >= 0 of the KL term (beta-VAE, KL warm-up; 1 "
            f"for the ELBO), got {kl_scale!r}"
        )


def latent_weight(kl_scale: float | torch.Tensor):
    """``poutine.scale`` by ``kl_scale``; a weight of exactly 0 (the first epoch of KL
    warm-up) masks the site out instead, since Pyro refuses a scale of 0."""
    check_kl_scale(kl_scale)
    if not torch.is_tensor(kl_scale) and kl_scale == 0:
        return poutine.mask(mask=False)
    return poutine.scale(scale=kl_scale)


def as_model_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the floating dtype of ``model``'s parameters: bool or integer data (binary
    pixels, counts) and float64 arrays (numpy's default) score as the float numbers they
    hold, instead of failing deep in a network on a dtype mismatch. NaN stays NaN; a NumPy
    array (or nested lists of numbers) becomes a tensor.

    Example:
        >>> from pyro_vae import mlp_vae
        >>> as_model_input(mlp_vae((3,), 2, [4]), torch.tensor([[True, False, True]])).dtype
        torch.float32
    """
    if isinstance(x, (np.ndarray, list, tuple)):
        x = torch.as_tensor(np.asarray(x))
    if not torch.is_tensor(x) or x.is_complex():
        return x
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    dtype = dtype or torch.get_default_dtype()
    return x if x.dtype == dtype else x.to(dtype)


class AmortizedModel(PyroModule):
    """What every model family here shares, whatever its ``model`` and ``guide``.

    Each instance has its own name in Pyro's parameter store (a deep copy or an unpickled
    copy gets a fresh one, and so do the PyroModules named after it), so two models in one
    process never share store entries; a flat batch ``[batch, prod(data_shape)]`` is
    reshaped by :meth:`shaped`; ``forward`` is the model and :meth:`guide_module` wraps the
    guide, so ``objective(m, m.guide_module())`` works.
    """

    name_prefix: ClassVar[str] = "model"

    def __init__(self, data_shape: Sequence[int] | None):
        super().__init__(name=f"{self.name_prefix}{next(_names)}")
        self.data_shape: tuple[int, ...] | None = None if data_shape is None else tuple(data_shape)

    def __deepcopy__(self, memo: dict) -> AmortizedModel:
        """An independent copy with its own Pyro name, so classic ``SVI`` trains it apart."""
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        for key, value in self.__dict__.items():
            copied.__dict__[key] = copy.deepcopy(value, memo)
        set_pyro_name(copied, f"{self.name_prefix}{next(_names)}")
        return copied

    def __setstate__(self, state: dict) -> None:
        """Unpickled (``pickle``, ``torch.load`` of a whole model, a worker process): a fresh
        Pyro name, so the copy never shares store entries with the original or another
        model named alike in this process."""
        super().__setstate__(state)
        set_pyro_name(self, f"{self.name_prefix}{next(_names)}")

    def shaped(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``[batch, *data_shape]`` in the parameters' dtype (:func:`as_model_input`):
        flat rows are reshaped; other shapes are refused, and so (while Pyro's validation is
        on) are missing entries the model cannot mask."""
        x = as_model_input(self, x)
        if is_validation_enabled():
            self._refuse_unmasked_missing(x)
        if self.data_shape is None or tuple(x.shape[1:]) == self.data_shape:
            return x
        if x.dim() >= 1 and math.prod(x.shape[1:]) == math.prod(self.data_shape):
            return x.reshape(x.shape[0], *self.data_shape)
        raise ModelError(
            f"a batch of shape {tuple(x.shape)} does not fit this {type(self).__name__}, built "
            f"for datapoints of shape {self.data_shape}; pass [batch, "
            f"{', '.join(map(str, self.data_shape))}] or flat rows [batch, "
            f"{math.prod(self.data_shape)}]"
        )

    def _refuse_unmasked_missing(self, x: torch.Tensor) -> None:
        from .missing import handles_missing  # imported here: missing imports this module

        if x.is_floating_point() and not handles_missing(self) and bool(torch.isnan(x).any()):
            raise ModelError(
                f"x holds missing (NaN) entries but this {type(self).__name__} scores "
                "every entry: call pyro_vae.missing.allow_missing(model) first, to train "
                "on and score the observed entries alone"
            )

    def forward(self, *args, **kwargs) -> torch.Tensor:
        """The model, so that ``Trace_ELBO()(m, m.guide_module())`` works."""
        return self.model(*args, **kwargs)

    def guide_module(self) -> GuideModule:
        """An ``nn.Module`` whose forward is this model's guide (for ``ELBO.__call__``)."""
        return GuideModule(self)


class VAE(AmortizedModel):
    """A variational autoencoder built from a prior, an encoder, a decoder and a likelihood.

    The parts may be plain ``nn.Module`` s: ``model`` and ``guide`` are
    ``pyro_method`` s, so inside them PyroModule announces every child's parameters
    to Pyro (``pyro.module``) under this instance's unique name, and classic ``SVI``
    trains them. Outside Pyro's handlers the parts run as plain PyTorch.

    ``data_shape`` (default: the likelihood's own ``data_shape``) is the shape of one
    datapoint; when it is known the parts are checked against their contracts
    (:func:`pyro_vae.parts.check_parts`) here, and a batch of flat vectors
    ``[batch, prod(data_shape)]`` is reshaped, as Pyro's VAE example passes them.
    A subclass whose parts take more than ``x`` (a label, say) passes ``check=False``.
    """

    name_prefix = "vae"

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        likelihood: nn.Module,
        *,
        data_shape: Sequence[int] | None = None,
        check: bool = True,
    ):
        if data_shape is None:
            data_shape = getattr(likelihood, "data_shape", None)
        super().__init__(data_shape)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        if check and self.data_shape is not None:
            check_parts(encoder, decoder, prior, likelihood, self.data_shape)

    @property
    def has_global_latents(self) -> bool:
        """Whether the prior samples global latent variables (see :class:`pyro_vae.parts.Prior`)."""
        return prior_has_globals(self.prior)

    @pyro_method
    def model(
        self,
        x: torch.Tensor | None,
        num_data: int | None = None,
        kl_scale: float | torch.Tensor = 1.0,
        *,
        batch_size: int | None = None,
        observe: bool = True,
    ) -> torch.Tensor:
        """p(z) p(x|z) for a minibatch; ``kl_scale`` weighs the z site (beta-VAE, warm-up).

        ``model(None, batch_size=n)`` generates ``n`` datapoints; ``observe=False`` draws
        fresh ``x`` beside given data (posterior predictive with ``Predictive`` and the
        guide). The prior is called outside the ``data`` plate, so its global latents
        are drawn once. Returns the datapoints (observed or drawn).
        """
        if x is not None:
            x = self.shaped(x)
        p_z = self.prior()
        with data_plate(x, num_data, batch_size):
            with latent_weight(kl_scale):
                z = pyro.sample("z", p_z)
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x if observe else None)

    @pyro_method
    def guide(
        self,
        x: torch.Tensor | None,
        num_data: int | None = None,
        kl_scale: float | torch.Tensor = 1.0,
        *,
        batch_size: int | None = None,
        observe: bool = True,
    ) -> None:
        """q(z|x) for a minibatch; the same ``kl_scale`` as the model, or the objective is wrong.

        Global latents of the prior get their guide (the prior's ``guide``), outside the plate.
        """
        if self.has_global_latents:
            self.prior.guide()
        if x is None:
            raise ModelError(
                "the guide q(z|x) needs data: call it with a batch x (to generate, run the "
                "model alone: vae.model(None, batch_size=n))"
            )
        x = self.shaped(x)
        with data_plate(x, num_data), latent_weight(kl_scale):
            pyro.sample("z", self.encoder(x))

    def log_weights(
        self, x: torch.Tensor, num_particles: int = 1, path_derivative: bool = False
    ) -> LogWeights:
        """The terms of log w for ``num_particles`` reparameterized draws per datapoint.

        The same computation as running ``guide`` then ``model`` under Pyro's tracing,
        with the same random numbers, minus the tracing: the fast path of the objectives.
        Under a Pyro handler (classic ``SVI`` collects parameters with one) the parts'
        parameters are announced as ``pyro.param`` sites; otherwise it is plain PyTorch.
        With ``path_derivative`` the value of ``log_q`` is unchanged but its gradient
        reaches the guide only through z (see :func:`path_log_prob`; STL and DReG use it).
        """
        num_particles = count(num_particles, "num_particles")
        if am_i_wrapped():
            return self._announced_log_weights(x, num_particles, path_derivative)
        return self._log_weights(x, num_particles, path_derivative)

    def _log_weights(
        self, x: torch.Tensor, num_particles: int, path_derivative: bool = False
    ) -> LogWeights:
        x = self.shaped(x)
        q = self.encoder(x)
        z = q.rsample((num_particles,))
        p_x = self.likelihood(self.decoder(z))
        p_z = self.prior_given_globals()
        log_q = path_log_prob(q, z) if path_derivative else q.log_prob(z)
        return LogWeights(p_x.log_prob(x), p_z.log_prob(z), log_q, z, q, p_z)

    _announced_log_weights = pyro_method(_log_weights)

    def outputs_per_sample(self, device: torch.device) -> int:
        """How many numbers the decoder outputs for one latent sample (no random draws)."""
        z = as_model_input(self, torch.zeros((1, *self.prior().event_shape), device=device))
        return self.decoder(z).numel()

    def prior_given_globals(self) -> dist.Distribution:
        """p(z); with global latents, p(z | globals) at one draw of them from their guide.

        Per-datapoint scores (``log_weights``, evaluation) and samples of a prior with
        global latents are conditional on that draw: the prior trained, never another.
        """
        if not self.has_global_latents:
            return self.prior()
        globals_trace = poutine.trace(self.prior.guide).get_trace()
        return poutine.replay(self.prior, trace=globals_trace)()

    # -- helpers for users and plots --------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of q(z|x), each ``[batch, latent_dim]``."""
        return _moments(self.encoder(self.shaped(x)))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image E[x|z] for latent codes ``z`` (probabilities for Bernoulli pixels);
        ``z`` of another dtype (a float32 grid for a float64 model) is cast to the model's."""
        return self.likelihood(self.decoder(as_model_input(self, z))).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x|z] at the posterior mean z = E[z|x]."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` images from the model: E[x|z] (draws of x when ``mean=False``), z ~ p(z)."""
        p_x = self.draw(n)[1]
        return p_x.mean if mean else p_x.sample()

    def draw(self, n: int) -> tuple[torch.Tensor, dist.Distribution]:
        """``n`` latents z ~ p(z) (the layer x is decoded from) and p(x|z) at them."""
        z = self.prior_given_globals().sample((count(n, "n", minimum=0),))
        return z, self.likelihood(self.decoder(z))


class GuideModule(nn.Module):
    """Wraps a model (a VAE, an M2) so that its guide is the ``forward`` of a module."""

    def __init__(self, owner: AmortizedModel):
        super().__init__()
        self.owner = owner

    def forward(self, *args, **kwargs) -> None:
        return self.owner.guide(*args, **kwargs)


def scored_from_parts(owner: object) -> VAE | None:
    """``owner`` if its ``log_weights`` scores its own ``model``/``guide`` (the fast path).

    The class that defines ``log_weights`` vouches for the ``model``, ``guide`` and
    ``forward`` it defines or inherits: a :class:`VAE` and a
    :class:`~pyro_vae.families.CVAE` are scored from their parts; a subclass that
    overrides ``model`` or ``guide`` alone is not (it goes through Pyro's traces).

    Example:
        >>> class Traced(VAE):
        ...     def model(self, x, num_data=None, kl_scale=1.0):
        ...         return VAE.model(self, x, num_data, kl_scale)
        >>> from pyro_vae import mlp_vae
        >>> vae = mlp_vae((1, 28, 28), 2, [8])
        >>> scored_from_parts(vae) is vae, scored_from_parts(Traced(*vae.children()))
        (True, None)
    """
    if not isinstance(owner, VAE):
        return None
    return owner if _scores_own_pair(type(owner)) else None


@functools.cache
def _scores_own_pair(cls: type) -> bool:
    """Whether ``cls`` keeps the ``model``, ``guide`` and ``forward`` of the class defining
    its ``log_weights`` (read once per class: the objectives ask on every step)."""
    base = next(c for c in cls.__mro__ if "log_weights" in vars(c))
    return all(getattr(cls, name) is getattr(base, name) for name in ("model", "guide", "forward"))


def path_log_prob(q: dist.Distribution, z: torch.Tensor) -> torch.Tensor:
    """log q(z) whose gradient reaches q's parameters only through z (the path derivative).

    The value is ``q.log_prob(z)``; the gradient is that of log q evaluated with q's
    parameters held fixed, as in sticking-the-landing (Roeder et al. 2017) and DReG
    (Tucker et al. 2018). It is computed as ``log q(z) - log q(sg z) + sg(log q(sg z))``
    with ``sg`` the stop-gradient: the first term carries the total derivative (path
    through z plus q's direct dependence on its parameters), the second only the direct
    one, which cancels. The first term is scored :func:`score_through_value`, so its
    derivative reaches q's parameters through z, where DReG's hook scales it. Any
    reparameterizable distribution works, flows included (a cached flow gives the first
    term's total derivative correctly; the second costs one inverse pass), with no
    access to the guide's parameters.

    Example (for z = loc + eps the total derivative of log q(z) vanishes, the path one is -eps):
        >>> loc = torch.zeros(1, requires_grad=True)
        >>> q = dist.Normal(loc, 1.0)
        >>> z = q.rsample()
        >>> torch.autograd.grad(q.log_prob(z).sum(), loc, retain_graph=True)[0]
        tensor([0.])
        >>> path = torch.autograd.grad(path_log_prob(q, z).sum(), loc)[0]
        >>> bool(torch.allclose(path, -(z - loc).detach()))
        True
    """
    fixed = z.detach()
    at_fixed = q.log_prob(fixed)
    with score_through_value():
        total = q.log_prob(z)
    return total - at_fixed + at_fixed.detach()


def _moments(q: dist.Distribution, num_samples: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of q, by Monte Carlo where they have no closed form."""
    try:
        return q.mean, q.stddev
    except NotImplementedError:
        z = q.sample((num_samples,))
        return z.mean(0), z.std(0)
