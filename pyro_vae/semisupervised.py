"""Semi-supervised training and scoring of M2: the labelled subset, the batches, the loss.

**The labelled subset.** A training label of ``UNLABELLED`` = -1 marks a datapoint
given without its class. :func:`labelled_subset` keeps ``count`` of the given labels,
spread over the classes as evenly as possible (:func:`label_shares`), drawn by seed; every
other training datapoint is unlabelled (its label is replaced by -1, so nothing downstream
can use it). ``labels="auto"`` (:func:`parse_labels`) keeps every given label when the
data hold unlabelled rows, else ``DEFAULT_LABELS``.

**The batches.** As in Kingma et al. (2014), every step takes an unlabelled minibatch of
``batch_size`` and a labelled one of ``min(batch_size, count)``; an epoch is one pass over
the unlabelled data, and the labelled subset is cycled: the labelled stream is a
sequence of seeded permutations of the subset, and step t of the run takes its items
t b_l .. (t + 1) b_l - 1. Both depend only on (seed, epoch), so any step can be recreated
(exact resume) and every rank of a distributed run takes its share of both parts. The
indices point into the training tensor on the device; no DataLoader is involved.

**The loss** (:class:`SemiSupervisedLoss`), per step, scaled to the dataset size:

    (N_u / B_u) sum_unlabelled -U(x) + (N_l / B_l) sum_labelled [-L(x, y) - a (N / N_l) log q(y|x)]

with U the objective's bound on log p(x) (the label summed exactly, see
:mod:`pyro_vae.objectives.enumerated`), L its bound on log p(x, y), and ``a`` the
``aux_loss`` weight. The loss is about N [-mean ELBO + a mean_labelled(-log q(y|x))]: ``a``
weighs the labelled data's mean cross-entropy against the mean ELBO of a datapoint,
whatever the label count; each labelled datapoint carries a N / N_l. The paper's
alpha = 0.1 N (on the mean over labelled data, Kingma's ``alpha * n_tot / n_labeled``) is
a = 0.1. Pyro's ``ss_vae_M2.py`` multiplier (``-alm 46``) weighs each labelled datapoint
once per epoch, as its schedule visits it: a = 46 N_l / N (0.092 at 100 labels of 50,000,
2.76 at 3,000). The default, 100, was measured best on mnist5k with 100 labels.

Example:
    >>> y = torch.arange(60) % 3
    >>> chosen = labelled_subset(y, 6, num_classes=3, seed=0)
    >>> torch.bincount(y[chosen]).tolist()
    [2, 2, 2]
    >>> y[:50] = UNLABELLED  # ten rows keep their class: 0, 1 or 2
    >>> sorted(labelled_subset(y, 10, num_classes=3, seed=0).tolist()) == list(range(50, 60))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pyro.infer import ELBO, TraceEnum_ELBO, config_enumerate
from torch import nn

from .convention import loss_modules
from .data import TrainingData
from .errors import ConfigError, DataError, ModelError
from .estimators import (
    IMPORTANCE_SUMS,
    MAX_SAMPLES,
    Evaluation,
    Shard,
    _Sums,
    chunk_plan,
    chunk_rng,
    decoding_cap,
)
from .families.m2 import M2
from .objectives.elbo import FastTrace_ELBO
from .objectives.enumerated import check_enumerable, enumerated_elbo, enumerated_pair
from .objectives.graph import Graph_ELBO
from .rng import release_freed_memory

__all__ = [
    "UNLABELLED",
    "DEFAULT_LABELS",
    "parse_labels",
    "label_shares",
    "labelled_subset",
    "SemiSupervisedData",
    "semi_supervised",
    "SemiSupervisedLoss",
    "training_loss",
    "classifier_scores",
    "m2_elbo_per_datapoint",
    "evaluate_m2",
]

UNLABELLED = -1
DEFAULT_LABELS = 100  # labels kept under "auto" when every training datapoint has one
_UNLABELLED_ORDER, _LABELLED_ORDER, _SUBSET, _SPREAD = 1001, 1002, 1003, 1004  # stream keys


def parse_labels(value: str | int, unlabelled: bool = False) -> int | None:
    """A labels setting as a count, or None for every given label (``"all"``).

    ``"auto"`` is every given label when the training data hold ``unlabelled`` rows
    (y = -1), else ``DEFAULT_LABELS``.

    Example:
        >>> parse_labels("100"), parse_labels("all"), parse_labels("auto")
        (100, None, 100)
        >>> parse_labels("auto", unlabelled=True) is None
        True
    """
    text = str(value).strip().lower()
    if text == "auto":
        return None if unlabelled else DEFAULT_LABELS
    if text == "all":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:  # not "¹", which int() refuses
        raise ConfigError(f"labels: expected a positive count, 'all' or 'auto', got {value!r}")
    return int(text)


def _generator(seed: int, *key: int, device: torch.device | str = "cpu") -> torch.Generator:
    entropy = [seed % 2**32, *[k % 2**32 for k in key]]
    state = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device=device).manual_seed(state & (2**63 - 1))


def label_shares(available: list[int], count: int, seed: int) -> list[int]:
    """How many of ``count`` labels each class keeps, as evenly as possible: a class with
    fewer labelled datapoints than an even share keeps them all, the others share the rest
    evenly, and the remainder goes one each to classes with a datapoint to spare, in a
    seeded order. ``available[c]`` is class c's labelled datapoints.

    Example:
        >>> label_shares([50, 50, 50], 100, seed=1)
        [34, 33, 33]
        >>> label_shares([33, 50, 50], 100, seed=1)  # class 0 has none to spare
        [33, 34, 33]
        >>> label_shares([2, 50, 50], 100, seed=1)  # class 0 keeps its 2, the others 49
        [2, 49, 49]
    """
    classes = len(available)
    if count < classes:
        raise ConfigError(
            f"labels: {count} labels leave some of the {classes} classes without one, so M2 "
            f"could not learn their names; keep at least {classes} (or --labels all)"
        )
    if count > sum(available):
        raise ConfigError(
            f"labels: {count} labels asked for, but the training data have {sum(available)} "
            "labelled datapoints; ask for fewer, or --labels all to keep every one"
        )
    empty = [c for c in range(classes) if not available[c]]
    if empty:
        raise DataError(
            f"labels: class {empty[0]} has 0 labelled training datapoints, so M2 could not "
            "learn its name; give some of its datapoints their label"
        )
    shares, pool, remaining = [0] * classes, list(range(classes)), count
    while short := [c for c in pool if available[c] < remaining // len(pool)]:
        for c in short:  # fewer than an even share: every one, and the rest share the remainder
            shares[c] = available[c]
            remaining -= available[c]
            pool.remove(c)
    base, extra = divmod(remaining, len(pool))
    for c in pool:
        shares[c] = base
    order = [c for c in torch.randperm(classes, generator=_generator(seed, _SPREAD)).tolist()
             if c in pool]  # fmt: skip
    while extra:  # one more each, in the seeded order, to classes with a datapoint to spare
        for c in order:
            if extra and available[c] > shares[c]:
                shares[c] += 1
                extra -= 1
    return shares


def labelled_subset(y: torch.Tensor, count: int, num_classes: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``count`` datapoints with a label (y >= 0), spread over the
    classes by :func:`label_shares`, drawn by seed."""
    y = y.cpu()
    members = [(y == label).nonzero().flatten() for label in range(num_classes)]
    shares = label_shares([len(m) for m in members], count, seed)
    chosen = []
    for label, (share, rows) in enumerate(zip(shares, members, strict=True)):
        order = torch.randperm(len(rows), generator=_generator(seed, _SUBSET, label))
        chosen.append(rows[order[:share]])
    return torch.cat(chosen).sort().values


@dataclass
class SemiSupervisedData(TrainingData):
    """Training data with a labelled subset; ``y_train`` is ``UNLABELLED`` outside it.

    :meth:`batch_indices` gives, for every step, the unlabelled minibatch followed by the
    labelled one (each rank's share of both).
    """

    labelled: torch.Tensor | None = None  # indices into train, on the device
    unlabelled: torch.Tensor | None = None
    num_classes: int = 0

    @property
    def num_labelled(self) -> int:
        return len(self.labelled)

    @property
    def num_unlabelled(self) -> int:
        return len(self.unlabelled)

    def step_sizes(self, batch_size: int) -> tuple[int, int]:
        """(unlabelled, labelled) datapoints per step: batch_size, min(batch_size, labels)."""
        unlabelled = batch_size if self.num_unlabelled else 0
        if unlabelled > self.num_unlabelled:
            raise DataError(
                f"batch size {batch_size} is larger than the {self.num_unlabelled} unlabelled "
                f"training datapoints of {self.name}; lower --batch-size or ask for fewer labels"
            )
        return unlabelled, min(batch_size, self.num_labelled)

    def batch_indices(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> torch.Tensor:
        """``[steps, (B_u + B_l) / world_size]``: this rank's unlabelled, then labelled, indices."""
        b_u, b_l = self.step_sizes(batch_size)
        if b_u % world_size or b_l % world_size:
            raise DataError(
                f"M2's steps of {b_u} unlabelled and {b_l} labelled datapoints do not split "
                f"evenly over {world_size} processes; use a batch size and a label count that "
                f"are multiples of {world_size}"
            )
        n_l, device = self.num_labelled, self.device
        steps = self.num_unlabelled // b_u if b_u else n_l // b_l
        unlabelled = self.unlabelled[:0].view(steps, 0)
        if b_u:
            generator = _generator(self.seed, _UNLABELLED_ORDER, epoch, device=device)
            order = torch.randperm(self.num_unlabelled, generator=generator, device=device)
            unlabelled = self.unlabelled[order[: steps * b_u]].view(steps, b_u)
        start, count = epoch * steps * b_l, steps * b_l
        cycles = range(start // n_l, (start + count - 1) // n_l + 1)
        stream = torch.cat([self._labelled_cycle(c) for c in cycles])
        offset = start - cycles[0] * n_l
        labelled = stream[offset : offset + count].view(steps, b_l)
        share_u, share_l = b_u // world_size, b_l // world_size
        return torch.cat(
            [
                unlabelled[:, rank * share_u : (rank + 1) * share_u],
                labelled[:, rank * share_l : (rank + 1) * share_l],
            ],
            1,
        )

    def _labelled_cycle(self, cycle: int) -> torch.Tensor:
        generator = _generator(self.seed, _LABELLED_ORDER, cycle, device=self.device)
        return self.labelled[
            torch.randperm(self.num_labelled, generator=generator, device=self.device)
        ]


def semi_supervised(
    data: TrainingData, labels: int | None, seed: int, num_classes: int | None = None
) -> SemiSupervisedData:
    """``data`` with ``labels`` of its given training labels kept (spread over the classes,
    by ``seed``; None: every one); the rest, and rows given as -1, are unlabelled. A test
    split without labels counts as unlabelled (scored without accuracy)."""
    if data.y_train is None:
        raise DataError(
            f"M2 learns from labels but {data.name} has none; use a dataset with labels "
            "(mnist5k, mnist, fashion-mnist, or an .npz with y, -1 for unlabelled rows)"
        )
    y = data.y_train.long()
    num_classes = num_classes or int(y.max()) + 1
    if labels is None:
        keep = (y != UNLABELLED).cpu()
    else:
        keep = torch.zeros(len(y), dtype=torch.bool)
        keep[labelled_subset(y, labels, num_classes, seed)] = True
    masked = torch.where(keep.to(y.device), y, torch.full_like(y, UNLABELLED))
    values = {f.name: getattr(data, f.name) for f in fields(TrainingData)}
    values["y_train"] = masked
    if data.y_test is None:
        values["y_test"] = torch.full((len(data.test),), UNLABELLED, device=data.test.device)
    return SemiSupervisedData(
        **values,
        labelled=keep.nonzero().flatten().to(data.device),
        unlabelled=(~keep).nonzero().flatten().to(data.device),
        num_classes=num_classes,
    )


class SemiSupervisedLoss(nn.Module):
    """One step's M2 loss (see the module docstring), called ``(x, num_data, kl_scale, y)``.

    Rows of ``x`` whose label is ``UNLABELLED`` are unlabelled. With ``split = (B_u, B_l)``
    a batch of B_u + B_l rows is taken as B_u unlabelled rows then B_l labelled ones (the
    layout of :meth:`SemiSupervisedData.batch_indices`; checked on CPU, trusted on a GPU
    to spare a host sync per step); any other batch is split by its labels. ``num_data``
    (N, labelled and unlabelled) scales each part to its share of the dataset; None scores
    the batch as it is.

    Example:
        >>> from pyro_vae.families import mlp_m2
        >>> from pyro_vae.objectives import FastTrace_ELBO
        >>> m2 = mlp_m2((1, 28, 28), num_classes=10, latent_dim=2, hidden=[16])
        >>> loss = SemiSupervisedLoss(FastTrace_ELBO(), m2, num_labelled=100)
        >>> x, y = torch.zeros(6, 1, 28, 28), torch.tensor([-1, -1, -1, -1, 3, 7])
        >>> bool(loss(x, 1000, 1.0, y) > 0)
        True
    """

    def __init__(
        self,
        objective: ELBO,
        model: M2,
        num_labelled: int,
        aux_loss: float = 100.0,
        split: tuple[int, int] | None = None,
    ):
        super().__init__()
        if not isinstance(model, M2):
            raise ModelError(
                f"semi-supervised training needs an M2 (pyro_vae.families.M2), not "
                f"{type(model).__name__}"
            )
        check_enumerable(objective)
        self.model, self.guide = model, model.guide_module()
        self.objective = objective
        self.num_labelled, self.aux_loss, self.split = num_labelled, aux_loss, split
        self.unlabelled_objective = objective
        if enumerated_pair(model, self.guide) is None:  # a subclass with its own model/guide
            self.unlabelled_objective = self._traced(objective)

    @staticmethod
    def _traced(objective: ELBO) -> ELBO:
        """The objective for unlabelled data of an M2 subclass with its own model/guide."""
        if isinstance(objective, Graph_ELBO):
            return objective
        if type(objective) is not FastTrace_ELBO or objective.beta != 1:
            raise ModelError(
                "iwae, dreg and beta sum M2's label from its parts; an M2 subclass with its "
                "own model/guide trains with elbo (TraceEnum_ELBO) or graph"
            )
        return _EnumeratedTrace(objective.num_particles)

    def forward(
        self,
        x: torch.Tensor,
        num_data: int | None = None,
        kl_scale: float | torch.Tensor = 1.0,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if y is None:
            raise ModelError("the semi-supervised loss needs labels y (UNLABELLED = -1 marks none)")
        if self.split is not None and len(x) == sum(self.split):
            b_u = self.split[0]
            if y.device.type == "cpu" and bool((y[:b_u] != UNLABELLED).any() | (y[b_u:] < 0).any()):
                raise ModelError(
                    f"a batch of {len(x)} rows must hold its {b_u} unlabelled rows first (the "
                    "layout of SemiSupervisedData.batch_indices); build the loss without split "
                    "to take rows in any order"
                )
            x_u, x_l, y_l = x[:b_u], x[b_u:], y[b_u:]
        else:
            known = y != UNLABELLED
            x_u, x_l, y_l = x[~known], x[known], y[known]
        n_l = None if num_data is None else self.num_labelled
        n_u = None if num_data is None else num_data - self.num_labelled
        loss = torch.zeros((), device=x.device)
        if len(x_u):
            loss = loss + self.unlabelled_objective.differentiable_loss(
                self.model, self.guide, x_u, num_data=n_u, kl_scale=kl_scale
            )
        if len(x_l):
            loss = loss + self.objective.differentiable_loss(
                self.model, self.guide, x_l, y_l, num_data=n_l, kl_scale=kl_scale
            )
            if self.aux_loss > 0:
                weight = self.aux_loss * (1.0 if num_data is None else num_data / len(x_l))
                logits = self.model.classifier(self.model.shaped(x_l))
                loss = loss + weight * F.cross_entropy(logits, y_l, reduction="sum")
        return loss


class _EnumeratedTrace(TraceEnum_ELBO):
    """TraceEnum_ELBO with the guide's discrete sites enumerated in parallel."""

    def __init__(self, num_particles: int):
        super().__init__(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return super().differentiable_loss(model, config_enumerate(guide), *args, **kwargs)


def training_loss(
    objective: ELBO,
    model: nn.Module,
    data: TrainingData,
    batch_size: int,
    aux_loss: float = 100.0,
    world_size: int = 1,
) -> nn.Module:
    """The loss module of one training step: ``objective(model, guide)``, or for
    semi-supervised data the :class:`SemiSupervisedLoss` of each rank's share of a step."""
    if not isinstance(data, SemiSupervisedData):
        return objective(*loss_modules(model))
    b_u, b_l = data.step_sizes(batch_size)
    split = (b_u // world_size, b_l // world_size)
    return SemiSupervisedLoss(objective, model, data.num_labelled, aux_loss, split)


# -- scoring --------------------------------------------------------------------------------------


@torch.no_grad()
def classifier_scores(
    model: M2, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> tuple[float, list[list[int]]]:
    """Accuracy of q(y|x)'s most probable label on the labelled rows (y = -1 rows are
    left out), and the confusion matrix (rows: true label, columns: predicted)."""
    known = y != UNLABELLED
    x, y = x[known], y[known]
    if not len(y):
        raise DataError("no labelled datapoint to score the classifier on (every y is -1)")
    c = model.num_classes
    predicted = torch.cat([model.classify(chunk) for chunk in x.split(batch_size)])
    counts = torch.bincount(y.long() * c + predicted, minlength=c * c).view(c, c)
    return float(counts.diagonal().sum()) / len(y), counts.tolist()


@torch.no_grad()
def m2_elbo_per_datapoint(
    model: M2,
    x: torch.Tensor,
    batch_size: int = 1000,
    num_particles: int = 1,
    seed: int | None = None,
    shard: Shard | None = None,
) -> float:
    """The ELBO U(x) of unlabelled ``x`` (labels summed exactly), nats per datapoint."""
    shard = shard or Shard()
    points = max(1, batch_size // model.num_classes)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for chunk, start in enumerate(range(0, len(x), points)):
        if chunk % shard.world_size == shard.rank:
            with chunk_rng(seed, chunk, x.device):
                terms = model.label_terms(x[start : start + points], num_particles)
                total += enumerated_elbo(terms).sum().double()
    return float(shard.reduce(total)) / len(x)


@torch.no_grad()
def evaluate_m2(
    model: M2,
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
    """Score an M2 on ``x`` with the label summed out; with ``y``, its classifier too, on
    the rows whose label is given (y = -1 rows count for log p(x) alone).

    log p(x) is estimated with ``k`` particles, each holding one draw z ~ q(z|x,y) for
    every label: log (1/k) sum_k sum_y p(x, y, z_{y,k}) / q(z_{y,k}|x,y) (k C decoded
    samples per datapoint). The ELBO is U(x) (:func:`enumerated_elbo`), its reconstruction
    term E_q(y|x) q(z|x,y)[log p(x|y,z)] and KL = reconstruction - ELBO, the KL of
    q(y, z|x) from p(y, z). Chunks draw from their own seeded streams, so a ``shard`` of
    several processes gives the single-process result.
    """
    if k < 1 or len(x) < 1:
        raise ConfigError(f"evaluation needs k >= 1 and at least one datapoint (k={k}, N={len(x)})")
    shard = shard or Shard()
    was_training = model.training
    model.eval()
    classes = model.num_classes
    latent = model.prior().event_shape
    decoded = model.decoder(x.new_zeros(1, *latent), x.new_zeros(1, dtype=torch.long)).numel()
    max_samples = decoding_cap(max_samples, decoded, floor=classes)
    points, particles = chunk_plan(len(x), k, max_samples, batch_size, per_sample=classes)
    sums = _Sums.zeros((*IMPORTANCE_SUMS, "log_lik"), x.device)
    log_px = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    confusion = torch.zeros(classes, classes, dtype=torch.float64, device=x.device)
    for index, start in enumerate(range(0, len(x), points)):
        if index % shard.world_size != shard.rank:
            continue
        chunk = x[start : start + points]
        lse = lse2 = torch.full((len(chunk),), -math.inf, dtype=torch.float64, device=x.device)
        elbo = log_lik = torch.zeros(len(chunk), dtype=torch.float64, device=x.device)
        with chunk_rng(seed, index, x.device):
            for first in range(0, k, particles):
                n = min(particles, k - first)
                terms = model.label_terms(chunk, n)
                log_w = torch.logsumexp(terms.log_w, 1).double()  # [n, batch]
                lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
                lse2 = torch.logaddexp(lse2, torch.logsumexp(2 * log_w, 0))
                elbo = elbo + n * enumerated_elbo(terms).double()
                q_y = terms.log_qy.exp().double()
                log_lik = log_lik + n * (q_y * terms.log_lik.double().mean(0)).sum(0)
        log_px[start : start + points] = sums.add_importance(lse, lse2, elbo / k, k)
        if progress is not None:
            progress(len(chunk))
        sums.add("log_lik", log_lik / k)
        if y is not None:
            truth = y[start : start + points].long()
            known = truth != UNLABELLED
            predicted = model.classify(chunk[known])
            cells = torch.bincount(truth[known] * classes + predicted, minlength=classes**2)
            confusion += cells.view(classes, classes).double()
        if index // shard.world_size % 16 == 15:
            release_freed_memory()
    sums.reduce(shard)
    shard.reduce(log_px)
    shard.reduce(confusion)
    model.train(was_training)
    return _summary(model, x, k, seed, sums, log_px, confusion if y is not None else None)


def _summary(
    model: M2,
    x: torch.Tensor,
    k: int,
    seed: int,
    sums: _Sums,
    log_px: torch.Tensor,
    confusion: torch.Tensor | None,
) -> Evaluation:
    n = len(x)
    counts = None if confusion is None else confusion.round().long()
    if counts is not None and not counts.sum():  # no labelled row: no accuracy to report
        counts = None
    reconstruction, elbo = sums.mean("log_lik", n), sums.mean("elbo", n)
    return Evaluation(
        **sums.importance_fields(model, x, k, seed, log_px),
        reconstruction=reconstruction,
        kl=reconstruction - elbo,
        kl_per_dim=None,
        kl_per_dim_method="none",
        kl_per_dim_note="not split: M2's KL is that of q(y, z|x) from p(y, z), label included",
        active_units=None,
        latent_dim=int(model.prior().event_shape[0]),
        posterior_mean_variance=None,
        accuracy=None if counts is None else int(counts.diagonal().sum()) / int(counts.sum()),
        confusion=None if counts is None else counts.tolist(),
    )
