"""The benchmark's command-line options, shared by ``pyro-vae bench`` and the experiments script.

Kept apart from :mod:`pyro_vae.bench` so that building the CLI parser imports nothing heavy.
Without ``--full`` the sizes are small enough for a quick run (about a minute and a half for
both thread counts on 2 CPU cores); ``--full`` gives the sizes behind experiments/RESULTS.md.
A size given as a flag wins over both.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_bench_arguments(parser)
    >>> args = parser.parse_args(["--steps", "50", "--full"])
    >>> bench_sizes(args)["steps"], bench_sizes(args)["memory_k"], args.threads
    (50, 5000, [1, 2])
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["QUICK", "FULL", "add_bench_arguments", "bench_sizes"]

# the sizes of a quick run, and of the full measurement (--full)
QUICK = {
    "steps": 50,
    "warmup": 10,
    "log_px_images": 50,
    "epoch_rounds": 3,
    "memory_k": 1000,
    "memory_images": 500,
}
FULL = {
    "steps": 200,
    "warmup": 20,
    "log_px_images": 200,
    "epoch_rounds": 3,
    "memory_k": 5000,
    "memory_images": 10_000,
}
SIZE_HELP = {
    "steps": "timed steps per contender and batch size",
    "warmup": "untimed steps first",
    "log_px_images": "images scored for the log p(x) throughput",
    "epoch_rounds": "epochs timed per pipeline (median reported)",
    "memory_k": "K of the peak-memory check (also run at K/10)",
    "memory_images": "images of the peak-memory check",
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of the benchmark, each help ending in its default."""
    parser.add_argument(
        "--dataset", default="mnist5k", help="mnist5k (offline) or fashion-mnist (default: mnist5k)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        metavar="N",
        help="CPU thread counts to measure, one after the other (0: leave torch's setting) "
        "(default: 1 2)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full measurement of experiments/RESULTS.md: "
        + ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in FULL.items())
        + " (default: off, a quick run)",
    )
    for name, text in SIZE_HELP.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            metavar="N",
            help=f"{text} (default: {QUICK[name]}"
            + (f"; {FULL[name]} with --full)" if FULL[name] != QUICK[name] else ")"),
        )
    parser.add_argument(
        "--train-images",
        type=int,
        default=0,
        metavar="N",
        help="use only the first N training images (default: 0, all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("experiments/out/bench_training.csv"),
        help="CSV of every row (default: experiments/out/bench_training.csv)",
    )


def bench_sizes(args: argparse.Namespace) -> dict[str, int]:
    """Each size as given, else its ``--full`` or quick default; ValueError for a size below
    its least (1; 0 for ``--warmup``)."""
    defaults = FULL if args.full else QUICK
    sizes = {
        name: defaults[name] if getattr(args, name) is None else getattr(args, name)
        for name in SIZE_HELP
    }
    for name, value in sizes.items():
        least = 0 if name == "warmup" else 1
        if value < least:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    return sizes
