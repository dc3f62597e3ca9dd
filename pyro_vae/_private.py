"""Every private Pyro and torch API pyro-vae relies on, in one place, checked at import.

A new Pyro or torch release may move or drop any of these without notice; then
``import pyro_vae`` fails here, at once and by name, instead of training wrongly later.

=============================================  =================================================
API                                            used for
=============================================  =================================================
``torch.distributions.utils._standard_normal``  the Normal guide's noise, drawn as torch does
``torch._amp_foreach_non_finite_check_...``    the NaN guard's one-kernel scan of the gradients
fused Adam's ``found_inf`` attribute           skipping a flagged step on the device
``pyro.poutine.runtime.am_i_wrapped``          announcing parameters only under Pyro handlers
``PyroModule._pyro_name``                      a fresh Pyro name for a copied VAE
``pyro.poutine.util.prune_subsample_sites``    the traced objectives' per-datapoint weights
``pyro.distributions.util.scale_and_mask``     the same
``pyro.infer.util.is_validation_enabled``      the same
``pyro.util.check_model_guide_match``          the same
``pyro.poutine.messenger.unwrap``              the signature of a guide under ``config_enumerate``
=============================================  =================================================

Example:
    >>> require("math", "pi") > 3
    True
    >>> require("math", "no_such_thing")
    Traceback (most recent call last):
    ...
    ImportError: pyro-vae relies on math.no_such_thing, which this installation lacks; ...
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pyro
import torch

__all__ = [
    "require",
    "standard_normal",
    "amp_non_finite_check",
    "am_i_wrapped",
    "set_pyro_name",
    "prune_subsample_sites",
    "scale_and_mask",
    "is_validation_enabled",
    "check_model_guide_match",
    "unwrap_handlers",
    "FUSED_ADAM_FOUND_INF",
]

_VERSIONS = f"torch {torch.__version__}, pyro-ppl {pyro.__version__}"


def require(module: str, name: str) -> Any:
    """``module.name``, or an ImportError naming it and the versions installed."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ImportError(
            f"pyro-vae relies on {module}.{name}, which this installation lacks; "
            f"({_VERSIONS}); install the versions pyro-vae supports (torch 2.1-2.14, "
            "pyro-ppl 1.9) or report it"
        ) from None


standard_normal = require("torch.distributions.utils", "_standard_normal")
amp_non_finite_check = require("torch", "_amp_foreach_non_finite_check_and_unscale_")
am_i_wrapped = require("pyro.poutine.runtime", "am_i_wrapped")
prune_subsample_sites = require("pyro.poutine.util", "prune_subsample_sites")
scale_and_mask = require("pyro.distributions.util", "scale_and_mask")
is_validation_enabled = require("pyro.infer.util", "is_validation_enabled")
check_model_guide_match = require("pyro.util", "check_model_guide_match")
unwrap_handlers = require("pyro.poutine.messenger", "unwrap")

# The fused Adam reads an optimizer attribute `found_inf` (set by GradScaler) and skips the
# step where it is 1. The guard sets it directly.
FUSED_ADAM_FOUND_INF = "found_inf"
if FUSED_ADAM_FOUND_INF not in inspect.getsource(importlib.import_module("torch.optim.adam")):
    raise ImportError(
        f"pyro-vae relies on the fused Adam reading optimizer.found_inf ({_VERSIONS}); "
        "this torch no longer does: install torch 2.1-2.14"
    )

if "_pyro_name" not in pyro.nn.PyroModule(name="probe").__dict__:
    raise ImportError(f"pyro-vae relies on PyroModule._pyro_name ({_VERSIONS}); use pyro-ppl 1.9")


def set_pyro_name(module: pyro.nn.PyroModule, name: str) -> None:
    """Give a PyroModule another name in Pyro's parameter store, and with it every PyroModule
    below it that took its name from it (``old.prior`` becomes ``name.prior``): a copy whose
    children kept the original's names would train the original's entries."""
    old = module._pyro_name
    for path, child in module.named_modules():
        if path and isinstance(child, pyro.nn.PyroModule) and child._pyro_name == f"{old}.{path}":
            child._pyro_name = f"{name}.{path}"
    module._pyro_name = name
