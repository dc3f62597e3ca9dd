"""Where a training step's time goes: pyro-vae's step against the hand-written one, op by op.

The two steps of ``pyro-vae bench`` (the Trainer's default step, and the same networks,
estimator and fused Adam written by hand in plain PyTorch, on the same minibatches),
alternating step by step. Each step runs under ``torch.profiler`` (shapes recorded); the
table gives every operator's count and self time per step, the median over the profiled
steps (robust to the preemptions of a shared machine), for both, sorted by the larger of
the two. ``--timer dispatch`` times every aten operator by its thread CPU time under a
``TorchDispatchMode`` instead (backward included; on a loaded machine the profiler's
wall-clock self times charged pyro-vae's weight-gradient ``mm`` with time that the same
``mm`` does not take timed this way, nor in the unprofiled totals).

A second, unprofiled interleaved loop gives the steps' wall times and CPU times
(``time.thread_time``, which other processes do not inflate), medians. ``outside
operators`` is the step's time beyond its operators' (wall time for the profiler, CPU
time for ``--timer dispatch``): Python, i.e. modules, distributions, the objective's
dispatch, the optimizer's bookkeeping.

    python experiments/profile_step.py --batch 128 1024 --steps 60 --timer dispatch

Prints one Markdown table per batch size.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from pyro_vae.app.bench import BenchSettings, _config, _data, handwritten_step
from pyro_vae.app.build import build_vae
from pyro_vae.app.runtime import apply_threads
from pyro_vae.app.trainer import Trainer


def _contenders(batch: int, on_nan: str):
    settings = BenchSettings()
    data = _data(settings, torch.device("cpu"), "dynamic")
    cfg = _config(batch, "cpu").replace(on_nan=on_nan)
    torch.manual_seed(settings.seed)
    trainer = Trainer(cfg, build_vae(cfg, data.data_shape), data)
    x_epoch = data.epoch_train(0)
    batches = [x_epoch[index] for index in data.batch_indices(0, batch)]
    steps = {
        "pyro-vae": trainer.train_step,
        "hand": handwritten_step(trainer.model, data.num_train),
    }
    return steps, batches


class OperatorTimes(TorchDispatchMode):
    """Count and thread CPU time (microseconds) of every aten operator run inside it."""

    def __init__(self):
        super().__init__()
        self.table: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        started = time.thread_time()
        out = func(*args, **(kwargs or {}))
        entry = self.table[f"aten::{func.__name__.split('.')[0]}"]
        entry[0] += 1
        entry[1] += (time.thread_time() - started) * 1e6
        return out


def _profiled(step, x: torch.Tensor, timer: str) -> dict[str, tuple[int, float]]:
    """One step's operators: name -> (count, self microseconds)."""
    if timer == "dispatch":
        with OperatorTimes() as times:
            step(x)
        return {key: (n, us) for key, (n, us) in times.table.items()}
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step(x)
    return {e.key: (e.count, e.self_cpu_time_total) for e in prof.key_averages()}


def profile_steps(batch: int, steps: int, warmup: int, on_nan: str, timer: str) -> dict:
    contenders, batches = _contenders(batch, on_nan)
    order = list(contenders.items())
    ops = {name: collections.defaultdict(list) for name in contenders}  # key: [(count, us)]
    wall = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    for i in range(warmup + 2 * steps):
        x = batches[i % len(batches)]
        for name, step in order if i % 2 == 0 else reversed(order):
            if i < warmup:
                step(x)
            elif i < warmup + steps:  # profiled
                for key, sample in _profiled(step, x, timer).items():
                    ops[name][key].append(sample)
            else:  # timed, unprofiled
                started, started_cpu = time.perf_counter(), time.thread_time()
                step(x)
                cpu[name].append(time.thread_time() - started_cpu)
                wall[name].append(time.perf_counter() - started)

    def per_step(samples: list[tuple[int, float]]) -> tuple[float, float]:
        samples = samples + [(0, 0.0)] * (steps - len(samples))
        return statistics.median(n for n, _ in samples), statistics.median(t for _, t in samples)

    return {
        "ops": {
            name: {key: per_step(v) for key, v in table.items()} for name, table in ops.items()
        },
        "wall_ms": {name: statistics.median(v) * 1e3 for name, v in wall.items()},
        "cpu_ms": {name: statistics.median(v) * 1e3 for name, v in cpu.items()},
        "timer": timer,
    }


def markdown(result: dict, batch: int, top: int) -> str:
    ours, hand = result["ops"]["pyro-vae"], result["ops"]["hand"]
    keys = sorted(set(ours) | set(hand), key=lambda k: -max(ours.get(k, (0, 0))[1],
                                                            hand.get(k, (0, 0))[1]))  # fmt: skip
    wall, cpu = result["wall_ms"], result["cpu_ms"]
    lines = [
        f"batch {batch}: step wall {wall['pyro-vae']:.2f} ms vs {wall['hand']:.2f} ms "
        f"({wall['pyro-vae'] / wall['hand']:.3f}x), CPU {cpu['pyro-vae']:.2f} vs "
        f"{cpu['hand']:.2f} ms ({cpu['pyro-vae'] / cpu['hand']:.3f}x); "
        f"load {os.getloadavg()[0]:.2f}",
        "",
        "| operator | count, pyro-vae | self us, pyro-vae | count, hand | self us, hand "
        "| difference us |",
        "|---|---|---|---|---|---|",
    ]
    for key in keys[:top]:
        (n_o, t_o), (n_h, t_h) = ours.get(key, (0, 0.0)), hand.get(key, (0, 0.0))
        lines.append(
            f"| `{key}` | {n_o:.0f} | {t_o:.0f} | {n_h:.0f} | {t_h:.0f} | {t_o - t_h:+.0f} |"
        )
    total = {name: sum(us for _, us in table.values()) for name, table in result["ops"].items()}
    count = {name: sum(n for n, _ in table.values()) for name, table in result["ops"].items()}
    lines.append(
        f"| all operators | {count['pyro-vae']:.0f} | {total['pyro-vae']:.0f} | "
        f"{count['hand']:.0f} | {total['hand']:.0f} | {total['pyro-vae'] - total['hand']:+.0f} |"
    )
    step_time, what = (cpu, "CPU") if result["timer"] == "dispatch" else (wall, "wall")
    outside = {name: step_time[name] * 1e3 - total[name] for name in total}
    lines.append(
        f"| outside operators ({what} time - operators) | | {outside['pyro-vae']:.0f} | | "
        f"{outside['hand']:.0f} | {outside['pyro-vae'] - outside['hand']:+.0f} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--steps", type=int, default=60, help="profiled and timed steps (each)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--on-nan", default="recover", help="the pyro-vae step's NaN guard")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=25, help="operators listed")
    parser.add_argument(
        "--timer", choices=("profiler", "dispatch"), default="profiler",
        help="torch.profiler's self CPU (wall) time, or each operator's thread CPU time",
    )  # fmt: skip
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    for batch in args.batch:
        print(
            markdown(
                profile_steps(batch, args.steps, args.warmup, args.on_nan, args.timer),
                batch,
                args.top,
            )
        )
        print()


if __name__ == "__main__":
    main()
