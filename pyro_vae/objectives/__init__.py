"""Inference objectives, named in configs and on the command line as ``NAME[:key=value,...]``.

Each built-in is a :class:`pyro.infer.ELBO`, so it works both ways:
``SVI(vae.model, vae.guide, optim, loss=objective)`` and, torch style,
``objective(vae, vae.guide_module())`` trained with ``torch.optim``.

Example:
    >>> parse_objective("elbo:num_particles=4")
    ParsedObjective(name='elbo', options={'num_particles': 4})
    >>> build_objective("elbo").num_particles
    1
"""

from __future__ import annotations

from .registry import (
    OBJECTIVES,
    ObjectiveOption,
    ObjectiveSpec,
    ParsedObjective,
    build_objective,
    parse_objective,
)

__all__ = [
    "OBJECTIVES",
    "ObjectiveOption",
    "ObjectiveSpec",
    "ParsedObjective",
    "build_objective",
    "parse_objective",
]
