"""What run.json records of a run's training data, and what the other commands check against it.

Beside the data's fingerprint (:func:`~pyro_vae.app.resume.data_fingerprint`), training
records ``data_source`` (``python`` for data passed as ``train(data=...)``, else ``config``).
From these:

- :func:`check_loadable`: the data of a run trained on data passed from Python cannot be
  loaded by its config's ``dataset`` (a default that names other data), so evaluate and
  resume need the data given again;
- :func:`check_own_data`: evaluate refuses the run's own dataset once it differs from the
  fingerprint (a data file rewritten since training moves training rows into its test split).

A run recorded before a key existed is not checked for it. Each check raises a
:class:`~pyro_vae.errors.DataError` naming the data, what differs and the fix.

Example::

    info["data_source"] = data_source(data is not None)
    check_loadable(run.path, info, "pass the same data: evaluate(run, data=...)")
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..datasets import TENSORS_SOURCE, Dataset
from ..errors import DataError
from .resume import data_change, data_fingerprint

__all__ = [
    "data_source",
    "from_python",
    "check_loadable",
    "check_own_data",
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


def check_loadable(path: Path, info: Mapping[str, Any], fix: str) -> None:
    """Refuse to load the data of the run at ``path`` by its config's name when run.json
    says they were passed from Python; ``fix`` says how to pass them again."""
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
