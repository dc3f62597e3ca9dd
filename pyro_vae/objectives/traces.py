"""The objectives' generic path: log weights from Pyro traces of any model/guide pair.

The particle-based objectives (``iwae``, ``dreg``, ``renyi``, ``tail-adaptive``)
need log w = log p(x, z) - log q(z|x) **per particle and per datapoint**. Here the
guide and the model are traced once with all particles vectorized in an outer
``pyro.plate`` and every site's log-probability is reduced to ``[particles, batch]``.
That is only possible when every sample site sits inside ``pyro.plate("data")``: a
site outside it has one log-probability for the whole minibatch, and adding it to
every datapoint's weight would silently turn a per-datapoint bound into one bound
for the whole batch (what Pyro's ``RenyiELBO`` does). Such a pair raises
:class:`~pyro_vae.errors.ModelError` instead, as does a site whose scale is more than
the data plate's subsampling factor (a scale inside a logsumexp is not a weight).

``stl`` uses :func:`traced_elbo`, an ELBO with the path-derivative log q, for which
plates do not matter. A path derivative needs log q with the guide's parameters held
fixed but the path through every earlier latent kept; from a trace only the first is
possible, so ``stl`` and ``dreg`` refuse a guide whose site is computed from an earlier
latent (:func:`refuse_dependent_guide`) instead of returning a biased gradient.

Example:
    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import Trace_ELBO
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.7))
    >>> weights = traced_log_weights(Trace_ELBO(), model, guide, (torch.zeros(3),), {}, 5, "iwae")
    >>> tuple(weights.log_w.shape), weights.plate_scale
    ((5, 3), 1.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO

from .._private import (
    check_model_guide_match,
    is_validation_enabled,
    prune_subsample_sites,
    scale_and_mask,
)
from ..errors import ModelError, PyroVAEError
from ..vae import path_log_prob

__all__ = [
    "DATA_PLATE",
    "TracedWeights",
    "traced_log_weights",
    "traced_elbo",
    "particle_traces",
    "guide_dependencies",
    "refuse_dependent_guide",
]

DATA_PLATE = "data"
PARTICLE_PLATE = "particles"


@dataclass
class TracedWeights:
    """Per-particle, per-datapoint log weights of a traced model/guide pair.

    ``log_w`` is ``[num_particles, batch]``. ``latents`` holds each guide sample value
    with the shape that a ``[num_particles, batch]`` tensor takes to broadcast against it.
    ``plate_scale`` is the data plate's subsampling factor (dataset size / batch).
    """

    log_w: torch.Tensor
    plate_scale: float
    latents: list[tuple[torch.Tensor, tuple[int, ...]]] = field(default_factory=list)


def particle_traces(
    elbo: ELBO,
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    objective: str = "this objective",
    per_datapoint: bool = False,
) -> tuple[poutine.Trace, poutine.Trace, int]:
    """Guide and model traces with ``num_particles`` vectorized in an outer plate.

    Returns the two traces (subsample sites pruned) and the number of batch
    dimensions every site's log-probability is aligned to (particle dim first).
    A pair whose sites do not broadcast over that plate fails with a ModelError naming
    ``objective`` and why: with ``per_datapoint``, a site outside the data plate (which
    such a pair usually has) is refused as :func:`traced_log_weights` refuses it.
    """
    if elbo.max_plate_nesting == float("inf"):
        elbo._guess_max_plate_nesting(model, guide, args, kwargs)
    batch_dims = int(elbo.max_plate_nesting) + 1
    particles = pyro.plate(PARTICLE_PLATE, num_particles, dim=-batch_dims)
    try:
        guide_trace = poutine.trace(particles(guide)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(particles(model), trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, batch_dims)
    except PyroVAEError:
        raise
    except (ValueError, RuntimeError, IndexError) as err:
        if per_datapoint:
            _refuse_sites_outside_the_data_plate(model, guide, args, kwargs, objective, err)
        raise ModelError(
            f"{objective}: the model and guide fail with {num_particles} particles vectorized "
            f"in pyro.plate({PARTICLE_PLATE!r}, dim={-batch_dims}) ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}): every distribution must "
            "broadcast over leading batch dimensions (build shapes from the right, e.g. "
            "scale = tau.unsqueeze(-1).expand(*tau.shape, latent_dim) for a global tau), "
            "or train with one particle a step ('elbo', 'graph', 'stl')"
        ) from err
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace), batch_dims


def _refuse_sites_outside_the_data_plate(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, objective: str, err: Exception
) -> None:
    """After a vectorized trace failed: the refusal of a site outside the data plate, found in
    one unvectorized trace (the likely cause), rather than the shape error it led to."""
    try:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    except Exception:
        return  # the pair fails unvectorized too: the caller reports the first failure
    for trace in (prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)):
        for site in _sample_sites(trace):
            try:
                _data_frame(site, objective)
            except ModelError as refusal:
                raise refusal from err


def _sample_sites(trace: poutine.Trace) -> list[dict]:
    return [site for site in trace.nodes.values() if site["type"] == "sample"]


def guide_dependencies(guide_trace: poutine.Trace) -> list[tuple[str, str]]:
    """``(site, earlier site)`` pairs of a guide trace whose distribution at ``site`` is computed
    from the value of ``earlier`` (found by autograd: the guide is not mean-field there).

    Example:
        >>> import pyro.distributions as dist
        >>> def guide():
        ...     a = pyro.sample("a", dist.Normal(torch.zeros(1, requires_grad=True), 1.0))
        ...     pyro.sample("b", dist.Normal(2 * a, 1.0))
        ...     pyro.sample("c", dist.Normal(0.0, 1.0))
        >>> guide_dependencies(poutine.trace(guide).get_trace())
        [('b', 'a')]
    """
    pairs = []
    sites = [s for s in _sample_sites(guide_trace) if not s["is_observed"]]
    for i, site in enumerate(sites):
        earlier = [s for s in sites[:i] if s["value"].requires_grad]
        log_q = site["fn"].log_prob(site["value"].detach()) if earlier else None
        if log_q is None or not log_q.requires_grad:
            continue
        values = [s["value"] for s in earlier]
        grads = torch.autograd.grad(log_q.sum(), values, retain_graph=True, allow_unused=True)
        pairs += [
            (site["name"], s["name"]) for s, g in zip(earlier, grads, strict=True) if g is not None
        ]
    return pairs


def refuse_dependent_guide(guide_trace: poutine.Trace, objective: str, why: str) -> None:
    """ModelError if a guide site is computed from an earlier latent (:func:`guide_dependencies`).

    Checked while autograd records (it is what finds the dependence) and Pyro's validation
    is on: its default, and the Trainer's first step.
    """
    if not (torch.is_grad_enabled() and is_validation_enabled()):
        return
    pairs = guide_dependencies(guide_trace)
    if pairs:
        site, earlier = pairs[0]
        raise ModelError(
            f"{objective}: guide site {site!r} is computed from the guide's {earlier!r}, and "
            f"{why}, so the result would be silently biased. Use 'elbo' (unbiased for any "
            "guide; 'iwae' too where every site is in the data plate), or the built-in "
            "stacked layers (--latent-dim 100 50, pyro_vae.mlp_stacked_vae) with a prior "
            "without a global latent, whose own path handles it (a global latent such as "
            "--prior hierarchical's sends them through Pyro's traces too)"
        )


_PATH_WHY = (
    "a path derivative needs log q with the guide's parameters held fixed while the path "
    "through the earlier latent stays, which a Pyro trace cannot separate"
)


def _guide_log_prob(site: dict, path_derivative: bool, objective: str) -> torch.Tensor:
    """log q of a guide site; a site must be reparameterizable where a gradient is taken
    (an importance-sampling score under ``torch.no_grad``, as evaluation's, needs none)."""
    if not site["fn"].has_rsample and (path_derivative or torch.is_grad_enabled()):
        raise ModelError(
            f"{objective}: guide site {site['name']!r} ({type(site['fn']).__name__}) is not "
            "reparameterizable; this objective differentiates through z. Use the 'graph' "
            "objective for discrete or otherwise non-reparameterizable latents"
        )
    if path_derivative:
        return path_log_prob(site["fn"], site["value"])
    return site["fn"].log_prob(site["value"])


def traced_elbo(
    elbo: ELBO,
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    objective: str,
    path_derivative: bool = False,
) -> torch.Tensor:
    """The ELBO of the whole minibatch (scales applied, averaged over particles)."""
    model_trace, guide_trace, _ = particle_traces(
        elbo, model, guide, args, kwargs, num_particles, objective
    )
    if path_derivative:
        refuse_dependent_guide(guide_trace, objective, _PATH_WHY)
    total = torch.zeros(())
    for site in _sample_sites(model_trace):
        log_p = site["fn"].log_prob(site["value"])
        total = total + scale_and_mask(log_p, site["scale"], site["mask"]).sum()
    for site in _sample_sites(guide_trace):
        log_q = _guide_log_prob(site, path_derivative, objective)
        total = total - scale_and_mask(log_q, site["scale"], site["mask"]).sum()
    return total / num_particles


def traced_log_weights(
    elbo: ELBO,
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    objective: str,
    path_derivative: bool = False,
) -> TracedWeights:
    """log w per particle and per datapoint; every sample site must be in the data plate."""
    model_trace, guide_trace, batch_dims = particle_traces(
        elbo, model, guide, args, kwargs, num_particles, objective, per_datapoint=True
    )
    if path_derivative:
        refuse_dependent_guide(guide_trace, objective, _PATH_WHY)
    log_w: torch.Tensor | int = 0
    plate_scale = None
    latents = []
    for sign, trace in ((1, model_trace), (-1, guide_trace)):
        for site in _sample_sites(trace):
            frame = _data_frame(site, objective)
            site_scale = _plate_scale(site, frame, objective)
            plate_scale = site_scale if plate_scale is None else plate_scale
            if sign > 0:
                log_p = site["fn"].log_prob(site["value"])
            else:
                log_p = _guide_log_prob(site, path_derivative, objective)
                latents.append((site["value"], _weight_shape(site, frame, batch_dims)))
            log_p = scale_and_mask(log_p, 1.0, site["mask"])
            log_w = log_w + sign * _per_datapoint(log_p, frame, batch_dims, num_particles)
    if plate_scale is None:
        raise ModelError(f"{objective}: the model and guide have no sample sites")
    return TracedWeights(log_w, plate_scale, latents)


def _data_frame(site: dict, objective: str):
    for frame in site["cond_indep_stack"]:
        if frame.name == DATA_PLATE and frame.vectorized:
            return frame
    raise ModelError(
        f"{objective}: sample site {site['name']!r} is outside the vectorized "
        f"pyro.plate({DATA_PLATE!r}, ...). Its log-probability would be shared by every "
        "datapoint, silently turning the per-datapoint bound into one bound for the whole "
        f"batch. Put every sample site inside pyro.plate({DATA_PLATE!r}, N, dim=...) or use "
        "an ELBO-type objective (elbo or graph; analytic-kl and stl too when each guide site "
        "depends on x alone, not on another latent)"
    )


def _plate_scale(site: dict, frame, objective: str) -> float:
    expected = (frame.full_size or frame.size) / frame.size
    scale = float(site["scale"])
    if abs(scale - expected) > 1e-6 * expected:
        raise ModelError(
            f"{objective}: site {site['name']!r} has scale {scale:g}, but only the data plate's "
            f"subsampling factor {expected:g} is allowed. A scale (beta-VAE, KL warm-up, "
            "poutine.scale) inside this objective's logsumexp over particles does not weigh a "
            "KL term, and the result bounds nothing; remove it or use an ELBO-type objective"
        )
    return expected


def _per_datapoint(log_p: torch.Tensor, frame, batch_dims: int, num_particles: int) -> torch.Tensor:
    """Sum a site's log-probability over every batch dim but particles and data."""
    log_p = log_p.reshape((1,) * (batch_dims - log_p.dim()) + tuple(log_p.shape))
    data_axis = batch_dims + frame.dim
    others = [d for d in range(1, batch_dims) if d != data_axis]
    if others:
        log_p = log_p.sum(others, keepdim=True)
    log_p = log_p.reshape(log_p.shape[0], log_p.shape[data_axis])
    return log_p.expand(num_particles, frame.size)


def _weight_shape(site: dict, frame, batch_dims: int) -> tuple[int, ...]:
    """Where ``[particles, batch]`` weights go to broadcast against the site's value."""
    shape = [1] * (batch_dims + site["fn"].event_dim)
    shape[0] = -1
    shape[batch_dims + frame.dim] = frame.size
    extra = site["value"].dim() - len(shape)
    return (1,) * max(extra, 0) + tuple(shape)
