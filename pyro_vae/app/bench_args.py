"""The benchmark's command-line options, shared by ``pyro-vae bench`` and the experiments script.

Kept apart from :mod:`pyro_vae.bench` so that building the CLI parser imports nothing heavy.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_bench_arguments(parser)
    >>> parser.parse_args(["--steps", "50"]).steps
    50
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_bench_arguments"]


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="mnist5k", help="mnist5k (offline) or fashion-mnist")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument(
        "--train-images", type=int, default=0, help="use only the first N training images (0: all)"
    )
    parser.add_argument(
        "--log-px-images", type=int, default=200, help="images scored for the log p(x) throughput"
    )
    parser.add_argument(
        "--epoch-rounds", type=int, default=3, help="epochs timed per pipeline (median reported)"
    )
    parser.add_argument("--memory-k", type=int, default=5000, help="K of the peak-memory check")
    parser.add_argument(
        "--memory-images", type=int, default=10_000, help="images of the peak-memory check"
    )
    parser.add_argument("--out", type=Path, default=Path("experiments/out/bench_training.csv"))
