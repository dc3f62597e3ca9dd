"""What ``train --resume`` checks before it writes anything: that all it continues is the run's.

A resume continues the weights, optimizer and random streams of checkpoint.pt with the
settings of config.toml, the data they name and (from Python) the model and objective
passed in. Any of these may have changed since the run was trained: config.toml edited
by hand, a checkpoint.pt copied from another run, a data file rewritten, a checkpoint
deleted, fewer epochs asked for than are done. Each check here refuses such a mix with
one line naming what differs and the fix, and nothing in the run folder is written:
the checkpoint and config are checked before any data are loaded, the data and the
model as soon as they are.

Example::

    state = read_checkpoint(run)            # None: the run stopped in its first epoch
    if state is not None:
        recorded = run_record_of(run, state)
        check_config(run, cfg, Config.from_dict(state["config"], saved=True), recorded)
        check_epochs(run, cfg.epochs, state["position"], "--epochs")
        check_data(run, recorded, data_fingerprint(dataset), "data.npz")
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch

from ..datasets import Dataset
from ..errors import CheckpointError, ConfigError, DataError, ModelError
from .checkpoint import load_checkpoint
from .config import Config
from .run_folder import RunFolder

__all__ = [
    "RESUMABLE",
    "RECORD_KEYS",
    "run_record_of",
    "read_checkpoint",
    "check_config",
    "check_epochs",
    "is_complete",
    "data_fingerprint",
    "data_change",
    "check_data",
    "check_model",
]

# settings a resume may change: how long, where and how fast it trains, never what it learns
# (a run moves between folders, machines and devices; `device = "auto"` moves with it anyway)
RESUMABLE = frozenset(
    {
        "epochs",
        "out",
        "data_dir",
        "device",
        "threads",
        "dist_timeout",
        "checkpoint_every",
        "validation",
        "eval_k",
    }
)
# what a resume checks the data, model and objective against: run.json's, and (since a
# damaged or deleted run.json let a resume train on other data unchecked) each checkpoint's
RECORD_KEYS = ("data_fingerprint", "model_source", "model_class", "objective_class")
_NEW_RUN = "train a new run (--out NEW_DIR, or --overwrite to replace this one)"


def read_checkpoint(run: RunFolder) -> dict[str, Any] | None:
    """The run's checked checkpoint (on the CPU), or None for a run stopped in its first
    epoch; CheckpointError when it is missing although the run's record has epochs done."""
    if run.checkpoint_path.exists():
        return load_checkpoint(run.checkpoint_path)
    done = _epochs_on_record(run)
    if done:
        raise CheckpointError(
            f"{run.checkpoint_path} is missing, but the run's record (metrics.csv, run.json) "
            f"has {done} epoch(s) done: the run cannot continue without it, and starting it "
            f"afresh would overwrite that record; restore checkpoint.pt, or {_NEW_RUN}"
        )
    return None


def _epochs_on_record(run: RunFolder) -> int:
    """Epochs done by the record's account: rows of metrics.csv, or run.json's epochs_done."""
    try:
        rows = len(run.read_metrics())
    except (OSError, UnicodeDecodeError, csv.Error):
        rows = 1  # an unreadable metrics.csv was still written after an epoch
    done = run.read_info().get("epochs_done")
    return max(rows, done if type(done) is int else 0)


def run_record_of(run: RunFolder, state: Mapping[str, Any] | None) -> dict[str, Any]:
    """run.json's record, with the checkpoint's (``state["record"]``) in place of it: the
    checkpoint holds what its weights were trained on, also where run.json was damaged,
    deleted or edited; run.json alone for a checkpoint of an older pyro-vae.

    Example:
        >>> import tempfile
        >>> run = RunFolder(tempfile.mkdtemp())  # no run.json
        >>> run_record_of(run, {"record": {"data_fingerprint": {"sha256": "ab"}}})
        {'data_fingerprint': {'sha256': 'ab'}}
    """
    saved = (state or {}).get("record", {})
    return {**run.read_info(), **{key: saved[key] for key in RECORD_KEYS if key in saved}}


def check_config(run: RunFolder, cfg: Config, saved: Config, recorded: Mapping[str, Any]) -> None:
    """Refuse when ``cfg`` (config.toml with the command line's epochs) differs from the
    config the checkpoint was trained with in a setting outside :data:`RESUMABLE`.

    A run whose data have a fingerprint on record (``recorded``: :func:`run_record_of`) may
    name them by another path (a moved file): :func:`check_data` then compares the data."""
    movable = RESUMABLE | ({"dataset"} if "data_fingerprint" in recorded else set())
    differ = [
        f"{name} = {_shown(getattr(cfg, name))} in config.toml but "
        f"{_shown(getattr(saved, name))} in checkpoint.pt"
        for name in (f.name for f in fields(Config))
        if name not in movable and getattr(cfg, name) != getattr(saved, name)
    ]
    if differ:
        raise ConfigError(
            f"{run.config_path} differs from the config {run.checkpoint_path} was trained "
            f"with: {'; '.join(differ)}. Resuming would mix the two in one run: restore "
            f"config.toml to the checkpoint's values, or {_NEW_RUN}"
        )


def check_epochs(run: RunFolder, epochs: int, position: Mapping[str, Any], source: str) -> None:
    """Refuse ``epochs`` (asked for by ``source``: --epochs or config.toml) below the epochs
    the checkpoint has done, counting one it is part-way through."""
    done, step = position.get("epoch", 0), position.get("step", 0)
    if epochs >= done + (step > 0):
        return
    if step:
        raise ConfigError(
            f"{run.path} has done {done} epochs and {step} steps of epoch {done + 1}, more "
            f"than the {epochs} asked for ({source}); a resume cannot take epochs back: "
            f"--epochs M with M >= {done + 1} continues it; for fewer epochs, {_NEW_RUN}"
        )
    raise ConfigError(
        f"{run.path} has done {done} epochs, more than the {epochs} asked for ({source}); a "
        f"resume cannot take epochs back: --epochs M with M > {done} trains further, "
        "otherwise there is nothing to do"
    )


def is_complete(epochs: int, position: Mapping[str, Any], info: Mapping[str, Any]) -> bool:
    """Whether the run finished (plots and record written) with exactly ``epochs`` epochs."""
    return (
        info.get("finished") is True
        and position.get("epoch") == epochs
        and position.get("step", 0) == 0
    )


def data_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """sha256 of every array of ``dataset`` (values, dtypes and shapes), with the shapes
    of its splits: recorded in run.json, so that a resume can tell other data.

    Example:
        >>> ds = Dataset.from_tensors(torch.zeros(4, 3), torch.ones(2, 3))
        >>> data_fingerprint(ds)["train_shape"], len(data_fingerprint(ds)["sha256"])
        ([4, 3], 64)
    """
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test", "mask_train", "mask_test"):
        tensor = getattr(dataset, name)
        if tensor is None:
            digest.update(f"{name}: none;".encode())
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}: {tensor.dtype} {list(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return {
        "sha256": digest.hexdigest(),
        "train_shape": list(dataset.x_train.shape),
        "test_shape": list(dataset.x_test.shape),
    }


def check_data(
    run: RunFolder, recorded: Mapping[str, Any], now: Mapping[str, Any], source: str
) -> str:
    """Refuse data (named ``source``, fingerprint ``now``) other than those whose fingerprint
    the run's record holds; a note when it holds none (an older pyro-vae's run), else ''."""
    then = recorded.get("data_fingerprint")
    if not isinstance(then, dict):
        return (
            f"note: neither {run.info_path} nor the checkpoint holds a fingerprint of the "
            "training data (an older pyro-vae wrote them), so the data could not be checked "
            "against the run's; they are recorded now"
        )
    if what := data_change(then, now):
        raise DataError(
            f"{source}: not the data {run.path} was trained on ({what}). Resuming would mix two "
            f"datasets in one run: restore the data it was trained on, or {_NEW_RUN}"
        )
    return ""


def data_change(then: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """How the data of fingerprint ``now`` differ from those of ``then``, in words; '' when
    they are the same data.

    Example:
        >>> then = data_fingerprint(Dataset.from_tensors(torch.zeros(4, 3), torch.ones(2, 3)))
        >>> now = data_fingerprint(Dataset.from_tensors(torch.ones(4, 3), torch.ones(2, 3)))
        >>> data_change(then, then), data_change(then, now)
        ('', 'same shapes, other values')
    """
    if then.get("sha256") == now["sha256"]:
        return ""
    changed = [
        f"the {split} split is {_shape(now[key])}, was {_shape(then.get(key))}"
        for split, key in (("training", "train_shape"), ("test", "test_shape"))
        if then.get(key) != now[key]
    ]
    return "; ".join(changed) or "same shapes, other values"


def check_model(run: RunFolder, recorded: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Refuse a model or objective other than the one run.json records: a run trained with
    a model or objective passed from Python resumes only with the same ones passed again."""
    python = recorded.get("model_source") == "python"
    keys = ("model_source", "objective_class", *(("model_class",) if python else ()))
    if all(recorded.get(key, now.get(key)) == now.get(key) for key in keys):
        return  # a built-in's class path may move between versions: its source is compared
    raise ModelError(
        f"{run.path} was trained with {_parts(recorded)}, but this resume has {_parts(now)}; "
        "resume it with the same ones (a model or objective passed from Python: "
        f"train(resume=..., model=..., objective=...) in your script), or {_NEW_RUN}"
    )


def _parts(info: Mapping[str, Any]) -> str:
    """The model and objective as run.json records them, in words."""
    model = (
        f"model {info.get('model_class')} passed from Python"
        if info.get("model_source") == "python"
        else "the config's model"
    )
    objective = info.get("objective_class")
    return f"{model} and " + (
        f"objective {objective} passed from Python" if objective else "the config's objective"
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shape(shape: Any) -> str:
    return "x".join(map(str, shape)) if isinstance(shape, list) else "unknown"
