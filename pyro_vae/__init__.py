"""pyro-vae: variational autoencoders written the Pyro way.

Example:
    >>> import pyro_vae
    >>> vae = pyro_vae.build_vae(pyro_vae.Config(latent_dim=2, hidden=[32]), (1, 28, 28))
    >>> isinstance(vae, pyro_vae.VAE)
    True
"""

from .build import build_vae
from .config import Config
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelError,
    PyroVAEError,
    RunFolderError,
)
from .evaluation import Evaluation, evaluate, evaluate_vae
from .load import load_run
from .vae import VAE, GuideModule, LogWeights

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "GuideModule",
    "LogWeights",
    "Config",
    "build_vae",
    "evaluate",
    "evaluate_vae",
    "Evaluation",
    "load_run",
    "PyroVAEError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "RunFolderError",
    "ModelError",
]
