"""What run.json records of a run's training data, and what the other commands check against it.

Beside the data's fingerprint (:func:`~pyro_vae.app.resume.data_fingerprint`), training
records ``data_source`` (``python`` for data passed as ``train(data=...)``, else ``config``)
and ``data_range``: the raw data's dtype, how they were scaled for the likelihood, and the
smallest and largest observed training entry on the model's scale. From these:

- :func:`check_loadable`: the data of a run trained on data passed from Python cannot be
  loaded by its config's ``dataset`` (a default that names other data), so evaluate and
  resume need the data given again;
- :func:`check_own_data`: evaluate refuses the run's own dataset once it differs from the
  fingerprint (a data file rewritten since training moves training rows into its test split);
- :func:`check_range`: evaluate of other data and impute refuse values far outside the
  training range (a scale error: floats 0..255 for a run trained on uint8 levels / 255),
  through :func:`check_scale`, on the raw values before they are prepared.

A run recorded before a key existed is not checked for it. Each check raises a
:class:`~pyro_vae.errors.DataError` naming the data, what differs and the fix.

Example::

    info["data_range"] = training_range(dataset, prepared.train, "real")
    check_range(run.path, info, x, dataset.is_8bit, "other.npz")
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..data import observed_range, scaling
from ..datasets import TENSORS_SOURCE, Dataset
from ..errors import DataError
from .resume import data_change, data_fingerprint

__all__ = [
    "data_source",
    "from_python",
    "training_range",
    "recorded_max",
    "check_loadable",
    "check_own_data",
    "check_range",
    "check_scale",
]


def data_source(given: bool) -> str:
    """run.json's ``data_source``: ``python`` for data passed to ``train``, else ``config``."""
    return "python" if given else "config"


def from_python(info: Mapping[str, Any]) -> bool:
    """Whether run.json says the training data were passed from Python (``data_source``;
    before that key, the source ``Dataset.from_tensors`` records)."""
    if "data_source" in info:
        return info["data_source"] == "python"
    return info.get("dataset_source") == TENSORS_SOURCE


def training_range(dataset: Dataset, x: torch.Tensor, support: str) -> dict[str, Any]:
    """run.json's ``data_range``: the raw dtype, the scaling for ``support`` and the observed
    range of ``x``, the prepared training data (on the model's scale).

    Example:
        >>> levels = torch.tensor([[0, 255]], dtype=torch.uint8)
        >>> training_range(Dataset.from_tensors(levels, levels), torch.tensor([0.0, 1.0]), "real")
        {'dtype': 'uint8', 'scaling': 'uint8 levels divided by 255', 'min': 0.0, 'max': 1.0}
    """
    low, high = observed_range(x)
    dtype = str(dataset.x_train.dtype).removeprefix("torch.")
    return {"dtype": dtype, "scaling": scaling(dataset.is_8bit, support), "min": low, "max": high}


def recorded_max(info: Mapping[str, Any]) -> float | None:
    """The largest observed training value (on the model's scale) that run.json's
    ``data_range`` records, or None for a run recorded without one.

    Example:
        >>> recorded_max({"data_range": {"min": 0.0, "max": 16.0}}), recorded_max({})
        (16.0, None)
    """
    record = info.get("data_range")
    high = record.get("max") if isinstance(record, dict) else None
    return float(high) if isinstance(high, (int, float)) else None


def check_loadable(path: Path, info: Mapping[str, Any], fix: str, dataset: str = "") -> None:
    """Refuse to load the data of the run at ``path`` by its config's name ``dataset`` when
    run.json says they were passed from Python (``fix`` says how to pass them again), or
    when that name is a data file no longer there."""
    if dataset.endswith(".npz") and not Path(dataset).expanduser().exists():
        raise DataError(
            f"{path}: the data file it was trained on, {dataset} (its config.toml's dataset), "
            f"is gone; restore it, or if it moved, write its new path as dataset in "
            f"{Path(path) / 'config.toml'}"
        )
    if not from_python(info):
        return
    shape = info.get("data_shape")
    shape = tuple(shape) if isinstance(shape, list) else "unknown"
    sizes = f"{info.get('num_train')} training and {info.get('num_test')} test datapoints"
    raise DataError(
        f"{path}: this run was trained on data passed from Python ({sizes} of shape {shape}), "
        f"which its config's dataset does not name; pass the same data: {fix}"
    )


def check_own_data(path: Path, info: Mapping[str, Any], dataset: Dataset, other: str) -> str:
    """Refuse ``dataset``, loaded as the run's own, unless it has the fingerprint run.json
    records; ``other`` says how to score it as other data. A note when none is recorded
    (an older pyro-vae's run), else ''."""
    then = info.get("data_fingerprint")
    if not isinstance(then, dict):
        return (
            f"note: {path / 'run.json'} holds no fingerprint of the training data (an older "
            f"pyro-vae wrote it), so {dataset.name} could not be checked against them"
        )
    if what := data_change(then, data_fingerprint(dataset)):
        raise DataError(
            f"{dataset.name}: not the data {path} was trained on ({what}); scored as the run's "
            "own, rows it trained on may sit in its test split. Restore the data it was "
            f"trained on, or score these as other data: {other}"
        )
    return ""


def check_scale(
    path: Path,
    info: Mapping[str, Any],
    x: torch.Tensor,
    mask: torch.Tensor | None,
    is_8bit: bool,
    support: str,
    name: str,
) -> None:
    """:func:`check_range` of raw data ``x`` (``mask``: True = observed) given to score or
    impute with the run at ``path``, scaled as training scales them for ``support``, before
    they are prepared: a scale error is then named as one, with its fix, rather than by a
    check of the likelihood's support that suggests training flags.

    Example:
        >>> info = {"data_range": {"dtype": "uint8", "min": 0.0, "max": 1.0}}
        >>> check_scale(Path("runs/X"), info, torch.full((2, 3), 200.0), None, False, "binary", "f")
        Traceback (most recent call last):
        ...
        pyro_vae.errors.DataError: f: its observed values range over [200, 200] on the model's ...
    """
    values = x.float()
    if is_8bit and support == "open-unit":
        values = (values + 0.5) / 256.0
    elif is_8bit and support not in ("levels", "counts"):
        values = values / 255.0
    if mask is not None:
        values = torch.where(mask, values, torch.nan)
    if bool((~torch.isnan(values)).any()):
        check_range(path, info, values, is_8bit, name)


OUTLIER_SHARE = 0.01  # of the observed entries: beyond it, far-out values are another scale


def check_range(
    path: Path, info: Mapping[str, Any], x: torch.Tensor, is_8bit: bool, name: str
) -> None:
    """Refuse data ``name`` whose observed values (``x``, prepared for the model) fall far
    outside the training range run.json records: data on another scale, whose scores or
    imputations would be meaningless.

    "Far" is beyond the training range widened on each side by its width or its largest
    magnitude, whichever is larger. Data drawn like the training data rarely pass its
    extremes, and then by a fraction of its width (standardized training data in [-4.5, 4.5]
    allow [-13.5, 13.5]); a scale error passes them many times over (floats 0..255 against
    uint8 levels divided by 255: 254 where 2 is allowed). The magnitude keeps data far from 0
    with a narrow range (kelvins in [280, 300] allow [-20, 600]) from being refused for an
    ordinary excursion. Data shrunk by a scale error (levels / 255 where the run saw 0..255)
    stay inside and pass. Up to ``OUTLIER_SHARE`` of the entries may lie that far out (an
    anomaly to score); a scale error moves nearly all of them.
    """
    record = info.get("data_range")
    if not isinstance(record, dict) or not all(
        isinstance(record.get(key), float) for key in ("min", "max")
    ):
        return  # a run recorded by an older pyro-vae
    low, high = record["min"], record["max"]
    margin = max(high - low, abs(low), abs(high))
    observed = x[~torch.isnan(x)] if x.is_floating_point() else x
    outside = (observed < low - margin) | (observed > high + margin)
    if float(outside.float().mean()) <= OUTLIER_SHARE:
        return  # a few outliers are data to score (anomalies), not a scale error
    found_low, found_high = observed_range(x)
    found = f"[{found_low:g}, {found_high:g}]"
    if record.get("dtype") == "uint8" and high <= 1 and not is_8bit:
        fix = "they are floats, taken as stored: divide them by 255, or save them as uint8"
    else:
        fix = "put them on the training data's scale (the same units and standardization)"
    raise DataError(
        f"{name}: its observed values range over {found} on the model's scale, far outside "
        f"the [{low:g}, {high:g}] of the data {path} was trained on ({record.get('scaling')}), "
        f"so the model's numbers for them would be meaningless; {fix}"
    )
