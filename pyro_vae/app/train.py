"""``train``: the one entry point from a model and data to a finished run folder.

Any model that follows :mod:`pyro_vae.convention` trains here: the built-in VAE a
``Config`` names, a model named by import path in it, or a module you pass. It loads
and prepares the data, builds the model, checks that the objective can score it, and
only then creates the run folder; it joins the process group when launched by
``torchrun``, hands the loop to :class:`~pyro_vae.app.trainer.Trainer`, and leaves
config.toml, run.json, metrics.csv, checkpoint.pt and plots/ behind (rank 0 alone
writes). Every epoch ends with a test ELBO, a metrics row and an atomic checkpoint.

Example::

    result = train(Config(dataset="mnist5k", epochs=5, latent_dim=2))
    print(result.run_dir, result.history[-1]["test_elbo"])
    result = train(Config(dataset="mnist5k", epochs=5), model=MyCVAE(), resume=None)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import ELBO
from torch import nn
from tqdm.auto import tqdm

from .. import __version__
from ..convention import convention_of, data_support, standard_vae
from ..data import TrainingData, observed_range, prepare_data
from ..datasets import Dataset, check_data_argument
from ..errors import ConfigError, PyroVAEError, RunFolderError
from ..families.m2 import M2
from ..missing import allow_missing
from ..semisupervised import UNLABELLED, SemiSupervisedData, parse_labels, semi_supervised
from ..standardize import Standardize
from .build import build_model, start_likelihood_from_data
from .config import Config, check_config_argument
from .data_record import check_loadable, data_source, training_range
from .distributed import (
    DistContext,
    broadcast_object,
    init_distributed,
    launched_as_main,
    rank_seed,
)
from .labels import check_training_classes
from .m2 import save_m2_plots
from .plots import plot_losses, save_run_plots, white_of
from .registry import load_dataset
from .resume import (
    RECORD_KEYS,
    check_config,
    check_data,
    check_epochs,
    check_model,
    data_fingerprint,
    is_complete,
    read_checkpoint,
    run_record_of,
)
from .run_folder import RunFolder, default_run_dir
from .runtime import apply_threads, seed_everything
from .trainer import AUTO_BATCH, Trainer, auto_batch_size

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    run_dir: Path
    config: Config
    history: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = None


def _load_data(cfg: Config, log: Callable[[str], None]) -> tuple[Config, Dataset]:
    """The dataset ``cfg`` names; the config then names what was really used, a file by its
    absolute path (so that ``evaluate`` works from any working directory)."""
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    if dataset.note:
        log(dataset.note)
    name = str(Path(cfg.dataset).resolve()) if cfg.dataset.endswith(".npz") else dataset.name
    return cfg.replace(dataset=name), dataset


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
        "num_classes": _num_classes(dataset),
        "binarization": "dynamic" if data.dynamic else cfg.binarize,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "finished": False,
    }


def _moved_data(recorded: dict[str, Any], now: dict[str, Any], trained_on: str) -> dict[str, Any]:
    """A resumed run's record, with the data's new path when its file moved (the arrays were
    checked: same fingerprint) and the old one kept as ``dataset_moved_from``. ``trained_on``
    is the checkpoint's config's dataset: a file's absolute path, where run.json keeps the
    path as typed (``train --dataset my.npz``), which is not a move."""
    if now["dataset_used"] in (recorded.get("dataset_used", now["dataset_used"]), trained_on):
        return recorded
    return {
        **recorded,
        "dataset_moved_from": recorded["dataset_used"],
        "dataset_used": now["dataset_used"],
        "dataset_requested": now["dataset_requested"],
    }


def _model_info(model: nn.Module, given: bool, objective: ELBO | None) -> dict[str, Any]:
    """Where the model (and objective) came from, so that loading can say what to pass."""
    cls = type(model)
    return {
        "model_class": f"{cls.__module__}:{cls.__qualname__}",
        "model_source": "python" if given else "config",
        "objective_class": None if objective is None else type(objective).__qualname__,
    }


def _create_run(cfg: Config, overwrite: bool, ctx: DistContext) -> tuple[RunFolder, Config]:
    """A new run folder: rank 0 creates it and every rank learns its path (or the error)."""
    path, error, folder = None, None, None
    if ctx.is_main:
        try:
            folder = RunFolder.create(cfg.out or default_run_dir(), overwrite=overwrite)
            path = str(folder.path)
        except PyroVAEError as err:
            error = str(err)
    path, error = broadcast_object((path, error), ctx)
    if error is not None:
        raise RunFolderError(error)
    return folder or RunFolder(path), cfg.replace(out=path)


_PASS_AGAIN = "train(resume=run, data=Dataset.from_tensors(x_train, x_test)) in your script"

LARGE_MODEL = 50_000_000  # parameters; a 784-400-20 VAE has 0.6 million


def _size_note(model: nn.Module) -> str:
    """A note when the model is large enough to surprise: its checkpoint (the parameters and
    Adam's two moments, float32) runs to gigabytes."""
    count = sum(p.numel() for p in model.parameters())
    if count < LARGE_MODEL:
        return ""
    return (
        f"note: the model has {count:,} parameters, so each checkpoint "
        f"(with Adam's state) takes about {12 * count / 2**30:.1f} GiB; large images, and a "
        "per-pixel categorical likelihood (256 outputs a pixel), make the MLP decoder's last "
        "layer large: --network conv or a smaller --hidden keeps it small"
    )


def _missing_note(x: torch.Tensor) -> str:
    """One line on the training data's missing entries, naming features never observed (a
    constant column standardized to 0/0 is all NaN)."""
    holes = torch.isnan(x)
    never = int(holes.all(0).sum())
    note = (
        f"note: {100 * float(holes.float().mean()):.1f}% of the training entries are missing "
        "(NaN or masked out); the likelihood scores the observed ones"
    )
    if never:
        note += f"; {never} of {holes[0].numel()} features are never observed"
    return note


FAR_FROM_UNIT_SCALE = 1e3


def _scale_note(x: torch.Tensor, support: str, model: nn.Module) -> str:
    """A note for real-valued data far from unit scale, which a network starting near 0
    with a learning rate of 1e-3 fits slowly, if at all; else '' (also for a model that
    standardizes each feature itself: see :mod:`pyro_vae.standardize`)."""
    if support != "real" or not x.is_floating_point():
        return ""
    if any(isinstance(part, Standardize) for part in model.modules()):
        return ""
    largest = max(map(abs, observed_range(x)))
    if largest <= FAR_FROM_UNIT_SCALE:
        return ""
    return (
        f"note: the training data reach |x| = {largest:.3g}; a real-valued likelihood learns "
        "far-from-unit-scale data slowly or overflows: leave --standardize on (the default of "
        "gaussian and laplace), or standardize each feature (subtract its mean, divide by its "
        "standard deviation) and keep the two numbers to undo it"
    )


def _learns_classes(cfg: Config, model: nn.Module | None) -> bool:
    """Whether the model learns from labels y: a built-in cvae or m2, or a given model
    whose convention takes labels."""
    if model is None:
        return cfg.model in ("cvae", "m2")
    return isinstance(model, M2) or convention_of(model).takes_labels


def _learns_unlabelled(cfg: Config, model: nn.Module | None) -> bool:
    """Whether the model learns classes semi-supervised (m2): y = -1 marks an unlabelled
    training datapoint."""
    return cfg.model == "m2" if model is None else isinstance(model, M2)


def _model_name(cfg: Config, model: nn.Module | None) -> str:
    """The model in messages: the config's name, or the class of a model passed in."""
    return cfg.model if model is None else type(model).__name__


def _num_classes(dataset: Dataset) -> int | None:
    """Classes of the labels of both splits (a test label the training split lacks still
    needs its class); None without training labels."""
    if dataset.y_train is None or len(dataset.y_train) == 0:
        return None
    labels = [y for y in (dataset.y_train, dataset.y_test) if y is not None and len(y)]
    return max(int(y.max()) for y in labels) + 1


def train(
    cfg: Config | None = None,
    *,
    model: nn.Module | None = None,
    data: Dataset | None = None,
    objective: ELBO | str | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    epochs: int | None = None,
) -> TrainResult:
    """Train a model as ``cfg`` says and leave a run folder; or continue the run at ``resume``.

    ``model`` is any ``nn.Module`` that follows :mod:`pyro_vae.convention` (default: the
    model ``cfg.model`` names); ``data`` a :class:`~pyro_vae.datasets.Dataset` (default:
    ``cfg.dataset``; ``Dataset.from_tensors`` wraps tensors); ``objective`` an ELBO
    instance with a ``differentiable_loss`` or a name such as ``"iwae:k=5"`` (which then
    stands in ``cfg.objective``, so config.toml records it; default: ``cfg.objective``). On
    resume the run's own config.toml is used (no ``cfg``; ``epochs`` may be raised, never
    below the epochs done); pass the same model, data and objective you trained with when
    they were given from Python. A resume refuses, before it writes anything, whatever does
    not belong to the run (see :mod:`pyro_vae.app.resume`); a run already complete returns
    at once, without a model. Launched by torchrun, this process joins the process group
    and trains its share.
    """
    log = log or tqdm.write
    named = objective if isinstance(objective, str) else None
    check_objective(objective)
    check_data_argument(data, "train()", names=False)
    check_config_argument(cfg, "train()")
    objective = None if named is not None else objective
    kwargs = dict(model=model, data=data, objective=objective, progress=progress, log=log)
    if resume is None:
        cfg = cfg or Config()
        cfg = cfg if epochs is None else cfg.replace(epochs=epochs)
        cfg = cfg if named is None else cfg.replace(objective=named)
        return _train(cfg, None, None, overwrite=overwrite, **kwargs)
    if cfg is not None:
        raise ConfigError(
            "train(resume=...) continues a run with its own config.toml; pass epochs=N to "
            "extend it, not a config"
        )
    run = RunFolder.open(resume, write=launched_as_main())  # rank 0 alone writes
    try:
        cfg, state = _resume_config(run, epochs)
        if named is not None and cfg.replace(objective=named).objective != cfg.objective:
            raise ConfigError(
                f"{run.path} was trained with the objective {cfg.objective!r}, not {named!r}; "
                "resume it with its own (or no objective=), or train a new run"
            )
        if state is not None and is_complete(cfg.epochs, state["position"], run.read_info()):
            if launched_as_main():
                log(
                    f"{run.path} is already complete ({cfg.epochs} epochs done); nothing to "
                    f"do: --epochs M with M > {cfg.epochs} trains further"
                )
            return TrainResult(run.path, cfg, [dict(row) for row in state["history"]])
        return _train(cfg, run, state, overwrite=False, **kwargs)
    finally:
        run.release()  # also when a check refuses: the folder is left as it was


# Pyro's ELBOs that training cannot step, and what stands in for each
_INSTEAD = {
    "RenyiELBO": "'renyi:alpha=A,k=K' (a differentiable Renyi bound; 'iwae:k=K' is alpha=0)",
    "TraceGraph_ELBO": "'graph' (TraceGraph_ELBO made a differentiable loss)",
    "TraceTailAdaptive_ELBO": "'tail-adaptive:k=K'",
    "JitTrace_ELBO": "Trace_ELBO() or 'elbo' (a VAE's own model and guide run untraced)",
    "JitTraceMeanField_ELBO": "TraceMeanField_ELBO() or 'analytic-kl'",
    "JitTraceGraph_ELBO": "'graph'",
    "JitTraceEnum_ELBO": "TraceEnum_ELBO(max_plate_nesting=1)",
}


def check_objective(objective: object) -> None:
    """ConfigError unless ``objective`` is None, a valid name, or an ELBO the trainer can
    step with torch.optim: one with a ``differentiable_loss`` (Pyro's RenyiELBO and
    TraceGraph_ELBO have none) that takes the trainer's arguments (Pyro's ``Jit*`` ELBOs
    compile for tensor arguments alone, and a step passes ``num_data`` and ``kl_scale`` as
    numbers). The error names the objective that stands in for it.

    Example:
        >>> from pyro.infer import TraceGraph_ELBO
        >>> check_objective(TraceGraph_ELBO())
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: objective TraceGraph_ELBO has no differentiable_loss, ...
    """
    if objective is None:
        return
    if isinstance(objective, str):
        Config(objective=objective)  # ConfigError naming the valid choices
        return
    if not isinstance(objective, ELBO):
        raise ConfigError(
            f"objective must be a pyro.infer.ELBO instance or a name such as 'iwae:k=5', not "
            f"{type(objective).__name__}"
        )
    name = type(objective).__name__
    instead = _INSTEAD.get(name, "a name such as 'iwae:k=5'")
    if not callable(getattr(objective, "differentiable_loss", None)):
        raise ConfigError(
            f"objective {name} has no differentiable_loss, which training with torch.optim "
            f"needs; pass {instead} instead (pyro-vae list shows every objective)"
        )
    if name.startswith("Jit") and name in _INSTEAD:
        raise ConfigError(
            f"objective {name} compiles the model with torch.jit for tensor arguments alone, "
            f"but each training step passes num_data and kl_scale as numbers; pass {instead} "
            "instead"
        )


def _resume_config(run: RunFolder, epochs: int | None) -> tuple[Config, dict[str, Any] | None]:
    """The run's config (with ``epochs``) and its checkpoint (None before the first one),
    checked against each other before any data are loaded."""
    cfg = run.read_config()
    if epochs is not None:
        cfg = cfg.replace(epochs=epochs)
    state = read_checkpoint(run)
    if state is not None:
        recorded = run_record_of(run, state)
        check_config(run, cfg, Config.from_dict(state["config"], saved=True), recorded)
        source = "--epochs" if epochs is not None else f"epochs in {run.config_path.name}"
        check_epochs(run, cfg.epochs, state["position"], source)
    return cfg, state


@torch.inference_mode(False)
@torch.enable_grad()  # a caller's torch.no_grad() (an evaluation helper, say) must not stop it
def _train(
    cfg: Config,
    run: RunFolder | None,
    state: dict[str, Any] | None,
    *,
    model: nn.Module | None,
    data: Dataset | None,
    objective: ELBO | None,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
) -> TrainResult:
    """Train a new run (``run`` None) or continue ``run`` from its checkpoint ``state``
    (None: afresh); the data and the model are checked against a resumed run's record."""
    recorded = run_record_of(run, state) if state is not None else {}
    threads_note = apply_threads(cfg.threads)
    if run is None and cfg.out:
        RunFolder.check_can_create(cfg.out, overwrite)  # before any data are loaded
    ctx, device = init_distributed(cfg.device, cfg.dist_timeout)  # fails before any writing
    say = log if ctx.is_main else (lambda _: None)
    if threads_note:
        say(threads_note)
    requested = cfg.dataset
    if data is None:
        if run is not None:  # before the config's dataset (a default) is loaded
            check_loadable(run.path, run.read_info(), _PASS_AGAIN, cfg.dataset)
        cfg, dataset = _load_data(cfg, say)
    else:
        dataset = data
    fingerprint = data_fingerprint(dataset)
    if state is not None:
        source = cfg.dataset if data is None else "the data passed to train()"
        if data_note := check_data(run, recorded, fingerprint, source):
            say(data_note)
    seed_everything(cfg.seed)
    given = model is not None
    if _learns_classes(cfg, model) and dataset.y_train is not None:
        check_training_classes(
            dataset.y_train, dataset.y_test, dataset.name, _model_name(cfg, model),
            unlabelled=_learns_unlabelled(cfg, model), keep_unused=bool(cfg.num_classes),
        )  # fmt: skip
    if model is None:
        model = build_model(cfg, dataset.data_shape, _num_classes(dataset))
    model = model.to(device)
    if size_note := _size_note(model):
        say(size_note)
    if ctx.is_distributed:  # same initial weights everywhere, then a random stream per rank
        torch.manual_seed(rank_seed(cfg.seed, ctx.rank))
    likelihood_name = (
        cfg.likelihood if not given else type(getattr(model, "likelihood", model)).__name__
    )
    prepared = prepare_data(
        dataset, data_support(model), likelihood_name, cfg.binarize, cfg.seed, device
    )
    if state is None and not given:  # a resumed run's scale is in its checkpoint
        cfg = start_likelihood_from_data(cfg, model, prepared.train)
    if prepared.missing:  # NaN entries: a likelihood masked per entry (iwae becomes MIWAE)
        allow_missing(model)
        say(_missing_note(prepared.train))
    if scale_note := _scale_note(prepared.train, data_support(model), model):
        say(scale_note)
    if isinstance(model, M2):  # the given labels, or a seeded subset spread over the classes
        unlabelled = bool((prepared.y_train == UNLABELLED).any())
        labels = parse_labels(cfg.labels, unlabelled)
        prepared = semi_supervised(prepared, labels, cfg.seed, model.num_classes)
    if not cfg.batch_size:
        cfg = auto_batch_size(cfg, prepared.num_train, ctx.world_size)
        if cfg.batch_size < AUTO_BATCH:
            say(
                f"note: batch size {cfg.batch_size}, a tenth of the {prepared.num_train} "
                "training datapoints, so that an epoch takes about ten steps (--batch-size "
                "sets it)"
            )
    if cfg.batch_size > prepared.num_train:
        raise ConfigError(
            f"batch_size: {cfg.batch_size} is larger than the {prepared.num_train} training "
            f"datapoints of {dataset.name}; use --batch-size {min(128, prepared.num_train)} "
            "or fewer"
        )
    trainer = Trainer(cfg, model, prepared, ctx, objective=objective)  # checks the loss
    info = {
        **_run_info(cfg, requested, dataset, prepared, device),
        "data_fingerprint": fingerprint,
        "data_source": data_source(data is not None),
        "data_range": training_range(dataset, prepared.train, data_support(model)),
        "data_missing": prepared.missing,  # load_run prepares the model for them again
        **_model_info(model, given, objective),
        "world_size": ctx.world_size,
    }
    if isinstance(prepared, SemiSupervisedData):
        info["num_labelled"] = prepared.num_labelled
        info["num_unlabelled"] = prepared.num_unlabelled
    trainer.record = {key: info[key] for key in RECORD_KEYS if key in info}
    if state is not None:
        check_model(run, recorded, info)
        note = trainer.load_state_dict(state, str(run.checkpoint_path))
        trainer.remember_good_state()
        say(
            f"resuming {run.path} at epoch {trainer.position.epoch + 1}, "
            f"step {trainer.position.step}"
        )
        if note:
            say(note)
        moved = _moved_data(recorded, info, state["config"].get("dataset", ""))
        info = {**info, **moved, "world_size": ctx.world_size, "finished": False}
    elif run is not None:
        say(f"{run.path} has no checkpoint yet (stopped in its first epoch): starting it afresh")
    created = run is None
    if created:
        run, cfg = _create_run(cfg, overwrite, ctx)
    if ctx.is_main:  # run.json first: it marks the folder as a run's
        run.write_info(info)
        run.write_config(cfg, info["model_class"] if given else "")

    try:
        trainer.fit(run, say, progress)
        if ctx.is_main:
            _save_plots(model, trainer, prepared, run, cfg.seed)
            run.write_info({**info, "finished": True, "epochs_done": trainer.position.epoch})
            if state is not None and (stale := run.stale_evaluations(trainer.position.global_step)):
                say(
                    f"{', '.join(stale)} scored this run's weights before it trained on; "
                    f"pyro-vae evaluate {run.path} scores them again"
                )
    except BaseException as err:
        if ctx.is_main and not run.checkpoint_path.exists():
            if created and not isinstance(err, KeyboardInterrupt):
                run.discard_unstarted()  # nothing to resume: the same command runs again
            else:  # a replacement comes back; an interrupted fresh run stays to be resumed
                run.restore_previous()
        raise
    finally:
        run.release()
    say(f"run folder: {run.path}")
    return TrainResult(run.path, cfg, trainer.history, model)


def _save_plots(
    model: nn.Module, trainer: Trainer, data: TrainingData, run: RunFolder, seed: int
) -> None:
    """Every plot for a standard VAE or an M2; the losses alone for any other model."""
    run.plots_folder()  # one line naming the fix where a file took its name mid-run
    if isinstance(model, M2):
        white = white_of(data_support(model), observed_range(data.train)[1])
        save_m2_plots(model, trainer.history, data.test, run.plots, trainer.units, white, seed)
        return
    vae = standard_vae(model)
    if vae is None:
        plot_losses(trainer.history, run.plots / "losses.png", trainer.units)
        return
    white = white_of(data_support(vae), observed_range(data.train)[1])
    save_run_plots(
        vae, trainer.history, data.test, data.y_test, run.plots, trainer.units, white, seed
    )
