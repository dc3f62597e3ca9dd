"""A baseline for real-valued data: what a model scores that learned each feature's mean and
standard deviation and nothing else.

Independent Gaussians, N(mean_j, std_j) for feature j, both from the training data
(missing entries ignored; std_j as :func:`~pyro_vae.likelihoods.scale_from_data` gives
it per pixel: at least 0.1 of the overall standard deviation, so that a feature constant
in training does not score an unbounded density). Its log-density of held-out data, summed
over each datapoint's observed entries and averaged over datapoints, is on the scale of a
real-valued likelihood's test ELBO and log p(x) on the same data: a VAE that scores below
it has learned less than nothing (a scale that started far from the data's spread and
could not recover, a learning rate too low for the epochs, unstandardized data).

It is exactly what a per-pixel Gaussian likelihood started from the data scores when its
decoder outputs the training mean whatever z.

Example:
    >>> x_train = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    >>> round(independent_gaussian_log_px(x_train, torch.tensor([[1.0, 2.0]])), 4)
    -1.8379
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from .likelihoods import scale_from_data

__all__ = ["independent_gaussian", "independent_gaussian_log_px"]


def independent_gaussian(x_train: torch.Tensor) -> dist.Normal:
    """N(mean_j, std_j) per feature of ``x_train`` (``[N, *data_shape]``, NaN = missing):
    batch shape ``data_shape``; a feature never observed takes the overall mean and std."""
    x = x_train.detach().float()
    observed = x[~torch.isnan(x)]
    overall = observed.mean() if observed.numel() else x.new_tensor(0.0)
    loc = x.nanmean(0).nan_to_num(float(overall))
    return dist.Normal(loc, scale_from_data(x, per_pixel=True).to(x.device))


def independent_gaussian_log_px(x_train: torch.Tensor, x_test: torch.Tensor) -> float:
    """Log-density per datapoint of ``x_test`` under :func:`independent_gaussian` of
    ``x_train``, summed over each datapoint's observed (non-NaN) entries."""
    baseline = independent_gaussian(x_train)
    x = x_test.detach().to(baseline.loc.device, torch.float64)
    holes = torch.isnan(x)
    normal = dist.Normal(baseline.loc.double(), baseline.scale.double())
    log_density = normal.log_prob(x.nan_to_num(0.0)).masked_fill(holes, 0.0)
    return float(log_density.flatten(1).sum(1).mean())
