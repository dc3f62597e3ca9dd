"""``impute``: fill the missing entries of an ``.npz`` file with a trained run's model.

Reads ``x`` (missing entries NaN, or False in a boolean ``mask``), prepares it as the run's
training prepared its data, imputes it with the core's :func:`pyro_vae.imputation.impute`
(the conditional mean by self-normalized importance sampling, and multiple imputations
by sampling importance resampling) and writes, atomically, an ``.npz`` holding

- ``x``: the single imputation E[x_mis|x_obs], observed entries as given;
- ``draws``: ``[M, *x.shape]`` multiple imputations (absent when M is 0);
- ``mask``: True where an entry was observed; ``ess_fraction``: per datapoint, the
  effective sample size of the importance weights as a fraction of K;

with ``x`` in the file's own shape and on the scale the model sees the data (8-bit
levels divided by 255 for a [0, 1] likelihood, levels as they are for an 8-bit one),
plus a figure beside it (``FILE.png``): a few images with their missing pixels in red,
their imputation and three draws.

Example::

    impute_file("runs/mcar", "holes.npz", "filled.npz", draws=10)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..convention import data_support
from ..data import prepare_data
from ..datasets import Dataset, load_npz_points
from ..errors import ConfigError, DataError
from ..imputation import Imputation, impute
from ..missing import allow_missing
from .atomic import atomic_writer
from .load import load_run
from .plots import save_image_grid

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
) -> ImputedFile:
    """Impute the missing entries of ``data``'s ``x`` with the run in ``run_dir``; write ``out``.

    ``k`` importance samples per datapoint (default: the run's ``eval_k``), ``draws``
    multiple imputations; ``figure`` defaults to ``out`` with the suffix ``.png``.
    ``out`` must not exist. Every input is checked before the model is loaded.
    """
    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: name the output file FILE.npz")
    if out.exists():
        raise ConfigError(f"--out {out} exists; choose another path or remove it first")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist; create it first")
    if draws < 0 or (k is not None and k < 1):
        raise ConfigError(f"--draws must be >= 0 and --k >= 1 (got {draws} and {k})")
    figure = Path(figure) if figure is not None else out.with_suffix(".png")
    x, mask, stored_shape = load_npz_points(data)
    run = load_run(run_dir, device, model=model)
    if tuple(x.shape[1:]) != tuple(run.data_shape):
        raise DataError(
            f"{data}: x holds datapoints of shape {tuple(x.shape[1:])} but the run in "
            f"{run.folder.path} models shape {tuple(run.data_shape)}; impute data of that shape"
        )
    allow_missing(run.model)  # ModelError for a model or likelihood that cannot be masked
    cfg = run.config
    # prepare_data scales (and binarizes, with a fixed seed) the test split; x serves as both
    whole = Dataset(str(data), x, None, x, None, source=str(data), mask_train=mask, mask_test=mask)
    prepared = prepare_data(
        whole, data_support(run.model), cfg.likelihood, cfg.binarize, cfg.seed, device
    )
    if not prepared.missing:
        raise DataError(
            f"{data}: x has no missing entry (no NaN, and no False in a mask); nothing to impute"
        )
    values = prepared.test
    result = impute(run.model, values, k or cfg.eval_k, draws, seed=seed)
    missing_fraction = float((~result.observed).float().mean())
    arrays = {
        "x": result.mean.cpu().numpy().reshape(stored_shape).astype(np.float32),
        "mask": result.observed.cpu().numpy().reshape(stored_shape),
        "ess_fraction": result.ess_fraction.cpu().numpy().astype(np.float32),
    }
    if draws:
        arrays["draws"] = result.draws.cpu().numpy().reshape(draws, *stored_shape)
        arrays["draws"] = arrays["draws"].astype(np.float32)
    with atomic_writer(out) as handle:
        np.savez(handle, **arrays)
    levels = data_support(run.model) == "levels"
    drawn = _save_figure(values, result, figure, levels, str(data))
    return ImputedFile(out, figure if drawn else None, result, missing_fraction)


def _save_figure(x: torch.Tensor, result: Imputation, path: Path, levels: bool, name: str) -> bool:
    """Columns of a few datapoints with missing entries: the data (missing in red), the
    imputation and up to three draws; False when the data are not images."""
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
    return save_image_grid(
        torch.cat(rows), path, columns=len(chosen), title=title, levels=levels, row_labels=labels
    )
