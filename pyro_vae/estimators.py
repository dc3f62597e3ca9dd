"""Estimators on held-out data: ELBO, importance-sampled log p(x), KL, active units.

:func:`evaluate_vae` scores any :class:`~pyro_vae.VAE` on a tensor (the application's
:func:`pyro_vae.app.evaluate.evaluate` does the same for a run folder).

log p(x) is estimated per datapoint by importance sampling with K draws from the
guide, log p(x) ~ log (1/K) sum_k p(x, z_k) / q(z_k|x) (the IWAE bound with K
particles; Burda et al. 2016). Particles and datapoints are processed in chunks of at
most ``max_samples`` decoded samples, with a streaming logsumexp, so memory stays
bounded whatever K and the dataset size. Everything runs on its own seeded RNG.

Chunks of datapoints draw their noise from streams keyed by (seed, chunk index),
so a result does not depend on how the chunks are shared out: evaluated across
several ranks (each takes every world_size-th chunk, then the sums are reduced)
it equals the single-process number: pass a :class:`Shard` saying which process this
is and how to add tensors across processes.

Example:
    >>> from pyro_vae import mlp_vae
    >>> vae = mlp_vae((1, 28, 28), latent_dim=2, hidden=[16])
    >>> x = torch.bernoulli(torch.full((10, 1, 28, 28), 0.5))
    >>> bool(-600 < elbo_per_datapoint(vae, x, seed=0) < -500)   # untrained: about 784 log(1/2)
    True
    >>> result = evaluate_vae(vae, x, k=50)
    >>> result.log_px >= result.elbo, result.active_units <= 2
    (True, True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyro
import torch
from pyro.infer import Trace_ELBO
from torch import nn
from torch.distributions import Distribution, Independent, kl_divergence

from .convention import GuideCall, ModelCall, convention_of, data_support, standard_vae
from .data import check_support
from .errors import ConfigError, ModelError
from .families.m2 import standard_m2
from .missing import handles_missing, has_missing
from .objectives.traces import traced_log_weights
from .parts import likelihood_contract
from .rng import isolated_rng, release_freed_memory
from .vae import VAE, AmortizedModel, _moments, as_model_input, count

__all__ = [
    "elbo_per_datapoint",
    "chunk_rng",
    "Evaluation",
    "evaluate_vae",
    "Shard",
    "ACTIVE_UNIT_THRESHOLD",
    "MAX_SAMPLES",
    "MAX_DECODED_VALUES",
]

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: unit d is active if Cov_x(E_q[z_d]) > 0.01
# Particles x datapoints decoded at once. Small enough that a chunk's decoder outputs
# stay in cache for the elementwise likelihood passes (measured on 2 CPU cores:
# 2,000 gives 1.6x the throughput of 10,000; see experiments/RESULTS.md).
MAX_SAMPLES = 2_000
# Decoder outputs of a chunk at the most: bounds memory where one sample decodes to many
# numbers (categorical-256: 200,704 logits per image, 40 samples a chunk, where 2,000
# samples peaked at 4 GiB and ran slower).
MAX_DECODED_VALUES = 8_000_000
TRIM_EVERY = 16  # chunks between handing freed memory back to the OS


@dataclass(frozen=True)
class Shard:
    """This process's share of the chunks: every ``world_size``-th from ``rank``.

    ``all_reduce`` adds a tensor over the processes in place (None: one process).
    """

    rank: int = 0
    world_size: int = 1
    all_reduce: Callable[[torch.Tensor], Any] | None = None

    def reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.all_reduce is not None:
            self.all_reduce(tensor)
        return tensor


def chunk_rng(seed: int | None, chunk: int, device: torch.device):
    """The random stream of one evaluation chunk (the caller's stream when seed is None)."""
    if seed is None:
        return contextlib.nullcontext()
    return isolated_rng(seed * 1_000_003 + chunk, device)


def _decoded_per_sample(vae: VAE, x: torch.Tensor) -> int:
    """How many numbers the decoder outputs for one latent sample (no random draws)."""
    return vae.outputs_per_sample(x.device)


def chunk_plan(
    n: int, k: int, max_samples: int, batch_size: int, per_sample: int = 1
) -> tuple[int, int]:
    """(datapoints per chunk, particles per pass): at most ``max_samples`` latent samples a
    pass, each decoding ``per_sample`` times (M2: once per class), ``k`` per datapoint.

    Example: ``chunk_plan(n=500, k=1000, max_samples=20_000, batch_size=1000)`` is ``(20, 1000)``.
    """
    points = max(1, min(batch_size, max_samples // (k * per_sample), n))
    return points, max(1, max_samples // (points * per_sample))


def decoding_cap(max_samples: int, decoded: int, floor: int = 1) -> int:
    """``max_samples`` lowered so a pass decodes at most ``MAX_DECODED_VALUES`` numbers."""
    return max(floor, min(max_samples, MAX_DECODED_VALUES // max(1, decoded)))


def _labels(model: nn.Module, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``{"y": y}`` for a model that takes labels (ModelError when there are none), else ``{}``."""
    if not convention_of(model).takes_labels:
        return {}
    if y is None:
        raise ModelError(
            f"{type(model).__name__} conditions on labels y but none were given: pass y "
            "(class indices, one per datapoint)"
        )
    return {"y": y}


@torch.no_grad()
def elbo_per_datapoint(
    vae: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1000,
    num_particles: int = 1,
    seed: int | None = None,
    shard: Shard | None = None,
    y: torch.Tensor | None = None,
) -> float:
    """The Monte Carlo ELBO averaged over the datapoints of ``x`` (nats per datapoint).

    ``batch_size`` datapoints a chunk, fewer where they would decode to over
    ``MAX_DECODED_VALUES`` numbers. A model other than a standard VAE (any model that
    follows :mod:`pyro_vae.convention`, labels ``y`` included) is scored through
    Pyro's traces (Trace_ELBO); its global sites count once per chunk.
    """
    shard = shard or Shard()
    x = as_model_input(vae, x)
    num_particles = count(num_particles, "num_particles")
    batch_size = count(batch_size, "batch_size")
    if len(x) < 1:
        raise ConfigError("the ELBO needs at least one datapoint; x is empty")
    check_scorable(vae, x)
    if standard_m2(vae) is not None:  # y is summed out: the ELBO of log p(x)
        from .semisupervised import m2_elbo_per_datapoint

        return m2_elbo_per_datapoint(vae, x, batch_size, num_particles, seed, shard)
    fast = _fast_vae(vae)
    if fast is not None:
        labels = _labels(fast, y)
        decoded = _decoded_per_sample(fast, x) * num_particles
        batch_size = max(1, min(batch_size, MAX_DECODED_VALUES // decoded))
    else:
        model, guide, elbo = ModelCall(vae), GuideCall(vae), Trace_ELBO(num_particles)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for chunk, start in enumerate(range(0, len(x), batch_size)):
        if chunk % shard.world_size != shard.rank:
            continue
        batch = x[start : start + batch_size]
        with chunk_rng(seed, chunk, x.device):
            if fast is not None:
                chunk_labels = {k: v[start : start + batch_size] for k, v in labels.items()}
                log_w = fast.log_weights(batch, num_particles, **chunk_labels).log_w
                total += log_w.mean(0).sum().double()
            else:
                chunk_y = None if y is None else y[start : start + batch_size]
                total -= elbo.loss(model, guide, batch, None, 1.0, chunk_y)
    return float(shard.reduce(total)) / len(x)


def check_scorable(model: nn.Module, x: torch.Tensor) -> None:
    """Refuse data the model's likelihood cannot score, in one line naming the fix: missing
    (NaN) entries for a model that scores every entry, and observed values outside the
    likelihood's declared support (grey pixels for a Bernoulli, 0 or 1 for a Beta), which
    would otherwise fail deep in torch's validation or score as NaN.

    Example:
        >>> from pyro_vae import mlp_vae
        >>> check_scorable(mlp_vae((1, 2, 2), 2, [4]), torch.full((3, 1, 2, 2), 0.5))
        Traceback (most recent call last):
        ...
        pyro_vae.errors.DataError: likelihood 'BernoulliLikelihood' needs binary pixels but ...
    """
    if not handles_missing(model) and has_missing(x):
        raise ModelError(
            "x holds missing (NaN) entries but the model scores every entry: call "
            "pyro_vae.missing.allow_missing(model) first, to score log p(x_obs)"
        )
    if torch.is_tensor(x) and x.numel() and (x.is_floating_point() or x.dtype == torch.bool):
        likelihood = getattr(model, "likelihood", model)
        check_support(x, "x", "", data_support(model), type(likelihood).__name__)


def _fast_vae(model: nn.Module) -> VAE | None:
    """A VAE whose per-datapoint terms come from its parts (``log_weights``), else None."""
    return standard_vae(model)


@dataclass
class Evaluation:
    """The scores of a VAE on a dataset; every log-quantity is per datapoint, in ``units``.

    ``log_px_se`` is the standard error of the mean over datapoints (how much the
    number would move on another test set; None, undefined, for one datapoint, as is
    ``elbo_se``); ``log_px_mc_se`` the Monte Carlo standard
    error of the importance-sampling estimate for these datapoints (delta method on the
    weights). ``kl_per_dim`` is None where q or p does not factorize over dimensions
    (``kl_per_dim_note`` says why). ``bits_per_dim`` is set for 8-bit likelihoods only.
    A model scored through Pyro's traces (not a standard VAE) has no reconstruction/KL
    split and no active units: those fields are None.
    """

    num_datapoints: int
    k: int
    log_px: float
    log_px_se: float | None
    log_px_mc_se: float
    elbo: float
    elbo_se: float | None
    reconstruction: float | None
    kl: float | None
    kl_per_dim: list[float] | None
    kl_per_dim_method: str
    kl_per_dim_note: str
    active_units: int | None
    latent_dim: int | None
    posterior_mean_variance: list[float] | None
    ess_fraction: float
    scale: str
    units: str
    num_dims: int
    bits_per_dim: float | None
    elbo_bits_per_dim: float | None
    seed: int
    data: str = ""
    conditional: bool = False  # scored given labels y: log p(x|y) and the conditional ELBO
    log_px_per_datapoint: torch.Tensor = field(default_factory=lambda: torch.zeros(0), repr=False)
    accuracy: float | None = None  # a classifier's (M2's q(y|x)) accuracy on labelled data
    confusion: list[list[int]] | None = None  # its counts: rows true label, columns predicted
    active_units_per_layer: list[int] | None = None  # stacked layers, bottom first
    latent_dims: list[int] | None = None  # the stacked layers' widths, bottom first
    missing_fraction: float = 0.0  # entries missing (NaN): log p(x) is then log p(x_obs)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("log_px_per_datapoint")
        return values

    def table(self) -> str:
        """The scores as a small aligned table."""
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def rows(self) -> list[tuple[str, str]]:
        """The rows of :meth:`table`: (name, value in words)."""
        u = self.units
        plain = u.split(" (")[0]  # a KL or a gap is a difference: nats, never a "density"
        px, elbo = ("log p(x|y)", "conditional ELBO") if self.conditional else ("log p(x)", "ELBO")
        if self.missing_fraction:  # scored over the observed entries alone
            px = px.replace("x", "x_obs", 1)
        rows = [
            (
                "data",
                self.data or f"{self.num_datapoints} datapoint{'s' * (self.num_datapoints != 1)}",
            ),
            ("importance samples K", f"{self.k}"),
            (
                px,
                f"{self.log_px:.2f} {u}  (+/- {_shown_se(self.log_px_se)} over datapoints, "
                f"+/- {self.log_px_mc_se:.3f} Monte Carlo)",
            ),  # fmt: skip
            (elbo, f"{self.elbo:.2f} {u}  (+/- {_shown_se(self.elbo_se)})"),
        ]
        if self.reconstruction is not None and self.kl is not None:
            rows += [
                ("  reconstruction", f"{self.reconstruction:.2f} {u}"),
                ("  KL", f"{self.kl:.2f} {plain}"),
            ]
        rows.append((f"gap {px} - ELBO", f"{self.log_px - self.elbo:.2f} {plain}"))
        if self.active_units is not None:
            rows.append(
                (
                    "active units",
                    f"{self.active_units} / {self.latent_dim} "
                    f"(Cov_x E_q[z_d] > {ACTIVE_UNIT_THRESHOLD})",
                )
            )
        if self.active_units_per_layer is not None and self.latent_dims is not None:
            pairs = zip(self.active_units_per_layer, self.latent_dims, strict=True)
            layers = ", ".join(f"z{i + 1}: {a} / {d}" for i, (a, d) in enumerate(pairs))
            rows.append(("  per layer", layers))
        rows.append(("effective sample size", f"{100 * self.ess_fraction:.1f}% of K"))
        if self.accuracy is not None:
            rows.append(("classifier accuracy q(y|x)", f"{100 * self.accuracy:.2f}%"))
        if self.bits_per_dim is not None:
            rows.append(
                ("bits per dim", f"{self.bits_per_dim:.4f} (ELBO: {self.elbo_bits_per_dim:.4f})")
            )
        if self.kl_per_dim is not None:
            values = " ".join(f"{v:.2f}" for v in self.kl_per_dim)
            rows.append((f"KL per dim ({self.kl_per_dim_method})", values))
        else:
            rows.append(("KL per dim", self.kl_per_dim_note))
        if self.scale == "continuous":
            rows.append(("note", "log-densities: may be positive, never ranked against masses"))
        return rows


def _shown_se(se: float | None) -> str:
    """A standard error over datapoints for the table: ``n/a`` where it is undefined."""
    return "n/a" if se is None else f"{se:.2f}"


def _factorized(d: Distribution) -> bool:
    return isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1


def _kl_per_dim_method(
    q: Distribution | None, p: Distribution | None
) -> tuple[str, str, torch.Tensor | None]:
    """("analytic" | "monte-carlo" | "none", note, the analytic KL per datapoint and dimension
    where there is one) for the per-dimension KL of this pair."""
    if q is None or p is None:  # a StackedVAE: no single q(z|x), p(z) pair
        note = "not defined: the latents are stacked layers (see active units per layer)"
        return "none", note, None
    for role, d in (("the guide q(z|x)", q), ("the prior p(z)", p)):
        if not _factorized(d):
            return "none", (
                f"not defined: {role} ({type(d).__name__}) does not factorize over latent "
                "dimensions"
            ), None  # fmt: skip
    try:
        return "analytic", "", kl_divergence(q.base_dist, p.base_dist)
    except NotImplementedError:
        return "monte-carlo", "", None


IMPORTANCE_SUMS = ("log_px", "log_px_sq", "mc_var", "ess", "elbo", "elbo_sq")


class _Sums:
    """Running sums over datapoints, in float64."""

    def __init__(self):
        self.values: dict[str, torch.Tensor] = {}

    @classmethod
    def zeros(cls, names: tuple[str, ...], device: torch.device) -> _Sums:
        """Scalar sums, all zero (a rank that scores no chunk still reduces every name)."""
        sums = cls()
        sums.values = {n: torch.zeros((), dtype=torch.float64, device=device) for n in names}
        return sums

    def add_importance(
        self, lse: torch.Tensor, lse2: torch.Tensor, elbo: torch.Tensor, k: int
    ) -> torch.Tensor:
        """Add one chunk's importance-sampling sums; return its log p(x) per datapoint.

        ``lse`` and ``lse2`` are logsumexp over the k particles of log w and of 2 log w.
        """
        log_px = lse - math.log(k)
        self.add("log_px", log_px)
        self.add("log_px_sq", log_px**2)
        self.add("mc_var", ((lse2 - 2 * lse).exp() - 1.0 / k).clamp(min=0))
        self.add("ess", (2 * lse - lse2).exp() / k)
        self.add("elbo", elbo)
        self.add("elbo_sq", elbo**2)
        return log_px

    def mean(self, name: str, n: int) -> float:
        return float(self[name]) / n

    def std_error(self, name: str, n: int) -> float | None:
        """Standard error over the n datapoints of the mean of ``name``; None (undefined:
        no spread to estimate) for one datapoint."""
        if n < 2:
            return None
        variance = (float(self[f"{name}_sq"]) - float(self[name]) ** 2 / n) / (n - 1)
        return math.sqrt(max(variance, 0.0) / n)

    def importance_fields(
        self, model: nn.Module, x: torch.Tensor, k: int, seed: int, log_px: torch.Tensor
    ) -> dict[str, Any]:
        """The :class:`Evaluation` fields every path computes alike from these sums."""
        n = len(x)
        scale, units = units_of(model)
        num_dims = math.prod(x.shape[1:])
        mean_log_px, mean_elbo = self.mean("log_px", n), self.mean("elbo", n)

        def bits(value: float) -> float | None:
            return -value / (num_dims * math.log(2)) if scale == "8-bit" else None

        return {
            "num_datapoints": n,
            "k": k,
            "log_px": mean_log_px,
            "log_px_se": self.std_error("log_px", n),
            "log_px_mc_se": math.sqrt(max(float(self["mc_var"]), 0.0)) / n,
            "elbo": mean_elbo,
            "elbo_se": self.std_error("elbo", n),
            "ess_fraction": self.mean("ess", n),
            "scale": scale,
            "units": units,
            "num_dims": num_dims,
            "bits_per_dim": bits(mean_log_px),
            "elbo_bits_per_dim": bits(mean_elbo),
            "seed": seed,
            "log_px_per_datapoint": log_px.float().cpu(),
        }

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.double().sum(0)
        self.values[name] = self.values[name] + value if name in self.values else value

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values[name]

    def zeroed(self) -> _Sums:
        """Sums with the same names and shapes, all zero."""
        zeros = _Sums()
        zeros.values = {name: torch.zeros_like(value) for name, value in self.values.items()}
        return zeros

    def reduce(self, shard: Shard) -> None:
        for name in sorted(self.values):  # the same order on every rank
            shard.reduce(self.values[name])


@torch.no_grad()
def evaluate_vae(
    vae: nn.Module,
    x: torch.Tensor,
    k: int = 5000,
    *,
    seed: int = 0,
    max_samples: int = MAX_SAMPLES,
    batch_size: int = 500,
    shard: Shard | None = None,
    y: torch.Tensor | None = None,
    progress: Callable[[int], Any] | None = None,
) -> Evaluation:
    """Score ``vae`` on the datapoints ``x`` with ``k`` importance samples per datapoint.

    Any model that follows :mod:`pyro_vae.convention` (labels ``y`` included) is scored
    too: a standard VAE from its parts, any other through Pyro's traces, which needs every
    sample site inside ``pyro.plate("data")`` (else ModelError says which is not).

    At most ``max_samples`` particles x datapoints are decoded at once, fewer where
    they would decode to over ``MAX_DECODED_VALUES`` numbers (``batch_size`` caps the
    datapoints per chunk), whatever ``k`` and ``len(x)``. Each chunk draws
    from its own seeded stream, so with a ``shard`` of several processes they score every
    world-size-th chunk and the reduced result is that of one process. ``progress`` is
    called with the number of datapoints of each chunk this process finishes.
    """
    progress = progress or _no_progress
    x = as_model_input(vae, x)
    k, batch_size = count(k, "k"), count(batch_size, "batch_size")
    if len(x) < 1:
        raise ConfigError("evaluation needs at least one datapoint; x is empty")
    shard = shard or Shard()
    check_scorable(vae, x)
    if isinstance(vae, AmortizedModel):  # a shape that does not fit is named whole, not a chunk's
        x = vae.shaped(x)
    if standard_m2(vae) is not None:  # log p(x) with y summed out, and the classifier
        from .semisupervised import evaluate_m2

        return evaluate_m2(
            vae, x, k, seed=seed, max_samples=max_samples, batch_size=batch_size, shard=shard, y=y,
            progress=progress,
        )  # fmt: skip
    if _fast_vae(vae) is None:
        result = _evaluate_traced(vae, x, y, k, seed, max_samples, batch_size, shard, progress)
        result.conditional = y is not None and convention_of(vae).takes_labels
        return result
    labels = _labels(vae, y)
    was_training = vae.training
    vae.eval()
    with isolated_rng(seed, x.device):  # names, shapes and KL method, on every rank alike
        template = _Sums()
        first = {name: v[:1] for name, v in labels.items()}
        method, note = _score_chunk(vae, x[:1], first, 1, 1, template)[1:]
    max_samples = decoding_cap(max_samples, _decoded_per_sample(vae, x))
    points, particles = chunk_plan(len(x), k, max_samples, batch_size)
    sums = template.zeroed()
    log_px = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for index, start in enumerate(range(0, len(x), points)):
        if index % shard.world_size != shard.rank:
            continue
        # the data were checked against the support when prepared: validate the first chunk
        validate = index == 0 and pyro.distributions.is_validation_enabled()
        with chunk_rng(seed, index, x.device), pyro.validation_enabled(validate):
            chunk = x[start : start + points]
            chunk_labels = {name: v[start : start + points] for name, v in labels.items()}
            scores = _score_chunk(vae, chunk, chunk_labels, k, particles, sums)
            log_px[start : start + points] = scores[0]
        progress(len(chunk))
        if index // shard.world_size % TRIM_EVERY == TRIM_EVERY - 1:
            release_freed_memory()
    sums.reduce(shard)
    shard.reduce(log_px)  # each datapoint was scored by exactly one rank
    vae.train(was_training)
    result = _summarize(vae, x, k, seed, log_px, sums, method, note)
    result.conditional = bool(labels)
    return result


def _score_chunk(
    vae: VAE, x: torch.Tensor, labels: dict[str, torch.Tensor], k: int, particles: int, sums: _Sums
) -> tuple[torch.Tensor, str, str]:
    """Stream the k particles of one chunk of datapoints (with their ``labels`` for a model
    that takes them) into ``sums``; return log p(x) (log p(x|y)).

    The posterior means E_q[z] come from the chunk's own q(z|x) (the encoder runs once).
    """
    lse = lse2 = log_w_sum = log_lik_sum = kl_sum = None
    kl_dims = 0.0
    method = note = ""
    for start in range(0, k, particles):
        terms = vae.log_weights(x, min(particles, k - start), **labels)
        log_w = terms.log_w.double()
        # the first block starts each running sum (K = 1000 takes one block of 1,000)
        lse = _logaddexp(lse, torch.logsumexp(log_w, 0))
        lse2 = _logaddexp(lse2, torch.logsumexp(2 * log_w, 0))
        log_w_sum = _add(log_w_sum, log_w.sum(0))
        log_lik_sum = _add(log_lik_sum, terms.log_lik.double().sum(0))
        kl_sum = _add(kl_sum, (terms.log_q - terms.log_prior).double().sum(0))
        if start == 0:
            q_of_x = terms.q
            method, note, analytic = _kl_per_dim_method(terms.q, terms.p)
            kl_dims = analytic if method == "analytic" else kl_dims
        if method == "monte-carlo":  # E_q[log q_d(z_d) - log p_d(z_d)] from the same draws
            q, p, z = terms.q.base_dist, terms.p.base_dist, terms.z
            kl_dims = kl_dims + (q.log_prob(z) - p.log_prob(z)).double().sum(0) / k
    log_px = sums.add_importance(lse, lse2, log_w_sum / k, k)
    sums.add("log_lik", log_lik_sum / k)
    sums.add("kl", kl_sum / k)
    if method != "none":
        sums.add("kl_dims", kl_dims)
    if q_of_x is None:  # a StackedVAE: the means of every layer, from its own encode
        posterior_mean = vae.encode(x, **labels)[0].double()
    else:
        posterior_mean = _moments(q_of_x)[0].double()
    sums.add("mean", posterior_mean)
    sums.add("mean_sq", posterior_mean**2)
    return log_px, method, note


def _logaddexp(running: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """log(exp(running) + exp(value)); ``value`` where nothing runs yet (what logaddexp
    with -inf gives, exactly, without its two operations)."""
    return value if running is None else torch.logaddexp(running, value)


def _add(running: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if running is None else running + value


def _summarize(
    vae: VAE, x: torch.Tensor, k: int, seed: int, per_datapoint: torch.Tensor, sums: _Sums,
    method: str, note: str,
) -> Evaluation:  # fmt: skip
    n = len(x)
    means = sums["mean"] / n
    spread = ((sums["mean_sq"] - n * means**2) / max(n - 1, 1)).clamp(min=0)
    dims = list(getattr(vae, "latent_dims", ())) or None  # a StackedVAE's layers
    per_layer = None
    if dims is not None:
        per_layer = [int((layer > ACTIVE_UNIT_THRESHOLD).sum()) for layer in spread.split(dims)]
    return Evaluation(
        **sums.importance_fields(vae, x, k, seed, per_datapoint),
        reconstruction=sums.mean("log_lik", n),
        kl=sums.mean("kl", n),
        kl_per_dim=None if method == "none" else (sums["kl_dims"] / n).tolist(),
        kl_per_dim_method=method,
        kl_per_dim_note=note,
        active_units=int((spread > ACTIVE_UNIT_THRESHOLD).sum()),
        latent_dim=len(spread),
        posterior_mean_variance=spread.tolist(),
        active_units_per_layer=per_layer,
        latent_dims=dims,
    )


def units_of(model: nn.Module) -> tuple[str, str]:
    """The (scale, units) of a model's log-likelihoods: its likelihood's, else its own.

    A model without a ``likelihood`` part may declare ``scale`` and ``units`` itself
    (see :data:`pyro_vae.parts.SCALES`); otherwise they are reported as unknown nats.
    """
    likelihood = getattr(model, "likelihood", None)
    if isinstance(likelihood, nn.Module):
        contract = likelihood_contract(likelihood, ())
        return contract.scale, contract.units
    return str(getattr(model, "scale", "unknown")), str(getattr(model, "units", "nats"))


def _evaluate_traced(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    k: int,
    seed: int,
    max_samples: int,
    batch_size: int,
    shard: Shard,
    progress: Callable[[int], Any],
) -> Evaluation:
    """IS log p(x) and the ELBO of any convention-following model, from Pyro traces."""
    was_training = model.training
    model.eval()
    model_call, guide_call = ModelCall(model), GuideCall(model)
    points, particles = chunk_plan(len(x), k, max_samples, batch_size)
    sums = _Sums.zeros(IMPORTANCE_SUMS, x.device)
    log_px = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    objective = Trace_ELBO()
    for index, start in enumerate(range(0, len(x), points)):
        if index % shard.world_size != shard.rank:
            continue
        chunk = x[start : start + points]
        labels = None if y is None else y[start : start + points]
        lse = lse2 = torch.full((len(chunk),), -math.inf, dtype=torch.float64, device=x.device)
        log_w_sum = torch.zeros(len(chunk), dtype=torch.float64, device=x.device)
        with chunk_rng(seed, index, x.device):
            for first in range(0, k, particles):
                n = min(particles, k - first)
                args = (chunk, None, 1.0, labels)
                traced = traced_log_weights(
                    objective, model_call, guide_call, args, {}, n, "log p(x)"
                )
                log_w = traced.log_w.double()
                lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
                lse2 = torch.logaddexp(lse2, torch.logsumexp(2 * log_w, 0))
                log_w_sum = log_w_sum + log_w.sum(0)
        log_px[start : start + points] = sums.add_importance(lse, lse2, log_w_sum / k, k)
        progress(len(chunk))
    sums.reduce(shard)
    shard.reduce(log_px)
    model.train(was_training)
    return Evaluation(
        **sums.importance_fields(model, x, k, seed, log_px),
        reconstruction=None,
        kl=None,
        kl_per_dim=None,
        kl_per_dim_method="none",
        kl_per_dim_note="not split: the model is scored through Pyro's traces",
        active_units=None,
        latent_dim=None,
        posterior_mean_variance=None,
    )


def _no_progress(done: int) -> None:
    """The default progress callback: nothing to show."""
