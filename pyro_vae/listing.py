"""``pyro-vae list``: every built-in with a one-line description and its options.

Example:
    >>> "standard-normal" in describe_builtins()
    True
"""

from __future__ import annotations

from .datasets import DATASETS
from .guides import GUIDES
from .likelihoods import LIKELIHOODS
from .networks import NETWORKS
from .objectives import OBJECTIVES
from .priors import PRIORS

__all__ = ["describe_builtins"]


def describe_builtins() -> str:
    sections = [
        ("datasets (--dataset; or a path to your .npz)", DATASETS),
        ("networks (--network)", NETWORKS),
        ("priors (--prior)", PRIORS),
        ("likelihoods (--likelihood)", LIKELIHOODS),
        ("guides (--guide)", GUIDES),
    ]
    lines: list[str] = []
    for title, registry in sections:
        lines.append(title)
        width = max(map(len, registry))
        lines += [
            f"  {name:<{width}}  {spec.description}" for name, spec in sorted(registry.items())
        ]
        lines.append("")
    lines.append("objectives (--objective NAME[:key=value,...])")
    width = max(map(len, OBJECTIVES))
    for name, spec in sorted(OBJECTIVES.items()):
        lines.append(f"  {name:<{width}}  {spec.description}")
        for key, option in spec.options.items():
            lines.append(f"  {'':<{width}}    {key}={option.default!r}: {option.help}")
    return "\n".join(lines)
