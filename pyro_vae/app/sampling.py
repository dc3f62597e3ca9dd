"""``pyro-vae sample --out FILE.npz``: a trained model's samples as numbers, for any data shape.

The file holds ``mean`` (E[x|z], what the PNG grids show), ``x`` (one draw from p(x|z)
at the same z), ``z`` (the latents x is decoded from: z_1 of a stacked model) and, for a
cvae or m2, ``y`` (the label of each row). Values are on the scale the model was trained
on (8-bit levels as level / 255).

Example::

    save_draws(vae, Path("draws.npz"), n=100, label=None, seed=0, device="cpu")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..families.cvae import CVAE
from ..families.m2 import M2, standard_m2
from ..rng import isolated_rng
from .atomic import atomic_writer

__all__ = ["save_draws", "label_classes", "parse_label"]


def save_draws(
    model: nn.Module, out: Path, n: int | None, label: str | None, seed: int, device: str
) -> Path:
    """Draw from ``model`` (a VAE, CVAE or M2) and write the numbers to ``out``, atomically."""
    classes = label_classes(model, label)
    with torch.no_grad():
        if classes:
            y = _labels(label, classes, n)
            arrays = _class_draws(model, y, seed, device)
        else:
            arrays = _draws(model, n or 64, seed, device)
    with atomic_writer(out) as handle:
        np.savez(handle, **{name: value.cpu().numpy() for name, value in arrays.items()})
    return out


def label_classes(model: nn.Module, label: str | None) -> int:
    """The classes of a cvae or m2 ``model`` (0 for one without labels); ConfigError when
    ``--label`` is given for a model without labels."""
    classes = model.num_classes if isinstance(model, CVAE) or standard_m2(model) else 0
    if label is not None and not classes:
        raise ConfigError(
            f"--label draws class-conditional samples from a cvae or m2 run; this model "
            f"({type(model).__name__}) takes no labels"
        )
    return classes


def _labels(label: str | None, classes: int, n: int | None) -> torch.Tensor:
    """``n`` of class ``label``, or ``n`` (default 10) of every class for 'all' or None."""
    if label in (None, "all"):
        return torch.arange(classes).repeat_interleave(n or 10)
    return torch.full((n or 64,), parse_label(label, classes))


def parse_label(label: str, classes: int) -> int:
    """``--label K`` as a class of a model with ``classes`` classes, or ConfigError."""
    try:
        value = int(label)
    except ValueError:
        value = -1
    if not 0 <= value < classes:
        raise ConfigError(
            f"--label: expected a class 0..{classes - 1} of this run or 'all', got {label!r}"
        )
    return value


def _draws(vae: nn.Module, n: int, seed: int, device: str) -> dict[str, torch.Tensor]:
    """E[x|z], a draw of x at the same z, and z ~ p(z)."""
    with isolated_rng(seed, device):
        z, p_x = vae.draw(n)
        return {"mean": p_x.mean, "x": p_x.sample(), "z": z}


def _class_draws(
    model: nn.Module, y: torch.Tensor, seed: int, device: str
) -> dict[str, torch.Tensor]:
    """E[x|z, y], a draw of x at the same z, and z, for each label in ``y``."""
    y = y.to(next(model.parameters()).device)
    with isolated_rng(seed, device):
        z, p_x = model.draw(len(y), y) if isinstance(model, M2) else model.draw(y)
        return {"mean": p_x.mean, "x": p_x.sample(), "z": z, "y": y}
