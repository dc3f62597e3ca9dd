"""Compare likelihoods p(x|z) with everything else fixed: by default every registered one.

    python experiments/compare_likelihoods.py
    python experiments/compare_likelihoods.py --likelihoods bernoulli continuous-bernoulli

Each likelihood gets the data it needs (binarized for Bernoulli, [0, 1] for continuous
ones, 8-bit levels for discretized ones). Their numbers live on different scales
(binary nats, densities, bits per dimension), so the report ranks them only when they
share one, and otherwise says why not. Any ``pyro-vae compare`` flag overrides a
default; rerunning resumes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pyro_vae.app.cli import main as pyro_vae
from pyro_vae.app.registry import LIKELIHOODS

DEFAULTS = [
    "--dataset", "mnist5k", "--epochs", "50", "--latent-dim", "10", "--seeds", "0", "1", "2",
    "--eval-k", "1000",
    "--out", str(Path(__file__).resolve().parent / "out" / "compare_likelihoods"),
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    grid = [] if "--likelihoods" in argv else ["--likelihoods", *sorted(LIKELIHOODS)]
    return pyro_vae(["compare", *DEFAULTS, *grid, *argv])


if __name__ == "__main__":
    sys.exit(main())
