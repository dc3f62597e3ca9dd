"""Compare inference objectives on mnist5k: elbo, analytic-kl, iwae k=5, stl, dreg k=5; 3 seeds.

Every cell trains the same MLP VAE, 784-200-200-50 as in Burda et al. (2016) but with
ReLU, with a Bernoulli likelihood on dynamically binarized digits, for 100 epochs of
the 4,500 training images, with only the objective changed; each is evaluated on the
500 test digits with K=5000 importance samples. The table in experiments/RESULTS.md
came from

    python experiments/compare_objectives.py

Any ``pyro-vae compare`` flag overrides a default (``--epochs 1 --eval-k 10`` for a
smoke run, ``--objectives renyi:alpha=0.5,k=5 ...`` for other objectives). Rerunning
resumes: finished cells are read back, not retrained.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pyro_vae.app.cli import main as pyro_vae

OBJECTIVES = ["elbo", "analytic-kl", "iwae:k=5", "stl", "dreg:k=5"]
DEFAULTS = [
    "--dataset", "mnist5k", "--epochs", "100", "--batch-size", "100", "--hidden", "200", "200",
    "--latent-dim", "50", "--lr", "1e-3", "--seeds", "0", "1", "2", "--eval-k", "5000",
    "--device", "cpu", "--out", str(Path(__file__).resolve().parent / "out" / "compare_objectives"),
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    grid = [] if "--objectives" in argv else ["--objectives", *OBJECTIVES]
    return pyro_vae(["compare", *DEFAULTS, *grid, *argv])


if __name__ == "__main__":
    sys.exit(main())
