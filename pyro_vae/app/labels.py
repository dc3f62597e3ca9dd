"""Checks of the labels y that the families taking labels (cvae, m2) learn from or score.

A class is a number 0..C-1, and a conditional model learns one per number; y = -1 marks
a datapoint given without its class, which only a model that learns classes
semi-supervised (m2) can use. Any other negative label, -1 for a model that needs every
class, or a class no labelled training datapoint has, cannot be learned: each is refused
in one line before training instead of failing (or being quietly wasted) later.

Example:
    >>> import torch
    >>> check_training_classes(torch.tensor([0, 1, 1]), torch.tensor([1, 0]), "d.npz", "cvae")
    >>> check_training_classes(torch.tensor([0, -1, 1]), None, "d.npz", "m2", unlabelled=True)
    >>> check_training_classes(torch.tensor([0, 5, 9]), None, "d.npz", "cvae")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.DataError: d.npz: the training labels y hold 3 classes (0, 5, 9) but ...
"""

from __future__ import annotations

import torch

from ..errors import DataError
from ..semisupervised import UNLABELLED

__all__ = ["check_training_classes", "check_labels_fit"]

RENUMBER = "renumber them 0..C-1, e.g. y = np.unique(y, return_inverse=True)[1]"


def check_training_classes(
    y_train: torch.Tensor,
    y_test: torch.Tensor | None,
    name: str,
    model: str,
    unlabelled: bool = False,
    keep_unused: bool = False,
) -> None:
    """Every given label is a class number 0..C-1 (C - 1 the largest of either split) that
    some training datapoint has; with ``unlabelled`` (``model`` learns from unlabelled
    data) -1 marks a datapoint without one. ``keep_unused``: classes without a training
    datapoint are asked for (--num-classes). DataError naming the labels otherwise."""
    splits = [y for y in (y_train, y_test) if y is not None and len(y)]
    for y in splits:
        _check_values(y, name, model, unlabelled)
    given = [y[y != UNLABELLED] for y in splits]
    trained = torch.unique(given[0])
    if not len(trained):
        raise DataError(
            f"{name}: every training label is -1 (unlabelled), but {model} learns its classes "
            "from labelled datapoints; give at least one datapoint of each class its label"
        )
    classes = max(int(y.max()) for y in given if len(y)) + 1
    if len(trained) == classes or keep_unused:
        return
    absent = sorted(set(range(classes)) - set(trained.tolist()))
    shown = ", ".join(map(str, trained.tolist()[:10])) + (", ..." if len(trained) > 10 else "")
    listed = ", ".join(map(str, absent[:5])) + (", ..." if len(absent) > 5 else "")
    tested = set(given[1].tolist()) if len(given) > 1 else set()
    test_only = [c for c in absent if c in tested]
    where = (
        f" ({', '.join(map(str, test_only[:5]))} only in the test labels y_test)"
        if test_only
        else ""
    )
    raise DataError(
        f"{name}: the training labels y hold {len(trained)} classes ({shown}) but the largest "
        f"label is {classes - 1}: "
        f"a conditional model learns a class for every number 0..{classes - 1}, and "
        f"{len(absent)} of them ({listed}) have no labelled training datapoint{where}; "
        f"{RENUMBER} (or set --num-classes to keep unused classes on purpose)"
    )


def _check_values(y: torch.Tensor, name: str, model: str, unlabelled: bool) -> None:
    """DataError for a label below -1, or -1 where ``model`` needs every class."""
    low = int(y.min())
    if low < UNLABELLED:
        raise DataError(
            f"{name}: the labels y include {low}; classes are numbers 0..C-1 and -1 marks an "
            f"unlabelled datapoint (for m2): {RENUMBER}"
        )
    if low == UNLABELLED and not unlabelled:
        count = int((y == UNLABELLED).sum())
        raise DataError(
            f"{name}: the labels y include -1 (an unlabelled datapoint) in {count} rows, but "
            f"{model} needs every datapoint's class; drop those rows, or learn from them with "
            "--model m2 (semi-supervised)"
        )


def check_labels_fit(
    y: torch.Tensor, num_classes: int, name: str, model: str, unlabelled: bool = False
) -> None:
    """Labels to score lie in the model's classes 0..num_classes-1 (or are -1, unlabelled,
    for a model that scores without them: ``unlabelled``); DataError otherwise."""
    given = y[y != UNLABELLED] if unlabelled else y
    if not len(given):
        return
    low, high = int(given.min()), int(given.max())
    if low == UNLABELLED:
        _check_values(given, name, model, unlabelled=False)  # names the fix
    if low < 0 or high >= num_classes:
        raise DataError(
            f"{name}: the labels y run from {low} to {high}, but the run's model has "
            f"{num_classes} classes (0..{num_classes - 1}); score data labelled as it was "
            "trained"
        )
