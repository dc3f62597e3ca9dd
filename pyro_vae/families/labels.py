"""Class labels passed to a model that conditions on them (the CVAE) or may observe them (M2).

Example:
    >>> check_class_labels(torch.tensor([0, 2, 1]), 3, "CVAE")
    >>> check_class_labels(torch.tensor([0.0, 1.0]), 3, "M2")
    Traceback (most recent call last):
    ...
    pyro_vae.errors.ModelError: labels y must be class indices, an integer tensor [batch]; ...
"""

from __future__ import annotations

import torch

from ..errors import ModelError

__all__ = ["check_class_labels"]


def check_class_labels(
    y: torch.Tensor, num_classes: int, owner: str, num_data: int | None = None, hint: str = ""
) -> None:
    """ModelError unless ``y`` is ``[batch]`` integer class indices in ``0..num_classes-1``,
    one per datapoint of a batch of ``num_data``; ``hint`` follows a label -1."""
    if not torch.is_tensor(y) or y.dim() != 1 or y.is_floating_point() or y.is_complex():
        got = f"{y.dtype} of shape {tuple(y.shape)}" if torch.is_tensor(y) else type(y).__name__
        fix = "; pass y.long()" if torch.is_tensor(y) and y.is_floating_point() else ""
        raise ModelError(
            f"labels y must be class indices, an integer tensor [batch]; got {got}{fix}"
        )
    if y.dtype == torch.bool:
        raise ModelError("labels y must be class indices, an integer tensor [batch]; got bool")
    if num_data is not None and len(y) != num_data:
        raise ModelError(f"{num_data} datapoints but {len(y)} labels; give one label each")
    low, high = (int(y.min()), int(y.max())) if len(y) else (0, 0)
    if low < 0 or high >= num_classes:
        raise ModelError(
            f"labels y run from {low} to {high} but this {owner} has {num_classes} classes "
            f"(0..{num_classes - 1}){hint if low == -1 else ''}"
        )
