"""Training: the torch-style loop around a Pyro objective, and the run it leaves behind.

The loss is ``objective(vae, vae.guide_module())``, an ``nn.Module`` (Pyro's
``ELBOModule``) trained with ``torch.optim.Adam``; the data sit on the device and
each step gathers a minibatch by index. Every epoch ends with a test ELBO, a row
in metrics.csv and an atomic checkpoint.

Example::

    result = train(Config(dataset="mnist5k", epochs=5, latent_dim=2))
    print(result.run_dir, result.history[-1]["test_elbo"])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from . import __version__
from .build import build_vae
from .checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
)
from .config import Config
from .data import TrainingData, prepare_data
from .datasets import Dataset, load_dataset
from .errors import ConfigError
from .evaluation import elbo_per_datapoint
from .objectives import build_objective, kl_warmup_scale
from .plots import save_run_plots
from .run_folder import RunFolder, default_run_dir
from .runtime import isolated_rng, resolve_device, seed_everything
from .vae import VAE

__all__ = ["Trainer", "TrainResult", "train", "Position"]

EVAL_SEED_OFFSET = 7919  # the test ELBO uses its own random stream: seed + offset


@dataclass
class Position:
    """Where training stands: saved in every checkpoint so a run can continue exactly."""

    epoch: int = 0  # the epoch in progress (equals the number of finished epochs between epochs)
    step: int = 0  # steps finished within that epoch
    global_step: int = 0
    seconds: float = 0.0  # time spent in that epoch so far


@dataclass
class TrainResult:
    run_dir: Path
    config: Config
    history: list[dict[str, Any]] = field(default_factory=list)
    vae: VAE | None = None


class Trainer:
    """Owns the VAE, its loss module, the optimizer and the data; runs epochs."""

    def __init__(self, cfg: Config, vae: VAE, data: TrainingData):
        self.cfg = cfg
        self.vae = vae
        self.data = data
        self.loss_module = build_objective(cfg.objective)(vae, vae.guide_module())
        self.optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
        self.position = Position()
        self.loss_sum = torch.zeros((), device=data.device)
        self.history: list[dict[str, Any]] = []
        self._validated = False

    @property
    def units(self) -> str:
        return getattr(self.vae.likelihood, "units", "nats")

    def train_step(self, x: torch.Tensor, kl_scale: float = 1.0) -> torch.Tensor:
        """One optimizer step on minibatch ``x``; returns the detached loss (no host sync).

        ``kl_scale`` weighs the KL term (KL warm-up); it reaches the z site of model and guide.
        """
        validate = self.cfg.validation == "every-step" or not self._validated
        with pyro.validation_enabled(validate):
            loss = self.loss_module(x, self.data.num_train, kl_scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._validated = True
        return loss.detach()

    def run_epoch(
        self,
        on_step: Callable[[], None] | None = None,
        bar: tqdm | None = None,
    ) -> dict[str, Any]:
        """Finish the epoch in progress (from its current step) and return its metrics row."""
        pos = self.position
        started = time.perf_counter() - pos.seconds
        x_epoch = self.data.epoch_train(pos.epoch)
        batches = self.data.batch_indices(pos.epoch, self.cfg.batch_size)
        kl_scale = kl_warmup_scale(pos.epoch, self.cfg.kl_warmup)
        if bar is not None:
            bar.reset(total=len(batches))
            bar.update(pos.step)
        for i in range(pos.step, len(batches)):
            self.loss_sum += self.train_step(x_epoch[batches[i]], kl_scale)
            pos.step, pos.global_step = i + 1, pos.global_step + 1
            pos.seconds = time.perf_counter() - started
            if bar is not None:
                bar.update(1)
                if pos.step % 10 == 0 or pos.step == len(batches):
                    running = float(self.loss_sum) / pos.step / self.data.num_train
                    bar.set_postfix_str(f"loss {running:.2f} {self.units}/datapoint")
            if on_step is not None:
                on_step()
        train_elbo = -float(self.loss_sum) / len(batches) / self.data.num_train
        row = {
            "epoch": pos.epoch + 1,
            "train_elbo": train_elbo,
            "test_elbo": self.test_elbo(),
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.history.append(row)
        pos.epoch, pos.step, pos.seconds = pos.epoch + 1, 0, 0.0
        self.loss_sum.zero_()
        return row

    def test_elbo(self) -> float:
        """Single-sample ELBO per test datapoint, on a random stream of its own."""
        self.vae.eval()
        with isolated_rng(self.cfg.seed + EVAL_SEED_OFFSET, self.data.device):
            value = elbo_per_datapoint(self.vae, self.data.test)
        self.vae.train()
        return value

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "data_shape": list(self.data.data_shape),
            "model": self.vae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "position": asdict(self.position),
            "loss_sum": self.loss_sum.detach().cpu(),
            "history": self.history,
            "rng": capture_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        load_model_state(self.vae, state["model"], source)
        self.optimizer.load_state_dict(state["optimizer"])
        self.position = Position(**state["position"])
        self.loss_sum = state["loss_sum"].to(self.data.device)
        self.history = list(state["history"])
        restore_rng_state(state["rng"])

    def save(self, run: RunFolder) -> None:
        save_checkpoint(run.checkpoint_path, self.state_dict())


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
    """
    log = log or tqdm.write
    if cfg is None and resume is None:
        raise ConfigError("train() needs a Config or resume=RUN_DIR")
    if resume is not None:
        run = RunFolder.open(resume)
        cfg = run.read_config()
        if epochs is not None:
            cfg = cfg.replace(epochs=epochs)
    else:
        resolve_device(cfg.device)  # fail before creating anything
        run = RunFolder.create(cfg.out or default_run_dir(), overwrite=overwrite)
        cfg = cfg.replace(out=str(run.path))
    device = resolve_device(cfg.device)
    requested = cfg.dataset
    cfg, dataset = _load_data(cfg, log)

    seed_everything(cfg.seed)
    vae = build_vae(cfg, dataset.data_shape).to(device)
    likelihood = vae.likelihood
    data = prepare_data(
        dataset,
        getattr(likelihood, "support", "real"),
        cfg.likelihood,
        cfg.binarize,
        cfg.seed,
        device,
    )
    trainer = Trainer(cfg, vae, data)
    if resume is not None:
        trainer.load_state_dict(
            load_checkpoint(run.checkpoint_path, device), str(run.checkpoint_path)
        )
        log(
            f"resuming {run.path} at epoch {trainer.position.epoch + 1}, "
            f"step {trainer.position.step}"
        )
        info = run.read_info() or _run_info(cfg, requested, dataset, data, device)
    else:
        info = _run_info(cfg, requested, dataset, data, device)
    run.write_config(cfg)
    run.write_info(info)

    units = trainer.units
    while trainer.position.epoch < cfg.epochs:
        description = f"epoch {trainer.position.epoch + 1}/{cfg.epochs}"
        with tqdm(desc=description, disable=not progress, leave=False, unit="batch") as bar:
            row = trainer.run_epoch(bar=bar)
        run.write_metrics(trainer.history)
        trainer.save(run)
        log(
            f"epoch {row['epoch']:>3}/{cfg.epochs}  train ELBO {row['train_elbo']:9.2f}  "
            f"test ELBO {row['test_elbo']:9.2f}  {units}/datapoint  ({row['seconds']:.1f} s)"
        )

    levels = getattr(likelihood, "support", "") == "levels"
    save_run_plots(vae, trainer.history, data.test, data.y_test, run.plots, units, levels, cfg.seed)
    run.write_info({**info, "finished": True, "epochs_done": trainer.position.epoch})
    log(f"run folder: {run.path}")
    return TrainResult(run.path, cfg, trainer.history, vae)
