"""Two stochastic layers against one of the same total width, trained with ``iwae:k=5``.

    python experiments/stacked_layers.py      # 3 seeds; writes experiments/out/stacked_layers
    python experiments/stacked_layers.py --epochs 100 --latent-activation tanh --out DIR
    python experiments/stacked_layers.py --activation tanh --latent-activation tanh --out DIR

Burda et al. (2016)'s two-layer MNIST model (z2 of 50 -> z1 of 100 -> x, MLPs of 200 200
between x and z1, of 100 100 between z1 and z2, ReLU or ``--latent-activation tanh``)
against one layer of 150 units with the same MLPs between x and z (``--activation``, ReLU
by default, tanh as Burda's, for both models): the same 150 stochastic units and the same
x-side networks, so the stack only adds the 100 100 MLPs of p(z1|z2) and q(z2|z1) (the
script prints each model's parameter count). Everything else is fixed: mnist5k, the same
epochs, batch 128, Adam 1e-3, IS log p(x) with K = 5000 on the test split. It is one
``pyro-vae compare`` (any of its flags overrides a default; rerunning resumes), then a
table of each run's active units per layer from its eval.json and of the top layer's KL on
the test digits, with the stack's gain over one layer paired by seed, written to
``layers.md`` beside the comparison.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from pyro_vae.app.build import build_model
from pyro_vae.app.cli import main as pyro_vae
from pyro_vae.app.config import Config
from pyro_vae.app.load import load_run
from pyro_vae.app.registry import load_dataset
from pyro_vae.convention import data_support
from pyro_vae.data import prepare_data
from pyro_vae.families.stacked import StackedVAE

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
    """Mean over seeds of IS log p(x), the ELBO, the active units of each layer and the top
    layer's KL, per model; then the first's log p(x) minus each other's, paired by seed."""
    rows = ["| latent_dim | parameters | log p(x) | ELBO | active units per layer | "
            "KL of the top layer | seeds |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    per_seed: dict[str, dict[str, float]] = {}
    for model in sorted((out / "runs").iterdir()):
        runs = sorted(p.parent for p in model.glob("*/eval.json"))
        scores = [json.loads((run / "eval.json").read_text()) for run in runs]
        if not scores:
            continue
        per_seed[model.name] = {run.name: s["log_px"] for run, s in zip(runs, scores, strict=True)}
        top_kl = [top_layer_kl(run) for run in runs]
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
        kl = "" if None in top_kl else ", ".join(f"{k:.2f}" for k in top_kl)
        rows.append(
            f"| {model.name.replace('_', ' ')} | {size:,} | "
            f"{_mean_sd(log_px)} | {_mean_sd(elbo)} | {active} | {kl} | {len(scores)} |"
        )
    return "\n".join(rows + _paired(per_seed))


def _paired(per_seed: dict[str, dict[str, float]]) -> list[str]:
    """Lines of the first model's log p(x) (the stack, sorted first) minus each other's, seed
    by seed (runs of the same name)."""
    (first, base), *others = per_seed.items()
    lines = [""]
    for name, scores in others:
        diffs = [base[seed] - scores[seed] for seed in sorted(set(scores) & set(base))]
        shown = ", ".join(f"{d:+.2f}" for d in diffs)
        lines.append(
            f"{first.replace('_', ' ')} minus {name.replace('_', ' ')}, paired by seed: {shown} "
            f"(mean {statistics.mean(diffs):+.2f})"
        )
    return lines


def top_layer_kl(run_dir: Path, draws: int = 8) -> float | None:
    """E[log q(z_L|z_L-1) - log p(z_L)] of a stacked run over its test digits (``draws``
    draws through the guide's chain for each), the nats the top layer carries; None for a
    one-layer run."""
    run = load_run(run_dir)
    if not isinstance(run.model, StackedVAE):
        return None
    cfg = run.config
    dataset = load_dataset(cfg.dataset, cfg.data_dir, fallback=False)
    support = data_support(run.model)
    x = prepare_data(dataset, support, cfg.likelihood, cfg.binarize, cfg.seed).test
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    with torch.no_grad():
        z = run.model.encoder(run.model.shaped(x)).sample((draws,))
        for layer in run.model.guide_layers:
            q = layer(z)
            z = q.sample()
        kl = q.log_prob(z) - run.model.prior().log_prob(z)
    torch.random.set_rng_state(generator_state)
    return kl.mean().item()


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


if __name__ == "__main__":
    sys.exit(main())
