"""Names, options and parsing of the objective specs ``NAME[:key=value,...]``.

Each spec says whether the objective weighs a KL term (``scales_kl``): only those
accept ``beta`` and KL warm-up.

Example:
    >>> parse_objective("elbo:particles=2")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.ConfigError: objective 'elbo': unknown option 'particles'; ...
    >>> parse_objective("beta:b=4,of=iwae")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.ConfigError: objective 'beta': of=iwae cannot carry a beta: ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pyro.infer import ELBO

from ..errors import ConfigError
from .analytic_kl import AnalyticKL_ELBO
from .dreg import DReG_ELBO
from .elbo import FastTrace_ELBO
from .graph import Graph_ELBO
from .iwae import IWAE_ELBO
from .renyi import Renyi_ELBO
from .stl import STL_ELBO
from .tail_adaptive import TailAdaptive_ELBO

__all__ = [
    "OBJECTIVES",
    "ObjectiveOption",
    "ObjectiveSpec",
    "ParsedObjective",
    "parse_objective",
    "build_objective",
    "objective_scales_kl",
]


@dataclass(frozen=True)
class ObjectiveOption:
    type: type
    default: Any
    help: str
    minimum: float | None = None


@dataclass(frozen=True)
class ObjectiveSpec:
    """A built-in objective: how to build it from its options, and what it is.

    ``scales_kl``: whether a weight on log p(z) - log q(z|x) is a weight on a KL term
    (ELBO-type objectives), so that beta and KL warm-up make sense. ``check`` validates
    options beyond their types.
    """

    build: Callable[..., ELBO]
    description: str
    options: dict[str, ObjectiveOption] = field(default_factory=dict)
    scales_kl: bool = False
    check: Callable[[Mapping[str, Any]], None] | None = None


class ParsedObjective(NamedTuple):
    name: str
    options: dict[str, Any]


PARTICLES = ObjectiveOption(int, 1, "Monte Carlo samples per datapoint (vectorized)", minimum=1)
SETS = ObjectiveOption(
    int, 1, "independent k-particle bounds averaged per datapoint (vectorized)", minimum=1
)
K = ObjectiveOption(int, 5, "particles per importance-weighted bound", minimum=1)

ELBO_TYPES = {
    "elbo": FastTrace_ELBO,
    "analytic-kl": AnalyticKL_ELBO,
    "graph": Graph_ELBO,
    "stl": STL_ELBO,
}


def _kl_scalable() -> list[str]:
    return sorted(name for name, spec in OBJECTIVES.items() if spec.scales_kl and name != "beta")


def _check_beta(options: Mapping[str, Any]) -> None:
    base = options["of"]
    if base in OBJECTIVES and not OBJECTIVES[base].scales_kl:
        raise ConfigError(
            f"objective 'beta': of={base} cannot carry a beta: {base} puts log p(z) - "
            "log q(z|x) inside a logsumexp over particles, where a weight no longer scales a "
            f"KL term; use of= one of {', '.join(_kl_scalable())}"
        )
    if base not in ELBO_TYPES:
        raise ConfigError(
            f"objective 'beta': unknown objective of={base!r}; valid choices: "
            f"{', '.join(_kl_scalable())}"
        )


def _beta(b: float, of: str, num_particles: int) -> ELBO:
    return ELBO_TYPES[of](num_particles=num_particles, beta=b)


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "elbo": ObjectiveSpec(
        lambda num_particles: FastTrace_ELBO(num_particles=num_particles),
        "Trace_ELBO: the reparameterized Monte Carlo ELBO (Kingma & Welling 2014)",
        {"num_particles": PARTICLES},
        scales_kl=True,
    ),
    "analytic-kl": ObjectiveSpec(
        lambda num_particles: AnalyticKL_ELBO(num_particles=num_particles),
        "TraceMeanField_ELBO: the ELBO with a closed-form KL where registered (logged if not)",
        {"num_particles": PARTICLES},
        scales_kl=True,
    ),
    "graph": ObjectiveSpec(
        lambda num_particles: Graph_ELBO(num_particles=num_particles),
        "TraceGraph_ELBO: the ELBO with Rao-Blackwellized score terms for discrete latents",
        {"num_particles": PARTICLES},
        scales_kl=True,
    ),
    "stl": ObjectiveSpec(
        lambda num_particles: STL_ELBO(num_particles=num_particles),
        "sticking the landing: the ELBO with the path-derivative guide gradient "
        "(Roeder et al. 2017)",
        {"num_particles": PARTICLES},
        scales_kl=True,
    ),
    "beta": ObjectiveSpec(
        _beta,
        "beta-VAE: an ELBO-type objective with its KL term weighted by b (Higgins et al. 2017)",
        {
            "b": ObjectiveOption(float, 4.0, "weight of the KL term (1 is the plain ELBO)", 0.0),
            "of": ObjectiveOption(
                str, "elbo", "the ELBO-type objective to weigh: elbo, analytic-kl, graph or stl"
            ),
            "num_particles": PARTICLES,
        },
        scales_kl=True,
        check=_check_beta,
    ),
    "iwae": ObjectiveSpec(
        lambda k, num_particles: IWAE_ELBO(k=k, num_particles=num_particles),
        "importance-weighted bound per datapoint, vectorized over k particles (Burda et al. 2016)",
        {"k": K, "num_particles": SETS},
    ),
    "dreg": ObjectiveSpec(
        lambda k, num_particles: DReG_ELBO(k=k, num_particles=num_particles),
        "IWAE bound with doubly reparameterized guide gradients (Tucker et al. 2018)",
        {"k": K, "num_particles": SETS},
    ),
    "renyi": ObjectiveSpec(
        lambda alpha, k, num_particles: Renyi_ELBO(alpha=alpha, k=k, num_particles=num_particles),
        "variational Renyi bound of order alpha per datapoint (Li & Turner 2016); alpha=0 is IWAE",
        {
            "alpha": ObjectiveOption(float, 0.5, "order of the divergence (>= 0, not 1)", 0.0),
            "k": K,
            "num_particles": SETS,
        },
        check=lambda options: _check_alpha(options["alpha"]),
    ),
    "tail-adaptive": ObjectiveSpec(
        lambda k, tail_beta, num_particles: TailAdaptive_ELBO(
            k=k, tail_beta=tail_beta, num_particles=num_particles
        ),
        "tail-adaptive f-divergence gradients over k particles per datapoint "
        "(Wang et al. 2018); reports the ELBO",
        {
            "k": K,
            "tail_beta": ObjectiveOption(float, -1.0, "exponent of the survival-rank weights"),
            "num_particles": SETS,
        },
    ),
}


def _check_alpha(alpha: float) -> None:
    if alpha == 1:
        raise ConfigError("objective 'renyi': alpha=1 is the ELBO; use the 'elbo' objective")


def parse_objective(spec: str) -> ParsedObjective:
    """Split ``NAME[:key=value,...]`` and check the name, option names and value types."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in OBJECTIVES:
        raise ConfigError(
            f"objective: unknown name {name!r}; valid choices: {', '.join(sorted(OBJECTIVES))}"
        )
    objective = OBJECTIVES[name]
    known = objective.options
    options = {key: option.default for key, option in known.items()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"objective {name!r}: option {item!r} must be written key=value")
        if key not in known:
            valid = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"objective {name!r}: unknown option {key!r}; valid options: {valid}")
        options[key] = _convert(name, key, raw.strip(), known[key])
    if objective.check is not None:
        objective.check(options)
    return ParsedObjective(name, options)


def _convert(name: str, key: str, raw: str, option: ObjectiveOption) -> Any:
    try:
        value = option.type(raw)
    except ValueError:
        raise ConfigError(
            f"objective {name!r}: option {key}={raw!r} is not a valid {option.type.__name__}"
        ) from None
    if option.type is float and not math.isfinite(value):
        raise ConfigError(f"objective {name!r}: option {key} must be a finite number, got {raw!r}")
    if option.minimum is not None and value < option.minimum:
        raise ConfigError(
            f"objective {name!r}: option {key} must be >= {option.minimum}, got {raw}"
        )
    return value


def build_objective(spec: str) -> ELBO:
    """The objective named by ``spec``, ready for SVI or for ``objective(model, guide)``."""
    name, options = parse_objective(spec)
    return OBJECTIVES[name].build(**options)


def objective_scales_kl(spec: str) -> bool:
    """Whether the objective ``spec`` weighs a KL term, so that KL warm-up applies to it."""
    return OBJECTIVES[parse_objective(spec).name].scales_kl
