"""Data-parallel training on torch's own engine: torch.distributed and DistributedDataParallel.

``torchrun --nproc_per_node=N -m pyro_vae train ...`` sets ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; :func:`init_distributed` joins the process group (``gloo`` on
CPU, ``nccl`` on GPU, with a timeout so a dead rank stops the others instead of
hanging them) and returns a :class:`DistContext`. Without torchrun everything is a
single process and every helper here is a no-op.

Example:
    >>> ctx = DistContext()
    >>> ctx.is_main, ctx.world_size
    (True, 1)
    >>> float(all_reduce_sum(torch.tensor(3.0), ctx))
    3.0
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

from ..errors import PyroVAEError
from ..estimators import Shard
from .runtime import resolve_device

__all__ = [
    "DistContext",
    "DistributedFault",
    "init_distributed",
    "all_reduce_sum",
    "all_reduce_max",
    "launched_as_main",
    "close_process_group",
    "exit_rank",
    "broadcast_object",
    "gather_objects",
    "rank_seed",
    "collective_error",
]


class DistributedFault(PyroVAEError):
    """A rank lost contact with the others (one died or timed out)."""


@dataclass(frozen=True)
class DistContext:
    """Which process this is among how many; the defaults describe a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def shard(self) -> Shard:
        """This rank's share of an evaluation, for the core's estimators."""
        if not self.is_distributed:
            return Shard()
        return Shard(self.rank, self.world_size, lambda t: dist.all_reduce(t, op=dist.ReduceOp.SUM))


def init_distributed(device_name: str, timeout_seconds: float) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    device = resolve_device(device_name)
    if world_size <= 1:
        return DistContext(), device
    _require_launcher_env()
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds))
    return DistContext(rank, world_size, local_rank, backend), device


LAUNCHER_VARIABLES = ("RANK", "MASTER_ADDR", "MASTER_PORT")


def _require_launcher_env() -> None:
    """WORLD_SIZE > 1 without the rest of torchrun's environment: say so, not a traceback."""
    missing = [name for name in LAUNCHER_VARIABLES if not os.environ.get(name)]
    if missing:
        raise DistributedFault(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} asks for data-parallel training, but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; launch "
            "with torchrun --nproc_per_node=N -m pyro_vae ..., or unset WORLD_SIZE to run "
            "in one process"
        )


def _env_int(name: str, default: int) -> int:
    """An integer from torchrun's environment, with an error that names the variable."""
    text = os.environ.get(name, "")
    try:
        return int(text) if text else default
    except ValueError:
        raise DistributedFault(
            f"environment variable {name}={text!r} is not an integer; torchrun sets it, "
            f"so launch with torchrun or unset {name}"
        ) from None


def close_process_group() -> None:
    """Leave the process group if this process joined one.

    Without it, a rank that returns from its last collective can abort at interpreter
    exit ("terminate called without an active exception") as gloo's threads are torn
    down, and torchrun reports the whole run as failed.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> NoReturn:
    """End a rank of a data-parallel run now, skipping the interpreter's teardown.

    Once DistributedDataParallel has wrapped a model, torch keeps the gloo group's
    worker threads alive past ``destroy_process_group``; they are then destroyed
    during interpreter shutdown, which now and then aborts the process ("terminate
    called without an active exception", SIGABRT) after all its work was done and
    saved, and torchrun reports the run as failed. Leaving the group, flushing the
    output and exiting directly makes the ending deterministic.
    """
    close_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def collective_error(err: Exception) -> str:
    """The gist of a failed collective's error: gloo prefixes a source location and appends
    advice.

    Example:
        >>> collective_error(RuntimeError("[pair.cc:545] Read error: Connection reset. Try"))
        'Read error: Connection reset'
    """
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split("] ", 1)[-1].split(". ", 1)[0][:160]


def launched_as_main() -> bool:
    """False in a process that torchrun launched as a rank other than 0 (it stays quiet)."""
    return os.environ.get("RANK", "0") == "0"


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over ranks, in place; returns it."""
    if ctx.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The elementwise maximum of ``value`` over ranks, in place (no host sync on nccl)."""
    if ctx.is_distributed:
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.is_distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.is_distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def rank_seed(seed: int, rank: int, *key: int) -> int:
    """A seed for rank ``rank``'s own random stream, derived from the run's seed."""
    entropy = [seed % 2**32, 0xD15, rank, *[k % 2**32 for k in key]]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)
