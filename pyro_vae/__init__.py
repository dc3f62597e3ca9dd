"""pyro-vae: variational autoencoders written the Pyro way.

The core, imported here, takes typed arguments and returns distributions, losses and
numbers: the :class:`VAE` and its parts (:mod:`.parts` names their contracts), the
objectives, the estimators and the data preparation. The application in
:mod:`pyro_vae.app` (``Config``, run folders, the trainer, the CLI) is loaded only
when one of its names is used: ``pyro_vae.train``, ``pyro_vae.evaluate``,
``pyro_vae.load_run``, ``pyro_vae.compare``, ``pyro_vae.Config``, ``pyro_vae.build_vae``.

Example:
    >>> import pyro_vae
    >>> vae = pyro_vae.mlp_vae((1, 28, 28), latent_dim=2, hidden=[32])
    >>> isinstance(vae, pyro_vae.VAE)
    True
"""

from importlib import import_module
from typing import Any

from .compose import mlp_vae
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelError,
    PyroVAEError,
    RunFolderError,
)
from .estimators import Evaluation, elbo_per_datapoint, evaluate_vae
from .parts import Guide, Likelihood, Prior
from .vae import VAE, GuideModule, LogWeights

__version__ = "0.1.0"

# Application names, imported on first use so that `import pyro_vae` loads only the core.
_APP = {
    "Config": "pyro_vae.app.config",
    "build_vae": "pyro_vae.app.build",
    "train": "pyro_vae.app.train",
    "TrainResult": "pyro_vae.app.train",
    "evaluate": "pyro_vae.app.evaluate",
    "load_run": "pyro_vae.app.load",
    "LoadedRun": "pyro_vae.app.load",
    "compare": "pyro_vae.app.compare",
    "ComparisonResult": "pyro_vae.app.compare",
    "build_objective": "pyro_vae.app.objective_specs",
}

__all__ = [
    "VAE",
    "GuideModule",
    "LogWeights",
    "Prior",
    "Guide",
    "Likelihood",
    "mlp_vae",
    "evaluate_vae",
    "elbo_per_datapoint",
    "Evaluation",
    "PyroVAEError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "RunFolderError",
    "ModelError",
    *_APP,
]


def __getattr__(name: str) -> Any:
    if name in _APP:
        return getattr(import_module(_APP[name]), name)
    raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")
