"""The CUDA path, checked and timed in one short run, for a session that is lent a GPU.

1. The default training step needs no host-device sync: steps 2-9 of an epoch run
   under ``torch.cuda.set_sync_debug_mode("error")`` (the first step validates the
   data, the fault record is read at step 10), so any sync raises and names its op.
2. ``torchrun`` with one process trains a short run on the GPU (the nccl path).
3. The training benchmark on the GPU (steps, epoch, log p(x), GPU memory).

Without a GPU it says so and exits with status 1. About 3 minutes on an H100::

    python experiments/gpu_check.py --out experiments/out/bench_training_cuda.csv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from pyro_vae import Config, build_vae
from pyro_vae.app.bench import BenchSettings, format_table, run_benchmark, write_csv
from pyro_vae.app.registry import load_dataset
from pyro_vae.app.trainer import GPU_FAULT_READ_EVERY, Trainer
from pyro_vae.data import prepare_data


def check_no_sync_in_the_step() -> None:
    device = torch.device("cuda")
    cfg = Config(dataset="mnist5k", device="cuda", hidden=[400], latent_dim=20, batch_size=128)
    data = prepare_data(load_dataset("mnist5k"), "binary", "bernoulli", "dynamic", 0, device)
    trainer = Trainer(cfg, build_vae(cfg, data.data_shape).to(device), data)
    x, batches = data.epoch_train(0), data.batch_indices(0, cfg.batch_size)
    trainer.train_step(x[batches[0]])  # validates the data: allowed to sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(1, GPU_FAULT_READ_EVERY - 1):
            trainer.position.step = i
            trainer.train_step(x[batches[i]])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.read_faults()
    print(f"ok: steps 2-{GPU_FAULT_READ_EVERY - 1} ran without a host-device sync")


def check_torchrun_nccl() -> None:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node=1", "-m", "pyro_vae", "train", "--device", "cuda",
                   "--epochs", "2", "--out", f"{folder}/run", "--no-progress"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        print(done.stdout[-1500:], done.stderr[-1500:], sep="\n")
        if done.returncode != 0:
            raise SystemExit(f"torchrun on cuda failed with status {done.returncode}")
    print("ok: torchrun trained on the GPU (nccl)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per contender")
    parser.add_argument("--out", type=Path, default=Path("experiments/out/bench_training_cuda.csv"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: this check needs a GPU")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    check_no_sync_in_the_step()
    check_torchrun_nccl()
    rows = run_benchmark(BenchSettings(device="cuda", steps=args.steps))
    print(format_table(rows))
    write_csv(rows, args.out)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
