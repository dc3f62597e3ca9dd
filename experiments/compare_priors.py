"""Compare priors p(z) with everything else fixed: by default every registered prior, 3 seeds.

    python experiments/compare_priors.py                       # every prior `pyro-vae list` shows
    python experiments/compare_priors.py --priors standard-normal mog vamp

Priors change p(z) only, so log p(x) estimates are on the likelihood's scale and are
ranked. Any ``pyro-vae compare`` flag overrides a default; rerunning resumes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pyro_vae.app.cli import main as pyro_vae
from pyro_vae.app.registry import PRIORS

DEFAULTS = [
    "--dataset", "mnist5k", "--epochs", "50", "--latent-dim", "10", "--seeds", "0", "1", "2",
    "--eval-k", "1000", "--out", str(Path(__file__).resolve().parent / "out" / "compare_priors"),
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    grid = [] if "--priors" in argv else ["--priors", *sorted(PRIORS)]
    return pyro_vae(["compare", *DEFAULTS, *grid, *argv])


if __name__ == "__main__":
    sys.exit(main())
