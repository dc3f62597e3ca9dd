"""A fixed per-feature standardization: what makes a real-valued model blind to units.

A table whose columns are recorded in different units (wine's proline near 750 beside
features near 0.1) is learned as slowly as its widest column allows, and a model's quality
then depends on the units. :class:`Standardize` holds each feature's training mean ``m``
and standard deviation ``s`` as buffers (not parameters: nothing learns them, and they
travel in the checkpoint); the built-in encoders see ``(x - m) / s`` and the built-in
gaussian and laplace likelihoods decode ``loc = m + s * output`` and ``scale = s * scale``,
so p(x|z) stays a density of x in the data's own units (its log includes ``-sum log s``)
and a per-feature affine change of units ``x -> a x + b`` changes log p(x) by exactly
``-sum log |a|``, nothing else.

Example:
    >>> x = torch.tensor([[1.0, 100.0], [3.0, float("nan")], [5.0, 300.0]])
    >>> mean, std = standardization_from_data(x)
    >>> mean, std
    (tensor([  3., 200.]), tensor([  1.6330, 100.0000]))
    >>> standardize = Standardize((2,))
    >>> standardize.set(mean, std)
    >>> standardize(x)   # a missing entry stays missing
    tensor([[-1.2247, -1.0000],
            [ 0.0000,     nan],
            [ 1.2247,  1.0000]])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Standardize", "is_table", "standardization_from_data"]

# A feature whose spread is below this fraction of its magnitude is constant up to float
# rounding: it is only centred (unit 1), as it was before there was a standardization.
CONSTANT_SPREAD = 1e-6


def is_table(data_shape: tuple[int, ...]) -> bool:
    """Whether datapoints of ``data_shape`` are rows of a table (``[D]``), whose columns may
    each have units of their own, so that ``pyro-vae train`` standardizes them. Images
    (``[C, H, W]``, ``[H, W]``) share one unit over their pixels and are left in it: per pixel,
    a rarely inked pixel's small spread made its scale start tiny, and mnist5k's per-pixel
    gaussian scored 879 nats against 974 unstandardized (RESULTS.md, "Newcomer's tables").

    Example:
        >>> is_table((13,)), is_table((1, 28, 28))
        (True, False)
    """
    return len(data_shape) == 1


def standardization_from_data(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each feature's mean and standard deviation over the observed (non-NaN) entries of the
    training data ``x`` (``[N, *data_shape]``), as two float32 ``data_shape`` tensors.

    Computed in float64. A feature never observed gets mean 0 and std 1; one constant in
    training (spread at most 1e-6 of its magnitude) has no unit of its own and gets std 1:
    it is centred and otherwise left in the units it was recorded in, as before this
    standardization existed (its magnitude as the unit cost a table's constant column at 3
    0.7-1.1 nats per row in RESULTS.md's "Newcomer's tables"). Every other feature's std is
    its own, however small or large, so rescaling one column rescales its unit and nothing else.

    Example:
        >>> standardization_from_data(torch.tensor([[0.0, 3.0, 1e-4], [0.0, 3.0, 3e-4]]))
        (tensor([0.0000e+00, 3.0000e+00, 2.0000e-04]), tensor([1.0000e+00, 1.0000e+00, 1.0000e-04]))
    """
    values = x.detach().to(torch.float64)
    mean = values.nanmean(0).nan_to_num(0.0)
    std = (values - mean).square().nanmean(0).sqrt().nan_to_num(0.0)
    constant = std <= CONSTANT_SPREAD * mean.abs()
    return mean.float(), torch.where(constant, torch.ones_like(std), std).float()


class Standardize(nn.Module):
    """``(x - mean) / std`` per feature, with ``mean`` and ``std`` buffers of ``data_shape``
    (0 and 1 until :meth:`set`: the identity). NaN (missing) entries stay NaN.

    Example:
        >>> s = Standardize((2,))
        >>> s.set(torch.tensor([1.0, 10.0]), torch.tensor([2.0, 5.0]))
        >>> s(torch.tensor([[3.0, 0.0]])), s.undo(torch.tensor([[1.0, -2.0]]))
        (tensor([[ 1., -2.]]), tensor([[3., 0.]]))
    """

    def __init__(self, data_shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(data_shape))
        self.register_buffer("std", torch.ones(data_shape))

    @torch.no_grad()
    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Take ``mean`` and ``std`` (each of the buffers' shape; std positive and finite)."""
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(
                f"a standardization of shape {tuple(mean.shape)} and {tuple(std.shape)} does "
                f"not fit data of shape {tuple(self.mean.shape)}"
            )
        if not bool((std > 0).all() & torch.isfinite(std).all() & torch.isfinite(mean).all()):
            raise ValueError("a standardization needs finite means and positive, finite stds")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def undo(self, u: torch.Tensor) -> torch.Tensor:
        """The data whose standardization is ``u``: ``mean + std * u``."""
        return self.mean + self.std * u
