"""Checkpoints: plain tensors, numbers and strings, written atomically, read with ``weights_only``.

A checkpoint holds state dicts (model, optimizer), the resolved config, the
training position (epoch, step) and every random-number state, so a run can be
continued exactly. It never holds a pickled object: it is read with
``torch.load(..., weights_only=True)``, which refuses any payload that would run code,
and only when it is a PyTorch zip archive at all. What was read is then checked
entry by entry (:func:`check_checkpoint`), so a damaged or edited checkpoint is one
:class:`~pyro_vae.errors.CheckpointError` naming the file, never a KeyError later.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.pt"
    >>> save_checkpoint(path, {"model": {"w": torch.ones(2)}})
    >>> load_checkpoint(path)
    Traceback (most recent call last):
    ...
    pyro_vae.errors.CheckpointError: .../checkpoint.pt: checkpoint lacks config, data_shape, ...
"""

from __future__ import annotations

import errno
import math
import pickle
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError
from .atomic import atomic_torch_save
from .config import Config

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "check_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "load_model_state",
    "load_optimizer_state",
    "FORMAT",
    "REQUIRED_KEYS",
    "MAX_DATAPOINT_SIZE",
]

FORMAT = "pyro-vae-checkpoint-1"
REQUIRED_KEYS = (
    "config",
    "data_shape",
    "model",
    "optimizer",
    "position",
    "loss_sum",
    "history",
    "rng",
)
MAX_DATAPOINT_SIZE = 2**24  # values in one datapoint (16.7 M): far above any image an MLP models
_FIX = "resume from an intact copy of the run or retrain"
_WRITE_FIXES = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free disk space (the quota is reached)",
    errno.EFBIG: "raise the file-size limit (ulimit -f)",
    errno.EACCES: "make the folder writable",
    errno.EPERM: "make the folder writable",
    errno.EROFS: "move the run to a writable disk",
}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus a format tag) atomically; refuse non-finite model tensors.

    A failed write (full disk, file-size limit, permissions) is a CheckpointError that
    says so; the previous checkpoint, if any, is left as it was.
    """
    path = Path(path)
    for name, tensor in state.get("model", {}).items():
        if (
            torch.is_tensor(tensor)
            and tensor.is_floating_point()
            and not torch.isfinite(tensor).all()
        ):
            raise CheckpointError(
                f"refusing to save a checkpoint: parameter {name!r} is not finite"
            )
    try:
        atomic_torch_save({"format": FORMAT, **state}, path)
    except OSError as err:
        fix = _WRITE_FIXES.get(err.errno, "check the disk")
        raise CheckpointError(
            f"cannot write checkpoint {path} ({err.strerror or err}); any earlier checkpoint "
            f"there is intact: {fix}, then continue with --resume {path.parent}"
        ) from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint safely (``weights_only=True``): one clear error per failure."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            is_archive = zipfile.is_zipfile(handle)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as err:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({err.strerror or err}); check the path"
        ) from None
    if not is_archive:  # never unpickle what pyro-vae cannot have written
        raise CheckpointError(
            f"{path}: not a pyro-vae checkpoint (not a PyTorch archive: truncated, corrupted "
            f"or another kind of file); it was not loaded: {_FIX}"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise _corrupted(path, err) from None
        found = [
            line.strip()
            for line in str(err).splitlines()
            if "GLOBAL" in line or "Unsupported operand" in line
        ]
        detail = f" ({found[0]})" if found else ""
        raise CheckpointError(
            f"{path}: refused for safety: the file holds code or objects that are not plain "
            f"tensors and numbers{detail}; pyro-vae loads only the plain checkpoints it writes: "
            f"{_FIX}"
        ) from None
    except Exception as err:  # any other parse failure of damaged bytes
        raise _corrupted(path, err) from None
    return check_checkpoint(state, path)


def _corrupted(path: Path, err: Exception) -> CheckpointError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
    detail = f" ({first})" if first and "weights_only" not in first else ""
    return CheckpointError(f"{path}: truncated or corrupted checkpoint{detail}; {_FIX}")


def check_checkpoint(state: Any, path: str | Path) -> dict[str, Any]:
    """``state`` if it has every entry a run needs, of the right type; else CheckpointError.

    Extra entries are allowed (later versions may add optional ones).

    Example:
        >>> check_checkpoint({"format": FORMAT, "model": {}}, "ckpt.pt")
        Traceback (most recent call last):
        ...
        pyro_vae.errors.CheckpointError: ckpt.pt: checkpoint lacks config, data_shape, ...
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a pyro-vae checkpoint (format tag missing or unknown); {_FIX}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint lacks {', '.join(missing)}; it was damaged, edited or written "
            f"by another program: {_FIX}"
        )
    for key, check in _CHECKS.items():
        if key not in state:
            continue
        problem = check(state[key])
        if problem:
            problem = " ".join(problem.split())  # one line, even around a tensor's repr
            raise CheckpointError(f"{path}: checkpoint entry '{key}' {problem:.300}; {_FIX}")
    return state


# -- one check per entry: None when fine, else what is wrong -------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_config(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"is {type(value).__name__}, expected a table of settings"
    try:
        Config.from_dict(value, saved=True)
    except (ConfigError, TypeError, ValueError) as err:  # TypeError: keys that are not text
        return f"is not a valid config ({err})"
    return None


def _check_data_shape(value: Any) -> str | None:
    if (
        not isinstance(value, (list, tuple))
        or not 1 <= len(value) <= 4
        or not all(_is_int(d) and d >= 1 for d in value)
    ):
        return f"is {value!r:.80}, expected 1 to 4 positive sizes"
    if math.prod(value) > MAX_DATAPOINT_SIZE:
        return f"declares {math.prod(value)} values per datapoint, more than {MAX_DATAPOINT_SIZE}"
    return None


def _check_model(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"is {type(value).__name__}, expected a table of tensors"
    for name, tensor in value.items():
        if not isinstance(name, str) or not torch.is_tensor(tensor):
            return f"holds {name!r:.40}: {type(tensor).__name__}, expected named tensors"
        if tensor.layout != torch.strided or tensor.is_complex():
            return f"holds {name!r} as a {tensor.layout} {tensor.dtype} tensor, not a real one"
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return f"holds {name!r} with NaN or infinite values"
    return None


def _check_optimizer(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"is {type(value).__name__}, expected an optimizer state dict"
    per_param, groups = value.get("state"), value.get("param_groups")
    if not isinstance(per_param, dict) or not isinstance(groups, list):
        return "lacks its 'state' table or its 'param_groups' list"
    for group in groups:
        params = group.get("params") if isinstance(group, dict) else None
        if not isinstance(params, list) or not all(_is_int(p) for p in params):
            return "has a parameter group without its list of parameter numbers"
    for key, entry in per_param.items():
        if not _is_int(key) or not isinstance(entry, dict):
            return f"holds state {key!r:.40} that is not a table of one parameter's tensors"
        if not all(isinstance(v, (torch.Tensor, int, float)) for v in entry.values()):
            return f"holds state of parameter {key} with values that are not tensors or numbers"
    return None


def _check_position(value: Any) -> str | None:
    from .trainer import Position  # the trainer imports this module

    fields = Position.__dataclass_fields__
    if not isinstance(value, dict) or not set(value) <= set(fields):
        return f"is {value!r:.80}, expected a table with some of {', '.join(fields)}"
    for key, number in value.items():
        if fields[key].type == "int":
            ok = _is_int(number) and number >= 0
        else:
            ok = isinstance(number, float) and math.isfinite(number) and number >= 0
        if not ok:
            return f"has {key} = {number!r:.40}, expected a non-negative {fields[key].type}"
    return None


def _check_loss_sum(value: Any) -> str | None:
    if not torch.is_tensor(value) or value.dim() != 0 or not value.is_floating_point():
        return f"is {type(value).__name__} {value!r:.40}, expected a floating-point scalar tensor"
    return None


def _check_history(value: Any) -> str | None:
    if not isinstance(value, list) or not all(
        isinstance(row, dict) and all(isinstance(k, str) for k in row) for row in value
    ):
        return "is not a list of rows (tables of named values)"
    return None


def _check_rng(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return f"is {type(value).__name__}, expected a list of random-number states per process"
    for rank, entry in enumerate(value):
        try:
            _try_rng_state(entry)
        except (ValueError, TypeError, RuntimeError, OverflowError, KeyError, IndexError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            return f"holds an invalid random-number state for process {rank} ({first:.120})"
    return None


def _try_rng_state(entry: Any) -> None:
    """Restore ``entry`` into throwaway generators: raises where restore_rng_state would."""
    if not isinstance(entry, dict):
        raise TypeError(f"expected a table, got {type(entry).__name__}")
    if not torch.is_tensor(entry["torch"]):
        raise TypeError("the torch state is not a tensor")
    torch.Generator().set_state(entry["torch"].cpu())
    name, keys, *rest = entry["numpy"]
    np.random.RandomState().set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = entry["python"]
    random.Random().setstate((version, tuple(internal), gauss))
    cuda = entry.get("cuda", [])
    if not isinstance(cuda, list) or not all(torch.is_tensor(t) for t in cuda):
        raise TypeError("the cuda states are not a list of tensors")


def _check_record(value: Any) -> str | None:
    fingerprint = value.get("data_fingerprint", {}) if isinstance(value, dict) else None
    if not isinstance(fingerprint, dict) or not isinstance(fingerprint.get("sha256", ""), str):
        return f"is {value!r:.80}, expected a table of what the run was trained on"
    return None


def _check_recoveries(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else f"is {value!r:.40}, expected a count"


_CHECKS = {
    "config": _check_config,
    "data_shape": _check_data_shape,
    "model": _check_model,
    "optimizer": _check_optimizer,
    "position": _check_position,
    "loss_sum": _check_loss_sum,
    "history": _check_history,
    "rng": _check_rng,
    "recoveries": _check_recoveries,
    "record": _check_record,
}


# -- loading states into live objects ------------------------------------------------------------


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


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, state: Mapping[str, Any], source: str
) -> None:
    """``optimizer.load_state_dict`` after checking that the saved state fits its parameters.

    Example:
        >>> a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
        >>> saved = torch.optim.Adam([a]).state_dict()
        >>> load_optimizer_state(torch.optim.Adam([a, b]), saved, "ckpt.pt")
        Traceback (most recent call last):
        ...
        pyro_vae.errors.CheckpointError: ckpt.pt: the optimizer state holds 1 parameter(s) ...
    """
    problem = _optimizer_misfit(optimizer, state)
    if problem:
        raise CheckpointError(
            f"{source}: the optimizer state {problem}; it was written for another configuration "
            f"or damaged: {_FIX}"
        )
    optimizer.load_state_dict(state)


def _optimizer_misfit(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> str | None:
    """What in a (structurally checked) optimizer state does not fit ``optimizer``, if any."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_groups = state["param_groups"]
    counts = [len(group["params"]) for group in saved_groups]
    if counts != [len(group["params"]) for group in optimizer.param_groups]:
        return (
            f"holds {sum(counts)} parameter(s) in {len(counts)} group(s), the model "
            f"{len(params)} in {len(optimizer.param_groups)}"
        )
    for saved, own in zip(saved_groups, optimizer.param_groups, strict=True):
        for name, value in saved.items():
            if name != "params" and name in own and not _same_kind(value, own[name]):
                return f"has setting {name} = {value!r:.40}, not a value like {own[name]!r:.40}"
    ids = [i for group in saved_groups for i in group["params"]]
    by_id = dict(zip(ids, params, strict=True))
    amsgrad = {i for group in saved_groups if group.get("amsgrad") for i in group["params"]}
    for key, entry in state["state"].items():
        param = by_id.get(key)
        if param is None:
            return f"names unknown parameter {key}"
        if isinstance(optimizer, torch.optim.Adam):
            needed = {"step", "exp_avg", "exp_avg_sq"}
            needed |= {"max_exp_avg_sq"} if key in amsgrad else set()
            if not needed <= set(entry):
                return f"of parameter {key} lacks {', '.join(sorted(needed - set(entry)))}"
        for name, value in entry.items():
            if not _fits(name, value, param):
                found = f"shape {tuple(value.shape)}" if torch.is_tensor(value) else repr(value)
                return (
                    f"entry {name!r} of parameter {key} is {found:.60}, the parameter has "
                    f"shape {tuple(param.shape)}"
                )
    return None


def _fits(name: str, value: Any, param: torch.Tensor) -> bool:
    """A step count is one finite non-negative number; other entries are like the parameter."""
    if not torch.is_tensor(value):
        return False
    if name == "step":
        real = not value.is_complex() and value.dtype != torch.bool and value.numel() == 1
        return real and bool(torch.isfinite(value.double()).all() and (value >= 0).all())
    return value.is_floating_point() and value.shape == param.shape


def _same_kind(value: Any, like: Any) -> bool:
    """Whether an optimizer setting read from a file can stand where ``like`` stands."""
    if like is None or isinstance(like, bool):  # switches such as fused: None or a bool
        return value is None or isinstance(value, bool)
    if isinstance(like, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        try:
            return math.isfinite(float(value))
        except OverflowError:
            return False
    if isinstance(like, (tuple, list)):
        return (
            isinstance(value, (tuple, list))
            and len(value) == len(like)
            and all(_same_kind(v, w) for v, w in zip(value, like, strict=True))
        )
    if torch.is_tensor(like):
        return torch.is_tensor(value) and value.shape == like.shape
    return type(value) is type(like)


# -- random-number states ------------------------------------------------------------------------


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
