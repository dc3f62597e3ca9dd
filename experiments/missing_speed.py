"""What missing-value support costs: the default training step and data preparation, timed.

    PYTHONPATH=/work/main python experiments/missing_speed.py            # the code before
    PYTHONPATH=. python experiments/missing_speed.py                     # this branch
    PYTHONPATH=. python experiments/missing_speed.py --missing 0.5       # the masked path

Times ``prepare_data`` of mnist5k and the trainer's step (the default VAE: Bernoulli
likelihood on dynamically binarized digits, ``--objective``, batch 128, one thread), on
complete data, or with a seeded fraction ``--missing`` of the pixels missing. Uses only
APIs that predate missing values (unless ``--missing``), so the same script times the code
before and after; run them alternately and compare the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyro_vae import Config
from pyro_vae.app.build import build_vae
from pyro_vae.app.trainer import Trainer
from pyro_vae.data import prepare_data
from pyro_vae.datasets import Dataset, load_mnist5k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--objective", default="elbo")
    parser.add_argument("--missing", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mnist = load_mnist5k()
    if args.missing:
        generator = torch.Generator().manual_seed(0)
        masks = [torch.rand(x.shape, generator=generator) >= args.missing
                 for x in (mnist.x_train, mnist.x_test)]  # fmt: skip
        mnist = Dataset.from_tensors(
            mnist.x_train, mnist.x_test, mask_train=masks[0], mask_test=masks[1]
        )
    prepare = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        data = prepare_data(mnist, "binary", "bernoulli", "dynamic", seed=0)
        prepare.append(time.perf_counter() - started)
    cfg = Config(dataset="mnist5k", objective=args.objective, seed=0)
    torch.manual_seed(0)
    model = build_vae(cfg, data.data_shape)
    if args.missing:
        from pyro_vae.missing import allow_missing

        allow_missing(model)
    trainer = Trainer(cfg, model, data)
    x = data.epoch_train(0)
    batches = data.batch_indices(0, cfg.batch_size)
    step_ms, cpu_ms = [], []
    for _ in range(args.rounds):
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(args.steps):
            trainer.train_step(x[batches[i % len(batches)]])
        step_ms.append(1000 * (time.perf_counter() - started) / args.steps)
        cpu_ms.append(1000 * (time.process_time() - cpu) / args.steps)
    print(
        f"prepare_data {1000 * statistics.median(prepare):.1f} ms, step "
        f"{statistics.median(step_ms):.3f} ms wall, {statistics.median(cpu_ms):.3f} ms CPU "
        f"(medians of {args.rounds} rounds of {args.steps}; wall "
        f"{' '.join(f'{v:.3f}' for v in step_ms)}), missing {args.missing}"
    )


if __name__ == "__main__":
    main()
