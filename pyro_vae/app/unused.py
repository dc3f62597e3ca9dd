"""Settings the chosen model and parts would not read, refused when given on the command line.

``--prior-components 5`` with the standard-normal prior, ``--latent-hidden 50`` with one
latent layer or ``--labels 100`` with the plain VAE would change nothing, and a run that
silently ignores a typed flag is not the run its author meant. Which part reads which
setting is the registry's ``options`` (what ``pyro-vae list`` shows). Only flags are
checked: a config file holds every key, and a comparison's cells may share a flag that
some of them read (it is refused only when no cell reads it).

Example:
    >>> unused_reason(Config(), "prior_components")
    "only the prior mog or vamp reads it, and the prior is 'standard-normal'"
    >>> unused_reason(Config(prior="mog"), "prior_components") is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import ConfigError
from .config import Config
from .imports import is_import_path
from .registry import part_registry

__all__ = ["unused_reason", "refuse_unused"]

READERS = ("model", "network", "prior", "likelihood", "guide")
STACKED_ONLY = ("latent_hidden", "latent_activation")


def unused_reason(cfg: Config, option: str) -> str | None:
    """Why ``cfg``'s model and parts do not read config field ``option``; None if one does
    (or may: a part given by import path reads what it likes)."""
    if is_import_path(cfg.model):
        return None
    if option in STACKED_ONLY and not isinstance(cfg.latent_dim, list):
        return "only stacked layers read it (several --latent-dim, bottom first, e.g. 100 50)"
    reasons = []
    for key in READERS:
        readers = [name for name, spec in part_registry(key).items() if option in spec.options]
        chosen = getattr(cfg, key)
        if not readers:
            continue
        if chosen in readers or is_import_path(chosen):
            return None
        reasons.append(
            f"only the {key} {' or '.join(readers)} reads it, and the {key} is {chosen!r}"
        )
    return reasons[0] if reasons else None


def refuse_unused(configs: Sequence[Config], given: Iterable[str]) -> None:
    """ConfigError for the first setting in ``given`` that none of ``configs`` reads.

    Example:
        >>> refuse_unused([Config()], ["labels"])
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: --labels changes nothing here: only the model m2 reads ...
    """
    for option in given:
        reasons = [unused_reason(cfg, option) for cfg in configs]
        if reasons and all(reasons):
            flag = "--" + option.replace("_", "-")
            raise ConfigError(
                f"{flag} changes nothing here: {reasons[0]}; drop {flag}, or choose what reads "
                "it (pyro-vae list shows which part reads which option)"
            )
