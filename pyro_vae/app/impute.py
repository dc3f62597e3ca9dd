"""``impute``: fill the missing entries of an ``.npz`` file with a trained run's model.

Reads ``x`` (missing entries NaN, or False in a boolean ``mask``), prepares it as the run's
training prepared its data, imputes it with the core's :func:`pyro_vae.imputation.impute`
(the conditional mean by self-normalized importance sampling, and multiple imputations
by sampling importance resampling) and writes, atomically, an ``.npz`` holding

- ``x``: the single imputation E[x_mis|x_obs], observed entries as given;
- ``draws``: ``[M, *x.shape]`` multiple imputations (``[0, *x.shape]`` when M is 0);
- ``mask``: True where an entry was observed; ``ess_fraction``: per datapoint, the
  effective sample size of the importance weights as a fraction of K;

with ``x`` in the file's own shape and on the scale the model sees the data (8-bit
levels divided by 255 for a [0, 1] likelihood, levels as they are for an 8-bit one),
plus a figure beside it (``FILE.png``): a few images with their missing pixels in red,
their imputation and three draws. A binary likelihood scores grey observed entries
binarized once (fixed seed); they are still written as given, and its imputed entries of
``x`` are the probabilities P(x_mis = 1|x_obs).

Example::

    impute_file("runs/mcar", "holes.npz", "filled.npz", draws=10)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..convention import convention_of, data_support, standard_vae
from ..data import has_missing, prepare_data
from ..datasets import Dataset, load_npz_points
from ..errors import ConfigError, DataError, ModelError
from ..imputation import Imputation, impute
from ..missing import allow_missing
from .atomic import atomic_write_bytes, atomic_writer, check_output_path
from .data_record import check_scale, recorded_max
from .load import LoadedRun, load_run
from .plots import image_grid_png, is_image_shape, white_of

__all__ = ["ImputedFile", "impute_file", "FIGURE_IMAGES"]

FIGURE_IMAGES = 8  # datapoints shown in the figure
FIGURE_DRAWS = 3  # multiple imputations shown per datapoint


@dataclass
class ImputedFile:
    """Where the imputations went, and the imputation itself (``result``)."""

    out: Path
    figure: Path | None
    result: Imputation
    missing_fraction: float


def impute_file(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    draws: int = 10,
    k: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    figure: str | Path | None = None,
    model: nn.Module | None = None,
    progress: bool = False,
) -> ImputedFile:
    """Impute the missing entries of ``data``'s ``x`` with the run in ``run_dir``; write ``out``.

    ``k`` importance samples per datapoint (default: the run's ``eval_k``), ``draws``
    multiple imputations; ``figure`` defaults to ``out`` with the suffix ``.png``. Neither
    ``out`` nor the figure may exist. Every input and output path is checked before the model
    is loaded, and an error leaves nothing written. Data whose values fall far outside the
    training data's recorded range (another scale) are refused before any imputation.
    ``progress`` shows a bar over the datapoints.
    """
    out = check_output_path(out, "--out", ".npz", replace=False)
    if draws < 0 or (k is not None and k < 1):
        raise ConfigError(f"--draws must be >= 0 and --k >= 1 (got {draws} and {k})")
    x, mask, stored_shape = load_npz_points(data)
    figure = _figure_path(figure, out, tuple(x.shape[1:]))
    if not has_missing(x, str(data), "x", "impute from", mask):  # before the model loads
        raise DataError(
            f"{data}: x has no missing entry (no NaN, and no False in a mask); nothing to "
            "impute. Mark a missing entry as NaN in x, or save a boolean array named 'mask' "
            "of x's shape, False where missing: numpy.savez(path, x=x, mask=observed)"
        )
    run = load_run(run_dir, device, model=model)
    _check_imputable(run)
    if tuple(x.shape[1:]) != tuple(run.data_shape):
        raise DataError(
            f"{data}: x holds datapoints of shape {tuple(x.shape[1:])} but the run in "
            f"{run.folder.path} models shape {tuple(run.data_shape)}; impute data of that shape"
        )
    allow_missing(run.model)  # ModelError for a likelihood that cannot be masked
    cfg = run.config
    support = data_support(run.model)
    # x serves as both splits: the model scores the test split (binarized once, with a fixed
    # seed, for a binary likelihood: static and dynamic binarization draw it alike), and the
    # train split keeps the values as given, on the model's scale
    binarize = "dynamic" if cfg.binarize == "static" else cfg.binarize
    whole = Dataset(str(data), x, None, x, None, source=str(data), mask_train=mask, mask_test=mask)
    check_scale(run.folder.path, run.info, x, mask, whole.is_8bit, support, str(data))
    prepared = prepare_data(
        whole, support, cfg.likelihood, binarize, cfg.seed, device, splits=("x", "x")
    )
    given = prepared.train
    k = cfg.eval_k if k is None else k
    with tqdm(total=len(x), desc=f"imputing, K={k}", unit="datapoint", disable=not progress) as bar:
        result = impute(run.model, prepared.test, k, draws, seed=seed, progress=bar.update)
    seen = result.observed
    result.mean = torch.where(seen, given, result.mean)
    result.draws = torch.where(seen, given, result.draws)
    arrays = {
        "x": result.mean.cpu().numpy().reshape(stored_shape).astype(np.float32),
        "draws": result.draws.cpu().numpy().reshape(draws, *stored_shape).astype(np.float32),
        "mask": seen.cpu().numpy().reshape(stored_shape),
        "ess_fraction": result.ess_fraction.cpu().numpy().astype(np.float32),
    }
    png = (
        None
        if figure is None
        else _figure_png(given, result, white_of(support, recorded_max(run.info)), str(data))
    )
    with atomic_writer(out) as handle:  # the figure is drawn first: a failure writes nothing
        np.savez(handle, **arrays)
    if png is not None:
        try:
            atomic_write_bytes(figure, png)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    missing_fraction = float((~seen).float().mean())
    return ImputedFile(out, figure if png is not None else None, result, missing_fraction)


def _figure_path(figure: str | Path | None, out: Path, shape: tuple[int, ...]) -> Path | None:
    """The checked path of the figure (a new ``.png``), or None when x is not images."""
    if not is_image_shape(shape):
        return None
    flag = "--figure" if figure is not None else "--figure (by default --out as .png)"
    figure = out.with_suffix(".png") if figure is None else figure
    return check_output_path(figure, flag, ".png", replace=False)


def _check_imputable(run: LoadedRun) -> None:
    """ModelError unless the run's model is a VAE built from its parts that takes no labels."""
    model = run.model
    labels = convention_of(model).takes_labels
    if standard_vae(model) is not None and not labels:
        return
    why = "which conditions on labels y" if labels else "whose model() and guide() are its own"
    raise ModelError(
        f"pyro-vae impute supports VAEs built from their parts without labels: runs of "
        f"--model vae (one or several latent layers); {run.folder.path} holds a run of --model "
        f"{run.config.model}, {why}. Train a --model vae run on data with missing entries (NaN, "
        "or False in a mask) and impute with it"
    )


def _figure_png(x: torch.Tensor, result: Imputation, white: float, name: str) -> bytes | None:
    """Columns of a few datapoints with missing entries: the data (missing in red), the
    imputation and up to three draws; None when the data are not images."""
    has_holes = (~result.observed).flatten(1).any(1).nonzero().flatten()
    chosen = has_holes[torch.linspace(0, len(has_holes) - 1, FIGURE_IMAGES).long().unique()]
    rows = [x[chosen], result.mean[chosen]]
    labels = ["data", "imputed"]
    for i in range(min(FIGURE_DRAWS, len(result.draws))):
        rows.append(result.draws[i][chosen])
        labels.append(f"draw {i + 1}")
    title = (
        f"{name}: missing pixels in red; E[x_mis|x_obs] (K={result.k}) and multiple "
        "imputations (importance resampling)"
    )
    return image_grid_png(
        torch.cat(rows), columns=len(chosen), title=title, white=white, row_labels=labels
    )
