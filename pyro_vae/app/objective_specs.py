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
from typing import Any, NamedTuple

from pyro.infer import ELBO

from ..errors import ConfigError
from .registry import OBJECTIVES, ObjectiveOption

__all__ = [
    "ParsedObjective",
    "parse_objective",
    "build_objective",
    "objective_scales_kl",
]


class ParsedObjective(NamedTuple):
    name: str
    options: dict[str, Any]


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
    given: set[str] = set()
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"objective {name!r}: option {item!r} must be written key=value")
        if key in given:
            raise ConfigError(f"objective {name!r}: option {key!r} is given twice; give it once")
        given.add(key)
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
