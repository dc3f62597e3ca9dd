"""What ``train --resume`` checks before it writes anything: that all it continues is the run's.

A resume continues the weights, optimizer and random streams of checkpoint.pt with the
settings of config.toml. Either may have changed since the run was trained: config.toml
edited by hand, a checkpoint.pt copied from another run, a checkpoint deleted, fewer
epochs asked for than are done. Each check here refuses such a mix with one line naming
what differs and the fix, before any data are loaded, and nothing in the run folder is
written.

Example::

    state = read_checkpoint(run)            # None: the run stopped in its first epoch
    if state is not None:
        check_config(run, cfg, Config.from_dict(state["config"]))
        check_epochs(run, cfg.epochs, state["position"], "--epochs")
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ..errors import CheckpointError, ConfigError
from .checkpoint import load_checkpoint
from .config import Config
from .run_folder import RunFolder

__all__ = [
    "RESUMABLE",
    "read_checkpoint",
    "check_config",
    "check_epochs",
    "is_complete",
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


def check_config(run: RunFolder, cfg: Config, saved: Config) -> None:
    """Refuse when ``cfg`` (config.toml with the command line's epochs) differs from the
    config the checkpoint was trained with in a setting outside :data:`RESUMABLE`."""
    differ = [
        f"{name} = {_shown(getattr(cfg, name))} in config.toml but "
        f"{_shown(getattr(saved, name))} in checkpoint.pt"
        for name in (f.name for f in fields(Config))
        if name not in RESUMABLE and getattr(cfg, name) != getattr(saved, name)
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


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
