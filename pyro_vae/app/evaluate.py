"""``evaluate``: score a run folder and write ``RUN_DIR/eval.json``.

It loads the run, prepares the data the way training did (the run's own test split,
checked against the record of :mod:`~pyro_vae.app.data_record`, or other data of the same
shape and scale), scores it with the core's
:func:`pyro_vae.estimators.evaluate_vae` (sharded over ranks under torchrun) and writes
the results. Scores that came out NaN or infinite are named in eval.json's
``not_finite`` (a list, empty when all is well) and ``warning``, and logged as a warning.
For a density over real values, eval.json also holds ``baseline_log_px``, what independent
Gaussians fitted to each feature of the training split score on the same entries (see
:mod:`pyro_vae.baseline`); a log p(x) more than a nat per datapoint below it is warned about.

Example::

    result = evaluate("runs/2026-11-26_08-00-00", k=1000)
    print(result.table(), result.path)
"""

from __future__ import annotations

import math
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..convention import convention_of, data_support
from ..data import draw_binary, prepare_data, seeded_generator
from ..datasets import Dataset, check_data_argument, load_npz
from ..errors import ConfigError, DataError, PyroVAEError
from ..estimators import Evaluation, evaluate_vae
from ..families.cvae import CVAE
from ..families.m2 import standard_m2
from ..missing import allow_missing
from ..semisupervised import UNLABELLED
from .atomic import check_output_path
from .config import Config, check_count
from .data_record import check_loadable, check_own_data, check_scale
from .distributed import DistributedFault, collective_error, init_distributed
from .faults import (
    BASELINE_DESCRIPTION,
    baseline_log_px,
    below_baseline_warning,
    non_finite_warning,
    standardizes_itself,
)
from .labels import check_labels_fit
from .load import load_run
from .m2 import plot_confusion
from .registry import load_dataset
from .resume import data_fingerprint
from .run_folder import RunFolder

__all__ = ["evaluate", "default_name", "confusion_name", "RunEvaluation"]

_PASS_AGAIN = (
    "pyro_vae.evaluate(run, data=Dataset.from_tensors(x_train, x_test)), or --data FILE.npz "
    "holding them as x and x_test"
)


@dataclass
class RunEvaluation(Evaluation):
    """The scores, with the files :func:`evaluate` wrote: ``path`` (the scores' JSON) and
    ``confusion_path`` (an M2's confusion matrix); None where nothing was written (the
    ranks other than 0 under torchrun, a run without a classifier). ``baseline_log_px``:
    the real-valued baseline's log-density on the same data (None for other likelihoods)."""

    path: Path | None = None
    confusion_path: Path | None = None
    baseline_log_px: float | None = None

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        del values["path"], values["confusion_path"]
        return values

    def rows(self) -> list[tuple[str, str]]:
        rows = super().rows()
        if self.baseline_log_px is not None:
            value = f"{self.baseline_log_px:.2f} {self.units}  (independent Gaussians per feature)"
            rows.insert(3, ("baseline log p(x)", value))
        return rows


def evaluate(
    run_dir: str | Path,
    *,
    data: str | Path | Dataset | None = None,
    data_dir: str = "",
    split: str = "test",
    k: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    model: nn.Module | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
    dist_timeout: float | None = None,
) -> RunEvaluation:
    """Score the run in ``run_dir`` and write the results to ``RUN_DIR/eval.json`` (or ``out``).

    ``data`` is a dataset name, an ``.npz`` path or a :class:`~pyro_vae.datasets.Dataset`
    (default: the run's own dataset, as training prepared it, refused when it differs from
    the fingerprint run.json records, or when the run's data were passed from Python). A
    file given here is scored whole (even a single datapoint) unless it has its own
    ``x_test``; otherwise ``split`` is ``test`` or ``train``. Data given are refused when
    their values fall far outside the training data's recorded range (another scale).
    ``k`` defaults to the run's ``eval_k``; ``model`` is needed for a run whose model was
    passed from Python (see :func:`~pyro_vae.app.load.load_run`).
    The output path is checked (its folder exists and may be written to) before the data are
    read; the result's ``path`` says where the scores went. Launched by torchrun, the ranks
    share the datapoints and rank 0 writes the file; the numbers are those of one process.
    Labels reach a model that takes ``y``; an M2 is scored with its label summed out, and its
    classifier's accuracy on the labelled rows (y = -1 rows count for log p(x) alone) and
    confusion matrix (``plots/confusion.png``, ``plots/confusion-NAME.png`` for
    ``eval-NAME.json``, or ``NAME-confusion.png`` beside ``out``; the result's
    ``confusion_path``) are added.
    ``log`` receives a note when the folder's config.toml disagrees with the checkpoint or
    run.json holds no fingerprint of the data;
    ``progress`` shows a bar over the datapoints (this rank's share under torchrun).
    ``dist_timeout``: under torchrun, the seconds a rank waits for a silent peer (default:
    the run's own ``dist_timeout``), after which it stops with one line.
    """
    if split not in ("test", "train"):
        raise ConfigError(f"split: expected 'test' or 'train', got {split!r}")
    check_data_argument(data, "evaluate()", names=True)
    check_count(k, "k", "evaluate()")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"evaluate(): seed must be an int, got {seed!r}")
    data = str(data) if isinstance(data, Path) else data
    if out is not None:  # before the run is read
        out = check_output_path(out, "--out", ".json", replace=True)
    timeout = dist_timeout if dist_timeout is not None else _run_dist_timeout(run_dir)
    ctx, torch_device = init_distributed(device, timeout)
    run = load_run(run_dir, torch_device, model=model)
    if run.note and log is not None and ctx.is_main:
        log(run.note)
    if (writer := run.folder.writer()) is not None and log is not None and ctx.is_main:
        position = run.checkpoint["position"]
        log(
            f"note: {run.folder.path} is being trained{writer}: these are the scores of its "
            f"latest checkpoint (epoch {position['epoch'] + 1}, step {position['step']}), not "
            "of the run's end"
        )
    cfg = run.config
    if data is None:
        check_loadable(run.folder.path, run.info, _PASS_AGAIN, cfg.dataset)
    own_file = isinstance(data, str) and data.endswith(".npz")
    whole = own_file and not _has_own_test_split(data)
    if whole:
        split = "whole file"
    # a Dataset from Python: the very arrays the run trained on are its own data (its
    # eval.json, with the baseline); others are named by the start of their fingerprint
    fingerprint = data_fingerprint(data) if isinstance(data, Dataset) else None
    own = data is None or (
        fingerprint is not None and fingerprint == run.info.get("data_fingerprint")
    )
    name = f"{data.name}-{fingerprint['sha256'][:8]}" if fingerprint is not None else data
    path = out or run.folder.path / default_name(None if own else name, cfg.dataset, split)
    if out is None:  # on every rank, so that all stop together, before any data are read
        check_output_path(path, "--out (by default in RUN_DIR)", ".json", replace=True)
        if standard_m2(run.model) is not None:  # its confusion matrix goes to plots/
            run.folder.check_plots()
    if isinstance(data, Dataset):
        dataset = data
    elif whole:
        dataset = load_npz(data, whole=True)
    else:
        dataset = load_dataset(data or cfg.dataset, data_dir or cfg.data_dir, fallback=False)
    if data is not None and dataset.note and log is not None and ctx.is_main:
        log(dataset.note)  # e.g. arrays of the file that are not read
    if data is None:
        note = check_own_data(run.folder.path, run.info, dataset, _as_other(dataset.name))
        if note and log is not None and ctx.is_main:
            log(note)
    if tuple(dataset.data_shape) != tuple(run.data_shape):
        raise DataError(
            f"{dataset.name} holds datapoints of shape {tuple(dataset.data_shape)} but the run "
            f"in {run.folder.path} models shape {tuple(run.data_shape)}; evaluate data of the "
            "same shape (reshape or resize it first)"
        )
    if data is not None:  # a scale error, named as one before preparation's support checks
        # (the run's own data are checked by their fingerprint instead)
        raw, raw_mask = (
            (dataset.x_test, dataset.mask_test)
            if split == "test"
            else (dataset.x_train, dataset.mask_train)
        )
        check_scale(
            run.folder.path, run.info, raw, raw_mask, dataset.is_8bit, data_support(run.model),
            dataset.name,
        )  # fmt: skip
    splits = ("x", "x" if whole else "x_test") if own_file else ("train split", "test split")
    prepared = prepare_data(
        dataset,
        data_support(run.model),
        cfg.likelihood,
        cfg.binarize,
        cfg.seed,
        torch_device,
        splits=splits,
    )
    if split == "test":
        x, y = prepared.test, prepared.y_test
    else:  # the training split, or a whole file (each split holds all of it)
        x, y = prepared.train, prepared.y_train
    if prepared.dynamic and split != "test":  # probabilities: one fixed binarization
        generator = seeded_generator(0, purpose="eval", device=x.device)
        x = draw_binary(x, generator, prepared.missing)
    if prepared.missing:  # NaN entries: scored over the observed ones, log p(x_obs)
        allow_missing(run.model)
    takes_labels = convention_of(run.model).takes_labels
    y = y.to(torch_device) if takes_labels and y is not None else None
    num_classes = getattr(run.model, "num_classes", None)
    if y is not None and isinstance(num_classes, int):  # m2 scores y = -1 rows without accuracy
        model_name, unlabelled = type(run.model).__name__, standard_m2(run.model) is not None
        check_labels_fit(y, num_classes, dataset.name, model_name, unlabelled)
    if y is None and isinstance(run.model, CVAE):
        raise DataError(
            f"{dataset.name} has no labels y, but the run's cvae scores log p(x|y) given them; "
            "evaluate data with labels (an .npz with an array y)"
        )
    k = cfg.eval_k if k is None else k
    description = f"log p(x), K={k}"
    with tqdm(total=len(x), desc=description, unit="datapoint", disable=not progress) as bar:
        try:
            result = evaluate_vae(
                run.model, x, k, seed=seed, shard=ctx.shard(), y=y, progress=bar.update
            )
        except RuntimeError as err:  # collectives fail this way when a peer dies or times out
            if not ctx.is_distributed:
                raise
            raise DistributedFault(
                f"rank {ctx.rank} lost contact with the other ranks ({collective_error(err)}) "
                f"within {timeout:g} s; nothing was written: rerun the evaluation"
            ) from None
    result.data = f"{dataset.name}, {split}, {len(x)} datapoint{'s' * (len(x) != 1)}"
    if result.accuracy is not None and (given := int((y != UNLABELLED).sum())) < len(x):
        result.data += f", {given} of them labelled (the accuracy's)"
    if prepared.missing:
        result.missing_fraction = float(torch.isnan(x).float().mean())
        result.data += f", {100 * result.missing_fraction:.1f}% of entries missing"
        if result.bits_per_dim is not None:  # per observed dimension
            observed_dims = result.num_dims * (1 - result.missing_fraction)
            result.bits_per_dim = -result.log_px / (observed_dims * math.log(2))
            result.elbo_bits_per_dim = -result.elbo / (observed_dims * math.log(2))
    position = run.checkpoint["position"]
    info = {
        "run": str(run.folder.path),
        "dataset": dataset.name,
        "split": split,
        "trained_epochs": position["epoch"],  # which weights were scored: a resumed run
        "trained_steps": position["global_step"],  # that trains on makes these stale
    }
    # fitted to the training split: of other data, that split would be the file's own
    baseline = baseline_log_px(run.model, prepared, x) if own else None
    done = RunEvaluation(**{f.name: getattr(result, f.name) for f in fields(result)})
    done.baseline_log_px = baseline
    if ctx.is_main:
        scores = result.to_dict()
        not_finite = not_finite_scores(scores)
        warning = (
            non_finite_warning([_shown(n, scores[n]) for n in not_finite])
            if not_finite
            else below_baseline_warning(
                "log p(x)", result.log_px, baseline, standardizes_itself(run.model)
            )
        )
        if warning and log is not None:
            log(warning)
        elif warning:
            warnings.warn(warning.removeprefix("warning: "), RuntimeWarning, stacklevel=2)
        checks = {"not_finite": not_finite, "warning": warning.removeprefix("warning: ")}
        if baseline is not None:
            checks |= {"baseline_log_px": baseline, "baseline": BASELINE_DESCRIPTION}
        run.folder.write_json(path, {**info, **scores, **checks})
        done.path = path
        if result.confusion is not None:  # a classifier's (M2's) test labels against its own
            title = f"{dataset.name}, {split}: accuracy {100 * result.accuracy:.2f}%"
            if out is None:  # named as the scores are: other data never replace the run's own
                confusion = run.folder.plots_folder() / confusion_name(path.name)
            else:  # beside the scores, in the folder already checked
                confusion = path.with_name(f"{path.stem}-confusion.png")
            plot_confusion(result.confusion, confusion, title)
            done.confusion_path = confusion
    return done


def _run_dist_timeout(run_dir: str | Path) -> float:
    """The run's own ``dist_timeout`` (the default when its config cannot be read: load_run
    then says why)."""
    try:
        return RunFolder(run_dir).read_config().dist_timeout
    except (PyroVAEError, OSError):
        return Config().dist_timeout


def confusion_name(scores: str) -> str:
    """The confusion matrix's file in ``plots/`` for the scores file named ``scores``:
    ``confusion.png`` beside the run's own ``eval.json``, ``confusion-NAME.png`` beside
    ``eval-NAME.json``, so scoring other data never replaces the run's own figure.

    Example:
        >>> confusion_name("eval.json"), confusion_name("eval-mnist5k-train.json")
        ('confusion.png', 'confusion-mnist5k-train.png')
    """
    return "confusion" + scores.removesuffix(".json").removeprefix("eval") + ".png"


def default_name(data: str | None, own: str, split: str) -> str:
    """``eval.json`` for the run's own test split (``data`` None: checked against the run's
    record); ``eval-<data>[-train].json`` for data given by name, even the run's own, and
    for the training split, so scoring them never replaces the run's own score.

    Example:
        >>> default_name(None, "mnist5k", "test"), default_name("/d/my data.npz", "x", "test")
        ('eval.json', 'eval-my_data.json')
        >>> default_name("mnist5k", "mnist5k", "test"), default_name(None, "mnist5k", "train")
        ('eval-mnist5k.json', 'eval-mnist5k-train.json')
    """
    if data is None and split == "test":
        return "eval.json"
    stem = Path(str(data or own)).name.removesuffix(".npz")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60]
    return f"eval-{stem}" + ("-train" if split == "train" else "") + ".json"


def _has_own_test_split(path: str) -> bool:
    """Whether an ``.npz`` file holds ``x_test`` (else its every datapoint is to be scored)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "x_test.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _as_other(name: str) -> str:
    """How to score the run's own dataset ``name`` deliberately, as other data."""
    flag = "--data" if name.endswith(".npz") else "--dataset"
    return f"{flag} {name} (scores written to {default_name(name, name, 'test')})"


def not_finite_scores(scores: dict[str, Any]) -> list[str]:
    """The names of the numbers in ``scores`` (or lists of them) holding a NaN or an infinity.

    >>> not_finite_scores({"k": 5, "log_px": float("nan"), "kl_per_dim": [0.5, float("inf")]})
    ['log_px', 'kl_per_dim']
    """

    def bad(value: Any) -> bool:
        if isinstance(value, list):
            return any(bad(item) for item in value)
        return isinstance(value, float) and not math.isfinite(value)

    return [name for name, value in scores.items() if bad(value)]


def _shown(name: str, value: Any) -> str:
    return f"{name} {value}" if isinstance(value, float) else f"{name} (some entries)"
