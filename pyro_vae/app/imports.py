"""User parts named by import path, ``package.module:Name``, wherever a built-in name goes.

As Lightning's CLI and Hydra do with class paths: ``--prior mypkg.priors:HierPrior``
(with ``prior_args = { ... }`` in the config) or ``--model mypkg.models:make_model``.
The object is imported when the model is built, so ``evaluate``, ``sample``, ``compare``
and ``--resume`` work in a new process whenever the module is importable (the working
directory is searched too); when it is not, one line says which import failed.

A factory is called with the keyword arguments of its ``*_args`` table plus those of
the standard ones (``latent_dim``, ``data_shape``, ``hidden``, ``encoder``, ...) that its
signature names, so a class written for Python works unchanged from the command line.

Example:
    >>> is_import_path("mypkg.priors:HierPrior"), is_import_path("mog")
    (True, False)
    >>> import_object("collections:OrderedDict", "prior").__name__
    'OrderedDict'
    >>> import_object("no_such_package_xyz:Prior", "prior")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.ConfigError: prior: cannot import module 'no_such_package_xyz' ...
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError

__all__ = ["is_import_path", "check_import_path", "import_object", "call_with_accepted"]

_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_import_path(value: str) -> bool:
    """Whether ``value`` names an object by import path (it holds a ``:``)."""
    return ":" in value


def check_import_path(value: str, key: str) -> None:
    """Raise ConfigError unless ``value`` is written ``package.module:Name`` (not imported)."""
    if not _PATH.match(value):
        raise ConfigError(
            f"{key}: {value!r} is not an import path; write package.module:Name "
            "(for example mypkg.priors:HierPrior)"
        )


def import_object(path: str, key: str) -> Any:
    """The object at ``package.module:Name``; ConfigError names the import that failed."""
    check_import_path(path, key)
    module_name, _, attribute = path.partition(":")
    if os.getcwd() not in sys.path:  # `pyro-vae` (a console script) does not search it
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's module: any error on import is theirs to see
        raise ConfigError(
            f"{key}: cannot import module {module_name!r} ({type(err).__name__}: {err}); "
            "make it importable (pip install -e your package, or run from its folder)"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{key}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def call_with_accepted(
    factory: Callable[..., Any],
    key: str,
    standard: Mapping[str, Any],
    user_args: Mapping[str, Any],
) -> Any:
    """``factory(**user_args, **{the standard arguments its signature names})``."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {
        n: v for n, v in standard.items() if (n in params or takes_any) and n not in user_args
    }
    kwargs.update(user_args)
    try:
        return factory(**kwargs)
    except TypeError as err:
        name = getattr(factory, "__qualname__", factory)
        raise ConfigError(
            f"{key}: {name}(**{sorted(kwargs)}) failed: {err}; set its arguments in {key}_args"
        ) from None
