"""Checkpoints: plain tensors, numbers and strings, written atomically, read with ``weights_only``.

A checkpoint holds state dicts (model, optimizer), the resolved config, the
training position (epoch, step) and every random-number state, so a run can be
continued exactly. It never holds a pickled object: it is read with
``torch.load(..., weights_only=True)``, which refuses any payload that would run code.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> save_checkpoint(path, {"epoch": 3, "model": {"w": torch.ones(2)}})
    >>> load_checkpoint(path)["epoch"]
    3
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .atomic import atomic_torch_save

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "load_model_state",
    "FORMAT",
]

FORMAT = "pyro-vae-checkpoint-1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus a format tag) atomically; refuse non-finite model tensors."""
    for name, tensor in state.get("model", {}).items():
        if (
            torch.is_tensor(tensor)
            and tensor.is_floating_point()
            and not torch.isfinite(tensor).all()
        ):
            raise CheckpointError(
                f"refusing to save a checkpoint: parameter {name!r} is not finite"
            )
    atomic_torch_save({"format": FORMAT, **state}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``), with one clear error per failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err):  # the weights-only unpickler met bytes, not a class
            raise _corrupted(path, err) from None
        found = next(line for line in str(err).splitlines() if "GLOBAL" in line)
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled objects beyond tensors and plain "
            f"data, which could run code ({found.strip()}); only load checkpoints written by "
            "pyro-vae"
        ) from None
    except Exception as err:  # any other parse failure of damaged bytes
        raise _corrupted(path, err) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pyro-vae checkpoint (format tag missing or unknown)")
    return state


def _corrupted(path: Path, err: Exception) -> CheckpointError:
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return CheckpointError(
        f"{path}: truncated or corrupted checkpoint ({first_line}); "
        "resume from an intact copy or retrain"
    )


def load_model_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` with a message naming the first parameter that does not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: checkpoint does not fit this model (missing: {missing[:3]}, "
            f"unexpected: {unexpected[:3]}); it was written for another configuration"
        )
    for name, tensor in state.items():
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: parameter {name!r} has shape {tuple(tensor.shape)} in the checkpoint "
                f"but {tuple(own[name].shape)} in the model built from this config; "
                "use the run's own config.toml"
            )
    module.load_state_dict(state)


def capture_rng_state() -> dict[str, Any]:
    """Every random-number state a run uses, as weights_only-safe values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
