"""Shared machinery of the objectives: a loss from a surrogate, and particle-based bounds.

Every objective here is a :class:`pyro.infer.ELBO` whose ``differentiable_loss``
returns a tensor with the objective's **value** (the negative bound, scaled to the
dataset size like Trace_ELBO) and the estimator's **gradient** (which may come from
a surrogate, as in STL, DReG and tail-adaptive). ``loss`` and ``loss_and_grads`` are
derived from it, so one object serves classic ``SVI`` and ``torch.optim`` alike.

:class:`ParticleObjective` computes per-datapoint log weights ``[sets, k, batch]``
(``num_particles`` independent sets of ``k`` particles) from a VAE's fast path or from
Pyro traces (:mod:`.traces`), and subclasses turn them into a bound.

Example:
    >>> import torch
    >>> class MeanLogWeight(ParticleObjective):
    ...     name = "mean-log-weight"
    ...     def bound_loss(self, log_w, latents):
    ...         return -log_w.mean((0, 1)).sum()
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> loss = MeanLogWeight(k=3)(vae, vae.guide_module())
    >>> bool(loss(torch.zeros(4, 1, 28, 28)) > 0)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from pyro.infer import ELBO

from ..errors import ConfigError, ModelError
from .enumerated import enumerated_pair, enumerated_particle_weights
from .structured import plate_scale, structured_vae, vae_arguments
from .traces import particle_traces, traced_log_weights

__all__ = ["SurrogateLoss", "ParticleObjective", "Latents"]

Latents = list[tuple[torch.Tensor, tuple[int, ...]]]


def checked_option(
    owner: object, option: str, value: object, minimum: float | None = None, integer: bool = False
) -> float:
    """``value`` of an objective's ``option``, checked as ``build_objective`` checks a name's
    options: a finite number (an int where ``integer``) >= ``minimum``; else ConfigError.
    An objective built from its class (``IWAE_ELBO(k=0)``, ``FastTrace_ELBO(beta=-1)``)
    is refused as its name would be, rather than fail later or return a negated KL or NaN.

    Example:
        >>> checked_option("iwae", "k", 0, minimum=1, integer=True)
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: objective 'iwae': option k must be an int >= 1, got 0
    """
    name = owner if isinstance(owner, str) else getattr(owner, "name", type(owner).__name__)
    kind = "an int" if integer else "a finite number"
    fits = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not fits or not math.isfinite(value):
        raise ConfigError(f"objective {name!r}: option {option} must be {kind}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(
            f"objective {name!r}: option {option} must be {kind} >= {minimum:g}, got {value!r}"
        )
    return value


class SurrogateLoss:
    """``loss`` and ``loss_and_grads`` from ``differentiable_loss`` (value + gradient)."""

    retain_graph: bool | None

    def __call__(self, model: Callable, guide: Callable) -> torch.nn.Module:
        """The loss as an ``nn.Module`` (Pyro's ``ELBO.__call__``), refusing the two pairs
        that silently train nothing: a module's bound method whose parameters neither
        argument holds (``torch.optim`` would get none of them) and the model passed as its
        own guide (every site is then replayed: a loss of 0)."""
        modules = [fn for fn in (model, guide) if isinstance(fn, torch.nn.Module)]
        held = {id(p) for module in modules for p in module.parameters()}
        for role, fn in (("model", model), ("guide", guide)):
            owner = getattr(fn, "__self__", None)
            if isinstance(owner, torch.nn.Module) and any(
                id(p) not in held for p in owner.parameters()
            ):
                raise ModelError(
                    f"the {role} is the bound method {type(owner).__name__}.{fn.__name__}, "
                    "which gives the loss module none of its parameters; pass modules: "
                    "objective(model, model.guide_module())"
                )
        if guide is model:
            raise ModelError(
                "the guide is the model itself; pass model.guide_module() as the guide: "
                "objective(model, model.guide_module())"
            )
        return super().__call__(model, guide)

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        return float(loss.detach())


class ParticleObjective(SurrogateLoss, ELBO):
    """A bound computed from log weights per particle and per datapoint.

    ``k`` particles form one estimate per datapoint; ``num_particles`` independent
    estimates are averaged (Rainforth et al. 2018's MIWAE when k > 1). Subclasses set
    ``name``, optionally ``path_derivative`` (log q with the guide's parameters held
    fixed) and implement ``bound_loss(log_w, latents)``: minus the sum over the batch
    of the per-datapoint bound, for ``log_w`` of shape ``[num_particles, k, batch]``.
    """

    name: ClassVar[str] = "particles"
    path_derivative: ClassVar[bool] = False

    def __init__(self, k: int = 1, num_particles: int = 1, max_plate_nesting: float = float("inf")):
        checked_option(self, "num_particles", num_particles, minimum=1, integer=True)
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.k = checked_option(self, "k", k, minimum=1, integer=True)

    def bound_loss(self, log_w: torch.Tensor, latents: Latents) -> torch.Tensor:
        raise NotImplementedError

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs):
        log_w, scale, latents = self.log_weights(model, guide, args, kwargs)
        return self.bound_loss(log_w, latents) * scale

    def log_weights(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[torch.Tensor, float, Latents]:
        """``[num_particles, k, batch]`` log weights, the data plate's scale, and the latents."""
        n = self.num_particles * self.k
        m2 = enumerated_pair(model, guide)
        if m2 is not None:  # the label summed inside each particle's weight (see .enumerated)
            return enumerated_particle_weights(self, m2, args, kwargs)
        vae = structured_vae(model, guide)
        if vae is not None:
            x, num_data, kl_scale, labels = vae_arguments(vae, *args, **kwargs)
            self._refuse_kl_scale(kl_scale)
            terms = vae.log_weights(x, n, self.path_derivative, **labels)
            log_w, scale = terms.log_w, plate_scale(x, num_data)
            latents = [(terms.z, (n, x.shape[0], 1))]
        else:
            traced = traced_log_weights(
                self, model, guide, args, kwargs, n, self.name, self.path_derivative
            )
            log_w, scale, latents = traced.log_w, traced.plate_scale, traced.latents
        return log_w.reshape(self.num_particles, self.k, -1), scale, latents

    def _refuse_kl_scale(self, kl_scale: float | torch.Tensor) -> None:
        if bool(torch.as_tensor(kl_scale).ne(1).any()):
            raise ConfigError(
                f"objective {self.name!r}: kl_scale={kl_scale} (beta or KL warm-up) cannot be "
                "applied: the objective puts log p(z) - log q(z|x) inside a logsumexp over "
                "particles, where a weight no longer scales a KL term and the result bounds "
                "nothing. Use an ELBO-type objective (elbo, analytic-kl, graph, stl) for beta "
                "and warm-up"
            )

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """One (model, guide) trace pair, as Pyro's ELBO interface defines it."""
        model_trace, guide_trace, _ = particle_traces(self, model, guide, args, kwargs, 1)
        return model_trace, guide_trace
