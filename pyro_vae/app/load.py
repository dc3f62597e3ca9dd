"""Load a trained VAE back from its run folder.

Example::

    run = load_run("runs/2026-11-26_08-00-00")
    images = run.vae.sample(16)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..vae import VAE
from .build import build_vae
from .checkpoint import load_checkpoint, load_model_state
from .config import Config
from .run_folder import RunFolder
from .runtime import resolve_device

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    folder: RunFolder
    config: Config
    vae: VAE
    data_shape: tuple[int, ...]
    checkpoint: dict[str, Any]


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """The run's config and its VAE with the checkpoint's parameters, in eval mode."""
    folder = RunFolder.open(path)
    device = resolve_device(str(device))
    state = load_checkpoint(folder.checkpoint_path, device)
    config = Config.from_dict(state["config"])
    data_shape = tuple(state["data_shape"])
    vae = build_vae(config, data_shape).to(device)
    load_model_state(vae, state["model"], str(folder.checkpoint_path))
    vae.eval()
    return LoadedRun(folder, config, vae, data_shape, state)
