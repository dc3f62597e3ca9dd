"""Names, options and parsing of the objective specs ``NAME[:key=value,...]``.

Example:
    >>> parse_objective("elbo:particles=2")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.ConfigError: objective 'elbo': unknown option 'particles'; ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pyro.infer import ELBO

from ..errors import ConfigError
from .elbo import FastTrace_ELBO

__all__ = [
    "OBJECTIVES",
    "ObjectiveOption",
    "ObjectiveSpec",
    "ParsedObjective",
    "parse_objective",
    "build_objective",
]


@dataclass(frozen=True)
class ObjectiveOption:
    type: type
    default: Any
    help: str
    minimum: float | None = None


@dataclass(frozen=True)
class ObjectiveSpec:
    """A built-in objective: how to build it from its options, and what it is."""

    build: Callable[..., ELBO]
    description: str
    options: dict[str, ObjectiveOption] = field(default_factory=dict)


class ParsedObjective(NamedTuple):
    name: str
    options: dict[str, Any]


PARTICLES = ObjectiveOption(int, 1, "Monte Carlo samples per datapoint (vectorized)", minimum=1)

OBJECTIVES: dict[str, ObjectiveSpec] = {
    "elbo": ObjectiveSpec(
        lambda num_particles: FastTrace_ELBO(num_particles=num_particles, vectorize_particles=True),
        "Trace_ELBO: the reparameterized Monte Carlo ELBO (Kingma & Welling 2014)",
        {"num_particles": PARTICLES},
    ),
}


def parse_objective(spec: str) -> ParsedObjective:
    """Split ``NAME[:key=value,...]`` and check the name, option names and value types."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in OBJECTIVES:
        raise ConfigError(
            f"objective: unknown name {name!r}; valid choices: {', '.join(sorted(OBJECTIVES))}"
        )
    known = OBJECTIVES[name].options
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
    return ParsedObjective(name, options)


def _convert(name: str, key: str, raw: str, option: ObjectiveOption) -> Any:
    try:
        value = option.type(raw)
    except ValueError:
        raise ConfigError(
            f"objective {name!r}: option {key}={raw!r} is not a valid {option.type.__name__}"
        ) from None
    if option.type is float and value != value:
        raise ConfigError(f"objective {name!r}: option {key} must be a number, got {raw!r}")
    if option.minimum is not None and value < option.minimum:
        raise ConfigError(
            f"objective {name!r}: option {key} must be >= {option.minimum}, got {raw}"
        )
    return value


def build_objective(spec: str) -> ELBO:
    """The objective named by ``spec``, ready for SVI or for ``objective(model, guide)``."""
    name, options = parse_objective(spec)
    return OBJECTIVES[name].build(**options)
