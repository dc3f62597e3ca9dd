"""Distributions Pyro lacks: a mixture of any component family, and two over 8-bit levels.

- :class:`UniformMixture`: equal-weight mixture of the components along the last
  batch dimension; works for any family (Normal, flow, ...), e.g. the VampPrior.
- :class:`DiscretizedLogistic`: a logistic density integrated over the bins of the
  integer levels 0..255, with the edge bins stretched to infinity, so it is a proper
  distribution over the levels (Salimans et al. 2017, PixelCNN++).
- :class:`LevelsCategorical`: Pyro's Categorical with the mean and variance of the
  level index, so decoded mean images exist.
- :class:`StandardNormal`: Pyro's Normal fixed at N(0, 1), with a ``log_prob`` of
  three tensor operations instead of seven (it is on every training step).
- :class:`ReparameterizedNormal`: Pyro's Normal that scores its own latest
  ``rsample`` from the noise it drew, as a hand-written VAE does (the guide's
  log q(z|x) is on every training step).
- :class:`BernoulliPixels`: ``Bernoulli(logits).to_event(n)`` whose log-mass takes
  three passes over the pixels instead of eight (it scores every training step and
  every importance sample).

Example:
    >>> p = DiscretizedLogistic(torch.tensor([3.0]), torch.tensor([2.0]))
    >>> levels = torch.arange(256.0).unsqueeze(-1)
    >>> round(float(p.log_prob(levels).exp().sum()), 6)
    1.0
    >>> m = UniformMixture(dist.Normal(torch.tensor([-1.0, 1.0]), 1.0))
    >>> m.batch_shape, round(float(m.mean), 6)
    (torch.Size([]), 0.0)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from torch.autograd.function import once_differentiable
from torch.distributions.utils import broadcast_all

from ._private import standard_normal as _standard_normal

__all__ = [
    "UniformMixture",
    "DiscretizedLogistic",
    "LevelsCategorical",
    "StandardNormal",
    "ReparameterizedNormal",
    "BernoulliPixels",
    "score_through_value",
]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_SCALAR = torch.Size()


def _standard_log_density(value: torch.Tensor) -> torch.Tensor:
    """log N(value; 0, 1) elementwise, in three operations."""
    return (value * value).mul_(-0.5).sub_(_HALF_LOG_2PI)


class _OneShapeNormal(dist.Normal):
    """A Normal whose constructor skips ``broadcast_all`` where loc and scale are tensors of
    one shape (a network's two heads, a prior's two buffers): every step builds one."""

    def __init__(self, loc, scale, validate_args: bool | None = None):
        if not (torch.is_tensor(loc) and torch.is_tensor(scale) and loc.shape == scale.shape):
            super().__init__(loc, scale, validate_args)
            return
        self.loc, self.scale = loc, scale
        super(torch.distributions.Normal, self).__init__(loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        return super().expand(batch_shape, _instance=new)


class StandardNormal(_OneShapeNormal):
    """N(0, 1) of a given shape; a Normal in every respect but the cost of ``log_prob``.

    Example:
        >>> d = StandardNormal(torch.zeros(2), torch.ones(2))
        >>> v = torch.tensor([0.5, -2.0])
        >>> torch.allclose(d.log_prob(v), dist.Normal(0.0, 1.0).log_prob(v))
        True
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        result = _standard_log_density(value)
        batch = self.batch_shape
        if result.shape[max(result.dim() - len(batch), 0) :] == batch:
            return result  # the usual case, z of shape [..., latent_dim]: no shape work
        return result.expand(torch.broadcast_shapes(result.shape, batch))


_THROUGH_VALUE: ContextVar[bool] = ContextVar("score_through_value", default=False)


@contextmanager
def score_through_value() -> Iterator[None]:
    """Within it, every ``log_prob`` is the general formula of its value, so its
    derivative flows through the value (no shortcut of :class:`ReparameterizedNormal`).

    Example:
        >>> q = ReparameterizedNormal(torch.zeros(1, requires_grad=True), torch.ones(1))
        >>> z = q.rsample()
        >>> with score_through_value():
        ...     through_z = q.log_prob(z)
        >>> bool(torch.allclose(through_z, q.log_prob(z)))
        True
    """
    token = _THROUGH_VALUE.set(True)
    try:
        yield
    finally:
        _THROUGH_VALUE.reset(token)


class ReparameterizedNormal(_OneShapeNormal):
    """A Normal whose ``log_prob`` of its own latest ``rsample`` z = loc + scale * eps
    is computed from eps: -eps^2 / 2 - log(scale) - log(2 pi) / 2.

    That is the same value and the same total derivative as the general formula
    (through z, d/dloc vanishes and d/dscale is -1/scale), in three operations
    instead of eight, with no subtraction and division to undo. The derivative then
    reaches loc and scale directly rather than through z; inside
    :func:`score_through_value` (the path derivative of STL and DReG, whose hook on z
    must see it) and for any other value the general formula runs.

    Example:
        >>> q = ReparameterizedNormal(torch.zeros(3), torch.full((3,), 2.0))
        >>> z = q.rsample()
        >>> torch.allclose(q.log_prob(z), dist.Normal(0.0, 2.0).log_prob(z))
        True
    """

    _drawn: tuple[torch.Tensor, torch.Tensor] | None = None  # (z, eps) of the latest rsample

    def rsample(self, sample_shape: torch.Size = _SCALAR) -> torch.Tensor:
        eps = _standard_normal(self._extended_shape(sample_shape), self.loc.dtype, self.loc.device)
        z = self.loc + eps * self.scale
        self._drawn = (z, eps)
        return z

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._drawn is None or value is not self._drawn[0] or _THROUGH_VALUE.get():
            return super().log_prob(value)
        if self._validate_args:
            self._validate_sample(value)
        return _standard_log_density(self._drawn[1]).sub_(self.scale.log())


class _BernoulliLogMass(torch.autograd.Function):
    """log p(x | l) = x l - softplus(l) of Bernoulli pixels, summed over the ``n`` rightmost
    dimensions; ``logits`` and ``value`` of one (broadcast) shape.

    Written as (x l - relu(l)) + log sigmoid(|l|): the first term has no transcendental
    function, and the second is the log of a product of factors in [1/2, 1], multiplied in
    blocks short enough never to underflow, so one ``log`` serves a block of pixels. torch's
    ``softplus`` calls a scalar ``log1p`` per pixel, and both it and
    ``binary_cross_entropy_with_logits`` slow down as |l| grows: at logits of size 15 this
    forward pass takes 0.4-0.5 of softplus's time and a third of the cross-entropy's
    (experiments/bernoulli_log_mass.py). Both terms have one sign on every pixel, so their
    sums have no cancellation. The gradient is torch's formula, (x - sigmoid(l)) times the
    incoming one, so it matches torch's bit for bit."""

    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, value: torch.Tensor, slope: torch.Tensor | None, n: int
    ) -> torch.Tensor:
        """``value`` broadcast to ``logits``' shape; ``slope`` 1 - 2 x at the data's own size
        when that is smaller (particles), where it saves a pass; else None."""
        ctx.save_for_backward(logits, value)
        ctx.n = n
        batch = logits.shape[: logits.dim() - n]
        size = math.prod(logits.shape[logits.dim() - n :])
        block = _product_block(size, logits.dtype)
        magnitude = logits.abs()
        if slope is None:
            linear = torch.relu(logits).addcmul_(value, logits, value=-1)  # relu(l) - x l >= 0
            linear_sum = linear.reshape(*batch, size).sum(-1)
        else:  # |l| + (1 - 2x) l = 2 (relu(l) - x l), in one pass
            linear_sum = torch.addcmul(magnitude, slope, logits).reshape(*batch, size).sum(-1)
            linear_sum.mul_(0.5)
        factors = magnitude.sigmoid_().reshape(*batch, size // block, block)
        return factors.prod(-1).log_().sum(-1).sub_(linear_sum)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        logits, value = ctx.saved_tensors
        grad = grad.reshape(grad.shape + (1,) * ctx.n)
        grad_logits = grad_value = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.sigmoid(logits).sub_(value).mul_(-grad)
        if ctx.needs_input_grad[1]:
            grad_value = logits * grad
        return grad_logits, grad_value, None, None


def _plain(*values: object) -> bool:
    """Whether every tensor among ``values`` is a plain ``torch.Tensor``, not a subclass.

    A custom ``autograd.Function`` loses the graph on a subclass that overrides
    ``__torch_function__``: Pyro's ``ProvenanceTensor``, which ``TraceGraph_ELBO`` wraps
    around each model value drawn from a distribution without ``rsample`` (a mixture prior,
    M2's label), would get no gradient back. Such inputs take torch's own formula.

    Example:
        >>> from pyro.ops.provenance import ProvenanceTensor
        >>> _plain(torch.ones(2), 1.0), _plain(ProvenanceTensor(torch.ones(2), frozenset("z")))
        (True, False)
    """
    return all(type(v) is torch.Tensor for v in values if torch.is_tensor(v))


@functools.lru_cache(maxsize=64)
def _product_block(size: int, dtype: torch.dtype) -> int:
    """The largest divisor of ``size`` such that a product of that many factors in [1/2, 1]
    stays a normal number of ``dtype`` (at most 112 for float32, 12 for float16).

    Example:
        >>> _product_block(784, torch.float32), _product_block(64, torch.float16)
        (112, 8)
    """
    limit = min(112, int(-math.log2(torch.finfo(dtype).tiny)) - 2)
    return max(d for d in range(1, min(size, limit) + 1) if size % d == 0)


class BernoulliPixels(dist.Independent):
    """``Bernoulli(logits).to_event(n)``: Bernoulli pixels on logits, a datapoint's ``n``
    rightmost dimensions its event.

    ``log_prob`` sums x l - softplus(l) over the event with one ``log`` per block of
    pixels and no ``softplus`` (see ``_BernoulliLogMass``); torch's Bernoulli computes the
    same log-mass as -binary_cross_entropy_with_logits, then negates every pixel and its
    gradient. The values agree to float rounding, the gradients exactly. At one thread its
    forward pass takes 0.3-0.75 of torch's time, the less the larger the logits.

    Example:
        >>> logits, x = torch.randn(3, 1, 2, 2), torch.ones(3, 1, 2, 2)
        >>> p = BernoulliPixels(dist.Bernoulli(logits=logits), 3)
        >>> torch.allclose(p.log_prob(x), dist.Bernoulli(logits=logits).to_event(3).log_prob(x))
        True
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        bernoulli = self.base_dist
        if not _plain(bernoulli.logits, value):
            return super().log_prob(value)
        if bernoulli._validate_args:
            bernoulli._validate_sample(value)
        logits, broadcast = broadcast_all(bernoulli.logits, value)
        smaller = torch.is_tensor(value) and value.numel() < logits.numel()
        slope = torch.rsub(value, 1, alpha=2) if smaller else None
        return _BernoulliLogMass.apply(logits, broadcast, slope, self.reinterpreted_batch_ndims)


class UniformMixture(TorchDistribution):
    """p(z) = (1/K) sum_k p_k(z), the components ``p_k`` along the rightmost batch dimension.

    ``log_prob`` is a logsumexp over components minus log K; ``sample`` draws every
    component and keeps one picked uniformly at random (not reparameterized). The
    value is expanded to the components' full batch shape before scoring, so
    components that carry per-component state (a conditioned flow) work too.

    Example:
        >>> m = UniformMixture(dist.Normal(torch.zeros(3, 2), 1.0).to_event(1))
        >>> m.event_shape, m.log_prob(torch.zeros(5, 2)).shape, m.sample((4,)).shape
        (torch.Size([2]), torch.Size([5]), torch.Size([4, 2]))
    """

    arg_constraints: dict = {}

    def __init__(self, components: dist.Distribution, validate_args: bool | None = None):
        if len(components.batch_shape) < 1:
            raise ValueError("UniformMixture needs components along a batch dimension")
        self.components = components
        self.num_components = components.batch_shape[-1]
        super().__init__(components.batch_shape[:-1], components.event_shape, validate_args)

    @constraints.dependent_property
    def support(self):
        return self.components.support

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        event_dims = len(self.event_shape)
        value = value.unsqueeze(-1 - event_dims)
        batch = torch.broadcast_shapes(
            value.shape[: value.dim() - event_dims], self.components.batch_shape
        )
        log_p = self.components.log_prob(value.expand(batch + self.event_shape))
        return log_p.logsumexp(-1) - math.log(self.num_components)

    def sample(self, sample_shape: torch.Size = _SCALAR) -> torch.Tensor:
        with torch.no_grad():
            draws = self.components.sample(sample_shape)  # [*sample, *batch, K, *event]
            pick = torch.randint(
                self.num_components, draws.shape[: draws.dim() - len(self.event_shape)][:-1],
                device=draws.device,
            )  # fmt: skip
            index = pick[(...,) + (None,) * (len(self.event_shape) + 1)]
            index = index.expand(*pick.shape, 1, *self.event_shape)
            return draws.gather(-1 - len(self.event_shape), index).squeeze(
                -1 - len(self.event_shape)
            )

    @property
    def mean(self) -> torch.Tensor:
        return self.components.mean.mean(-1 - len(self.event_shape))

    @property
    def variance(self) -> torch.Tensor:
        dim = -1 - len(self.event_shape)
        means = self.components.mean
        second = (self.components.variance + means**2).mean(dim)
        return second - means.mean(dim) ** 2


class DiscretizedLogistic(TorchDistribution):
    """A logistic(loc, scale) over levels 0..levels-1: level k gets the mass of [k - 1/2, k + 1/2].

    Level 0 also gets everything below, the top level everything above, so the
    masses sum to one. ``loc`` and ``scale`` are in level units.

    Example:
        >>> p = DiscretizedLogistic(torch.tensor(0.0), torch.tensor(1.0))
        >>> round(float(p.log_prob(torch.tensor(0.0)).exp()), 4)   # P(X <= 1/2)
        0.6225
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        levels: int = 256,
        validate_args: bool | None = None,
    ):
        self.loc, self.scale = broadcast_all(loc, scale)
        self.levels = levels
        super().__init__(self.loc.shape, torch.Size(), validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.levels - 1)

    def expand(self, batch_shape, _instance=None) -> DiscretizedLogistic:
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc, new.scale = self.loc.expand(batch_shape), self.scale.expand(batch_shape)
        new.levels = self.levels
        super(DiscretizedLogistic, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        upper = (value - self.loc + 0.5) / self.scale
        lower = (value - self.loc - 0.5) / self.scale
        # sigmoid(u) - sigmoid(l) = sigmoid(u) sigmoid(-l) (1 - exp(l - u)): stable in both tails
        inside = (
            F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-1 / self.scale))
        )
        edge_low = F.logsigmoid(upper)  # P(X <= k + 1/2) for k = 0
        edge_high = F.logsigmoid(-lower)  # P(X >= k - 1/2) for the top level
        return torch.where(
            value <= 0, edge_low, torch.where(value >= self.levels - 1, edge_high, inside)
        )

    def sample(self, sample_shape: torch.Size = _SCALAR) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(
                1e-6, 1 - 1e-6
            )
            x = self.loc + self.scale * (torch.log(u) - torch.log1p(-u))
            return x.round().clamp(0, self.levels - 1)

    @property
    def mean(self) -> torch.Tensor:
        """E[X] = sum_{k >= 1} P(X >= k), summed 32 levels at a time to bound memory."""
        total = torch.zeros_like(self.loc)
        loc, scale = self.loc.unsqueeze(-1), self.scale.unsqueeze(-1)
        for levels in torch.arange(1, self.levels, device=loc.device).split(32):
            total = total + torch.sigmoid((loc - levels + 0.5) / scale).sum(-1)
        return total


class LevelsCategorical(dist.Categorical):
    """A Categorical over levels 0..K-1 whose mean and variance are those of the level index.

    Example:
        >>> LevelsCategorical(probs=torch.tensor([0.5, 0.0, 0.5])).mean
        tensor(1.)
    """

    @property
    def mean(self) -> torch.Tensor:
        levels = torch.arange(
            self.probs.shape[-1], dtype=self.probs.dtype, device=self.probs.device
        )
        return (self.probs * levels).sum(-1)

    @property
    def variance(self) -> torch.Tensor:
        levels = torch.arange(
            self.probs.shape[-1], dtype=self.probs.dtype, device=self.probs.device
        )
        return (self.probs * levels**2).sum(-1) - self.mean**2
