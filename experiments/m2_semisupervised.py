"""M2 against a supervised baseline, and the ablations, with few labels.

For each label count and seed: M2 (``--model m2``, the label summed exactly) trained
through ``pyro_vae.train`` and scored by ``pyro_vae.evaluate`` (test accuracy of q(y|x),
ELBO, IS log p(x) with the label summed out), and the supervised baseline: the same
classifier network (M2's q(y|x), built from the same config and seed) trained by
cross-entropy on the labelled subset alone, with the same optimizer, learning rate, steps
and labelled batches (the labelled stream of the M2 run, so both see the same labels in
the same order). Variants: ``sampled`` (``--objective graph``: y sampled from q(y|x),
score-function gradients, instead of summed), ``no-aux`` (``--aux-loss 0``), ``aux=A``
(another weight) or any config changes ``key=value,key=value`` (``aux=100,latent_dim=10``).
Runs that finished are not run again. ``--validation N`` holds out N training images (the
same number of each class) as the test split, to choose settings on without the test set.

    python experiments/m2_semisupervised.py --dataset mnist5k --validation 500 --labels 100 \
        --seeds 0 --epochs 60 --variants supervised aux=10 aux=100 --out experiments/out/m2-val
    python experiments/m2_semisupervised.py --dataset fashion-mnist --labels 100 600 3000 \
        --seeds 0 --epochs 5 --out experiments/out/m2-fashion

Writes ``OUT/results.csv`` (one row per run, earlier runs in OUT kept) and ``OUT/results.md``
(mean and std over the seeds) and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import pyro_vae
from pyro_vae.app.m2 import build_m2
from pyro_vae.app.registry import load_dataset
from pyro_vae.app.runtime import apply_threads, make_adam, seed_everything
from pyro_vae.convention import data_support
from pyro_vae.data import prepare_data
from pyro_vae.semisupervised import parse_labels, semi_supervised

FIELDS = ["dataset", "labels", "variant", "seed", "epochs", "accuracy", "log_px", "elbo",
          "train_seconds"]  # fmt: skip


NAMED = {"m2": {}, "sampled": {"objective": "graph"}, "no-aux": {"aux_loss": 0.0}}


def variant_changes(variant: str) -> dict:
    """Config changes of a variant: a name of NAMED, ``aux=A``, or ``key=value,key=value``."""
    if variant in NAMED:
        return NAMED[variant]
    changes = {}
    for item in variant.split(","):
        key, _, value = item.partition("=")
        changes[{"aux": "aux_loss"}.get(key, key).replace("-", "_")] = value
    return changes


def _config(args: argparse.Namespace, labels: str, seed: int, out: Path, variant: str):
    changes = {} if variant == "supervised" else variant_changes(variant)
    cfg = pyro_vae.Config(
        model="m2", dataset=str(args.dataset_path), labels=labels, seed=seed, epochs=args.epochs,
        latent_dim=args.latent_dim, hidden=args.hidden, batch_size=args.batch_size, lr=args.lr,
        likelihood=args.likelihood, binarize=args.binarize, eval_k=args.eval_k, out=str(out),
        threads=1,
    )  # fmt: skip
    return cfg.replace(**{key: type(getattr(cfg, key))(v) for key, v in changes.items()})


def validation_split(dataset_name: str, count: int, out: Path) -> Path:
    """An .npz of the dataset's training split with ``count`` of its images (the same number
    of each class, a fixed draw) held out as the test split, to choose settings on."""
    path = out / f"{Path(dataset_name).stem}-validation{count}.npz"
    if path.is_file():
        return path
    dataset = load_dataset(dataset_name)
    x, y = dataset.x_train.numpy(), dataset.y_train.long().numpy()
    rng = np.random.default_rng(0)
    held = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(y == c))[: count // (int(y.max()) + 1)]
        for c in range(int(y.max()) + 1)
    ]))  # fmt: skip
    keep = np.setdiff1d(np.arange(len(y)), held)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x[keep], y=y[keep], x_test=x[held], y_test=y[held])
    return path


def run_m2(args, labels: str, seed: int, variant: str, folder: Path) -> dict:
    cfg = _config(args, labels, seed, folder, variant)
    done = folder / "eval.json"
    if not done.is_file():
        started = time.perf_counter()
        resume = folder / "checkpoint.pt"
        if resume.is_file():
            pyro_vae.train(resume=folder, progress=False)
        else:
            pyro_vae.train(cfg, overwrite=True, progress=False)
        seconds = time.perf_counter() - started
        scores = pyro_vae.evaluate(folder, k=args.eval_k)
        payload = json.loads(done.read_text())
        payload["train_seconds"] = seconds
        done.write_text(json.dumps(payload))
    scores = json.loads(done.read_text())
    return {"accuracy": scores["accuracy"], "log_px": scores["log_px"], "elbo": scores["elbo"],
            "train_seconds": scores["train_seconds"]}  # fmt: skip


def run_supervised(args, labels: str, seed: int, folder: Path) -> dict:
    """M2's classifier network trained on the labelled subset alone, same steps and batches."""
    done = folder / "supervised.json"
    if done.is_file():
        return json.loads(done.read_text())
    apply_threads(1)
    cfg = _config(args, labels, seed, folder, "m2")
    dataset = load_dataset(cfg.dataset)
    num_classes = int(dataset.y_train.max()) + 1
    seed_everything(seed)
    classifier = build_m2(cfg, dataset.data_shape, num_classes).classifier
    support = data_support(build_m2(cfg, dataset.data_shape, num_classes))
    data = prepare_data(dataset, support, cfg.likelihood, cfg.binarize, seed)
    data = semi_supervised(data, parse_labels(labels), seed, num_classes)
    y = data.y_train.long()
    optimizer = make_adam(list(classifier.parameters()), cfg.lr)
    unlabelled_batch = data.step_sizes(cfg.batch_size)[0]
    started = time.perf_counter()
    for epoch in range(cfg.epochs):
        x = data.epoch_train(epoch)
        for step in data.batch_indices(epoch, cfg.batch_size):
            labelled = step[unlabelled_batch:]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(classifier(x[labelled]), y[labelled]).backward()
            optimizer.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        predicted = torch.cat([classifier(chunk).argmax(-1) for chunk in data.test.split(1000)])
    accuracy = float((predicted == data.y_test).float().mean())
    result = {"accuracy": accuracy, "log_px": "", "elbo": "", "train_seconds": seconds}
    folder.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(result))
    return result


def _merged(path: Path, rows: list[dict]) -> list[dict]:
    """The rows of an earlier results.csv in ``path``, updated with ``rows`` (one per run)."""
    merged = {}
    if path.is_file():
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                merged[(row["dataset"], row["labels"], row["variant"], str(row["seed"]))] = row
    for row in rows:
        merged[(row["dataset"], row["labels"], row["variant"], str(row["seed"]))] = row
    return list(merged.values())


def summarize(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["labels"], row["variant"]), []).append(row)
    lines = [
        "| dataset | labels | variant | seeds | test accuracy (%) | log p(x) | ELBO | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(values: list, scale: float = 1.0, digits: int = 2) -> str:
        values = [scale * float(v) for v in values if v != ""]
        if not values:
            return "-"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"

    for (dataset, labels, variant), group in groups.items():
        lines.append(
            f"| {dataset} | {labels} | {variant} | {len(group)} | "
            f"{cell([r['accuracy'] for r in group], 100)} | "
            f"{cell([r['log_px'] for r in group])} | {cell([r['elbo'] for r in group])} | "
            f"{cell([r['train_seconds'] for r in group], digits=0)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--labels", nargs="+", default=["100"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["m2", "supervised"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--latent-dim", type=int, default=50)
    parser.add_argument("--hidden", nargs="+", type=int, default=[500])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--likelihood", default="bernoulli")
    parser.add_argument("--binarize", default="auto")
    parser.add_argument("--eval-k", type=int, default=100)
    parser.add_argument("--validation", type=int, default=0,
                        help="hold out this many training images as the test split, to choose "
                        "settings on (0: score on the dataset's test split)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("experiments/out/m2"))
    args = parser.parse_args(argv)
    args.dataset_path = args.dataset
    if args.validation:
        args.dataset_path = validation_split(args.dataset, args.validation, args.out)
    name = Path(args.dataset).stem if args.dataset.endswith(".npz") else args.dataset
    name = f"{name}-val{args.validation}" if args.validation else name
    rows = []
    for labels in args.labels:
        for variant in args.variants:
            for seed in args.seeds:
                folder = args.out / "runs" / f"{name}-{labels}" / variant / f"seed{seed}"
                if variant == "supervised":
                    result = run_supervised(args, labels, seed, folder)
                else:
                    result = run_m2(args, labels, seed, variant, folder)
                row = {"dataset": name, "labels": labels, "variant": variant,
                       "seed": seed, "epochs": args.epochs, **result}  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    table_rows = _merged(args.out / "results.csv", rows)
    with (args.out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(table_rows)
    table = summarize(table_rows)
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    return rows


if __name__ == "__main__":
    main()
