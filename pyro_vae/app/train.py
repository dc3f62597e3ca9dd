"""``train``: one call from a Config to a finished run folder (or a resumed one).

It loads and prepares the data, builds the VAE, joins the process group when
launched by ``torchrun``, hands the loop to :class:`~pyro_vae.trainer.Trainer`, and
leaves config.toml, run.json, metrics.csv, checkpoint.pt and plots/ behind (rank 0
alone writes). Every epoch ends with a test ELBO, a metrics row and an atomic
checkpoint.

Example::

    result = train(Config(dataset="mnist5k", epochs=5, latent_dim=2))
    print(result.run_dir, result.history[-1]["test_elbo"])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..data import TrainingData, prepare_data
from ..datasets import Dataset
from ..errors import ConfigError, PyroVAEError, RunFolderError
from ..vae import VAE
from .build import build_vae
from .checkpoint import load_checkpoint
from .config import Config
from .distributed import DistContext, broadcast_object, init_distributed, rank_seed
from .plots import save_run_plots
from .registry import load_dataset
from .run_folder import RunFolder, default_run_dir
from .runtime import seed_everything
from .trainer import Trainer

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    run_dir: Path
    config: Config
    history: list[dict[str, Any]] = field(default_factory=list)
    vae: VAE | None = None


def _load_data(cfg: Config, log: Callable[[str], None]) -> tuple[Config, Dataset]:
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    if dataset.note:
        log(dataset.note)
    return cfg.replace(dataset=dataset.name), dataset


def _run_info(cfg: Config, requested: str, dataset: Dataset, data: TrainingData, device) -> dict:
    return {
        "pyro_vae_version": __version__,
        "torch_version": torch.__version__,
        "pyro_version": pyro.__version__,
        "device": str(device),
        "dataset_requested": requested,
        "dataset_used": dataset.name,
        "dataset_source": dataset.source,
        "dataset_note": dataset.note,
        "num_train": data.num_train,
        "num_test": int(data.test.shape[0]),
        "data_shape": list(data.data_shape),
        "binarization": "dynamic" if data.dynamic else cfg.binarize,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "finished": False,
    }


def _create_run(cfg: Config, overwrite: bool, ctx: DistContext) -> tuple[RunFolder, Config]:
    """A new run folder: rank 0 creates it and every rank learns its path (or the error)."""
    path, error = None, None
    if ctx.is_main:
        try:
            path = str(RunFolder.create(cfg.out or default_run_dir(), overwrite=overwrite).path)
        except PyroVAEError as err:
            error = str(err)
    path, error = broadcast_object((path, error), ctx)
    if error is not None:
        raise RunFolderError(error)
    return RunFolder(path), cfg.replace(out=path)


def train(
    cfg: Config | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    epochs: int | None = None,
) -> TrainResult:
    """Train a VAE as ``cfg`` says and leave a run folder; or continue the run at ``resume``.

    On resume the run's own config.toml is used; only ``epochs`` may be raised.
    Launched by torchrun, this process joins the process group and trains its share.
    """
    log = log or tqdm.write
    if cfg is None and resume is None:
        raise ConfigError("train() needs a Config or resume=RUN_DIR")
    if resume is not None:
        run = RunFolder.open(resume)
        cfg = run.read_config()
    ctx, device = init_distributed(cfg.device, cfg.dist_timeout)  # fails before any writing
    say = log if ctx.is_main else (lambda _: None)
    if resume is None:
        run, cfg = _create_run(cfg, overwrite, ctx)
    if epochs is not None:
        cfg = cfg.replace(epochs=epochs)
    requested = cfg.dataset
    cfg, dataset = _load_data(cfg, say)

    seed_everything(cfg.seed)
    vae = build_vae(cfg, dataset.data_shape).to(device)
    if ctx.is_distributed:  # same initial weights everywhere, then a random stream per rank
        torch.manual_seed(rank_seed(cfg.seed, ctx.rank))
    likelihood = vae.likelihood
    data = prepare_data(
        dataset,
        getattr(likelihood, "support", "real"),
        cfg.likelihood,
        cfg.binarize,
        cfg.seed,
        device,
    )
    trainer = Trainer(cfg, vae, data, ctx)
    info = _run_info(cfg, requested, dataset, data, device)
    info["world_size"] = ctx.world_size
    if resume is not None:
        note = trainer.load_state_dict(
            load_checkpoint(run.checkpoint_path, device), str(run.checkpoint_path)
        )
        trainer.remember_good_state()
        say(
            f"resuming {run.path} at epoch {trainer.position.epoch + 1}, "
            f"step {trainer.position.step}"
        )
        if note:
            say(note)
        info = {**info, **run.read_info(), "world_size": ctx.world_size}
    if ctx.is_main:
        run.write_config(cfg)
        run.write_info(info)

    trainer.fit(run, say, progress)
    if ctx.is_main:
        levels = getattr(likelihood, "support", "") == "levels"
        save_run_plots(
            vae, trainer.history, data.test, data.y_test, run.plots, trainer.units, levels, cfg.seed
        )
        run.write_info({**info, "finished": True, "epochs_done": trainer.position.epoch})
    say(f"run folder: {run.path}")
    return TrainResult(run.path, cfg, trainer.history, vae)
