"""Load a trained model back from its run folder.

A run trained from a config (a built-in VAE, or a model named by import path) is
rebuilt from its config; a run whose model was passed from Python gets that model
again: ``load_run(dir, model=MyCVAE(...))`` loads the weights into it.

The weights are always paired with the config saved in the checkpoint, which they
were trained with; when the folder's config.toml says otherwise, ``note`` says so
(callers print it).

Example::

    run = load_run("runs/2026-11-26_08-00-00")
    images = run.model.sample(16)
    if run.note:
        print(run.note)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, PyroVAEError
from ..missing import allow_missing
from .build import build_model
from .checkpoint import load_checkpoint, load_model_state
from .config import Config
from .run_folder import RunFolder
from .runtime import resolve_device

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A run's folder, config, model (with the checkpoint's weights, in eval mode) and state."""

    folder: RunFolder
    config: Config
    model: nn.Module
    data_shape: tuple[int, ...]
    checkpoint: dict[str, Any]
    info: dict[str, Any]
    note: str = ""  # one line for the user, e.g. when config.toml disagrees with the checkpoint


def load_run(
    path: str | Path, device: str | torch.device = "cpu", model: nn.Module | None = None
) -> LoadedRun:
    """The run's config and its model with the checkpoint's parameters, in eval mode.

    ``model``: the module to load the weights into (needed when the run's model was
    passed from Python rather than named in its config). A run trained on data with missing
    entries returns its model prepared for them (:func:`~pyro_vae.missing.allow_missing`),
    as training left it.
    """
    folder = RunFolder.open(path)
    device = resolve_device(str(device))
    state = load_checkpoint(folder.checkpoint_path, device)
    config = Config.from_dict(state["config"], saved=True)
    data_shape = tuple(state["data_shape"])
    info = _read_info(folder)
    if model is None:
        if info.get("model_source") == "python":
            raise CheckpointError(
                f"{folder.path} was trained with a model passed from Python "
                f"({info.get('model_class', 'unknown class')}); build it again and pass it: "
                "load_run(run_dir, model=...)"
            )
        model = build_model(config, data_shape, info.get("num_classes"))
    model = model.to(device)
    load_model_state(model, state["model"], str(folder.checkpoint_path))
    if info.get("data_missing"):  # trained with a likelihood masked per entry: so it scores
        allow_missing(model)
    model.eval()
    return LoadedRun(folder, config, model, data_shape, state, info, _config_note(folder, config))


def _config_note(folder: RunFolder, config: Config) -> str:
    """One line when config.toml is not the config the checkpoint's weights were trained with."""
    try:
        written = folder.read_config()
    except PyroVAEError as err:
        return f"{err}; using the config saved in checkpoint.pt"
    differ = [
        f"{f.name} = {getattr(written, f.name)!r} there but {getattr(config, f.name)!r}"
        for f in fields(Config)
        if f.name != "out" and getattr(written, f.name) != getattr(config, f.name)
    ]  # out: where the run was written (a checkpoint of a run without --out holds '')
    if not differ:
        return ""
    return (
        f"{folder.config_path} differs from the config saved in checkpoint.pt "
        f"({'; '.join(differ[:3])}{'; ...' if len(differ) > 3 else ''}); using the "
        "checkpoint's, which the weights were trained with"
    )


def _read_info(folder: RunFolder) -> dict[str, Any]:
    """run.json, or nothing when it is missing or unreadable (the checkpoint is what counts)."""
    try:
        return folder.read_info()
    except Exception:  # an old or damaged run.json must not stop a load
        return {}
