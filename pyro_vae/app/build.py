"""Build the model a Config names: the built-in VAE from its parts, or your own by import path.

Any part given as a keyword replaces the built-in; a part or a whole model named
``package.module:Name`` in the config is imported and called with its ``*_args``
(see :mod:`.imports`).

Example:
    >>> import torch, pyro.distributions as dist
    >>> class WidePrior(torch.nn.Module):
    ...     def forward(self):
    ...         return dist.Normal(torch.zeros(2), 3 * torch.ones(2)).to_event(1)
    >>> vae = build_vae(Config(latent_dim=2, hidden=[32]), (1, 28, 28), prior=WidePrior())
    >>> vae.prior().stddev
    tensor([3., 3.])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..convention import convention_of
from ..count_likelihoods import CountLikelihood, NegativeBinomialLikelihood, concentration_from_data
from ..data import data_max
from ..errors import ConfigError, DataError, ModelError
from ..families.cvae import CVAE, ConditionalNormalPrior, LabelledDecoder, LabelledEncoder
from ..likelihoods import LocationScaleLikelihood, scale_from_data
from ..missing import MissingInput
from ..networks import MLPBody, input_transform, with_input_transform
from ..parts import likelihood_contract
from ..priors import VampPrior
from ..standardize import Standardize, is_table, standardization_from_data
from ..vae import VAE
from .config import Config
from .imports import call_with_accepted, import_object, is_import_path
from .registry import GUIDES, LIKELIHOODS, NETWORKS, PRIORS

__all__ = [
    "build_model",
    "build_vae",
    "build_cvae",
    "build_likelihood",
    "build_encoder",
    "encoder_body",
    "build_guide",
    "build_decoder",
    "build_prior",
    "start_likelihood_from_data",
    "start_location_from_data",
    "standardizes",
    "encoder_input",
]


def build_model(
    cfg: Config, data_shape: tuple[int, ...], num_classes: int | None = None
) -> nn.Module:
    """The model ``cfg.model`` names: the built-in VAE, or a user factory's module.

    ``num_classes`` is the data's count of labels (None without labels); ``cfg.num_classes``,
    when set, takes its place. A factory named by import path gets ``model_args`` plus
    whichever of ``data_shape``, ``latent_dim``, ``hidden`` and ``num_classes`` its
    signature names; the module it returns must follow :mod:`pyro_vae.convention`
    (``model``/``guide`` methods).
    """
    if cfg.model == "cvae":
        return build_cvae(cfg, data_shape, _classes(cfg, num_classes))
    if cfg.model == "m2":
        from .m2 import build_m2  # it builds its parts with this module's functions

        return build_m2(cfg, data_shape, _classes(cfg, num_classes))
    if not is_import_path(cfg.model):
        return build_vae(cfg, data_shape)  # several latent_dim: the stacked VAE
    factory = import_object(cfg.model, "model")
    standard = {
        "data_shape": tuple(data_shape),
        "latent_dim": cfg.latent_dim,
        "hidden": list(cfg.hidden),
        "num_classes": _classes(cfg, num_classes),
    }
    model = call_with_accepted(factory, "model", standard, cfg.model_args)
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model: {cfg.model} returned a {type(model).__name__}, not an nn.Module with "
            "model() and guide() methods"
        )
    convention_of(model)
    return model


def _classes(cfg: Config, found: int | None) -> int | None:
    """The number of classes: ``cfg.num_classes`` when set (at least the labels found), else
    the count found in the data's labels."""
    if not cfg.num_classes:
        return found
    if found is not None and found > cfg.num_classes:
        raise DataError(
            f"num_classes: {cfg.num_classes}, but the data's labels run to {found - 1}; set "
            f"num_classes = {found} or more (or 0 to count them)"
        )
    return cfg.num_classes


def build_cvae(cfg: Config, data_shape: tuple[int, ...], num_classes: int | None) -> CVAE:
    """The conditional VAE from the parts named in ``cfg``, for ``num_classes`` labels.

    The label joins the encoder network's features (so any guide and network serve) and the
    decoder's input; the prior is ``cfg.prior``, or a learned p(z|y) with
    ``cfg.conditional_prior``.
    """
    if not num_classes:
        raise DataError(
            "model cvae conditions on labels y, but the dataset has none; use a dataset with "
            "labels (mnist5k, mnist, fashion-mnist, or an .npz with an array y)"
        )
    data_shape = tuple(data_shape)
    likelihood = build_likelihood(cfg, data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    largest = data_max(contract.support)
    body, features = encoder_body(cfg, data_shape, contract.support)
    guide = build_guide(cfg, nn.Identity(), features + num_classes, data_shape)
    encoder = LabelledEncoder(body, guide)
    outputs = contract.num_outputs or math.prod(data_shape)
    network = NETWORKS[cfg.network].decoder(
        cfg.latent_dim + num_classes, data_shape, list(cfg.hidden), outputs, cfg.activation
    )
    if cfg.conditional_prior:
        prior = ConditionalNormalPrior(num_classes, cfg.latent_dim)
    else:
        prior = build_prior(cfg, encoder, data_shape, largest)
    decoder = LabelledDecoder(network)
    return CVAE(encoder, decoder, prior, likelihood, num_classes, data_shape=data_shape)


def build_vae(
    cfg: Config,
    data_shape: tuple[int, ...],
    *,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    prior: nn.Module | None = None,
    likelihood: nn.Module | None = None,
) -> VAE:
    """A :class:`VAE` for data of ``data_shape`` from the parts named in ``cfg`` (a
    :class:`~pyro_vae.families.StackedVAE` when ``cfg.latent_dim`` lists several layers).

    The built-in encoder sees the data through :func:`pyro_vae.networks.input_transform` of
    the likelihood's support (8-bit levels divided by 255, counts as log(1 + x)); the
    VampPrior gets the encoder. A likelihood's ``num_outputs`` sets the
    decoder's width (see :class:`pyro_vae.parts.Likelihood`).
    """
    data_shape = tuple(data_shape)
    if len(cfg.latent_dims) > 1:
        if encoder is not None or decoder is not None:
            raise ConfigError(
                f"latent_dim {cfg.latent_dim} stacks layers, whose encoder and decoder are built "
                "with the layers between them; build a StackedVAE from parts instead"
            )
        from .stacked import build_stacked_vae  # it builds its parts with this module

        return build_stacked_vae(cfg, data_shape, prior=prior, likelihood=likelihood)
    if likelihood is None:
        likelihood = build_likelihood(cfg, data_shape)
    contract = likelihood_contract(likelihood, data_shape)
    largest = data_max(contract.support)
    if encoder is None:
        encoder = build_encoder(cfg, data_shape, contract.support)
    if decoder is None:
        decoder = build_decoder(cfg, data_shape, contract.num_outputs or math.prod(data_shape))
    if prior is None:
        prior = build_prior(cfg, encoder, data_shape, largest)
    if isinstance(prior, VampPrior) and prior.encoder is not encoder:
        raise ConfigError(
            "the VampPrior holds another encoder than this VAE's: its components would not be "
            "this model's posteriors and that encoder would not train; build it with "
            "VampPrior(encoder, ...) and pass the same encoder=encoder"
        )
    return VAE(encoder, decoder, prior, likelihood, data_shape=data_shape)


def build_likelihood(cfg: Config, data_shape: tuple[int, ...]) -> nn.Module:
    """The likelihood ``cfg.likelihood`` for data of ``data_shape``."""
    if is_import_path(cfg.likelihood):
        cls = import_object(cfg.likelihood, "likelihood")
        standard = {"data_shape": tuple(data_shape)}
        return call_with_accepted(cls, "likelihood", standard, cfg.likelihood_args)
    return LIKELIHOODS[cfg.likelihood].build(cfg, data_shape)


def start_likelihood_from_data(cfg: Config, model: nn.Module, x: torch.Tensor) -> Config:
    """Start the built-in likelihood of ``model`` (built from ``cfg``) where independent
    per-feature distributions of the training data ``x`` are: the location of gaussian and
    laplace, and the mean of the count likelihoods, at the features' means
    (:func:`start_location_from_data`); a gaussian or laplace scale, when
    ``cfg.likelihood_scale_value`` is 0, at the spread of the observed entries about each
    feature's mean, per pixel for a per-pixel scale (see
    :func:`~pyro_vae.likelihoods.scale_from_data`); and the negative binomial's (and
    zinb's) concentration at its moment estimate per feature
    (:func:`~pyro_vae.count_likelihoods.concentration_from_data`). Returns ``cfg``, with a
    fixed scale's value filled in: a checkpoint holds learned scales but not a fixed one,
    which the run's config must therefore name to rebuild the model.

    With ``cfg.standardize`` on a table (see :func:`standardizes`) every
    :class:`~pyro_vae.standardize.Standardize` of the model (the encoder's input, the
    likelihood's units) first takes each feature's training mean and standard deviation
    (:func:`~pyro_vae.standardize.standardization_from_data`), and the starts above are
    taken on the standardized data: the location at 0 and the scale near 1, in those units.

    A config with a scale value (an old run's 0.1 included) keeps it; so do models given by
    import path, whose parts are their own.
    """
    if is_import_path(cfg.model) or is_import_path(cfg.likelihood):
        return cfg
    if standardizes(cfg, tuple(x.shape[1:])):
        mean, std = standardization_from_data(x)
        for part in model.modules():
            if isinstance(part, Standardize):
                part.set(mean.to(part.mean), std.to(part.std))
        x = (x - mean.to(x)) / std.to(x)
    start_location_from_data(model, x)
    for part in model.modules():
        if isinstance(part, NegativeBinomialLikelihood):
            part.set_concentration(concentration_from_data(x).to(part.log_concentration))
    if cfg.likelihood_scale_value:
        return cfg
    if "likelihood_scale_value" not in LIKELIHOODS[cfg.likelihood].options:
        return cfg
    value: float | torch.Tensor = scale_from_data(x, per_pixel=cfg.likelihood_scale == "per-pixel")
    if cfg.likelihood_scale == "fixed":
        value = float(value)
        cfg = cfg.replace(likelihood_scale_value=value)
    for part in model.modules():
        if isinstance(part, LocationScaleLikelihood):
            part.set_scale(value)
    return cfg


@torch.no_grad()
def start_location_from_data(model: nn.Module, x: torch.Tensor) -> bool:
    """Start the location that a built-in MLP decoder gives a gaussian or laplace likelihood,
    or the mean it gives a count likelihood, at each feature's mean over the observed
    training entries of ``x`` (``[N, *data_shape]``), through the bias of its last layer
    (for counts, the raw output whose softplus is that mean; a zinb's decoded gates at its
    ``gate_logit``): before training, the model then scores data about as independent per-feature
    distributions do, whatever the data's offsets (a decoder starting near 0 spent its
    first epochs, or all of them, moving to a table's means). Returns whether it did: not
    for a conv decoder, a model of one's own, or another likelihood.

    Example:
        >>> vae = build_vae(Config(likelihood="gaussian", hidden=[8], latent_dim=2), (2,))
        >>> start_location_from_data(vae, torch.tensor([[5.0, -3.0], [7.0, float("nan")]]))
        True
        >>> vae.decoder.layers[-1].bias.detach()
        tensor([ 6., -3.])
    """
    decoder = getattr(model, "decoder", None)
    body = getattr(decoder, "network", decoder)  # the cvae's and m2's join the label first
    likelihood = getattr(model, "likelihood", None)
    if not isinstance(likelihood, (LocationScaleLikelihood, CountLikelihood)):
        return False
    if not isinstance(body, MLPBody) or not isinstance(body.layers[-1], nn.Linear):
        return False
    last = body.layers[-1]
    features = math.prod(x.shape[1:])
    if last.bias is None or last.out_features != likelihood.num_outputs:
        return False
    mean = x.detach().float().flatten(1).nanmean(0).nan_to_num(0.0)
    if isinstance(likelihood, CountLikelihood):
        mean = likelihood.raw_for_mean(mean)
    last.bias[:features].copy_(mean.to(last.bias))
    if last.out_features > features:  # a zinb's decoded gates follow the means
        last.bias[features:].fill_(likelihood.gate_logit)
    return True


def build_encoder(cfg: Config, data_shape: tuple[int, ...], support: str = "real") -> nn.Module:
    """The guide ``cfg.guide`` on the network body ``cfg.network``, for data of ``support``.

    A guide by import path gets ``guide_args`` and whichever of ``body``, ``features``,
    ``latent_dim`` and ``data_shape`` its signature names.
    """
    body, features = encoder_body(cfg, data_shape, support)
    return build_guide(cfg, body, features, data_shape)


def encoder_body(
    cfg: Config, data_shape: tuple[int, ...], support: str = "real"
) -> tuple[nn.Module, int]:
    """The network ``cfg.network`` of ``cfg.activation`` units after the input transform of
    ``support``, and its width.

    With ``cfg.encoder_mask`` the transformed data pass through
    :class:`~pyro_vae.missing.MissingInput` (missing entries as 0, the observed mask
    appended along the first data dimension) into a network built for twice as many
    channels (or features).

    With ``cfg.standardize`` and a real-valued table it is the same with a
    :class:`~pyro_vae.standardize.Standardize` first and the missing entries (NaN) filled after
    it, at 0: each feature's training mean (see :func:`encoder_input`).
    """
    data_shape = tuple(data_shape)
    standardized = support == "real" and standardizes(cfg, data_shape)
    if not cfg.encoder_mask and not standardized:
        body, features = NETWORKS[cfg.network].encoder(data_shape, list(cfg.hidden), cfg.activation)
        return with_input_transform(body, support), features
    shape = (2 * data_shape[0], *data_shape[1:]) if cfg.encoder_mask else data_shape
    body, features = NETWORKS[cfg.network].encoder(shape, list(cfg.hidden), cfg.activation)
    layers = [MissingInput(with_mask=cfg.encoder_mask, data_dims=len(data_shape)), body]
    transform = Standardize(data_shape) if standardized else input_transform(support)
    return nn.Sequential(*([transform] if transform is not None else []), *layers), features


def standardizes(cfg: Config, data_shape: tuple[int, ...]) -> bool:
    """Whether ``cfg`` builds a model that standardizes each feature of data of
    ``data_shape``: ``cfg.standardize`` with a built-in likelihood that reads it (gaussian,
    laplace) on a table (see :func:`~pyro_vae.standardize.is_table`).

    Example:
        >>> gaussian = Config(likelihood="gaussian")
        >>> standardizes(gaussian, (13,)), standardizes(gaussian, (1, 28, 28))
        (True, False)
    """
    if not cfg.standardize or is_import_path(cfg.likelihood) or not is_table(data_shape):
        return False
    return "standardize" in LIKELIHOODS[cfg.likelihood].options


def encoder_input(
    cfg: Config, body: nn.Module, data_shape: tuple[int, ...], support: str
) -> nn.Module:
    """``body`` after what a built-in network sees first: a
    :class:`~pyro_vae.standardize.Standardize` when :func:`standardizes` and the data are
    real, else the support's :func:`~pyro_vae.networks.input_transform` (m2's classifier and
    encoder, which take no missing entries)."""
    if support == "real" and standardizes(cfg, data_shape):
        return nn.Sequential(Standardize(tuple(data_shape)), body)
    return with_input_transform(body, support)


def build_guide(
    cfg: Config, body: nn.Module, features: int, data_shape: tuple[int, ...]
) -> nn.Module:
    """The guide ``cfg.guide`` on ``body``, whose output has ``features`` numbers."""
    if is_import_path(cfg.guide):
        standard = {
            "body": body,
            "features": features,
            "latent_dim": cfg.latent_dim,
            "data_shape": tuple(data_shape),
        }
        return call_with_accepted(
            import_object(cfg.guide, "guide"), "guide", standard, cfg.guide_args
        )
    return GUIDES[cfg.guide].build(cfg, body, features)


def build_decoder(cfg: Config, data_shape: tuple[int, ...], outputs: int) -> nn.Module:
    """The decoder network ``cfg.network`` of ``cfg.activation`` units with ``outputs`` numbers
    per datapoint."""
    network = NETWORKS[cfg.network]
    return network.decoder(cfg.latent_dim, data_shape, list(cfg.hidden), outputs, cfg.activation)


def build_prior(
    cfg: Config, encoder: nn.Module, data_shape: tuple[int, ...], data_max: float = 1.0
) -> nn.Module:
    """The prior ``cfg.prior``; the VampPrior gets ``encoder`` and ``data_max``.

    A prior by import path gets ``prior_args`` and whichever of ``latent_dim``,
    ``encoder``, ``data_shape`` and ``data_max`` its signature names.
    """
    if is_import_path(cfg.prior):
        standard = {
            "latent_dim": cfg.latent_dim,
            "encoder": encoder,
            "data_shape": tuple(data_shape),
            "data_max": data_max,
        }
        return call_with_accepted(
            import_object(cfg.prior, "prior"), "prior", standard, cfg.prior_args
        )
    return PRIORS[cfg.prior].build(cfg, encoder, data_shape, data_max)
