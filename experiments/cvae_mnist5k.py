"""The conditional VAE against the plain VAE on mnist5k, at an equal budget, 3 seeds.

Trains ``--model vae``, ``--model cvae`` (prior N(0, I)) and ``--model cvae
--conditional-prior`` (a learned p(z|y)) with the same networks (MLP 784-400-10; the
CVAE's first layers take 10 more inputs), epochs, batch size and learning rate; evaluates
each on the 500 test digits (IS with K samples: log p(x) for the VAE, log p(x|y) for the
CVAEs); and classifies class-conditional samples E[x|z, y] (``--per-class`` for each label)
with an MLP classifier trained on the training split, to see whether they look like
their label.

    python experiments/cvae_mnist5k.py                    # 100 epochs, 3 seeds: ~12 min
    python experiments/cvae_mnist5k.py --epochs 2 --seeds 0 --k 10 --per-class 5   # smoke

Finished runs and evaluations are reused when the command is rerun with the same settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import pyro_vae
from pyro_vae.app.registry import load_dataset
from pyro_vae.app.run_folder import RunFolder
from pyro_vae.rng import isolated_rng

MODELS = {
    "vae": {"model": "vae"},
    "cvae": {"model": "cvae"},
    "cvae, p(z|y)": {"model": "cvae", "conditional_prior": True},
}
OUT = Path(__file__).resolve().parent / "out" / "cvae_mnist5k"


def classifier(epochs: int, hidden: int = 512, seed: int = 0) -> tuple[nn.Module, float]:
    """An MLP trained on mnist5k's training split (grey values in [0, 1]); its test accuracy."""
    data = load_dataset("mnist5k")
    x, y = data.x_train.float().div(255).flatten(1), data.y_train
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            optim.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optim.step()
    net.eval()
    with torch.no_grad():
        test = net(data.x_test.float().div(255).flatten(1)).argmax(1)
    return net, float((test == data.y_test).float().mean())


def run(name: str, seed: int, args: argparse.Namespace) -> dict:
    """Train (unless finished with these settings), evaluate and, for a CVAE, classify samples."""
    out = args.out / name.replace(", ", "-").replace("|", "") / f"seed{seed}"
    cfg = pyro_vae.Config(
        dataset="mnist5k", epochs=args.epochs, seed=seed, eval_k=args.k, out=str(out),
        threads=1, **MODELS[name],
    )  # fmt: skip
    folder = RunFolder(out)
    finished = folder.holds_run() and folder.read_info().get("finished")
    if not (finished and folder.read_config() == cfg):
        pyro_vae.train(cfg, overwrite=True, progress=False, log=lambda _: None)
    metrics = folder.read_metrics()
    eval_path = out / "eval.json"
    scores = json.loads(eval_path.read_text()) if eval_path.exists() else {}
    if scores.get("k") != args.k:
        scores = pyro_vae.evaluate(out, k=args.k).to_dict()
    row = {
        "model": name,
        "seed": seed,
        "log_px": scores["log_px"],
        "log_px_se": scores["log_px_se"],
        "elbo": scores["elbo"],
        "kl": scores["kl"],
        "conditional": scores["conditional"],
        "train_seconds": sum(r["seconds"] for r in metrics),
    }
    model = pyro_vae.load_run(out).model
    if cfg.model == "cvae":
        labels = torch.arange(10).repeat_interleave(args.per_class)
        with isolated_rng(seed, "cpu"):
            images = model.sample(labels).flatten(1)
        with torch.no_grad():
            predicted = args.net(images).argmax(1)
        right = predicted == labels
        row["sample_accuracy"] = float(right.float().mean())
        row["worst_class"] = min(
            (float(right[labels == c].float().mean()), c) for c in range(10)
        )  # fmt: skip
    return row


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def report(rows: list[dict]) -> str:
    lines = [
        "| model | IS estimate (nats) | ELBO | KL | samples classified as their label | "
        "train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        mine = [r for r in rows if r["model"] == name]
        what = "log p(x\\|y)" if mine[0]["conditional"] else "log p(x)"
        accuracy = (
            mean_std([100 * r["sample_accuracy"] for r in mine]) + " %"
            if "sample_accuracy" in mine[0]
            else "n/a"
        )
        shown = name.replace("|", "\\|")  # a pipe inside a markdown table cell
        lines.append(
            f"| {shown} | {what} {mean_std([r['log_px'] for r in mine])} | "
            f"{mean_std([r['elbo'] for r in mine])} | {mean_std([r['kl'] for r in mine])} | "
            f"{accuracy} | {mean_std([r['train_seconds'] for r in mine])} |"
        )
    vae = {r["seed"]: r["log_px"] for r in rows if r["model"] == "vae"}
    for name in list(MODELS)[1:]:
        gain = [r["log_px"] - vae[r["seed"]] for r in rows if r["model"] == name]
        lines.append(f"\n{name}: log p(x|y) - log p(x) of the VAE, same seed: {mean_std(gain)}")
        worst = [r["worst_class"] for r in rows if r["model"] == name]
        lines.append(
            f"{name}: worst class per seed: "
            + ", ".join(f"{c} ({100 * a:.0f} %)" for a, c in worst)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k", type=int, default=5000, help="importance samples per test digit")
    parser.add_argument("--per-class", type=int, default=100, help="samples of each label")
    parser.add_argument("--classifier-epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    args.net, accuracy = classifier(args.classifier_epochs)
    print(f"classifier (MLP 784-512-10 on the training split): {100 * accuracy:.1f} % on test")
    rows = []
    for seed in args.seeds:
        for name in MODELS:
            rows.append(run(name, seed, args))
            print(json.dumps(rows[-1]), flush=True)
    summary = report(rows)
    print(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(summary + "\n")
    print(f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
