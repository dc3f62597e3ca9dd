"""A VAE with several stochastic layers: the model z_L -> ... -> z_1 -> x, the guide x -> z_1
-> ... -> z_L (Burda, Grosse & Salakhutdinov 2016, section 5: two layers of 100 and 50 units).

Parts (each an ``nn.Module`` returning a distribution, as for the :class:`~pyro_vae.VAE`):

================  =========================  ===========================================
part              call                       returns
================  =========================  ===========================================
prior             ``prior()``                p(z_L), the top layer (any prior of the VAE)
prior_layers[l]   ``prior_layers[l](z)``     p(z_{l+1} | z_{l+2}) from z_{l+2} (0-based l)
decoder           ``decoder(z_1)``           the likelihood's parameters
likelihood        ``likelihood(params)``     p(x | z_1)
encoder           ``encoder(x)``             q(z_1 | x) (any guide of the VAE)
guide_layers[l]   ``guide_layers[l](z)``     q(z_{l+2} | z_{l+1}) from z_{l+1}
================  =========================  ===========================================

The sites are ``z1`` .. ``zL`` and ``x``, all inside ``pyro.plate("data")``, so Pyro's
own ELBOs and ``SVI`` work on ``model``/``guide``; :meth:`StackedVAE.log_weights` is the
objectives' and the evaluation's fast path, with every layer in the weight
log w = log p(x|z_1) + sum_l log p(z_l|z_{l+1}) + log p(z_L) - sum_l log q(z_l|z_{l-1}).
Its ``z`` is the layers joined, ``[particles, batch, sum(latent_dims)]``. With
``path_derivative`` (STL, DReG) every term of log w reads its layer from that tensor, so
DReG's hook on it weighs each path from a guide parameter once, and each conditional
layer's log q is differentiated through its value and its parent, not its parameters
(:func:`conditional_path_log_prob`).

Example:
    >>> vae = mlp_stacked_vae((1, 28, 28), latent_dims=(8, 4), hidden=[32], latent_hidden=[16])
    >>> vae.latent_dims, vae.log_weights(torch.zeros(3, 1, 28, 28), 5).log_w.shape
    ((8, 4), torch.Size([5, 3]))
    >>> vae.sample(2).shape, vae.encode(torch.zeros(3, 1, 28, 28))[0].shape
    (torch.Size([2, 1, 28, 28]), torch.Size([3, 12]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from .._private import am_i_wrapped
from ..distributions import score_through_value
from ..errors import ModelError
from ..guides import NormalGuide
from ..likelihoods import BernoulliLikelihood
from ..networks import MLPBody, check_sizes, mlp_decoder, mlp_encoder, with_input_transform
from ..parts import _call, _describe, check_parts, likelihood_contract
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

__all__ = [
    "StackedVAE",
    "TopGuide",
    "check_stacked_parts",
    "conditional_layer",
    "conditional_path_log_prob",
    "mlp_stacked_vae",
    "ENCODE_DRAWS",
]

ENCODE_DRAWS = 64  # draws through the guide's chain for the moments of q(z_l|x), l >= 2


def conditional_layer(
    parent_dim: int, hidden: Sequence[int], latent_dim: int, activation: str = "relu"
) -> NormalGuide:
    """A diagonal Gaussian of ``latent_dim`` units given a layer of ``parent_dim`` units, through
    an MLP of ``hidden`` sizes and ``activation`` units (a key of
    :data:`pyro_vae.networks.ACTIVATIONS`; Burda et al. used ``tanh``):
    Burda et al.'s p(z_1|z_2) and q(z_2|z_1).

    Example:
        >>> conditional_layer(4, [16, 16], 2)(torch.zeros(3, 4)).event_shape
        torch.Size([2])
    """
    if not hidden:
        return NormalGuide(nn.Identity(), parent_dim, latent_dim)
    body = MLPBody([parent_dim, *hidden], event_dims=1, activation=activation)
    return NormalGuide(body, hidden[-1], latent_dim)


def conditional_path_log_prob(
    layer: nn.Module, parent: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """log q(z | parent) from ``layer(parent)``, differentiated through ``z`` and ``parent`` but
    not through the layer's parameters (the path derivative of a conditional guide layer).

    :func:`pyro_vae.vae.path_log_prob` holds all of q's inputs fixed, which for q(z_2|z_1)
    would also drop the path through z_1; here a second pass of the layer at the detached
    parent and value cancels the parameters' derivative only.

    Example:
        >>> layer = conditional_layer(2, [], 2)
        >>> parent = torch.ones(1, 2, requires_grad=True)
        >>> z = layer(parent).sample()   # a value that does not depend on the parameters
        >>> value = conditional_path_log_prob(layer, parent, z)
        >>> bool(torch.allclose(value, layer(parent).log_prob(z)))
        True
        >>> *params, by_parent = torch.autograd.grad(value.sum(), [*layer.parameters(), parent])
        >>> [bool((g == 0).all()) for g in params], bool((by_parent != 0).any())
        ([True, True], True)
    """
    at_fixed = layer(parent.detach()).log_prob(z.detach())
    with score_through_value():
        total = layer(parent).log_prob(z)
    return total - at_fixed + at_fixed.detach()


class StackedVAE(VAE):
    """A VAE whose latent code is a stack of layers z_1 (nearest x) .. z_L (under the prior).

    ``guide_layers`` and ``prior_layers`` hold L - 1 modules each (see the module's table);
    the parts are checked with a batch of two when ``data_shape`` is known, unless
    ``check=False``. ``latent_dims`` are the layers' widths, bottom first.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        likelihood: nn.Module,
        guide_layers: Sequence[nn.Module],
        prior_layers: Sequence[nn.Module],
        *,
        data_shape: Sequence[int] | None = None,
        check: bool = True,
    ):
        super().__init__(encoder, decoder, prior, likelihood, data_shape=data_shape, check=False)
        if not guide_layers or len(guide_layers) != len(prior_layers):
            raise ModelError(
                f"a StackedVAE of L layers needs L - 1 >= 1 guide layers q(z_l+1|z_l) and as many "
                f"prior layers p(z_l|z_l+1); got {len(guide_layers)} and {len(prior_layers)} "
                "(one layer is the plain VAE)"
            )
        self.guide_layers = nn.ModuleList(guide_layers)
        self.prior_layers = nn.ModuleList(prior_layers)
        self.latent_dims = self._probe_dims()
        if check and self.data_shape is not None:
            check_stacked_parts(self, self.data_shape)

    def _probe_dims(self) -> tuple[int, ...]:
        """The layers' widths, read from the prior and the prior layers (no data needed)."""
        with torch.no_grad(), pyro.poutine.block():
            p_top = _call("prior", self.prior, expect="take no input and return p(z_L)")
            if not isinstance(p_top, dist.Distribution) or len(p_top.event_shape) != 1:
                raise ModelError(
                    f"the prior ({type(self.prior).__name__}) must return p(z_L) with event shape "
                    f"(latent_dim,); got {_describe(p_top)}"
                )
            dims = [p_top.event_shape[0]]
            z = torch.zeros(1, dims[0], device=_device_of(self))
            for index in reversed(range(len(self.prior_layers))):
                layer = self.prior_layers[index]
                p = _call(
                    f"prior layer {index}", layer, z, expect=f"map z [..., {dims[0]}] to p(z|z')"
                )
                if not isinstance(p, dist.Distribution) or len(p.event_shape) != 1:
                    raise ModelError(
                        f"prior layer {index} ({type(layer).__name__}) must return a distribution "
                        f"with event shape (latent_dim,); got {_describe(p)} (use .to_event(1))"
                    )
                dims.insert(0, p.event_shape[0])
                z = torch.zeros(1, dims[0], device=z.device)
        return tuple(int(d) for d in dims)

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

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
        """p(z_L) prod_l p(z_l|z_{l+1}) p(x|z_1) for a minibatch; ``kl_scale`` weighs every
        latent site. Arguments as :meth:`VAE.model`."""
        if x is not None:
            x = self.shaped(x)
        p_top = self.prior()
        with data_plate(x, num_data, batch_size):
            with latent_weight(kl_scale):
                z = pyro.sample(f"z{self.num_layers}", p_top)
                for index in reversed(range(self.num_layers - 1)):
                    z = pyro.sample(f"z{index + 1}", self.prior_layers[index](z))
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
        """q(z_1|x) prod_l q(z_{l+1}|z_l) for a minibatch; the same ``kl_scale`` as the model."""
        if self.has_global_latents:
            self.prior.guide()
        if x is None:
            raise ModelError(
                "the guide q(z|x) needs data: call it with a batch x (to generate, run the "
                "model alone: vae.model(None, batch_size=n))"
            )
        x = self.shaped(x)
        with data_plate(x, num_data), latent_weight(kl_scale):
            z = pyro.sample("z1", self.encoder(x))
            for index, layer in enumerate(self.guide_layers):
                z = pyro.sample(f"z{index + 2}", layer(z))

    def log_weights(
        self, x: torch.Tensor, num_particles: int = 1, path_derivative: bool = False
    ) -> LogWeights:
        """The terms of log w summed over the layers, ``[num_particles, batch]`` each; ``z`` is
        the layers joined. ``q`` and ``p`` are None: no single pair describes the stack."""
        num_particles = count(num_particles, "num_particles")
        if am_i_wrapped():
            return self._announced_log_weights(x, num_particles, path_derivative)
        return self._log_weights(x, num_particles, path_derivative)

    def _log_weights(
        self, x: torch.Tensor, num_particles: int, path_derivative: bool = False
    ) -> LogWeights:
        x = self.shaped(x)
        q = self.encoder(x)
        drawn = [q.rsample((num_particles,))]
        guides = [q]
        for layer in self.guide_layers:
            guides.append(layer(drawn[-1]))
            drawn.append(guides[-1].rsample())
        z = torch.cat(drawn, -1)
        if path_derivative:  # every term reads z, so a hook on z sees each path once
            layers = z.split(self.latent_dims, -1)
            log_q = path_log_prob(q, layers[0])
            for index, layer in enumerate(self.guide_layers):
                log_q = log_q + conditional_path_log_prob(layer, layers[index], layers[index + 1])
        else:
            layers = drawn
            log_q = sum(g.log_prob(value) for g, value in zip(guides, drawn, strict=True))
        log_prior = self.prior_given_globals().log_prob(layers[-1])
        for index, layer in enumerate(self.prior_layers):
            log_prior = log_prior + layer(layers[index + 1]).log_prob(layers[index])
        log_lik = self.likelihood(self.decoder(layers[0])).log_prob(x)
        return LogWeights(log_lik, log_prior, log_q, z, None, None)

    _announced_log_weights = pyro_method(_log_weights)

    def outputs_per_sample(self, device: torch.device) -> int:
        """How many numbers the decoder outputs for one latent sample (no random draws)."""
        z = as_model_input(self, torch.zeros(1, self.latent_dims[0], device=device))
        return self.decoder(z).numel()

    def top_guide(self) -> TopGuide:
        """q(z_L|x) along the guide's mean path (for a VampPrior on the top layer)."""
        return TopGuide(self.encoder, self.guide_layers)

    # -- helpers for users and plots --------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of every layer's q(z_l|x), joined: ``[batch, sum(dims)]``.

        Layer 1 is q(z_1|x) itself; a deeper layer's marginal moments average its
        conditional ones over ``ENCODE_DRAWS`` draws of the layer below (E[z_l|x] is the mean
        of E[z_l|z_l-1], so an inactive unit's constant mean carries no Monte Carlo noise into
        the active-unit count; the variance is the law of total variance).
        """
        x = self.shaped(x)
        q = self.encoder(x)
        loc, scale = _moments(q)
        means, stds = [loc], [scale]
        z = q.sample((ENCODE_DRAWS,))
        for layer in self.guide_layers:
            q = layer(z)
            loc, scale = _moments(q)
            means.append(loc.mean(0))
            stds.append((scale.pow(2).mean(0) + loc.var(0)).sqrt())
            z = q.sample()
        return torch.cat(means, -1), torch.cat(stds, -1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z_L] along the model's mean path, from top-layer codes ``z [batch, dims[-1]]``."""
        z = as_model_input(self, z)
        for layer in reversed(self.prior_layers):
            z = _moments(layer(z))[0]
        return self.likelihood(self.decoder(z)).mean

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x|z_1] at the posterior mean z_1 = E[z_1|x]."""
        z1 = _moments(self.encoder(self.shaped(x)))[0]
        return self.likelihood(self.decoder(z1)).mean

    @torch.no_grad()
    def draw(self, n: int) -> tuple[torch.Tensor, dist.Distribution]:
        """z_L ~ p(z_L), each z_l ~ p(z_l|z_{l+1}); returns z_1 and p(x|z_1)."""
        z = self.prior_given_globals().sample((count(n, "n", minimum=0),))
        for layer in reversed(self.prior_layers):
            z = layer(z).sample()
        return z, self.likelihood(self.decoder(z))


class TopGuide(nn.Module):
    """q(z_L|x) with the layers below at their means: the guide's top layer as a function of x.

    Its modules are the stacked VAE's own, held by plain reference (not registered twice).
    """

    def __init__(self, encoder: nn.Module, guide_layers: nn.ModuleList):
        super().__init__()
        self.__dict__["encoder"] = encoder
        self.__dict__["guide_layers"] = guide_layers

    def forward(self, x: torch.Tensor) -> dist.Distribution:
        q = self.encoder(x)
        for layer in self.guide_layers:
            q = layer(_moments(q)[0])
        return q


def _device_of(module: nn.Module) -> torch.device:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


def check_stacked_parts(vae: StackedVAE, data_shape: tuple[int, ...]) -> None:
    """Check the bottom VAE (encoder, decoder, likelihood) and every pair of layers with a
    batch of two; raise ModelError naming the part that does not fit."""
    dims = vae.latent_dims
    bottom = StandardNormalPrior(dims[0]).to(_device_of(vae))
    check_parts(vae.encoder, vae.decoder, bottom, vae.likelihood, tuple(data_shape))
    with torch.no_grad(), pyro.poutine.block():
        for index, (up, down) in enumerate(zip(vae.guide_layers, vae.prior_layers, strict=True)):
            below, above = dims[index], dims[index + 1]
            z = torch.zeros(2, below, device=_device_of(vae))
            q = _call(f"guide layer {index}", up, z, expect=f"map z [..., {below}] to q(z'|z)")
            if not isinstance(q, dist.Distribution) or q.event_shape != (above,):
                raise ModelError(
                    f"guide layer {index} ({type(up).__name__}) returns {_describe(q)}; q(z_"
                    f"{index + 2}|z_{index + 1}) must have event shape ({above},), as "
                    f"p(z_{index + 2}) has"
                )
            if q.batch_shape != (2,) or not q.has_rsample:
                raise ModelError(
                    f"guide layer {index} ({type(up).__name__}) returns {_describe(q)}; for a "
                    "batch of 2 it must have batch shape (2,) and be reparameterizable"
                )
            p = down(torch.zeros(2, above, device=z.device))
            if p.batch_shape != (2,):
                raise ModelError(
                    f"prior layer {index} ({type(down).__name__}) returns {_describe(p)}; for a "
                    "batch of 2 it must have batch shape (2,)"
                )


def mlp_stacked_vae(
    data_shape: Sequence[int],
    latent_dims: Sequence[int] = (100, 50),
    hidden: Sequence[int] = (200, 200),
    latent_hidden: Sequence[int] = (100, 100),
    *,
    likelihood: nn.Module | None = None,
    prior: nn.Module | None = None,
    latent_activation: str = "relu",
    activation: str = "relu",
) -> StackedVAE:
    """Burda et al.'s stacked VAE: MLPs of ``hidden`` sizes between x and z_1, of
    ``latent_hidden`` sizes between consecutive layers, diagonal Gaussian layers, a Normal
    guide, N(0, I) on the top layer (or ``prior``) and Bernoulli pixels by default. The
    MLPs next to x use ``activation`` units; those between the layers use
    ``latent_activation``; both ReLU by default (Burda et al. used tanh: on mnist5k it keeps the
    top layer in use but did not raise log p(x); experiments/RESULTS.md).

    Example:
        >>> mlp_stacked_vae((1, 28, 28), (6, 4, 2), [16], [8]).num_layers
        3
    """
    check_sizes(
        data_shape=data_shape, latent_dims=latent_dims, hidden=hidden, latent_hidden=latent_hidden
    )
    data_shape, dims = tuple(data_shape), tuple(latent_dims)
    if len(dims) < 2:
        raise ModelError(f"latent_dims {list(dims)}: a stack needs two layers or more")
    likelihood = likelihood if likelihood is not None else BernoulliLikelihood(data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    body, features = mlp_encoder(data_shape, hidden, activation)
    encoder = NormalGuide(with_input_transform(body, contract.support), features, dims[0])
    outputs = contract.num_outputs or math.prod(data_shape)
    decoder = mlp_decoder(dims[0], data_shape, hidden, outputs, activation)
    pairs = list(zip(dims, dims[1:], strict=False))
    guide_layers = [conditional_layer(a, latent_hidden, b, latent_activation) for a, b in pairs]
    prior_layers = [conditional_layer(b, latent_hidden, a, latent_activation) for a, b in pairs]
    prior = prior if prior is not None else StandardNormalPrior(dims[-1])
    return StackedVAE(
        encoder, decoder, prior, likelihood, guide_layers, prior_layers, data_shape=data_shape
    )
