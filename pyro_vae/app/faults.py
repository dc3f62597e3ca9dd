"""Numerical faults: find a non-finite loss, gradient or optimizer state, and where.

Every step scans the loss and the gradients on the device. On CPU the trainer reads
the result at once, before the optimizer moves (a read is free there): a
:class:`StepScan`, one fused pass into a flag, and only when the flag is up
:func:`non_finite_kind` to name the part; on a GPU it scans with :func:`non_finite_kind`
(no host sync), notes the first bad step in a :class:`FaultRecord`, reads that every few steps and
at every checkpoint, and in between the fused Adam kernel skips any flagged step on
the device (the ``found_inf`` mechanism of mixed precision), so a NaN never reaches
the parameters, a checkpoint or a later step either way.

Finite gradients can still poison the state: a gradient above 1.8e19 squares to
infinity in Adam's ``exp_avg_sq``, and that weight never moves again. So the
parameters and the optimizer's state are scanned too (:func:`non_finite_state`, one
fused pass, no sync), where the record is read anyway: every few steps, at the end
of every epoch and before every checkpoint, so a poisoned state is never saved.

What happens next is the ``on_nan`` policy: ``recover`` (restore the last good
state, halve the learning rate, continue; at most ``MAX_RECOVERIES`` times),
``stop``, or ``off`` (no check, no protection).

A run can also diverge with every number finite; :func:`absurd_elbo_warning` flags a
test ELBO far below what a model that knows nothing scores (a warning, not a fault). On
real-valued data, where no uniform model exists, :func:`below_baseline_warning` compares a
score with independent Gaussians fitted to each feature (:func:`baseline_log_px`).
A score that is NaN or infinite gets :func:`non_finite_warning`, naming the likely causes.

Example:
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> (w * float("nan")).sum().backward()
    >>> record = FaultRecord(torch.device("cpu"))
    >>> record.note(non_finite_kind(torch.tensor(1.0), [w]), step=7)
    >>> record.raise_if_any(epoch=2)
    Traceback (most recent call last):
    ...
    pyro_vae.app.faults.NonFiniteStep: non-finite gradient at epoch 2, step 7
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from .._private import amp_non_finite_check
from ..baseline import independent_gaussian_log_px
from ..convention import data_support
from ..data import TrainingData
from ..errors import PyroVAEError
from ..estimators import units_of
from ..standardize import Standardize

__all__ = [
    "MAX_RECOVERIES",
    "NonFiniteStep",
    "NumericalFault",
    "FaultRecord",
    "StepScan",
    "non_finite_kind",
    "non_finite_state",
    "name_non_finite_state",
    "raise_if_non_finite",
    "ABSURD_FACTOR",
    "trivial_log_likelihood",
    "absurd_elbo_warning",
    "non_finite_warning",
    "BASELINE_MARGIN",
    "standardizes_itself",
    "BASELINE_MIN_EPOCHS",
    "BASELINE_DESCRIPTION",
    "baseline_log_px",
    "below_baseline_warning",
    "NON_FINITE_CAUSES",
]

MAX_RECOVERIES = 3
ABSURD_FACTOR = 10  # an ELBO this many times below the trivial model's log-likelihood is absurd
_UNIFORM = {"binary": (2, "a uniform Bernoulli"), "8-bit": (256, "a uniform 256-level")}
# A score more than this many nats per datapoint below the baseline gets a warning...
BASELINE_MARGIN = 1.0
# ...from this epoch on: at epochs 1-3 a model that goes on to learn well can still be below
# (a per-pixel gaussian on mnist5k: 613, 634, 666 against 668), but not by epoch 5 (714)
BASELINE_MIN_EPOCHS = 5
BASELINE_DESCRIPTION = (
    "log-density per datapoint of independent Gaussians with each feature's mean and "
    "standard deviation (at least 0.1 of the overall one) in the training split of the data "
    "scored, over the same observed entries as log_px"
)
_STATE, _GRADIENT, _LOSS = 0.25, 0.5, 1.0  # the codes of non_finite_state and non_finite_kind
NON_FINITE_CAUSES = (
    "the model may have diverged (lower --lr or set --clip-grad), or the data hold values its "
    "likelihood cannot score (too large for float32's precision or range, e.g. a count of "
    "3.4e38, or outside its support)"
)
_PARTS = {_STATE: "parameter or optimizer state", _GRADIENT: "gradient", _LOSS: "loss"}


class NonFiniteStep(Exception):
    """Raised inside the training loop; the trainer turns it into a recovery or a NumericalFault.

    ``when`` is "at" the step where the fault happened, or "by" the step where a scan found it.
    """

    def __init__(self, part: str, epoch: int, step: int, when: str = "at"):
        super().__init__(f"non-finite {part} {when} epoch {epoch}, step {step}")
        self.part, self.epoch, self.step = part, epoch, step


class NumericalFault(PyroVAEError):
    """Training stopped on a non-finite loss, gradient or state; says where and what was tried."""


class StepScan:
    """Whether a step's loss or any of its gradients is NaN or infinite: the per-step guard on CPU.

    One fused pass over the loss and every gradient (the kernel of
    :func:`non_finite_kind`) into a flag allocated once: three small operations where
    :func:`non_finite_kind` takes eight, and each costs microseconds on one CPU thread.
    The caller reads the flag and, only when it is up, asks :func:`non_finite_kind`
    which part broke.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> w.grad = torch.tensor([1.0, float("inf")])
        >>> scan, loss = StepScan(torch.device("cpu")), torch.tensor(3.0)
        >>> scan.flag(loss, [w]).tolist(), non_finite_kind(loss, [w]).tolist()
        ([1.0], [0.5])
    """

    def __init__(self, device: torch.device):
        self.found = torch.zeros(1, device=device)
        self.one = torch.ones(1, device=device)

    def flag(self, loss: torch.Tensor, parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
        """A 1-element device tensor (this scan's own, rewritten by every call): 1 if the loss
        or a gradient holds a NaN or an infinity, else 0. Nothing is changed."""
        tensors = [loss.detach().reshape(1)] + [p.grad for p in parameters if p.grad is not None]
        self.found.zero_()
        _scan_non_finite(tensors, self.found, self.one)
        return self.found


def non_finite_kind(loss: torch.Tensor, parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """A 1-element device tensor: 0 if all is finite, 0.5 for a gradient, 1 for the loss.

    No host sync, six small operations. The gradients are scanned by the fused
    kernel that ``torch.amp.GradScaler`` uses (one pass over every gradient, scale 1
    so nothing changes): on a 784-400-20 VAE it costs 2% of a CPU step where
    per-tensor sums cost 7%. A non-finite loss (which usually brings non-finite
    gradients) takes precedence, so the report names the first thing that broke.
    """
    found = torch.zeros(1, device=loss.device)
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        _scan_non_finite(grads, found)  # 1 where a gradient is not finite
    found.mul_(_GRADIENT)
    return torch.where(torch.isfinite(loss.detach()), found, _LOSS)


def non_finite_state(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """A 1-element device tensor: 0.25 if a parameter or its optimizer state is not finite, else 0.

    No host sync: one fused pass over every parameter and every state tensor of its
    shape (Adam's ``exp_avg`` and ``exp_avg_sq``), by the same kernel as the gradients.
    """
    tensors = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            tensors += [p.detach()] + [t for t in state.values() if _same_shape(t, p)]
    found = torch.zeros(1, device=tensors[0].device)
    _scan_non_finite(tensors, found)
    return found.mul_(_STATE)


def name_non_finite_state(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> str:
    """The first non-finite parameter or state tensor, e.g. for a fault's message (host reads).

    ``names`` maps ``id(parameter)`` to its name. Example: ``"optimizer state
    (exp_avg_sq of decoder.layers.0.weight: 3708 of 12544 values)"``.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names.get(id(p), "a parameter")
            state = optimizer.state.get(p, {})
            found = [("parameter", name, p.detach())] + [
                ("optimizer state", f"{key} of {name}", t)
                for key, t in state.items()
                if _same_shape(t, p)
            ]
            for part, what, tensor in found:
                bad = int((~torch.isfinite(tensor)).sum())
                if bad:
                    return f"{part} ({what}: {bad} of {tensor.numel()} values)"
    return _PARTS[_STATE]


def raise_if_non_finite(code: float, epoch: int, step: int, part: str | None = None) -> None:
    """Raise NonFiniteStep if ``code`` (a :func:`non_finite_kind` or :func:`non_finite_state`
    value) flags a fault; ``part`` names what is not finite more precisely."""
    if code:
        when = "by" if code == _STATE else "at"  # a state is found by a scan, after the fact
        raise NonFiniteStep(part or _PARTS[code], epoch, step, when)


class FaultRecord:
    """The first non-finite step since the last read, kept on the device.

    ``note`` costs a few tiny device operations and no host sync; ``raise_if_any``
    reads the record (one sync), clears it, and raises NonFiniteStep naming the step
    where the fault happened, however many steps later it is read.
    """

    def __init__(self, device: torch.device):
        self.kind = torch.zeros(1, device=device)  # a non_finite_kind code
        self.step = torch.zeros(1, device=device)  # the epoch's step (1-based) where it happened

    def note(self, kind: torch.Tensor, step: int) -> None:
        first = (self.kind == 0) & (kind > 0)
        self.step = torch.where(first, float(step), self.step)
        self.kind = torch.where(first, kind, self.kind)

    def raise_if_any(self, epoch: int, name_state: Callable[[], str] | None = None) -> None:
        """Read and clear the record; ``name_state`` names a non-finite state in the message."""
        kind, step = torch.cat([self.kind, self.step]).tolist()
        self.kind.zero_()
        part = name_state() if kind == _STATE and name_state is not None else None
        raise_if_non_finite(kind, epoch, int(step), part)


def _same_shape(value: object, parameter: torch.Tensor) -> bool:
    return torch.is_tensor(value) and value.shape == parameter.shape


def _scan_non_finite(
    tensors: list[torch.Tensor], found: torch.Tensor, one: torch.Tensor | None = None
) -> None:
    """Set the 1-element ``found`` to 1 if any tensor holds a NaN or an infinity (``one``: a
    1-element tensor of 1 on the same device, the kernel's unscale factor, which changes nothing).
    """
    try:
        amp_non_finite_check(tensors, found, torch.ones_like(found) if one is None else one)
    except (RuntimeError, NotImplementedError):  # no kernel for these tensors: one pass each
        bad = ~torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        found.copy_(torch.where(bad, 1.0, found))


def trivial_log_likelihood(scale: str, data_shape: Sequence[int]) -> float | None:
    """Log-likelihood per datapoint of a model that makes every value equally likely.

    ``-D log 2`` for binary data and ``-D log 256`` for 8-bit levels (``scale`` as in
    :data:`pyro_vae.parts.SCALES`); None where no such bound exists (densities, counts).

        >>> round(trivial_log_likelihood("binary", (1, 28, 28)), 1)
        -543.4
    """
    if scale not in _UNIFORM:
        return None
    return -math.prod(data_shape) * math.log(_UNIFORM[scale][0])


def non_finite_warning(scores: Sequence[str]) -> str:
    """One warning line saying that ``scores`` (each a name and its value) are not finite, and why.

    >>> non_finite_warning(["log_px nan", "elbo -inf"])[:60]
    'warning: log_px nan, elbo -inf are not finite: the model may'
    """
    verb = "is" if len(scores) == 1 else "are"
    return f"warning: {', '.join(scores)} {verb} not finite: {NON_FINITE_CAUSES}"


def absurd_elbo_warning(elbo: float, scale: str, data_shape: Sequence[int]) -> str:
    """One warning line when ``elbo`` is NaN or infinite, or ``ABSURD_FACTOR`` times below the
    trivial bound; else "".

    >>> absurd_elbo_warning(-6.8e30, "binary", (784,))[:60]
    'warning: test ELBO -6.8e+30 per datapoint is far below -543.'
    >>> absurd_elbo_warning(-300.0, "binary", (784,))
    ''
    >>> absurd_elbo_warning(float("nan"), "counts", (20,))[:50]
    'warning: test ELBO nan per datapoint is not finite'
    """
    if not math.isfinite(elbo):
        return non_finite_warning([f"test ELBO {elbo} per datapoint"])
    bound = trivial_log_likelihood(scale, data_shape)
    if bound is None or elbo >= ABSURD_FACTOR * bound:
        return ""
    return (
        f"warning: test ELBO {elbo:.3g} per datapoint is far below {bound:.1f}, what "
        f"{_UNIFORM[scale][1]} model (knowing nothing) scores: training has diverged; "
        "lower --lr or set --clip-grad"
    )


def baseline_log_px(
    model: nn.Module, data: TrainingData, x: torch.Tensor | None = None
) -> float | None:
    """The log-density per datapoint of ``x`` (default: the test split) under independent
    Gaussians fitted to ``data``'s training split (see :mod:`pyro_vae.baseline`), for a
    model whose likelihood is a density over real values; None for any other (binary,
    8-bit or count data, densities on [0, 1]) and for dynamically binarized data.
    """
    if data_support(model) != "real" or units_of(model)[0] != "continuous" or data.dynamic:
        return None
    return independent_gaussian_log_px(data.train, data.test if x is None else x)


def below_baseline_warning(
    name: str, value: float, baseline: float | None, standardized: bool = False
) -> str:
    """One warning line when score ``name`` (``value`` per datapoint) is more than
    ``BASELINE_MARGIN`` below ``baseline`` (see :func:`baseline_log_px`); else "".
    ``standardized``: the model standardizes each feature itself (see
    :mod:`pyro_vae.standardize`), so the line does not suggest it.

    >>> below_baseline_warning("test ELBO", -52.4, -13.2)[:72]
    'warning: test ELBO -52.4 per datapoint is below -13.2, what independent '
    >>> below_baseline_warning("test ELBO", -13.9, -13.2), below_baseline_warning("x", 1.0, None)
    ('', '')
    """
    if baseline is None or not math.isfinite(value) or value >= baseline - BASELINE_MARGIN:
        return ""
    return (
        f"warning: {name} {value:.4g} per datapoint is below {baseline:.4g}, what independent "
        "Gaussians with each feature's training mean and standard deviation score (learning "
        "nothing else): the likelihood's scale may have started far from the data's spread "
        "(--likelihood-scale-value 0 starts it there; from Python, a likelihood built with "
        "scale_value=pyro_vae.likelihoods.scale_from_data(x_train)) or be one scale for "
        "features of different spread (--likelihood-scale per-pixel; scale_mode='per-pixel'); "
        "or the learning rate or the epochs are too few to recover (--lr, --epochs)"
        + (
            ""
            if standardized
            else "; or the data need standardizing (--standardize, the default of gaussian "
            "and laplace on a table)"
        )
    )


def standardizes_itself(model: nn.Module) -> bool:
    """Whether ``model`` holds a :class:`~pyro_vae.standardize.Standardize` (built with
    ``standardize = true`` on a table)."""
    return any(isinstance(part, Standardize) for part in model.modules())
