"""Encoder and decoder networks: tensor-to-tensor bodies, chosen apart from prior and likelihood.

An encoder body maps ``x [..., *data_shape]`` to features ``[..., features]``; the
guide turns features into q(z|x). A decoder maps ``z [..., latent_dim]`` to
``[..., outputs]`` raw parameters, which the likelihood turns into p(x|z). Any
number of leading batch dimensions is allowed (particles, batch).

Example:
    >>> body, features = mlp_encoder((1, 28, 28), hidden=[400])
    >>> body(torch.zeros(8, 1, 28, 28)).shape, features
    (torch.Size([8, 400]), 400)
    >>> decoder = mlp_decoder(2, (1, 28, 28), hidden=[400], outputs=784)
    >>> decoder(torch.zeros(3, 8, 2)).shape
    torch.Size([3, 8, 784])
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import nn

from .data import data_max
from .errors import ConfigError

__all__ = [
    "mlp_encoder",
    "mlp_decoder",
    "conv_encoder",
    "conv_decoder",
    "with_input_transform",
    "input_transform",
    "SignedLog1p",
    "MLPBody",
    "ConvEncoderBody",
    "ConvDecoder",
    "Rescale",
    "ACTIVATIONS",
    "activation_unit",
    "check_sizes",
]


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
}


def activation_unit(name: str) -> nn.Module:
    """A fresh module of the hidden units ``name`` (a key of :data:`ACTIVATIONS`).

    Example:
        >>> activation_unit("softplus")
        Softplus(beta=1.0, threshold=20.0)
    """
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"activation: unknown name {name!r}; valid choices: {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name]()


def check_sizes(**sizes: object) -> None:
    """ConfigError naming the first argument that is not a size: ``latent_dim`` and
    ``num_classes`` take a positive int, the others (``data_shape``, ``hidden``,
    ``latent_dims``...) a non-empty sequence of them, so a builder never makes a
    zero-width layer or fails inside torch.

    Example:
        >>> check_sizes(data_shape=(1, 28, 28), latent_dim=2, hidden=[64])
        >>> check_sizes(data_shape=5)
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: data_shape: expected a sequence of positive ints, ...
    """
    for name, value in sizes.items():
        if name in ("latent_dim", "num_classes"):
            if not _is_size(value):
                raise ConfigError(f"{name}: expected a positive int, got {value!r}")
            continue
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            example = "(5,) for 5 features" if name == "data_shape" else "[400]"
            raise ConfigError(
                f"{name}: expected a sequence of positive ints, such as {example}; got {value!r}"
            )
        if not all(_is_size(v) for v in value):
            raise ConfigError(f"{name}: every size must be a positive int; got {list(value)!r}")


def _is_size(value: object) -> bool:
    """A positive int, a NumPy or torch integer included (a bool is not a size)."""
    if isinstance(value, bool):
        return False
    try:
        return operator.index(value) >= 1
    except TypeError:
        return False


def _mlp(sizes: Sequence[int], final_activation: bool, activation: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(activation_unit(activation))
    return nn.Sequential(*layers)


class MLPBody(nn.Module):
    """Flattens the trailing ``event_dims`` dimensions, then Linear layers, each followed by
    ``activation`` (a key of :data:`ACTIVATIONS`; none after the last without
    ``final_activation``)."""

    def __init__(
        self,
        sizes: Sequence[int],
        event_dims: int,
        final_activation: bool = True,
        activation: str = "relu",
    ):
        super().__init__()
        self.event_dims = event_dims
        self.layers = _mlp(sizes, final_activation, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(-self.event_dims) if self.event_dims > 1 else x)


class ConvEncoderBody(nn.Module):
    """Two stride-2 convolutions (28 -> 14 -> 7) and a Linear layer to ``features``, each
    followed by ``activation`` units."""

    def __init__(self, data_shape: Sequence[int], features: int, activation: str = "relu"):
        super().__init__()
        channels, height, width = _image_shape(data_shape)
        self.data_shape = tuple(data_shape)
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 4, stride=2, padding=1),
            activation_unit(activation),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            activation_unit(activation),
            nn.Flatten(),
            nn.Linear(64 * (height // 4) * (width // 4), features),
            activation_unit(activation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[: x.dim() - 3]
        out = self.conv(x.reshape(-1, *self.data_shape))
        return out.reshape(*batch, out.shape[-1])


class ConvDecoder(nn.Module):
    """Linear layers to a 64x7x7 map, then two stride-2 transposed convolutions to 28x28;
    ``activation`` units after every layer but the last."""

    def __init__(
        self,
        latent_dim: int,
        data_shape: Sequence[int],
        hidden: int,
        outputs: int,
        activation: str = "relu",
    ):
        super().__init__()
        channels, height, width = _image_shape(data_shape)
        if outputs % (height * width):
            raise ConfigError(
                f"conv decoder: {outputs} outputs do not tile {height}x{width} images"
            )
        self.out_channels = outputs // (height * width)
        self.grid = (64, height // 4, width // 4)
        self.linear = _mlp([latent_dim, hidden, math.prod(self.grid)], True, activation)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            activation_unit(activation),
            nn.ConvTranspose2d(32, self.out_channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[:-1]
        h = self.linear(z.reshape(-1, z.shape[-1])).reshape(-1, *self.grid)
        return self.deconv(h).reshape(*batch, -1)


def _image_shape(data_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(data_shape) != 3 or data_shape[1] % 4 or data_shape[2] % 4:
        raise ConfigError(
            f"network 'conv' needs images shaped [C, H, W] with H and W divisible by 4, "
            f"got data shape {tuple(data_shape)}; use --network mlp"
        )
    return data_shape[0], data_shape[1], data_shape[2]


class Rescale(nn.Module):
    """Multiplies its input by a constant: 8-bit levels enter the encoder as values in [0, 1].

    Example:
        >>> Rescale(1 / 255)(torch.tensor([0.0, 255.0]))
        tensor([0., 1.])
    """

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


def mlp_encoder(
    data_shape: Sequence[int], hidden: Sequence[int], activation: str = "relu"
) -> tuple[nn.Module, int]:
    """An MLP encoder body for data of ``data_shape`` with hidden layers of ``activation``
    units, and the number of features it outputs."""
    body = MLPBody([math.prod(data_shape), *hidden], len(data_shape), activation=activation)
    return body, hidden[-1]


def mlp_decoder(
    latent_dim: int,
    data_shape: Sequence[int],
    hidden: Sequence[int],
    outputs: int,
    activation: str = "relu",
) -> nn.Module:
    """An MLP decoder ``[..., latent_dim] -> [..., outputs]`` mirroring :func:`mlp_encoder`."""
    sizes = [latent_dim, *reversed(hidden), outputs]
    return MLPBody(sizes, event_dims=1, final_activation=False, activation=activation)


def conv_encoder(
    data_shape: Sequence[int], hidden: Sequence[int], activation: str = "relu"
) -> tuple[nn.Module, int]:
    """A convolutional encoder body for 28x28 images; ``hidden[-1]`` features."""
    return ConvEncoderBody(tuple(data_shape), hidden[-1], activation), hidden[-1]


def conv_decoder(
    latent_dim: int,
    data_shape: Sequence[int],
    hidden: Sequence[int],
    outputs: int,
    activation: str = "relu",
) -> nn.Module:
    """A transposed-convolution decoder for 28x28 images."""
    return ConvDecoder(latent_dim, tuple(data_shape), hidden[-1], outputs, activation)


class SignedLog1p(nn.Module):
    """``sign(x) log(1 + |x|)``: log1p of counts, defined for any real input (odd, C^1).

    Counts enter the encoder on this log scale, as scVI's encoder sees log1p of counts;
    VampPrior pseudo-inputs, which are free parameters, may go negative.

    Example:
        >>> SignedLog1p()(torch.tensor([0.0, 15.0, -15.0]))
        tensor([ 0.0000,  2.7726, -2.7726])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sign() * x.abs().log1p()


def input_transform(support: str) -> nn.Module | None:
    """What the built-in encoders apply first to data of ``support`` (None: nothing).

    8-bit levels are divided by 255, counts go through :class:`SignedLog1p`; data in
    [0, 1] and real values enter as they are.

    Example:
        >>> input_transform("levels"), input_transform("counts"), input_transform("binary")
        (Rescale(factor=0.00392157), SignedLog1p(), None)
    """
    if support == "counts":
        return SignedLog1p()
    largest = data_max(support)
    return None if largest == 1.0 else Rescale(1.0 / largest)


def with_input_transform(body: nn.Module, support: str) -> nn.Module:
    """``body`` preceded by :func:`input_transform` of ``support``."""
    transform = input_transform(support)
    return body if transform is None else nn.Sequential(transform, body)
