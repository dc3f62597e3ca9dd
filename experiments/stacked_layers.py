"""Two stochastic layers against one of the same total width, trained with ``iwae:k=5``.

    python experiments/stacked_layers.py      # 3 seeds; writes experiments/out/stacked_layers
    python experiments/stacked_layers.py --epochs 100 --latent-activation tanh --out DIR

Burda et al. (2016)'s two-layer MNIST model (z2 of 50 -> z1 of 100 -> x, MLPs of 200 200
between x and z1, of 100 100 between z1 and z2, ReLU or ``--latent-activation tanh``)
against one layer of 150 units with the same MLPs between x and z: the same 150 stochastic
units and the same x-side networks, so the stack only adds the 100 100 MLPs of p(z1|z2)
and q(z2|z1) (the script prints each model's parameter count). Everything else is fixed:
mnist5k, the same epochs, batch 128, Adam 1e-3, IS log p(x) with K = 5000 on the test
split. It is one ``pyro-vae compare`` (any of its flags overrides a default; rerunning
resumes), then a table of each run's active units per layer from its eval.json, written to
``layers.md`` beside the comparison.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from pyro_vae.app.build import build_model
from pyro_vae.app.cli import main as pyro_vae
from pyro_vae.app.config import Config

OUT = Path(__file__).resolve().parent / "out" / "stacked_layers"
DEFAULTS = [
    "--dataset", "mnist5k", "--objective", "iwae:k=5", "--hidden", "200", "200",
    "--latent-hidden", "100", "100", "--vary", "latent_dim=150,[100,50]", "--epochs", "300",
    "--seeds", "0", "1", "2", "--eval-k", "5000", "--jobs", "1", "--out", str(OUT),
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    code = pyro_vae(["compare", *DEFAULTS, *argv])
    if code == 0:
        out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else OUT
        table = layers_table(out)
        (out / "layers.md").write_text(table + "\n")
        print(table)
    return code


def layers_table(out: Path) -> str:
    """Mean over seeds of IS log p(x), the ELBO and the active units of each layer, per model."""
    rows = ["| latent_dim | parameters | log p(x) | ELBO | active units per layer | seeds |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for model in sorted((out / "runs").iterdir()):
        scores = [json.loads(p.read_text()) for p in sorted(model.glob("*/eval.json"))]
        if not scores:
            continue
        run = next(model.glob("*/run.json")).parent
        shape = tuple(json.loads((run / "run.json").read_text())["data_shape"])
        built = build_model(Config.from_file(run / "config.toml"), shape)
        size = sum(p.numel() for p in built.parameters())
        log_px = [s["log_px"] for s in scores]
        elbo = [s["elbo"] for s in scores]
        layers = [s.get("active_units_per_layer") or [s["active_units"]] for s in scores]
        dims = scores[0].get("latent_dims") or [scores[0]["latent_dim"]]
        active = ", ".join(
            f"{statistics.mean(a[i] for a in layers):.1f} / {d}" for i, d in enumerate(dims)
        )
        rows.append(
            f"| {model.name.replace('_', ' ')} | {size:,} | "
            f"{_mean_sd(log_px)} | {_mean_sd(elbo)} | {active} | {len(scores)} |"
        )
    return "\n".join(rows)


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


if __name__ == "__main__":
    sys.exit(main())
