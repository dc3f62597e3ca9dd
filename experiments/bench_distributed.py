"""Data-parallel throughput: 1 process against 2 processes (gloo, DistributedDataParallel).

Each configuration trains the same model on the same data with the same global
batch for a fixed number of steps after a warm-up, and reports images per second.
Scaling efficiency = throughput(N processes, 1 thread each) / (N x throughput(1
process, 1 thread)). On a 2-core machine, one process with 2 threads is the
honest baseline a user would otherwise run, so it is measured too.

    python experiments/bench_distributed.py --steps 60 --batch-size 256
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyro_vae import Config, build_vae
from pyro_vae.app.distributed import DistContext, init_distributed
from pyro_vae.app.registry import load_dataset
from pyro_vae.app.trainer import Trainer
from pyro_vae.data import prepare_data


def _trainer(args: argparse.Namespace, ctx: DistContext) -> Trainer:
    cfg = Config(dataset=args.dataset, batch_size=args.batch_size, hidden=[400], latent_dim=20)
    data = prepare_data(load_dataset(args.dataset), "binary", "bernoulli", "dynamic", seed=0)
    torch.manual_seed(0)
    return Trainer(cfg, build_vae(cfg, data.data_shape), data, ctx)


def _timed_steps(trainer: Trainer, warmup: int, steps: int) -> float:
    """Seconds for ``steps`` training steps after ``warmup`` (epochs wrap around)."""
    ctx = trainer.ctx
    batches = trainer.data.batch_indices(0, trainer.cfg.batch_size, ctx.rank, ctx.world_size)
    x = trainer.data.epoch_train(0)
    for i in range(warmup):
        trainer.train_step(x[batches[i % len(batches)]])
    if ctx.is_distributed:
        dist.barrier()
    started = time.perf_counter()
    for i in range(steps):
        trainer.train_step(x[batches[(warmup + i) % len(batches)]])
    if ctx.is_distributed:
        dist.barrier()
    return time.perf_counter() - started


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    ctx, _ = init_distributed("cpu", timeout_seconds=120)
    seconds = _timed_steps(_trainer(args, ctx), args.warmup, args.steps)
    if ctx.is_main:
        Path(out).write_text(str(seconds))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args: argparse.Namespace) -> list[dict]:
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        seconds = _timed_steps(_trainer(args, DistContext()), args.warmup, args.steps)
        rows.append({"processes": 1, "threads_each": threads, "seconds": seconds})
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "seconds")
        mp.spawn(_worker, args=(2, _free_port(), args, out), nprocs=2, join=True)
        rows.append({"processes": 2, "threads_each": 1, "seconds": float(Path(out).read_text())})
    base = rows[0]["seconds"]
    for row in rows:
        row["images_per_s"] = args.steps * args.batch_size / row["seconds"]
        row["speedup_vs_1x1"] = base / row["seconds"]
        row["efficiency"] = row["speedup_vs_1x1"] / (row["processes"] * row["threads_each"])
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch size")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("experiments/out/bench_distributed.csv"))
    args = parser.parse_args(argv)
    rows = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'processes':>9} {'threads':>7} {'images/s':>10} {'speedup':>8} {'efficiency':>10}")
    for row in rows:
        print(
            f"{row['processes']:>9} {row['threads_each']:>7} {row['images_per_s']:>10.0f} "
            f"{row['speedup_vs_1x1']:>8.2f} {row['efficiency']:>10.2f}"
        )
    print(f"written: {args.out}")
    return rows


if __name__ == "__main__":
    main()
