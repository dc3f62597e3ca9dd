"""M2's objectives with the discrete label summed exactly, computed from its parts.

For an unlabelled datapoint the guide is q(y|x) q(z|x,y) and the model p(y) p(z) p(x|y,z)
(:class:`pyro_vae.families.M2`). Every label y gets its own draws z_y ~ q(z|x,y), as
with Pyro's parallel enumeration of the guide's y site, and
w_y = p(x, y, z_y) / q(z_y|x,y).

- ``elbo`` (and ``beta``): U(x) = sum_y q(y|x) [log w_y - log q(y|x)], the expectation
  over y summed over its C values. It is the loss ``TraceEnum_ELBO`` computes with the
  guide's y site enumerated in parallel (tested equal on the same draws); the classifier
  q(y|x) learns from unlabelled data through it. ``kl_scale`` and beta weigh the z site.
- ``iwae:k=K`` and ``dreg:k=K``: per-label particles. Particle k holds one draw
  z_{y,k} ~ q(z|x,y) for every label, and its weight sums the labels exactly:
  W_k = sum_y w_{y,k}, an unbiased estimate of p(x) (each term estimates p(x, y)). The
  bound is L_K = log (1/K) sum_k W_k <= log p(x), non-decreasing in K; L_1 =
  log sum_y w_y >= U(x) (Jensen over q(y|x)). q(y|x) cancels from W_k, so under these
  objectives the classifier learns only from the auxiliary loss on labelled data: the
  unlabelled data train the generative model and q(z|x,y), not q(y|x). DReG weighs the
  gradient reaching each z_{y,k} by its normalised weight w_{y,k} / sum_{y',k'} w_{y',k'}
  once more (Tucker et al.'s estimator, valid for particles of different proposals).
  Each label costs K decoder passes: C K in all.
- labelled datapoints (y given): the objective's usual bound on log p(x, y), over z only.

Other objectives cannot sum an enumerated label and refuse (:func:`check_enumerable`);
``graph`` samples y instead of summing it (score-function gradients, TraceGraph_ELBO).

Example:
    >>> from pyro_vae.families import mlp_m2
    >>> from pyro_vae.objectives import IWAE_ELBO
    >>> m2 = mlp_m2((1, 28, 28), num_classes=10, latent_dim=2, hidden=[16])
    >>> x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.5))
    >>> loss = IWAE_ELBO(k=3)(m2, m2.guide_module())
    >>> bool(loss(x) > 0), bool(loss(x, torch.tensor([0, 1, 2, 3])) > 0)   # y summed / given
    (True, True)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from pyro.infer import ELBO

from ..errors import ConfigError, ModelError
from ..families.m2 import M2, LabelTerms, standard_m2
from ..vae import GuideModule, check_kl_scale, check_num_data
from .structured import plate_scale

__all__ = [
    "enumerated_pair",
    "M2Arguments",
    "m2_arguments",
    "enumerated_elbo",
    "enumerated_elbo_loss",
    "enumerated_particle_weights",
    "check_enumerable",
    "ENUMERABLE",
]

ENUMERABLE = ("elbo", "beta", "iwae", "dreg")  # the objectives that sum the label exactly


def enumerated_pair(model: Callable, guide: Callable) -> M2 | None:
    """The M2 whose own, unmodified ``model`` and ``guide`` these are (the fast path), else None.

    Accepts the module pair ``(m2, m2.guide_module())`` and the bound methods.
    """
    owner = _owner(model, "model")
    if owner is None or owner is not _owner(guide, "guide"):
        return None
    return standard_m2(owner)


def _owner(fn: Callable, role: str) -> M2 | None:
    if role == "model" and isinstance(fn, M2):
        return fn
    if role == "guide" and isinstance(fn, GuideModule):
        return fn.owner if isinstance(fn.owner, M2) else None
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, M2) and fn.__name__ == role else None


class M2Arguments(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor | None
    num_data: int | None
    kl_scale: float | torch.Tensor


def m2_arguments(*args: Any, **kwargs: Any) -> M2Arguments:
    """``M2.model``'s arguments bound by its signature; an objective needs observed data."""
    try:
        bound = _signature().bind(None, *args, **kwargs)
    except TypeError as err:
        raise ModelError(f"M2.model cannot take these arguments: {err}") from None
    bound.apply_defaults()
    values = bound.arguments
    if values["x"] is None or not values["observe"]:
        raise ModelError(
            "an objective scores observed data: call it with a batch x (and observe=True); "
            "model(None, ...) only generates"
        )
    check_num_data(values["num_data"], len(values["x"]))
    check_kl_scale(values["kl_scale"])
    return M2Arguments(values["x"], values["y"], values["num_data"], values["kl_scale"])


@functools.cache
def _signature() -> inspect.Signature:
    return inspect.signature(M2.model)


def _weighted(latent: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    return latent if not torch.is_tensor(weight) and weight == 1 else weight * latent


def enumerated_elbo(terms: LabelTerms, weight: float | torch.Tensor = 1.0) -> torch.Tensor:
    """U(x) per datapoint, ``[batch]``: sum_y q(y|x) [log w_y - log q(y|x)], averaged over
    the particles; ``weight`` multiplies log p(z) - log q(z|x,y) (KL warm-up, beta)."""
    per_label = terms.log_lik + _weighted(terms.log_prior - terms.log_q, weight)
    per_label = per_label.mean(0) + terms.log_py  # [classes, batch]
    return (terms.log_qy.exp() * (per_label - terms.log_qy)).sum(0)


def enumerated_elbo_loss(
    objective: ELBO, m2: M2, args: tuple, kwargs: dict, beta: float = 1.0
) -> torch.Tensor:
    """Minus the ELBO of the minibatch, scaled to the dataset size: U(x) for unlabelled
    ``x`` (``y`` None), the ELBO of log p(x, y) for labelled."""
    if getattr(objective, "path_derivative", False):
        check_enumerable(objective)
    x, y, num_data, kl_scale = m2_arguments(*args, **kwargs)
    weight = kl_scale * beta
    if y is None:
        elbo = enumerated_elbo(m2.label_terms(x, objective.num_particles), weight)
    else:
        terms = m2.labelled_terms(x, y, objective.num_particles)
        elbo = (terms.log_lik + _weighted(terms.log_prior - terms.log_q, weight)).mean(0)
    return elbo.sum() * -plate_scale(x, num_data)


def enumerated_particle_weights(
    objective: ELBO, m2: M2, args: tuple, kwargs: dict
) -> tuple[torch.Tensor, float, list[tuple[torch.Tensor, tuple[int, ...]]]]:
    """``[num_particles, k, batch]`` log weights with the label summed inside each particle's
    weight (y None) or observed, the data plate's scale, and the latents for DReG's hook."""
    x, y, num_data, kl_scale = m2_arguments(*args, **kwargs)
    objective._refuse_kl_scale(kl_scale)
    n, path = objective.num_particles * objective.k, objective.path_derivative
    if y is not None:
        terms = m2.labelled_terms(x, y, n, path)
        log_w, latents = terms.log_w, [(terms.z, (n, x.shape[0], 1))]
    else:
        check_enumerable(objective)
        label_terms = m2.label_terms(x, n, path)
        per_label = label_terms.log_w  # [n, classes, batch]
        log_w = torch.logsumexp(per_label, 1)
        z = label_terms.z
        if path and torch.is_grad_enabled() and z.requires_grad:
            # DReG's hook weighs each particle k by w_k / sum w; within it, label y by w_yk / w_k
            within = torch.softmax(per_label.detach(), 1).unsqueeze(-1)
            z.register_hook(lambda grad: grad * within)
        latents = [(z, (n, 1, x.shape[0], 1))]
    return (
        log_w.reshape(objective.num_particles, objective.k, -1),
        plate_scale(x, num_data),
        latents,
    )


def check_enumerable(objective: ELBO) -> None:
    """ConfigError unless ``objective`` sums M2's enumerated label exactly or samples it (graph)."""
    from .dreg import DReG_ELBO
    from .elbo import FastTrace_ELBO
    from .graph import Graph_ELBO
    from .iwae import IWAE_ELBO

    if type(objective) in (FastTrace_ELBO, IWAE_ELBO, DReG_ELBO, Graph_ELBO):
        return
    raise ConfigError(
        f"objective {getattr(objective, 'name', type(objective).__name__)!r} cannot score M2's "
        "label y, summed over its classes (an enumerated site) for unlabelled data; use elbo or "
        "beta (the exact sum), iwae or dreg (the sum inside each particle's weight), or graph "
        "(y sampled, score-function gradients)"
    )
