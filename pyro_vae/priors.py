"""Priors p(z): modules whose call returns a Pyro distribution with event shape ``(latent_dim,)``.

Learnable parameters are ordinary ``nn.Parameter`` s: they train with the rest of
the VAE, torch style and under classic ``SVI``. Write your own prior the same way
(its contract is :class:`pyro_vae.parts.Prior`) and pass it to :func:`pyro_vae.mlp_vae`
or :class:`pyro_vae.VAE`; :mod:`pyro_vae.app.registry` only lets config files and the
command line name the built-ins.

Example:
    >>> prior = MixtureOfGaussiansPrior(latent_dim=2, components=5)
    >>> p = prior()
    >>> p.event_shape, p.batch_shape, tuple(p.sample((3,)).shape)
    (torch.Size([2]), torch.Size([]), (3, 2))
"""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import AutoRegressiveNN
from torch import nn

from .distributions import StandardNormal, UniformMixture
from .guides import bounded_scale, unbounded_scale
from .parts import Prior

__all__ = [
    "FLOW_TYPES",
    "StandardNormalPrior",
    "LearnedNormalPrior",
    "MixtureOfGaussiansPrior",
    "VampPrior",
    "FlowPrior",
    "LaplacePrior",
    "StudentTPrior",
    "HierarchicalNormalPrior",
]

FLOW_TYPES = ("affine-autoregressive", "spline-coupling")


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I).

    Example:
        >>> StandardNormalPrior(3)().stddev
        tensor([1., 1., 1.])
    """

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)
        self._built: tuple[tuple, dist.TorchDistribution] | None = None

    def forward(self) -> dist.TorchDistribution:
        """The same distribution object while its buffers and the validation setting stay
        (a fixed N(0, I) need not be rebuilt on every step); a new one after ``.to()``."""
        key = (self.loc, self.scale, torch.distributions.Distribution._validate_args)
        built = self.__dict__.get("_built")  # absent from a prior pickled before it existed
        if built is None or any(a is not b for a, b in zip(key, built[0], strict=True)):
            built = self._built = (key, StandardNormal(self.loc, self.scale).to_event(1))
        return built[1]


class LearnedNormalPrior(nn.Module):
    """p(z) = N(loc, diag(scale^2)) with learnable ``loc`` and ``scale``, starting at N(0, I).

    Example:
        >>> prior = LearnedNormalPrior(2)
        >>> [name for name, _ in prior.named_parameters()]
        ['loc', 'raw_scale']
    """

    def __init__(self, latent_dim: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.raw_scale = nn.Parameter(unbounded_scale(torch.ones(latent_dim)))

    @property
    def scale(self) -> torch.Tensor:
        return bounded_scale(self.raw_scale)

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


class MixtureOfGaussiansPrior(nn.Module):
    """p(z) = sum_k w_k N(loc_k, diag(scale_k^2)): K diagonal Gaussians, all learnable.

    Weights start equal, scales at 1, locations at standard-normal draws.

    Example:
        >>> prior = MixtureOfGaussiansPrior(2, components=3)
        >>> prior.locs.shape, prior().mixture_distribution.probs.detach()
        (torch.Size([3, 2]), tensor([0.3333, 0.3333, 0.3333]))
    """

    def __init__(self, latent_dim: int, components: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.raw_scales = nn.Parameter(unbounded_scale(torch.ones(components, latent_dim)))

    @property
    def scales(self) -> torch.Tensor:
        return bounded_scale(self.raw_scales)

    def forward(self) -> dist.TorchDistribution:
        return dist.MixtureSameFamily(
            dist.Categorical(logits=self.logits), dist.Normal(self.locs, self.scales).to_event(1)
        )


class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k).

    The components are the encoder's own posteriors at K learnable pseudo-inputs
    ``u_k`` (shaped like the data), so any guide family works, flows included.
    The encoder is held by a plain reference, not as a submodule: it belongs to
    the VAE, and registering it twice would put its parameters twice into Pyro's
    parameter store and the state dict.

    Example:
        >>> from pyro_vae.guides import NormalGuide
        >>> from pyro_vae.networks import mlp_encoder
        >>> encoder = NormalGuide(*mlp_encoder((1, 28, 28), [16]), latent_dim=2)
        >>> prior = VampPrior(encoder, (1, 28, 28), components=4)
        >>> prior().components.batch_shape, list(prior.state_dict())
        (torch.Size([4]), ['pseudo_inputs'])
    """

    def __init__(
        self,
        encoder: nn.Module,
        data_shape: tuple[int, ...],
        components: int,
        data_max: float = 1.0,
    ):
        super().__init__()
        self.__dict__["encoder"] = encoder  # bypasses nn.Module registration on purpose
        self.pseudo_inputs = nn.Parameter(data_max * torch.rand(components, *data_shape))

    def forward(self) -> dist.TorchDistribution:
        return UniformMixture(self.encoder(self.pseudo_inputs))


class FlowPrior(nn.Module):
    """p(z): N(0, I) pushed through ``depth`` learnable transforms of ``pyro.distributions``.

    - ``affine-autoregressive``: Pyro's ``AffineAutoregressive`` used in its inverse
      direction (a masked autoregressive flow), so scoring z (every training step)
      is one parallel pass and sampling is the sequential direction; the
      autoregressive order alternates between steps.
    - ``spline-coupling``: Pyro's ``SplineCoupling`` (neural spline flow, 8 bins on
      [-3, 3], identity outside) with the coordinates reversed between steps; in one
      dimension, where there is nothing to couple, each step is an elementwise ``Spline``.

    Example:
        >>> prior = FlowPrior(2, "spline-coupling", depth=3)
        >>> p = prior()
        >>> type(p).__name__, len(p.transforms), p.event_shape
        ('TransformedDistribution', 5, torch.Size([2]))
    """

    def __init__(self, latent_dim: int, flow: str = "affine-autoregressive", depth: int = 2):
        super().__init__()
        if flow not in FLOW_TYPES:
            raise ValueError(f"unknown flow {flow!r}; expected one of {FLOW_TYPES}")
        self.flow = flow
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)
        self.register_buffer("reverse", torch.arange(latent_dim - 1, -1, -1), persistent=False)
        width = max(32, 4 * latent_dim)
        self.steps = nn.ModuleList(
            [self._step(latent_dim, width, order=i % 2) for i in range(depth)]
        )

    def _step(self, latent_dim: int, width: int, order: int) -> T.TransformModule:
        if self.flow == "spline-coupling":
            if latent_dim == 1:
                return T.Spline(1, count_bins=8, bound=3.0)
            return T.spline_coupling(latent_dim, hidden_dims=[width, width], count_bins=8)
        permutation = torch.arange(latent_dim)
        with warnings.catch_warnings():
            # in 1-D an autoregressive affine map is just a learned affine map; Pyro warns
            warnings.filterwarnings("ignore", "ConditionalAutoRegressiveNN input_dim = 1")
            arn = AutoRegressiveNN(
                latent_dim,
                [width, width],
                permutation=permutation.flip(0) if order else permutation,
            )
        return T.AffineAutoregressive(arn)

    def transforms(self) -> list:
        """The chain from the base N(0, I) to z."""
        chain: list = []
        for i, step in enumerate(self.steps):
            if self.flow == "affine-autoregressive":
                chain.append(step.inv)
            else:
                if i and len(self.loc) > 1:
                    chain.append(T.Permute(self.reverse))
                chain.append(step)
        return chain

    def forward(self) -> dist.TorchDistribution:
        base = dist.Normal(self.loc, self.scale).to_event(1)
        return dist.TransformedDistribution(base, self.transforms())


class LaplacePrior(nn.Module):
    """p(z) = prod_d Laplace(z_d; 0, scale): heavier tails than N(0, I) (variance 2 scale^2).

    Example:
        >>> LaplacePrior(2)().variance
        tensor([2., 2.])
    """

    def __init__(self, latent_dim: int, scale: float = 1.0):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.full((latent_dim,), scale), persistent=False)

    def forward(self) -> dist.TorchDistribution:
        return dist.Laplace(self.loc, self.scale).to_event(1)


class StudentTPrior(nn.Module):
    """p(z) = prod_d StudentT(z_d; df, 0, scale): heavy tails, N(0, I) as df grows.

    Example:
        >>> StudentTPrior(2, df=4.0)().variance
        tensor([2., 2.])
    """

    def __init__(self, latent_dim: int, df: float = 3.0, scale: float = 1.0):
        super().__init__()
        self.register_buffer("df", torch.full((latent_dim,), df), persistent=False)
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.full((latent_dim,), scale), persistent=False)

    def forward(self) -> dist.TorchDistribution:
        return dist.StudentT(self.df, self.loc, self.scale).to_event(1)


class HierarchicalNormalPrior(Prior):
    """p(z | tau) = N(0, tau^2 I) with one global scale tau ~ LogNormal(0, 1) for all datapoints.

    ``tau`` is a global latent variable: sampled once per model run, outside the
    ``data`` plate, with its own guide q(tau) = LogNormal(loc, scale) (learned). Its
    KL term counts once per dataset, not once per datapoint. Per-datapoint scores and
    samples are conditional on a draw of tau from q(tau).

    Example:
        >>> import pyro
        >>> prior = HierarchicalNormalPrior(3)
        >>> trace = pyro.poutine.trace(prior.guide).get_trace()
        >>> trace.nodes["tau"]["value"].shape, prior().event_shape
        (torch.Size([]), torch.Size([3]))
    """

    has_globals = True

    def __init__(self, latent_dim: int, tau_scale: float = 1.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.tau_scale = tau_scale
        self.q_loc = nn.Parameter(torch.zeros(()))
        self.q_raw_scale = nn.Parameter(unbounded_scale(torch.full((), 0.1)))

    def forward(self) -> dist.TorchDistribution:
        zero = torch.zeros((), device=self.q_loc.device)
        tau = pyro.sample("tau", dist.LogNormal(zero, self.tau_scale))
        # tau's own batch dimensions (vectorized particles) stay left of the event dimension
        scale = tau.unsqueeze(-1).expand(*tau.shape, self.latent_dim)
        return dist.Normal(torch.zeros_like(scale), scale).to_event(1)

    def guide(self) -> None:
        pyro.sample("tau", dist.LogNormal(self.q_loc, bounded_scale(self.q_raw_scale)))
