"""Speed, measured: pyro-vae against hand-written PyTorch and Pyro's classic example pipeline.

Everything runs in one process, on the same data, the same architecture (MLP
784-400-20, Bernoulli likelihood, standard Normal prior, Adam 1e-3) and the same
device. Step times are medians over many steps after a warm-up, with the two
contenders interleaved step by step so that both see the same machine noise;
every figure is reported as a ratio to its baseline. Each thread count asked for runs
every measurement in turn, and every row names its thread count.

Run it as ``pyro-vae bench`` or ``python experiments/bench_training.py``.

Example::

    rows = run_benchmark(BenchSettings(dataset="mnist5k", steps=50, threads=1))
    print(format_table(rows))
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import multiprocessing
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pyro
import torch
import torch.nn.functional as F
from PIL import Image
from pyro.infer import SVI, Trace_ELBO
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from torchvision.transforms import ToTensor

from ..data import TrainingData, prepare_data
from ..errors import ConfigError
from ..estimators import evaluate_vae
from ..guides import MAX_SCALE, MIN_SCALE
from ..vae import VAE
from .bench_args import add_bench_arguments, bench_sizes
from .build import build_vae
from .config import Config
from .registry import load_dataset
from .run_folder import refuse_run_record
from .runtime import apply_threads, make_adam, resolve_device, usable_cpus
from .trainer import Trainer

__all__ = ["BenchSettings", "run_benchmark", "format_table", "write_csv", "main"]

LOG_2PI = math.log(2 * math.pi)
LIMIT_ROWS = 10_000  # rows of the reference matmul: large enough to run at full speed


@dataclass(frozen=True)
class BenchSettings:
    dataset: str = "mnist5k"
    device: str = "cpu"
    steps: int = 200  # timed steps per contender and batch size
    warmup: int = 20
    epoch_batch_size: int = 256
    seed: int = 0
    train_images: int = 0  # 0: the whole training split
    log_px_images: int = 200
    rounds: int = 5
    epoch_rounds: int = 3
    memory_k: int = 5000
    memory_images: int = 10_000
    threads: int = 1  # CPU threads of torch's operators (0: leave torch's setting)


@dataclass
class BenchRow:
    measure: str
    pyro_vae: float
    baseline: float
    unit: str
    baseline_name: str
    target: str
    threads: int  # torch's CPU threads while measured

    @property
    def ratio(self) -> float:
        return self.pyro_vae / self.baseline

    def as_dict(self) -> dict:
        return {
            "threads": self.threads,
            "measure": self.measure,
            "pyro_vae": self.pyro_vae,
            "baseline": self.baseline,
            "unit": self.unit,
            "ratio": self.ratio,
            "baseline_name": self.baseline_name,
            "target": self.target,
        }


def _config(batch_size: int, device: str) -> Config:
    return Config(hidden=[400], latent_dim=20, batch_size=batch_size, lr=1e-3, device=device)


def _data(settings: BenchSettings, device: torch.device, binarize: str) -> TrainingData:
    dataset = load_dataset(settings.dataset, fallback=False)
    if settings.train_images:
        dataset.x_train = dataset.x_train[: settings.train_images]
    return prepare_data(dataset, "binary", "bernoulli", binarize, settings.seed, device)


def handwritten_step(vae: VAE, num_data: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same networks and single-sample Monte Carlo ELBO, written by hand in plain PyTorch."""
    encoder = copy.deepcopy(vae.encoder)
    decoder = copy.deepcopy(vae.decoder)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = make_adam(params, lr=1e-3)  # the same optimizer as the Trainer's

    def step(x: torch.Tensor) -> torch.Tensor:
        loc, raw = encoder.head(encoder.body(x)).chunk(2, dim=-1)
        scale = F.softplus(raw).clamp(max=MAX_SCALE) + MIN_SCALE
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        logits = decoder(z).view_as(x)
        log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        log_prior = -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * LOG_2PI
        log_q = (-0.5 * eps * eps - scale.log()).sum(1) - 0.5 * z.shape[1] * LOG_2PI
        loss = -(log_lik + log_prior - log_q).sum() * (num_data / x.shape[0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for the device's queued work (GPU), so a timer measures the work itself."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _interleaved_medians(
    contenders: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    batches: list[torch.Tensor],
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict[str, float]:
    """Median seconds per step of each contender, alternating contenders every step.

    Every contender steps on the same batch; who goes first flips each step, so none
    is favoured by finding the batch already in cache.
    """
    sync = _synchronizer(device)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders.items())
    for i in range(warmup + steps):
        x = batches[i % len(batches)]
        for name, step in order if i % 2 == 0 else reversed(order):
            sync()
            started = time.perf_counter()
            step(x)
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_steps(settings: BenchSettings, batch_size: int) -> list[BenchRow]:
    """pyro-vae's training step against the hand-written one, at one batch size.

    The default step (with its NaN guard, which the hand-written step lacks) and the
    step with ``--on-nan off`` run in the same interleaved loop, so the guard's cost
    shows as the difference between the two rows.
    """
    device = torch.device(settings.device)
    data = _data(settings, device, "dynamic")
    cfg = _config(batch_size, settings.device)
    trainers = {}
    for on_nan in ("recover", "off"):
        torch.manual_seed(settings.seed)
        trainers[on_nan] = Trainer(
            cfg.replace(on_nan=on_nan), build_vae(cfg, data.data_shape).to(device), data
        )
    baseline = handwritten_step(trainers["off"].model, data.num_train)
    x_epoch = data.epoch_train(0)
    batches = [x_epoch[index] for index in data.batch_indices(0, batch_size)]
    contenders = {name: t.train_step for name, t in trainers.items()}
    medians = _interleaved_medians(
        {**contenders, "handwritten": baseline}, batches, settings.steps, settings.warmup, device
    )
    target = "<= 1.05" if batch_size <= 128 else "<= 1.00"
    return [
        BenchRow(
            f"training step, batch {batch_size}"
            + ("" if on_nan == "recover" else ", --on-nan off"),
            medians[on_nan] * 1e3,
            medians["handwritten"] * 1e3,
            "ms/step",
            "hand-written PyTorch step",
            target,
            torch.get_num_threads(),
        )
        for on_nan in trainers
    ]


class PerItemImages(TorchDataset):
    """Images served one at a time as torchvision's MNIST does: a PIL image, then ToTensor."""

    def __init__(self, images: np.ndarray):
        self.images = images  # [N, H, W] uint8
        self.transform = ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index], mode="L")), 0


def measure_epoch(settings: BenchSettings) -> list[BenchRow]:
    """A full epoch of Pyro's classic example pipeline against a full pyro-vae epoch, and
    against the hand-written PyTorch step over the same on-device batches (how far the
    pipeline's own costs, rather than Pyro's, set the ratio)."""
    device = torch.device(settings.device)
    batch_size = settings.epoch_batch_size
    data = _data(settings, device, "static")
    images = (data.train[:, 0].cpu().numpy() * 255).astype(np.uint8)

    torch.manual_seed(settings.seed)
    cfg = _config(batch_size, settings.device)
    classic_vae = build_vae(cfg, data.data_shape).to(device)
    svi = SVI(classic_vae.model, classic_vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    # num_workers=0 is the setting of Pyro's examples/vae/utils/mnist_cached.py
    loader = DataLoader(PerItemImages(images), batch_size=batch_size, shuffle=True, num_workers=0)

    def classic_epoch() -> None:
        for x, _ in loader:
            svi.step(x.to(device), data.num_train)

    torch.manual_seed(settings.seed)
    trainer = Trainer(cfg, build_vae(cfg, data.data_shape).to(device), data)

    handwritten = handwritten_step(trainer.model, data.num_train)

    sync = _synchronizer(device)

    def epoch_of(step: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[int], None]:
        def run(epoch: int) -> None:
            x_epoch = data.epoch_train(epoch)
            for index in data.batch_indices(epoch, batch_size):
                step(x_epoch[index])
            sync()

        return run

    contenders = {
        "classic": lambda epoch: classic_epoch(),
        "pyro_vae": epoch_of(trainer.train_step),
        "handwritten": epoch_of(handwritten),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for epoch in range(settings.epoch_rounds):  # take turns, so all see the same machine noise
        for name, run_epoch in contenders.items():
            started = time.perf_counter()
            run_epoch(epoch)
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    what = f"batch {batch_size}, {data.num_train} images (median of {settings.epoch_rounds})"
    classic_name = "classic Pyro pipeline (DataLoader + per-item ToTensor + SVI/Trace_ELBO)"
    return [
        BenchRow(
            f"training epoch, {what}",
            median["pyro_vae"],
            median["classic"],
            "s/epoch",
            classic_name,
            "<= 0.33 (3x faster)",
            torch.get_num_threads(),
        ),
        BenchRow(
            f"hand-written PyTorch epoch, {what}",
            median["handwritten"],
            median["classic"],
            "s/epoch",
            classic_name,
            "reference: no target",
            torch.get_num_threads(),
        ),
    ]


def _decoder_linear_shapes(vae: VAE) -> list[tuple[int, int]]:
    """(in, out) features of each of the decoder's Linear layers."""
    return [
        (m.in_features, m.out_features)
        for m in vae.decoder.modules()
        if isinstance(m, torch.nn.Linear)
    ]


def _decoder_flops_per_sample(vae: VAE) -> int:
    """Multiply-adds x 2 of the decoder's Linear layers for one latent sample."""
    return sum(2 * n_in * n_out for n_in, n_out in _decoder_linear_shapes(vae))


def _matmul_flop_rate(vae: VAE, rows: int, device: torch.device, repeats: int = 10) -> float:
    """FLOP/s of plain torch matmuls with the decoder's shapes, the practical limit here."""
    shapes = _decoder_linear_shapes(vae)
    inputs = [torch.randn(rows, n_in, device=device) for n_in, _ in shapes]
    weights = [torch.randn(n_in, n_out, device=device) for n_in, n_out in shapes]
    sync = _synchronizer(device)
    for a, w in zip(inputs, weights, strict=True):
        a @ w
    sync()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for a, w in zip(inputs, weights, strict=True):
            a @ w
        sync()
        timings.append(time.perf_counter() - started)
    flops = sum(2 * rows * n_in * n_out for n_in, n_out in shapes)
    return flops / statistics.median(timings)


def measure_log_px_throughput(settings: BenchSettings, k: int = 1000) -> BenchRow:
    """Importance-sampled log p(x) in FLOP/s of decoder work, against a plain matmul."""
    device = torch.device(settings.device)
    data = _data(settings, device, "dynamic")
    torch.manual_seed(settings.seed)
    vae = build_vae(_config(128, settings.device), data.data_shape).to(device)
    x = data.test[: settings.log_px_images]
    evaluate_vae(vae, x[:2], k=k)  # warm-up
    rates, limits = [], []
    for _ in range(settings.rounds):  # alternate the two, so both see the same machine noise
        started = time.perf_counter()
        evaluate_vae(vae, x, k=k)
        rates.append(len(x) * k / (time.perf_counter() - started))
        limits.append(_matmul_flop_rate(vae, LIMIT_ROWS, device))
    samples_per_second = statistics.median(rates)
    achieved = samples_per_second * _decoder_flops_per_sample(vae)
    return BenchRow(
        f"log p(x) estimate, K={k}, {len(x)} images ({samples_per_second:,.0f} image-samples/s)",
        achieved / 1e9,
        statistics.median(limits) / 1e9,
        "GFLOP/s",
        "plain torch matmul of the decoder's shapes",
        ">= 0.60",
        torch.get_num_threads(),
    )


def _resident_bytes() -> int:
    """This process's resident memory now (Linux /proc), in bytes."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def _peak_memory_child(settings: BenchSettings, k: int, images: int, queue) -> None:
    """Memory before an evaluation and its peak during it: resident memory sampled every
    2 ms, or on a GPU the CUDA allocator's own peak."""
    apply_threads(settings.threads)
    device = torch.device(settings.device)
    data = _data(settings, device, "dynamic")
    x = data.test.repeat((images + len(data.test) - 1) // len(data.test), 1, 1, 1)[:images]
    torch.manual_seed(settings.seed)
    vae = build_vae(_config(128, settings.device), data.data_shape).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        evaluate_vae(vae, x, k=k)
        queue.put((before, torch.cuda.max_memory_allocated(device)))
        return
    before = _resident_bytes()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], _resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    evaluate_vae(vae, x, k=k)
    done.set()
    sampler.join()
    queue.put((before, max(peak[0], _resident_bytes())))


def measure_peak_memory(settings: BenchSettings) -> list[BenchRow]:
    """Peak resident memory of an evaluation at a large and a 10x smaller K, in fresh processes."""
    context = multiprocessing.get_context("spawn")
    peaks = {}
    for k in (settings.memory_k // 10, settings.memory_k):
        queue = context.Queue()
        child = context.Process(
            target=_peak_memory_child, args=(settings, k, settings.memory_images, queue)
        )
        child.start()
        peaks[k] = queue.get()
        child.join()
    small, large = peaks[settings.memory_k // 10], peaks[settings.memory_k]
    memory = "GPU memory" if settings.device.startswith("cuda") else "memory"
    return [
        BenchRow(
            f"evaluation peak {memory}, K={settings.memory_k}, {settings.memory_images} images "
            f"(+{(large[1] - large[0]) / 2**20:.0f} MiB over the loaded model and data)",
            large[1] / 2**30,
            2.0,
            "GiB",
            "the 2 GiB budget",
            "< 1 (under 2 GiB)",
            torch.get_num_threads(),  # the children's too: both apply settings.threads
        ),
        BenchRow(
            f"evaluation peak {memory}, K={settings.memory_k} vs K={settings.memory_k // 10}",
            large[1] / 2**30,
            small[1] / 2**30,
            "GiB",
            f"the same evaluation at K={settings.memory_k // 10}",
            "about 1 (independent of K)",
            torch.get_num_threads(),
        ),
    ]


def run_benchmark(settings: BenchSettings, progress: TextIO | None = None) -> list[BenchRow]:
    """Every measurement on ``settings.threads`` threads; one line per phase to ``progress``."""
    apply_threads(settings.threads)
    steps = f"3 contenders x {settings.warmup} + {settings.steps} steps"
    k_small = settings.memory_k // 10
    phases: list[tuple[str, Callable[[], list[BenchRow]]]] = [
        (f"training step, batch 128 ({steps})", lambda: measure_steps(settings, 128)),
        (f"training step, batch 1024 ({steps})", lambda: measure_steps(settings, 1024)),
        (f"training epochs (3 pipelines x {settings.epoch_rounds})",
         lambda: measure_epoch(settings)),
        (f"log p(x), K=1000, {settings.log_px_images} images x {settings.rounds}",
         lambda: [measure_log_px_throughput(settings)]),
        (f"evaluation peak memory, K={k_small} and {settings.memory_k}, "
         f"{settings.memory_images} images", lambda: measure_peak_memory(settings)),
    ]  # fmt: skip
    rows = []
    for name, phase in phases:
        started = time.perf_counter()
        if progress is not None:
            print(
                f"bench: threads {settings.threads}: {name} ...", end="", file=progress, flush=True
            )
        rows += phase()
        if progress is not None:
            print(f" {time.perf_counter() - started:.1f} s", file=progress, flush=True)
    return rows


def format_table(rows: list[BenchRow]) -> str:
    width = max(len(row.measure) for row in rows)
    lines = [f"{'threads':>7} {'measure':<{width}} {'pyro-vae':>10} {'baseline':>10} "
             f"{'unit':>10} {'ratio':>7}  target"]  # fmt: skip
    for row in rows:
        lines.append(
            f"{row.threads:>7} {row.measure:<{width}} {row.pyro_vae:>10.4g} "
            f"{row.baseline:>10.4g} {row.unit:>10} {row.ratio:>7.3f}  {row.target}"
        )
        lines.append(f"{'':>7} {'':<{width}} baseline: {row.baseline_name}")
    return "\n".join(lines)


def write_csv(rows: list[BenchRow], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].as_dict()))
        writer.writeheader()
        writer.writerows(row.as_dict() for row in rows)


def run_from_args(args: argparse.Namespace) -> list[BenchRow]:
    """Run the benchmark as parsed by :func:`add_bench_arguments`, once per thread count;
    print progress to stderr, then print and save the table."""
    try:
        sizes = bench_sizes(args)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    resolve_device(args.device)  # cuda without a GPU fails here, not in the first measurement
    if Path(args.out).suffix.lower() != ".csv" or Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out}: name the output file FILE.csv")
    refuse_run_record(args.out, "--out")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now
    threads = list(dict.fromkeys(min(n, usable_cpus()) for n in args.threads))
    if threads != args.threads:
        print(
            f"bench: this process may use {usable_cpus()} CPUs, so --threads "
            f"{' '.join(map(str, args.threads))} measures {' '.join(map(str, threads))}",
            file=sys.stderr,
        )
    print(
        f"bench: {'full' if args.full else 'quick (--full for the full measurement)'}: "
        + ", ".join(f"{name} {value}" for name, value in sizes.items())
        + f"; threads {' '.join(map(str, threads))}",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    for count in threads:
        settings = BenchSettings(
            args.dataset, args.device, train_images=args.train_images, threads=count, **sizes
        )
        rows += run_benchmark(settings, progress=sys.stderr)
    print(format_table(rows))
    write_csv(rows, args.out)
    print(f"written: {args.out}")
    return rows


def main(argv: list[str] | None = None) -> list[BenchRow]:
    parser = argparse.ArgumentParser(prog="bench_training", description=__doc__.splitlines()[0])
    add_bench_arguments(parser)
    return run_from_args(parser.parse_args(argv))
