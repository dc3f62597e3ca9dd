"""M2 in the application: built from a Config, and its figures.

``--model m2`` builds :class:`pyro_vae.families.M2` from the same keys as the VAE: the
likelihood, the prior (any built-in without global latents, but not vamp), the network
(``mlp`` or ``conv``: the classifier q(y|x) and the encoder of q(z|x,y) each get a body
of their own, the decoder sees [z, one_hot(y)]), ``latent_dim``/``hidden`` and
``activation``. The guide
of z is the Normal one.

Figures: ``losses.png``, ``class-samples.png`` (one row per class, z ~ p(z)),
``analogies.png`` (test digits, each followed by its style E[z|x,y] decoded with every
label, as in the M2 paper's figure) and, from ``pyro-vae evaluate``, ``confusion.png``.

Example::

    m2 = build_m2(Config(model="m2", latent_dim=50, hidden=[500]), (1, 28, 28), 10)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import data_max
from ..errors import ConfigError, DataError
from ..families.m2 import M2, Classifier, M2Decoder, M2Encoder
from ..networks import ACTIVATIONS, MLPBody, activation_unit
from ..parts import likelihood_contract
from ..rng import isolated_rng
from .build import build_likelihood, build_prior, encoder_input
from .config import Config
from .plots import plot_losses, plt, save_image_grid
from .registry import NETWORKS

__all__ = ["build_m2", "save_m2_plots", "plot_confusion"]


def build_m2(cfg: Config, data_shape: tuple[int, ...], num_classes: int | None) -> M2:
    """The M2 for data of ``data_shape`` with ``num_classes`` labels, from ``cfg``'s parts."""
    if not num_classes:
        raise DataError(
            "model m2 learns from labels, but the dataset has none; use a dataset with labels "
            "(mnist5k, mnist, fashion-mnist, or an .npz with y)"
        )
    if cfg.guide != "normal":
        raise ConfigError(
            f"guide: m2's q(z|x,y) is a Normal with the label added to its last hidden layer; "
            f"{cfg.guide!r} is not available for it: use --guide normal"
        )
    if cfg.prior in ("vamp", "hierarchical"):
        raise ConfigError(
            f"prior: m2 cannot use {cfg.prior!r} (vamp needs q(z|x) without a label, "
            "hierarchical has a global latent); use standard-normal, learned-normal, mog, flow, "
            "laplace, student-t or your own"
        )
    data_shape = tuple(data_shape)
    likelihood = build_likelihood(cfg, data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    largest = data_max(contract.support)
    network, hidden, act = NETWORKS[cfg.network], list(cfg.hidden), cfg.activation
    body, features = network.encoder(data_shape, hidden, act)
    classifier = Classifier(
        encoder_input(cfg, body, data_shape, contract.support), features, num_classes
    )
    body, features = network.encoder(data_shape, hidden, act)
    encoder = M2Encoder(
        encoder_input(cfg, _pre_activation(body), data_shape, contract.support),
        features,
        cfg.latent_dim,
        num_classes,
        activation_unit(act),
    )
    outputs = contract.num_outputs or math.prod(data_shape)
    decoder = network.decoder(cfg.latent_dim + num_classes, data_shape, hidden, outputs, act)
    prior = build_prior(cfg, encoder, data_shape, largest)
    return M2(
        classifier,
        encoder,
        M2Decoder(decoder, num_classes),
        prior,
        likelihood,
        num_classes,
        data_shape=data_shape,
    )


def _pre_activation(body: nn.Module) -> nn.Module:
    """A built-in encoder body without its final activation (M2Encoder adds the label before
    it, then applies the same units)."""
    layers = body.layers if isinstance(body, MLPBody) else getattr(body, "conv", None)
    units = tuple(ACTIVATIONS.values())
    if not isinstance(layers, nn.Sequential) or not isinstance(layers[-1], units):
        raise ConfigError(f"network: m2 cannot add the label to {type(body).__name__}")
    if isinstance(body, MLPBody):
        body.layers = layers[:-1]
    else:
        body.conv = layers[:-1]
    return body


def save_m2_plots(
    m2: M2,
    rows: Sequence[dict[str, Any]],
    x_test: torch.Tensor,
    folder: str | Path,
    units: str = "nats",
    white: float = 1.0,
    seed: int = 0,
    columns: int = 10,
) -> list[Path]:
    """losses.png, class-samples.png and analogies.png into ``folder``; the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    device = next(m2.parameters()).device
    classes = m2.num_classes
    with isolated_rng(seed, device):
        if rows:
            plot_losses(rows, folder / "losses.png", units)
            written.append(folder / "losses.png")
        labels = torch.arange(classes, device=device).repeat_interleave(columns)
        title = f"samples from p(x|y,z), z ~ p(z): one row per class 0..{classes - 1}"
        if save_image_grid(m2.sample(len(labels), labels), folder / "class-samples.png",
                           columns=columns, title=title, white=white):  # fmt: skip
            written.append(folder / "class-samples.png")
        digits = x_test[torch.linspace(0, len(x_test) - 1, min(8, len(x_test))).long()]
        grid = torch.cat([digits.unsqueeze(1), m2.analogies(digits)], 1).flatten(0, 1)
        title = f"analogies: a test datapoint, then its style E[z|x,y] with labels 0..{classes - 1}"
        if save_image_grid(grid, folder / "analogies.png", columns=classes + 1, title=title,
                           white=white):  # fmt: skip
            written.append(folder / "analogies.png")
    return written


def plot_confusion(confusion: Sequence[Sequence[int]], path: str | Path, title: str = "") -> None:
    """The confusion matrix (rows: true label, columns: q(y|x)'s label), counts in the cells."""
    counts = torch.tensor(confusion, dtype=torch.float64)
    classes = len(counts)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * classes, 0.8 + 0.45 * classes))
    shares = counts / counts.sum(1, keepdim=True).clamp(min=1)
    ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(classes):
        for j in range(classes):
            if counts[i, j]:
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                        color=colour)  # fmt: skip
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_xlabel("predicted by q(y|x)")
    ax.set_ylabel("true label")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
