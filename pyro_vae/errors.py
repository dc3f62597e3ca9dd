"""The errors a user can fix: each message names the problem and the fix.

The command line prints these as one line on stderr and exits with status 2;
anything else is a bug and keeps its traceback.

Example:
    >>> raise ConfigError("epochs must be >= 1, got -3; set epochs to a positive integer")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.ConfigError: epochs must be >= 1, got -3; set epochs to a positive integer
"""

__all__ = [
    "PyroVAEError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "RunFolderError",
    "ModelError",
]


class PyroVAEError(Exception):
    """Base class of every error caused by the user's input rather than a bug."""


class ConfigError(PyroVAEError):
    """A configuration key, value or name is invalid."""


class DataError(PyroVAEError):
    """A dataset is missing, unreadable, or does not fit the model or likelihood."""


class CheckpointError(PyroVAEError):
    """A checkpoint is missing, corrupted, unsafe, or belongs to another configuration."""


class RunFolderError(PyroVAEError):
    """An output folder cannot be used: it holds another run or is not writable."""


class ModelError(PyroVAEError):
    """A model/guide pair does not have the structure an objective needs (plates, scales)."""
