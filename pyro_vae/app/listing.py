"""``pyro-vae list``: every built-in with a one-line description and its options.

A part's options are the config fields it reads, shown as the flags that set them
(each is also a ``config.toml`` key: ``--prior-components`` is ``prior_components``).

Example:
    >>> text = describe_builtins()
    >>> "standard-normal" in text and "--prior-components N (default 10)" in text
    True
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from .config import Config
from .registry import DATASETS, GUIDES, LIKELIHOODS, MODELS, NETWORKS, OBJECTIVES, PRIORS

__all__ = ["describe_builtins", "describe_option"]

DATASET_OPTIONS = ("data_dir", "binarize")


def describe_option(name: str) -> str:
    """One config field as its flag, value form, default and help text.

    Example:
        >>> describe_option("prior_flow_depth")
        '--prior-flow-depth N (default 2): transform steps of the flow prior'
    """
    field = next(f for f in fields(Config) if f.name == name)
    default = field.default_factory() if field.default is MISSING else field.default
    choices = field.metadata["choices"]
    choices = choices() if callable(choices) else choices  # a registry's names
    if choices is not None:
        form = "{" + ",".join(choices) + "}"
    else:
        forms = {"int": "N", "float": "X", "str": "TEXT", "bool": ""}
        form = forms.get(field.type, "N [N ...]")  # list[int], int | list[int]
    shown = " ".join(map(str, default)) if isinstance(default, list) else default
    flag = f"--{name.replace('_', '-')} {form}".rstrip()
    if shown != "":
        flag += f" (default {shown})"
    return f"{flag}: {field.metadata['help']}"


def _section(title: str, registry: dict[str, Any], shared: tuple[str, ...] = ()) -> list[str]:
    lines = [title]
    if shared:
        lines += [f"  (all)  {describe_option(o)}" for o in shared]
    width = max(map(len, registry))
    for name, spec in sorted(registry.items()):
        lines.append(f"  {name:<{width}}  {spec.description}")
        lines += [f"      {describe_option(o)}" for o in getattr(spec, "options", ())]
    return lines + [""]


def describe_builtins() -> str:
    lines = [
        *_section("datasets (--dataset; or a path to your .npz)", DATASETS, DATASET_OPTIONS),
        *_section("models (--model; or package.module:Name)", MODELS),
        *_section("networks (--network)", NETWORKS),
        *_section("priors (--prior)", PRIORS),
        *_section("likelihoods (--likelihood)", LIKELIHOODS),
        *_section("guides (--guide)", GUIDES),
        "objectives (--objective NAME[:key=value,...])",
    ]
    width = max(map(len, OBJECTIVES))
    for name, spec in sorted(OBJECTIVES.items()):
        lines.append(f"  {name:<{width}}  {spec.description}")
        for key, option in spec.options.items():
            lines.append(f"  {'':<{width}}    {key}={option.default!r}: {option.help}")
    return "\n".join(lines)
