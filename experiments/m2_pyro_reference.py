"""Pyro's own M2 (examples/vae/ss_vae_M2.py's SSVAE and SVI losses) on pyro-vae's data and
schedule: the reference for pyro-vae's M2 accuracy at the same budget.

The same labelled subset (balanced, by seed), the same steps (an unlabelled batch and the
cycled labelled batch), binarized digits, Adam at the same learning rate; Pyro's SSVAE with
its Softplus networks at pyro-vae's sizes, ``TraceEnum_ELBO`` on the enumerated guide and
its auxiliary loss at its multiplier (``-alm``, default 46 per labelled datapoint, which is
``--aux-loss 46 N_l / N`` in pyro-vae). Prints the test accuracy of its q(y|x) after the
last epoch, per seed.

    OMP_NUM_THREADS=1 python experiments/m2_pyro_reference.py --epochs 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from m2_speed import pyro_pipeline  # noqa: E402

from pyro_vae.app.registry import load_dataset  # noqa: E402
from pyro_vae.app.runtime import apply_threads  # noqa: E402
from pyro_vae.data import prepare_data  # noqa: E402
from pyro_vae.semisupervised import semi_supervised  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--aux", type=float, default=46.0, help="Pyro's -alm multiplier")
    parser.add_argument("--latent-dim", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    apply_threads(1)
    dataset = load_dataset(args.dataset)
    classes = int(dataset.y_train.max()) + 1
    rows = []
    for seed in args.seeds:
        data = prepare_data(dataset, "binary", "bernoulli", "dynamic", seed)
        data = semi_supervised(data, args.labels, seed, classes)
        data.train = data.epoch_train(0)  # one binarization (Pyro's loaders hold fixed tensors)
        data.dynamic = False
        epoch, ssvae = pyro_pipeline(
            data, seed, args.batch_size, args.latent_dim, args.hidden, aux=args.aux
        )
        started = time.perf_counter()
        for _ in range(args.epochs):
            epoch()
        with torch.no_grad():
            predicted = ssvae.encoder_y(data.test.flatten(1)).argmax(-1)
        accuracy = float((predicted == data.y_test).float().mean())
        row = {"seed": seed, "epochs": args.epochs, "labels": args.labels, "aux": args.aux,
               "accuracy": accuracy, "train_seconds": time.perf_counter() - started}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    accuracies = [100 * row["accuracy"] for row in rows]
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(f"Pyro's SSVAE: test accuracy {statistics.mean(accuracies):.2f} ± {spread:.2f} %")
    return rows


if __name__ == "__main__":
    main()
