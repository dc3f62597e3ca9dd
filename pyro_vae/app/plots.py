"""The run folder's figures: loss curves, reconstructions, prior samples, the latent space.

Images are the likelihood's mean E[x|z] (probabilities for Bernoulli pixels, the
mean image for continuous likelihoods), brought to [0, 1] for display.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "grid.png"
    >>> save_image_grid(torch.rand(16, 1, 28, 28), out, columns=4)
    True
    >>> out.read_bytes()[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..families.cvae import CVAE  # noqa: E402
from ..families.m2 import M2  # noqa: E402
from ..rng import isolated_rng  # noqa: E402
from ..vae import VAE  # noqa: E402
from .atomic import atomic_write_bytes  # noqa: E402

__all__ = [
    "save_image_grid",
    "image_grid_png",
    "is_image_shape",
    "plot_losses",
    "plot_reconstructions",
    "plot_latent_scatter",
    "plot_manifold",
    "plot_class_samples",
    "save_run_plots",
    "white_of",
]


MIN_FLAT_IMAGE_SIDE = 8  # 16 features of a table are not a 4x4 image
MISSING_COLOUR = (0.85, 0.25, 0.2)  # how a missing (NaN) pixel of a grey image is drawn


def white_of(support: str, data_max: float | None = None) -> float:
    """The value an image grid draws white for data of a likelihood's ``support``: 255 for
    8-bit levels, the largest training count for counts (``data_max``, at least 1; 1 when
    unknown), else 1 (values in [0, 1]).

    Example:
        >>> white_of("levels"), white_of("counts", 16.0), white_of("unit", 16.0)
        (255.0, 16.0, 1.0)
    """
    if support == "levels":
        return 255.0
    if support == "counts" and data_max is not None and math.isfinite(data_max):
        return max(float(data_max), 1.0)
    return 1.0


def _as_images(x: torch.Tensor, white: float = 1.0) -> torch.Tensor | None:
    """``[N, H, W]`` or ``[N, H, W, 3]`` in [0, 1] (``x / white``, clipped: see
    :func:`white_of`), or None when x is not image-shaped.

    Grey images with missing (NaN) pixels come back in colour, the missing pixels red.
    """
    x = x.detach().float().cpu() / white
    x = x.clamp(0, 1)
    if x.dim() == 2:  # flat rows: a square image of at least 8x8 (flattened digits), else a table
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1] or side < MIN_FLAT_IMAGE_SIDE:
            return None
        return _with_missing(x.view(-1, side, side))
    if x.dim() == 4 and x.shape[1] == 1:
        return _with_missing(x[:, 0])
    if x.dim() == 4 and x.shape[1] == 3:
        return x.permute(0, 2, 3, 1)
    return None


def is_image_shape(shape: Sequence[int]) -> bool:
    """Whether datapoints of ``shape`` are drawn as images (by :func:`save_image_grid`)."""
    return _as_images(torch.zeros(1, *shape)) is not None


def _with_missing(grey: torch.Tensor) -> torch.Tensor:
    """Grey ``[N, H, W]`` as is, or as RGB with missing (NaN) pixels in MISSING_COLOUR."""
    holes = torch.isnan(grey)
    if not bool(holes.any()):
        return grey
    rgb = grey.nan_to_num(0.0).unsqueeze(-1).repeat(1, 1, 1, 3)
    rgb[holes] = torch.tensor(MISSING_COLOUR)
    return rgb


def save_image_grid(
    x: torch.Tensor,
    path: str | Path,
    columns: int = 8,
    title: str = "",
    white: float = 1.0,
    row_labels: Sequence[str] = (),
) -> bool:
    """Save images as a grid PNG (written atomically) with an optional title and a label left
    of each row, ``white`` drawn white (:func:`white_of`); False (nothing written) when x is
    not image-shaped."""
    png = image_grid_png(x, columns, title, white, row_labels)
    if png is not None:
        atomic_write_bytes(path, png)
    return png is not None


def image_grid_png(
    x: torch.Tensor,
    columns: int = 8,
    title: str = "",
    white: float = 1.0,
    row_labels: Sequence[str] = (),
) -> bytes | None:
    """The bytes of :func:`save_image_grid`'s PNG, or None when x is not image-shaped."""
    images = _as_images(x, white)
    if images is None:
        return None
    rows = math.ceil(len(images) / columns)
    height, width = images.shape[1:3]
    canvas = torch.ones(rows * (height + 2), columns * (width + 2), *images.shape[3:])
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (height + 2) + 1 : r * (height + 2) + 1 + height,
               c * (width + 2) + 1 : c * (width + 2) + 1 + width] = image  # fmt: skip
    fig, ax = plt.subplots(figsize=(columns * 0.8, rows * 0.8 + (0.4 if title else 0)))
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    for row, text in enumerate(row_labels):
        ax.text(-2, (row + 0.5) * (height + 2), text, ha="right", va="center", fontsize=9)
    if title:
        ax.set_title(title, fontsize=9)
    buffer = io.BytesIO()
    # the title is also the PNG's Title text chunk: image viewers and scripts can read it
    metadata = {"Title": title} if title else None
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    return buffer.getvalue()


MARKED_POINTS = 50  # up to this many epochs each is marked, so that a single epoch shows


def plot_losses(rows: Sequence[dict[str, Any]], path: str | Path, units: str = "nats") -> Figure:
    """Train and test ELBO per datapoint over epochs; returns the (closed) figure.

    Example: ``plot_losses([{"epoch": 1, "train_elbo": -180.0, "test_elbo": -170.0}], "l.png")``
    """
    epochs = [row["epoch"] for row in rows]
    marker = "o" if len(rows) <= MARKED_POINTS else ""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(epochs, [row["train_elbo"] for row in rows], marker=marker, ms=4, label="train ELBO")
    ax.plot(epochs, [row["test_elbo"] for row in rows], marker=marker, ms=4, label="test ELBO")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(set(epochs)) == 1:  # else the axis spans 0.95-1.05, where no tick is a whole epoch
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"ELBO per datapoint in {units}")  # units may hold parentheses themselves
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def plot_reconstructions(
    vae: VAE,
    x: torch.Tensor,
    path: str | Path,
    white: float = 1.0,
    y: torch.Tensor | None = None,
) -> bool:
    """Rows of 8 inputs (spread over ``x``), each above its reconstruction E[x|z=E[z|x]]
    (given its label ``y`` for a CVAE)."""
    spread = torch.linspace(0, len(x) - 1, min(32, len(x))).long()  # spread over a sorted set
    x = x[spread]
    recon = vae.reconstruct(x) if y is None else vae.reconstruct(x, y[spread].to(x.device))
    pairs = []
    for start in range(0, len(x), 8):
        pairs += [x[start : start + 8], recon[start : start + 8]]
    return save_image_grid(
        torch.cat(pairs),
        path,
        columns=8,
        title="inputs (odd rows) / reconstructions",
        white=white,
    )


def _pca_2d(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first two principal components of the rows of z, and their shares of the variance
    (zeros where one row, or identical rows, leave no component or no variance)."""
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    points = centred @ v[:2].T
    share = s[:2] ** 2 / (s**2).sum().clamp_min(torch.finfo(s.dtype).tiny)
    missing = 2 - points.shape[1]
    return torch.nn.functional.pad(points, (0, missing)), torch.nn.functional.pad(
        share, (0, missing)
    )


def plot_latent_scatter(
    vae: VAE, x: torch.Tensor, labels: torch.Tensor | None, path: str | Path
) -> Figure:
    """Posterior means E[z|x] in 2-D (the two dims directly when z has 2, PCA otherwise);
    returns the (closed) figure.

    Example: ``plot_latent_scatter(vae, x_test[:2000], y_test[:2000], "latent.png")``
    """
    mean = "E[z|x]"
    if isinstance(vae, CVAE):  # E[z|x, y]: what the label leaves for z to hold
        pairs = zip(x.split(500), labels.to(x.device).split(500), strict=True)
        loc = torch.cat([vae.encode(chunk, y)[0] for chunk, y in pairs]).cpu()
        mean = "E[z|x, y]"
    else:
        loc = torch.cat([vae.encode(chunk)[0] for chunk in x.split(500)]).cpu()
    if loc.shape[1] <= 2:
        points, note, axes = loc, mean, ("$z_1$", "$z_2$" if loc.shape[1] == 2 else "")
        if loc.shape[1] == 1:
            points = torch.cat([loc, torch.zeros_like(loc)], 1)
    else:
        points, share = _pca_2d(loc)
        note = f"{mean}, first 2 principal components of {loc.shape[1]} dims"
        axes = tuple(f"PC {i + 1} ({100 * float(share[i]):.0f}% of variance)" for i in range(2))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.7)
    else:
        _scatter_by_label(fig, ax, points, labels.cpu())
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    if loc.shape[1] == 1:
        ax.set_yticks([])  # a 1-D latent: the points lie on a line
    ax.set_title(f"latent space: {note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def _scatter_by_label(
    fig: Figure, ax: plt.Axes, points: torch.Tensor, labels: torch.Tensor
) -> None:
    """Points coloured by label: one colour and legend entry per class up to 20 classes
    (a class of its own for -1, "no label"), else a colour scale with its bar."""
    classes = labels.unique().tolist()
    if len(classes) > 20:
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="viridis", s=4, alpha=0.7)
        fig.colorbar(scatter, ax=ax, label="label")
        return
    palette = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    index = torch.searchsorted(torch.tensor(classes), labels)  # drawn in the data's order
    ax.scatter(points[:, 0], points[:, 1], color=palette(index.numpy()), s=4, alpha=0.7)
    handles = [
        Line2D([], [], ls="", marker="o", color=palette(i), label="no label" if c == -1 else str(c))
        for i, c in enumerate(classes)
    ]
    ax.legend(
        handles=handles, title="label", loc="center left", bbox_to_anchor=(1.0, 0.5),
        fontsize=8, frameon=False, ncol=1 if len(classes) <= 10 else 2,
    )  # fmt: skip


def plot_manifold(vae: VAE, path: str | Path, side: int = 15, white: float = 1.0) -> bool:
    """Decoded means over a grid spanning the prior's 5%-95% range (2-D latents only)."""
    draws = vae.prior().sample((4096,)).cpu()
    if draws.shape[-1] != 2:
        return False
    low, high = torch.quantile(draws, 0.05, dim=0), torch.quantile(draws, 0.95, dim=0)
    a = torch.linspace(float(low[0]), float(high[0]), side)
    b = torch.linspace(float(high[1]), float(low[1]), side)
    grid = torch.stack(torch.meshgrid(b, a, indexing="ij")[::-1], -1).reshape(-1, 2)
    device = next(vae.parameters()).device
    images = vae.decode(grid.to(device))
    return save_image_grid(images, path, columns=side, title="latent manifold", white=white)


def plot_class_samples(
    model: CVAE | M2,
    path: str | Path,
    per_class: int = 10,
    labels: Sequence[int] | None = None,
    title: str = "",
    white: float = 1.0,
) -> bool:
    """Class-conditional samples E[x|z, y] of a CVAE or an M2, z ~ p(z|y) (or p(z)): one row
    of ``per_class`` per label (every class by default), each row labelled ``y=K``.

    Example: ``plot_class_samples(cvae, "samples.png", per_class=10)``
    """
    labels = list(range(model.num_classes)) if labels is None else list(labels)
    y = torch.tensor(labels).repeat_interleave(per_class)
    title = title or f"samples E[x|z, y], z ~ {prior_name(model)}: one row per label"
    return save_image_grid(
        class_samples(model, y),
        path,
        per_class,
        title,
        white,
        row_labels=[f"y={k}" for k in labels],
    )


def class_samples(model: CVAE | M2, y: torch.Tensor) -> torch.Tensor:
    """One mean image E[x|z, y] per label in ``y`` from a CVAE or an M2 (on the model's device)."""
    if isinstance(model, M2):
        return model.sample(len(y), y)
    return model.sample(y.to(model.classes.device))


def prior_name(model: CVAE | M2) -> str:
    """``p(z|y)`` for a CVAE's learned conditional prior, else ``p(z)``."""
    return "p(z|y)" if getattr(model, "conditional_prior", False) else "p(z)"


def save_run_plots(
    vae: VAE,
    rows: Sequence[dict[str, Any]],
    x_test: torch.Tensor,
    y_test: torch.Tensor | None,
    folder: str | Path,
    units: str = "nats",
    white: float = 1.0,
    seed: int = 0,
) -> list[Path]:
    """Write every figure of a run into ``folder``, ``white`` drawn white
    (:func:`white_of`); return the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    device = next(vae.parameters()).device
    if isinstance(vae, CVAE):
        return _save_cvae_plots(vae, rows, x_test, y_test, folder, units, white, seed)
    with isolated_rng(seed, device):
        if rows:
            plot_losses(rows, folder / "losses.png", units)
            written.append(folder / "losses.png")
        if plot_reconstructions(vae, x_test, folder / "reconstructions.png", white):
            written.append(folder / "reconstructions.png")
        if save_image_grid(vae.sample(64), folder / "samples.png", title="samples from the prior",
                           white=white):  # fmt: skip
            written.append(folder / "samples.png")
        n = min(len(x_test), 2000)
        plot_latent_scatter(vae, x_test[:n], None if y_test is None else y_test[:n],
                            folder / "latent.png")  # fmt: skip
        written.append(folder / "latent.png")
        if plot_manifold(vae, folder / "manifold.png", white=white):
            written.append(folder / "manifold.png")
    return written


def _save_cvae_plots(
    cvae: CVAE,
    rows: Sequence[dict[str, Any]],
    x_test: torch.Tensor,
    y_test: torch.Tensor | None,
    folder: Path,
    units: str,
    white: float,
    seed: int,
) -> list[Path]:
    """A CVAE run's figures: losses, reconstructions given the labels, class-conditional
    samples (one row per class) and E[z|x, y] coloured by label."""
    written = []
    with isolated_rng(seed, cvae.classes.device):
        if rows:
            plot_losses(rows, folder / "losses.png", units)
            written.append(folder / "losses.png")
        if y_test is not None and plot_reconstructions(
            cvae, x_test, folder / "reconstructions.png", white, y_test
        ):
            written.append(folder / "reconstructions.png")
        if plot_class_samples(cvae, folder / "samples.png", white=white):
            written.append(folder / "samples.png")
        if y_test is not None:
            n = min(len(x_test), 2000)
            plot_latent_scatter(cvae, x_test[:n], y_test[:n], folder / "latent.png")
            written.append(folder / "latent.png")
    return written
