"""The training loop: steps, epochs, faults and checkpoints of one model on one dataset.

The model is any ``nn.Module`` that follows :mod:`pyro_vae.convention` (the built-in
VAE, a subclass with its own ``model``/``guide``, or your own module). The loss is
``objective(*loss_modules(model))``, an ``nn.Module`` (Pyro's ``ELBOModule``; for an M2 on
semi-supervised data, :class:`~pyro_vae.semisupervised.SemiSupervisedLoss`) trained
with ``torch.optim.Adam`` (fused); each step gathers a minibatch (and its labels, when
the model takes ``y``) by index from data that sit on the device. Under ``torchrun`` the loss
module is wrapped in ``DistributedDataParallel``: each rank takes its share of every
global batch, gradients are averaged, and rank 0 alone writes files.

Example::

    trainer = Trainer(cfg, build_vae(cfg, data.data_shape), data)
    row = trainer.run_epoch()          # {"epoch": 1, "train_elbo": ..., "test_elbo": ...}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pyro
import torch
from pyro.infer import ELBO
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .._private import FUSED_ADAM_FOUND_INF
from ..convention import convention_of, data_support
from ..data import TrainingData, observed_range
from ..errors import DataError
from ..estimators import elbo_per_datapoint, units_of
from ..families.m2 import M2
from ..likelihoods import bits_per_dim
from ..objectives import kl_warmup_scale
from ..rng import isolated_rng
from ..semisupervised import classifier_scores, training_loss
from .checkpoint import (
    capture_rng_state,
    load_model_state,
    load_optimizer_state,
    restore_rng_state,
    save_checkpoint,
)
from .config import Config
from .distributed import (
    DistContext,
    DistributedFault,
    all_reduce_max,
    all_reduce_sum,
    collective_error,
    gather_objects,
    rank_seed,
)
from .faults import (
    BASELINE_MIN_EPOCHS,
    MAX_RECOVERIES,
    FaultRecord,
    NonFiniteStep,
    NumericalFault,
    StepScan,
    absurd_elbo_warning,
    baseline_log_px,
    below_baseline_warning,
    name_non_finite_state,
    non_finite_kind,
    non_finite_state,
    raise_if_non_finite,
    standardizes_itself,
)
from .objective_specs import build_objective
from .run_folder import RunFolder
from .runtime import make_adam

__all__ = ["Trainer", "Position", "EVAL_SEED_OFFSET"]

EVAL_SEED_OFFSET = 7919  # the test ELBO uses its own random stream: seed + offset
GPU_FAULT_READ_EVERY = 10  # steps between reads of the fault record on a GPU (one sync each)
STATE_CHECK_EVERY = GPU_FAULT_READ_EVERY  # steps between scans of parameters and Adam's state


@dataclass
class Position:
    """Where training stands: saved in every checkpoint so a run can continue exactly."""

    epoch: int = 0  # the epoch in progress (equals the number of finished epochs between epochs)
    step: int = 0  # steps finished within that epoch
    global_step: int = 0
    seconds: float = 0.0  # time spent in that epoch so far


def _non_finite_start(loss: float, x: torch.Tensor) -> str:
    """Why training cannot start: the loss at the initial weights is not finite."""
    largest = max(map(abs, observed_range(x)))
    return (
        f"the loss at the initial weights is {loss} on two test datapoints, so no step could "
        f"be taken (the largest |x| in the test data is {largest:.3g}); for real-valued data "
        "far from unit scale, standardize each feature (subtract its mean, divide by its "
        "standard deviation); otherwise check the custom parts for a NaN or an infinity"
    )


AUTO_BATCH = 128  # the batch size of batch_size = 0 on data of 10 * AUTO_BATCH or more


def auto_batch_size(cfg: Config, num_train: int, world_size: int = 1) -> Config:
    """``cfg`` with ``batch_size = 0`` (the default) made a number for ``num_train``
    training datapoints: 128, or a tenth of them when they are fewer than 1,280, so that an
    epoch of a small table still takes about ten steps (128 gave 150 rows one step an epoch,
    and refused 100), as a multiple of ``world_size``; any other batch size is kept.

    Example:
        >>> [auto_batch_size(Config(), n).batch_size for n in (5, 150, 1279, 60000)]
        [1, 15, 127, 128]
        >>> auto_batch_size(Config(batch_size=64), 150).batch_size
        64
    """
    if cfg.batch_size:
        return cfg
    size = min(AUTO_BATCH, max(1, num_train // 10))
    return cfg.replace(batch_size=max(world_size, size - size % world_size))


class Trainer:
    """Owns the model, its loss module, the optimizer and the data; runs epochs.

    ``objective`` is an ELBO instance to use instead of the one ``cfg.objective`` names.

    With a distributed ``ctx`` every rank builds its own Trainer; they step in lockstep.
    ``fault_read_every`` is how many steps pass between host reads of the fault record
    (see :mod:`pyro_vae.faults`): 1 on CPU, where a read is free, and
    ``GPU_FAULT_READ_EVERY`` on a GPU with the fused Adam, which skips flagged steps
    on the device meanwhile. The parameters and Adam's state are scanned every
    ``STATE_CHECK_EVERY`` steps (with a GPU's read), at the end of every epoch and before
    every checkpoint.
    """

    def __init__(
        self,
        cfg: Config,
        model: torch.nn.Module,
        data: TrainingData,
        ctx: DistContext | None = None,
        fault_read_every: int | None = None,
        objective: ELBO | None = None,
    ):
        self.ctx = ctx or DistContext()
        self.cfg = cfg = auto_batch_size(cfg, data.num_train, self.ctx.world_size)
        self.model = model
        self.data = data
        self.takes_labels = convention_of(model).takes_labels
        self.y_train, self.y_test = self._labels()
        self.scores_classifier = (  # M2's test accuracy, on the test rows with a label
            isinstance(model, M2) and self.y_test is not None and bool((self.y_test >= 0).any())
        )
        objective = objective if objective is not None else build_objective(cfg.objective)
        self.loss_module = training_loss(  # M2's semi-supervised steps take their own loss
            objective, model, data, cfg.batch_size, cfg.aux_loss, self.ctx.world_size
        )
        self.check_loss()
        self.train_module: torch.nn.Module = self.loss_module
        if self.ctx.is_distributed:
            device_ids = [data.device.index] if data.device.type == "cuda" else None
            self.train_module = DistributedDataParallel(self.loss_module, device_ids=device_ids)
        self.parameters = list(model.parameters())
        self.optimizer = make_adam(self.parameters, cfg.lr, cfg.weight_decay)
        self.faults = FaultRecord(data.device)
        self.scan = StepScan(data.device)
        skips_on_device = bool(self.optimizer.defaults.get("fused"))
        if fault_read_every is None:
            on_gpu = data.device.type == "cuda" and skips_on_device
            fault_read_every = GPU_FAULT_READ_EVERY if on_gpu else 1
        if fault_read_every > 1 and not skips_on_device:
            raise ValueError(
                "reading faults every few steps needs the fused Adam, which skips them"
            )
        self.fault_read_every = fault_read_every
        self.position = Position()
        # float64: a float32 sum of finite losses overflowed to -inf in metrics.csv
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=data.device)
        self.parameter_names = {id(p): name for name, p in model.named_parameters()}
        self.history: list[dict[str, Any]] = []
        self.recoveries = 0
        # what a resume checks against (RECORD_KEYS of run.json), kept in each checkpoint too
        self.record: dict[str, Any] = {}
        self.remember_good_state()
        self._validated = False
        # real-valued data: what independent per-feature Gaussians score on the test split
        self.baseline = baseline_log_px(model, data)
        self._baseline_warned = False

    @property
    def units(self) -> str:
        return units_of(self.model)[1]

    def _labels(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The labels on the device, for a model that takes ``y`` (DataError if there are none)."""
        if not self.takes_labels:
            return None, None
        splits = (("training", self.data.y_train), ("test", self.data.y_test))
        missing = [split for split, labels in splits if labels is None]
        if missing:
            raise DataError(
                f"{type(self.model).__name__} takes labels y but {self.data.name} has none for "
                f"its {' and '.join(missing)} data; use a dataset with labels (mnist5k, mnist, "
                "fashion-mnist, or an .npz with y, and y_test beside x_test)"
            )
        return self.data.y_train.to(self.data.device), self.data.y_test.to(self.data.device)

    def check_loss(self) -> None:
        """Score two test datapoints once, as a training step would (gradients and Pyro's
        validation on) but without a backward pass, on a separate random stream.

        A model the objective cannot score, or refuses to, fails here, before any file is
        written, and parameters that appear on a first call (Pyro's autoguides) exist
        afterwards.
        """
        x = self.data.test[:2]
        y = None if self.y_test is None else self.y_test[:2]
        was_training = self.model.training
        self.model.eval()
        with pyro.validation_enabled(True), isolated_rng(self.cfg.seed, self.data.device):
            try:
                loss = self._loss(x, None, 1.0, y)
            except ValueError as err:  # Pyro's validation: values outside a site's support
                if "within the support" not in str(err):
                    raise
                raise DataError(_outside_support(self.model, x, err)) from None
        self.model.train(was_training)
        if not torch.isfinite(loss.detach()).all():
            raise DataError(_non_finite_start(float(loss.detach().sum()), self.data.test))

    def _loss(
        self,
        x: torch.Tensor,
        num_data: int | None,
        kl_scale: float | torch.Tensor,
        y: torch.Tensor | None,
        module: torch.nn.Module | None = None,
    ) -> torch.Tensor:
        module = module if module is not None else self.loss_module
        if y is None:
            return module(x, num_data, kl_scale)
        return module(x, num_data, kl_scale, y)

    def train_step(
        self, x: torch.Tensor, kl_scale: float = 1.0, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One optimizer step on minibatch ``x`` (labels ``y``); returns the detached loss.

        ``kl_scale`` weighs the KL term (KL warm-up); it reaches the z site of model and
        guide. Unless ``on_nan`` is ``off``, a non-finite loss or gradient (on any
        rank) never moves the parameters: with ``fault_read_every`` 1 this raises
        NonFiniteStep before the optimizer runs; otherwise the fused Adam skips the
        step on the device and :meth:`read_faults` raises it later.
        """
        validate = self.cfg.validation == "every-step" or not self._validated
        with pyro.validation_enabled(validate):
            loss = self._loss(x, self.data.num_train, kl_scale, y, self.train_module)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.on_nan != "off":
            if self.fault_read_every == 1:
                self._raise_if_non_finite(loss)
            else:
                kind = all_reduce_max(non_finite_kind(loss, self.parameters), self.ctx)
                self.faults.note(kind, self.position.step + 1)
                flag = (kind > 0).float().view(())  # read by the fused kernel
                setattr(self.optimizer, FUSED_ADAM_FOUND_INF, flag)
        if self.cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.cfg.clip_grad)
        self.optimizer.step()
        self._validated = True
        return loss.detach()

    def _raise_if_non_finite(self, loss: torch.Tensor) -> None:
        """NonFiniteStep if the loss or a gradient is not finite on any rank; one host read
        (free on CPU) of the fused scan's flag, and the part named only when it is up."""
        if float(all_reduce_max(self.scan.flag(loss, self.parameters), self.ctx)):
            kind = float(all_reduce_max(non_finite_kind(loss, self.parameters), self.ctx))
            raise_if_non_finite(kind, self.position.epoch + 1, self.position.step + 1)

    def run_epoch(
        self,
        on_step: Callable[[], None] | None = None,
        bar: tqdm | None = None,
    ) -> dict[str, Any]:
        """Finish the epoch in progress (from its current step) and return its metrics row."""
        pos = self.position
        started = time.perf_counter() - pos.seconds
        x_epoch = self.data.epoch_train(pos.epoch)
        batches = self.data.batch_indices(
            pos.epoch, self.cfg.batch_size, self.ctx.rank, self.ctx.world_size
        )
        kl_scale = kl_warmup_scale(pos.epoch, self.cfg.kl_warmup)
        if bar is not None:
            bar.reset(total=len(batches))
            bar.update(pos.step)
        for i in range(pos.step, len(batches)):
            labels = None if self.y_train is None else self.y_train[batches[i]]
            self.loss_sum += self.train_step(x_epoch[batches[i]], kl_scale, labels)
            pos.step, pos.global_step = i + 1, pos.global_step + 1
            pos.seconds = time.perf_counter() - started
            check_state = pos.step % STATE_CHECK_EVERY == 0 or pos.step == len(batches)
            if check_state or pos.step % self.fault_read_every == 0:
                self.read_faults(check_state)
            if bar is not None:
                bar.update(1)
                if pos.step % 10 == 0 or pos.step == len(batches):
                    running = float(self.loss_sum) / pos.step / self.data.num_train
                    bar.set_postfix_str(f"loss {running:.2f} {self.units}/datapoint")
            if on_step is not None:
                on_step()
        mean_loss = all_reduce_sum(self.loss_sum.clone(), self.ctx) / self.ctx.world_size
        train_elbo = -float(mean_loss) / len(batches) / self.data.num_train
        row = {
            "epoch": pos.epoch + 1,
            "train_elbo": train_elbo,
            "test_elbo": self.test_elbo(),
            "seconds": round(time.perf_counter() - started, 3),
        }
        if units_of(self.model)[0] == "8-bit":
            row["test_bits_per_dim"] = bits_per_dim(row["test_elbo"], self.data.data_shape)
        if self.scores_classifier:
            row["test_accuracy"] = classifier_scores(self.model, self.data.test, self.y_test)[0]
        self.history.append(row)
        pos.epoch, pos.step, pos.seconds = pos.epoch + 1, 0, 0.0
        self.loss_sum.zero_()
        return row

    def test_elbo(self) -> float:
        """Single-sample ELBO per test datapoint, sharded over ranks, on its own random streams."""
        self.model.eval()
        seed = self.cfg.seed + EVAL_SEED_OFFSET
        shard = self.ctx.shard()
        value = elbo_per_datapoint(
            self.model, self.data.test, seed=seed, shard=shard, y=self.y_test
        )
        self.model.train()
        return value

    # -- faults ---------------------------------------------------------------------------------

    def read_faults(self, check_state: bool = True) -> None:
        """Raise NonFiniteStep for the first fault noted since the last read (one host sync).

        ``check_state`` first scans the parameters and the optimizer's state on the device
        (:func:`~pyro_vae.app.faults.non_finite_state`); without it there is nothing to
        read when faults are raised at once (``fault_read_every`` 1).
        """
        if self.cfg.on_nan == "off" or not (check_state or self.fault_read_every > 1):
            return
        if check_state:
            kind = all_reduce_max(non_finite_state(self.optimizer), self.ctx)
            self.faults.note(kind, self.position.step)
        self.faults.raise_if_any(
            self.position.epoch + 1,
            lambda: name_non_finite_state(self.optimizer, self.parameter_names),
        )

    def recover(self, fault: NonFiniteStep) -> str:
        """Restore the last good state and halve the learning rate, or raise NumericalFault."""
        good = self.last_good["position"]
        where = f"epoch {good['epoch'] + 1}, step {good['step']}"
        if self.cfg.on_nan == "stop" or self.recoveries >= MAX_RECOVERIES:
            tried = (
                f"restored the last good state ({where}) and halved the learning rate "
                f"{self.recoveries} times"
                if self.recoveries
                else "nothing (--on-nan stop)"
            )
            raise NumericalFault(
                f"{fault}; tried {tried}; every checkpoint written so far is intact. Lower "
                "--lr, set --clip-grad, or check the data and custom parts"
            )
        recoveries = self.recoveries + 1
        self.load_state_dict(self.last_good, "the last good state")
        self.recoveries = recoveries  # the restored state predates this fault
        lr = self.cfg.lr * 0.5**self.recoveries
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return (
            f"{fault}: restored the last good state ({where}) and halved the learning rate to "
            f"{lr:.3g} (recovery {self.recoveries} of {MAX_RECOVERIES})"
        )

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue from here; a collective call when distributed.

        ``rng`` holds every rank's random states (in rank order) and ``loss_sum``
        the mean over ranks of their running sums, so any rank can continue from it.
        """
        mean_loss_sum = all_reduce_sum(self.loss_sum.detach().clone(), self.ctx)
        return {
            "config": self.cfg.to_dict(),
            "data_shape": list(self.data.data_shape),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "position": asdict(self.position),
            "loss_sum": (mean_loss_sum / self.ctx.world_size).cpu(),
            "history": self.history,
            "recoveries": self.recoveries,
            "rng": gather_objects(capture_rng_state(), self.ctx),
            "record": self.record,
        }

    def remember_good_state(self) -> None:
        """Keep a copy of the current state (every tensor cloned) to fall back to on a fault."""
        self.last_good = _clone_tensors(self.state_dict())

    def load_state_dict(self, state: dict[str, Any], source: str) -> str:
        """Restore a state; returns a note when the random streams had to be re-derived.

        A checkpoint written by the same number of ranks restores each rank's own
        random state (exact continuation); from another world size each rank
        derives a fresh stream from (seed, rank, step) and the run continues.
        """
        load_model_state(self.model, state["model"], source)
        load_optimizer_state(self.optimizer, _clone_tensors(state["optimizer"]), source)
        self.position = Position(**state["position"])
        # older checkpoints hold a float32 sum
        self.loss_sum = state["loss_sum"].to(self.data.device, torch.float64, copy=True)
        self.history = [dict(row) for row in state["history"]]
        self.recoveries = state.get("recoveries", 0)
        rng_states = state["rng"]
        if len(rng_states) == self.ctx.world_size:
            restore_rng_state(rng_states[self.ctx.rank])
            return ""
        torch.manual_seed(rank_seed(self.cfg.seed, self.ctx.rank, self.position.global_step))
        return (
            f"checkpoint written by {len(rng_states)} process(es), resumed by "
            f"{self.ctx.world_size}: random streams re-derived, so the continuation is "
            "statistically but not bitwise the same"
        )

    def save(self, run: RunFolder) -> None:
        """Checkpoint atomically (rank 0 writes); the saved state is the one to fall back to."""
        self.read_faults()  # a state after a fault is not good, even if its numbers are
        self.remember_good_state()
        if self.ctx.is_main:
            save_checkpoint(run.checkpoint_path, self.last_good)
            run.confirm_replacement()  # the new run's first checkpoint makes --overwrite final

    def fit(self, run: RunFolder, log: Callable[[str], None], progress: bool = True) -> None:
        """Run the remaining epochs: metrics and a checkpoint after each, recovery on faults.

        Only rank 0 writes files and logs; a lost peer raises DistributedFault.
        """
        if not self.ctx.is_main:
            log, progress = (lambda _: None), False
        try:
            self._fit(run, log, progress)
        except RuntimeError as err:  # collectives fail this way when a peer dies or times out
            if not self.ctx.is_distributed:
                raise
            raise DistributedFault(
                f"rank {self.ctx.rank} lost contact with the other ranks "
                f"({collective_error(err)}); the last good checkpoint in {run.path} is "
                f"intact: rerun with --resume {run.path}"
            ) from None

    def _fit(self, run: RunFolder, log: Callable[[str], None], progress: bool) -> None:
        every = self.cfg.checkpoint_every

        def checkpoint_steps() -> None:
            if every and self.position.global_step % every == 0:
                self.save(run)

        while self.position.epoch < self.cfg.epochs:
            description = f"epoch {self.position.epoch + 1}/{self.cfg.epochs}"
            try:
                with tqdm(desc=description, disable=not progress, leave=False, unit="batch") as bar:
                    row = self.run_epoch(on_step=checkpoint_steps, bar=bar)
            except NonFiniteStep as fault:
                log(self.recover(fault))
                continue
            if self.ctx.is_main:
                run.write_metrics(self.history)
            self.save(run)
            bits = (
                f" = {row['test_bits_per_dim']:.3f} bits/dim" if "test_bits_per_dim" in row else ""
            )
            accuracy = (  # an M2's classifier q(y|x): what semi-supervised training is for
                f"  test accuracy {100 * row['test_accuracy']:.1f}%"
                if "test_accuracy" in row
                else ""
            )
            log(
                f"epoch {row['epoch']:>3}/{self.cfg.epochs}  train ELBO {row['train_elbo']:9.2f}  "
                f"test ELBO {row['test_elbo']:9.2f}  {self.units}/datapoint{bits}{accuracy}  "
                f"({row['seconds']:.1f} s)"
            )
            scale = units_of(self.model)[0]
            warning = absurd_elbo_warning(row["test_elbo"], scale, self.data.data_shape)
            if warning := warning or self.baseline_warning(row):
                log(warning)

    def baseline_warning(self, row: dict[str, Any]) -> str:
        """A warning line when the epoch's test ELBO is below the real-valued baseline (see
        :func:`~pyro_vae.app.faults.below_baseline_warning`): from epoch
        ``BASELINE_MIN_EPOCHS`` on, the first time and again at the last epoch; else ""."""
        last = row["epoch"] == self.cfg.epochs
        if row["epoch"] < BASELINE_MIN_EPOCHS or (self._baseline_warned and not last):
            return ""
        standardized = standardizes_itself(self.model)
        warning = below_baseline_warning("test ELBO", row["test_elbo"], self.baseline, standardized)
        self._baseline_warned = self._baseline_warned or bool(warning)
        return warning


def _clone_tensors(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone_tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone_tensors(v) for v in value]
    return value


def _outside_support(model: torch.nn.Module, x: torch.Tensor, err: ValueError) -> str:
    """The refusal when the model's own likelihood refuses the prepared data: they were
    prepared for the support the model declares (``data_support``), which is not its own."""
    support = data_support(model)
    declared = "declares" if hasattr(model, "support") or hasattr(model, "likelihood") else "gets"
    site = str(err).splitlines()[0].removeprefix("Error while computing log_prob ").rstrip(":")
    return (
        f"{type(model).__name__} refuses the training data {site or ''} (values "
        f"{float(x.nan_to_num().min()):g}..{float(x.nan_to_num().max()):g} prepared for the "
        f"support {support!r} it {declared}): declare what its likelihood scores as a class "
        "attribute of the model, e.g. support = 'binary' for a Bernoulli (8-bit images are "
        "then binarized), 'unit', 'levels' or 'counts' (pyro_vae.parts.SUPPORTS)"
    )
