"""Checks of the labels y that the families taking labels (cvae, m2) learn from or score.

A class is a number 0..C-1, and a conditional model learns one per number: a label that
is negative, or a class no training datapoint has, cannot be learned, so both are refused
in one line before training instead of failing (or being quietly wasted) later.

Example:
    >>> import torch
    >>> check_training_classes(torch.tensor([0, 1, 1]), torch.tensor([1, 0]), "d.npz")
    >>> check_training_classes(torch.tensor([0, 5, 9]), None, "d.npz")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.DataError: d.npz: the labels y take 3 values (0, 5, 9) but run to 9: ...
"""

from __future__ import annotations

import torch

from ..errors import DataError

__all__ = ["check_training_classes", "check_labels_fit"]

RENUMBER = "renumber them 0..C-1, e.g. y = np.unique(y, return_inverse=True)[1]"


def check_training_classes(y_train: torch.Tensor, y_test: torch.Tensor | None, name: str) -> None:
    """Every label is a class number 0..C-1 (C - 1 the largest of either split) that some
    training datapoint has; DataError naming the labels otherwise."""
    labels = [y for y in (y_train, y_test) if y is not None and len(y)]
    low = min(int(y.min()) for y in labels)
    if low < 0:
        raise DataError(
            f"{name}: the labels y include {low}; classes are numbers 0..C-1 (give every "
            f"datapoint its class; m2's --labels chooses which keep theirs): {RENUMBER}"
        )
    trained = torch.unique(y_train)
    classes = max(int(y.max()) for y in labels) + 1
    if len(trained) == classes:
        return
    absent = sorted(set(range(classes)) - set(trained.tolist()))
    shown = ", ".join(map(str, trained.tolist()[:10])) + (", ..." if len(trained) > 10 else "")
    listed = ", ".join(map(str, absent[:5])) + (", ..." if len(absent) > 5 else "")
    raise DataError(
        f"{name}: the labels y take {len(trained)} values ({shown}) but run to {classes - 1}: "
        f"a conditional model learns a class for every number 0..{classes - 1}, and "
        f"{len(absent)} of them ({listed}) have no training datapoint; {RENUMBER} (or set "
        "--num-classes to keep unused classes on purpose)"
    )


def check_labels_fit(y: torch.Tensor, num_classes: int, name: str) -> None:
    """Labels to score lie in the model's classes 0..num_classes-1; DataError otherwise."""
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise DataError(
            f"{name}: the labels y run from {low} to {high}, but the run's model has "
            f"{num_classes} classes (0..{num_classes - 1}); score data labelled as it was "
            "trained"
        )
