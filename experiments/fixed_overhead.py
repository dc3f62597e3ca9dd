"""The fixed costs of a step and of a log p(x) chunk, by thread CPU time (robust under load).

- ``python``: the Trainer's default step against the hand-written one on a tiny model
  (hidden 4, latent 2, batch 8), where the operators cost almost nothing: the difference
  of the medians is the pyro-vae step's fixed Python (and its NaN guard's small work).
- ``steps``: the bench's two steps (``profile_step.py``'s contenders), alternating,
  unprofiled, at batch 128 (300 steps) and 1024 (60), with the guard and ``--on-nan off``:
  the ratios of their CPU-time medians.
- ``guard``: the NaN guard of a batch-128 step, right after ``backward`` and again warm,
  beside the gradient scan's kernel alone.
- ``ceiling``: the Trainer's default step, ``--on-nan off`` and the hand-written step beside
  a step with no Pyro-style structure at all: the same parts' networks called as tensors, the
  same Bernoulli log-mass, the same fused Adam and the same NaN guard (``StepScan``), but no
  distribution objects, loss module or objective. What a distribution-free fast path for
  the built-in parts could reach at best; also the default step with the guard's scan moved
  into backward hooks (each gradient scanned while still in cache); ``--threads`` sets
  torch's threads.
- ``log-px-threads``: per operator, one log p(x) chunk's time at one thread and at two
  (``torch.profiler``), and each operator's gain from the second thread.
- ``log-px``: one chunk of the K=1000 log p(x) (two datapoints x 1,000 samples) against its
  decoder + likelihood alone and against the reference matmuls of the bench's rate; the
  ratio reference / (decoder + likelihood) bounds the fraction of the matmul rate that any
  saving outside the decoder and the likelihood can reach.

Compare two checkouts by running each in turn, e.g.
``PYTHONPATH=/path/to/checkout python experiments/fixed_overhead.py python``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch

from pyro_vae.app.bench import (
    BenchSettings,
    _config,
    _data,
    _decoder_linear_shapes,
    handwritten_step,
)
from pyro_vae.app.build import build_vae
from pyro_vae.app.config import Config
from pyro_vae.app.trainer import Trainer
from pyro_vae.distributions import _BernoulliLogMass
from pyro_vae.estimators import _score_chunk, _Sums
from pyro_vae.guides import bounded_scale


def _cpu_us(fn) -> float:
    started = time.thread_time()
    fn()
    return (time.thread_time() - started) * 1e6


def python_overhead(steps: int) -> str:
    data = _data(BenchSettings(), torch.device("cpu"), "dynamic")
    cfg = Config(hidden=[4], latent_dim=2, batch_size=8, lr=1e-3, device="cpu")
    torch.manual_seed(0)
    trainer = Trainer(cfg, build_vae(cfg, data.data_shape), data)
    hand = handwritten_step(trainer.model, data.num_train)
    x = data.epoch_train(0)[:8]
    mine, theirs = [], []
    for i in range(50 + steps):
        a, b = _cpu_us(lambda: trainer.train_step(x)), _cpu_us(lambda: hand(x))
        if i >= 50:
            mine.append(a)
            theirs.append(b)
    a, b = statistics.median(mine), statistics.median(theirs)
    return f"tiny step: pyro-vae {a:.0f} us, hand-written {b:.0f} us, difference {a - b:.0f} us"


def step_ratios(steps: int) -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    from profile_step import _contenders

    rows = []
    for batch, n in ((128, steps), (1024, max(steps // 5, 10))):
        for on_nan in ("recover", "off"):
            contenders, batches = _contenders(batch, on_nan)
            times: dict[str, list[float]] = {name: [] for name in contenders}
            order = list(contenders.items())
            for i in range(20 + n):
                x = batches[i % len(batches)]
                for name, step in order if i % 2 == 0 else order[::-1]:
                    spent = _cpu_us(lambda: step(x))  # noqa: B023
                    if i >= 20:
                        times[name].append(spent)
            mine, hand = (statistics.median(times[k]) for k in ("pyro-vae", "hand"))
            rows.append(f"batch {batch} on-nan {on_nan}: {mine / hand:.3f}")
    return " | ".join(rows)


def guard_cost(steps: int) -> str:
    data = _data(BenchSettings(), torch.device("cpu"), "dynamic")
    cfg = _config(128, "cpu")
    torch.manual_seed(0)
    trainer = Trainer(cfg, build_vae(cfg, data.data_shape), data)
    x_epoch = data.epoch_train(0)
    batches = [x_epoch[i] for i in data.batch_indices(0, 128)]
    found, one = torch.zeros(1), torch.ones(1)
    cold, warm, kernel = [], [], []
    for i in range(steps):
        loss = trainer._loss(batches[i % len(batches)], data.num_train, 1.0, None)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        cold.append(_cpu_us(lambda: trainer._raise_if_non_finite(loss)))  # noqa: B023
        warm.append(_cpu_us(lambda: trainer._raise_if_non_finite(loss)))  # noqa: B023
        grads = [p.grad for p in trainer.parameters]
        kernel.append(
            _cpu_us(lambda: torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one))  # noqa: B023
        )
        trainer.optimizer.step()
    m = [statistics.median(v) for v in (cold, warm, kernel)]
    return (
        f"guard at batch 128: {m[0]:.0f} us after backward, {m[1]:.0f} us warm, "
        f"scan kernel {m[2]:.0f} us"
    )


def structure_free_step(trainer: Trainer):
    """The default step's arithmetic and guard with no distribution objects (see ``ceiling``)."""
    vae, scan, params, optimizer = (
        trainer.model,
        trainer.scan,
        trainer.parameters,
        trainer.optimizer,
    )
    num_data = trainer.data.num_train

    def step(x: torch.Tensor) -> torch.Tensor:
        loc, raw = vae.encoder.head(vae.encoder.body(x)).chunk(2, dim=-1)
        scale = bounded_scale(raw)
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_lik = _BernoulliLogMass.apply(vae.decoder(z).view_as(x), x, None, x.dim() - 1)
        log_prior = -0.5 * (z * z).sum(1)
        log_q = (-0.5 * eps * eps - scale.log()).sum(1)  # the 2 pi terms cancel
        loss = -(log_lik + log_prior - log_q).sum() * (num_data / x.shape[0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if float(scan.flag(loss, params)):
            raise RuntimeError("non-finite step")
        optimizer.step()
        return loss.detach()

    return step


def hooked_scan_step(trainer: Trainer):
    """The ``--on-nan off`` step with the guard's scan moved into backward: each gradient is
    scanned by a post-accumulate-grad hook right after autograd writes it (still in cache),
    and the flag is read after ``backward``. The hooks stay on ``trainer``'s parameters."""
    found, one = torch.zeros(1), torch.ones(1)

    def scan(parameter: torch.nn.Parameter) -> None:
        torch._amp_foreach_non_finite_check_and_unscale_([parameter.grad], found, one)

    for parameter in trainer.parameters:
        parameter.register_post_accumulate_grad_hook(scan)
    num_data = trainer.data.num_train

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = trainer._loss(x, num_data, 1.0, None, trainer.train_module)
        trainer.optimizer.zero_grad(set_to_none=True)
        found.zero_()
        loss.backward()
        if float(found) or not math.isfinite(float(loss.detach())):
            raise RuntimeError("non-finite step")
        trainer.optimizer.step()
        return loss.detach()

    return step


def step_ceiling(steps: int) -> str:
    data = _data(BenchSettings(), torch.device("cpu"), "dynamic")
    rows = []
    for batch, n in ((128, steps), (1024, max(steps // 5, 10))):
        cfg = _config(batch, "cpu")
        trainers = {}
        for name, on_nan in (
            ("default", "recover"),
            ("on-nan off", "off"),
            ("no structure", "recover"),
            ("scan in backward hooks", "off"),
        ):
            torch.manual_seed(0)
            trainers[name] = Trainer(
                cfg.replace(on_nan=on_nan), build_vae(cfg, data.data_shape), data
            )
        contenders = {name: t.train_step for name, t in trainers.items()}
        contenders["no structure"] = structure_free_step(trainers["no structure"])
        contenders["scan in backward hooks"] = hooked_scan_step(trainers["scan in backward hooks"])
        contenders["hand"] = handwritten_step(trainers["default"].model, data.num_train)
        x_epoch = data.epoch_train(0)
        batches = [x_epoch[i] for i in data.batch_indices(0, batch)]
        times: dict[str, list[float]] = {name: [] for name in contenders}
        order = list(contenders.items())
        for i in range(20 + n):
            for name, step in order if i % 2 == 0 else order[::-1]:
                spent = _cpu_us(lambda: step(batches[i % len(batches)]))  # noqa: B023
                if i >= 20:
                    times[name].append(spent)
        m = {name: statistics.median(v) for name, v in times.items()}
        ratios = ", ".join(f"{name} {m[name] / m['hand']:.3f}" for name in trainers)
        rows.append(f"batch {batch} (hand-written {m['hand'] / 1e3:.2f} ms): {ratios}")
    return " | ".join(rows)


def log_px_ceiling(rounds: int) -> str:
    data = _data(BenchSettings(), torch.device("cpu"), "dynamic")
    torch.manual_seed(0)
    vae = build_vae(_config(128, "cpu"), data.data_shape).eval()
    x = data.test[:2]
    shapes = _decoder_linear_shapes(vae)
    inputs = [torch.randn(10_000, n_in) for n_in, _ in shapes]
    weights = [torch.randn(n_in, n_out) for n_in, n_out in shapes]
    z = torch.randn(1000, 2, vae.prior().event_shape[0])
    template = _Sums()
    times: dict[str, list[float]] = {"chunk": [], "decoder + likelihood": [], "reference": []}
    with torch.no_grad(), pyro.validation_enabled(False):
        _score_chunk(vae, x, {}, 1, 1, template)
        sums = template.zeroed()
        for _ in range(rounds):
            times["chunk"].append(_cpu_us(lambda: _score_chunk(vae, x, {}, 1000, 1000, sums)))
            times["decoder + likelihood"].append(
                _cpu_us(lambda: vae.likelihood(vae.decoder(z)).log_prob(x))
            )
            ref = _cpu_us(lambda: [a @ w for a, w in zip(inputs, weights, strict=True)])
            times["reference"].append(ref / 5)  # the same FLOPs as 2,000 samples
    m = {name: statistics.median(v) for name, v in times.items()}
    return (
        f"log p(x) chunk {m['chunk']:.0f} us = decoder + likelihood "
        f"{m['decoder + likelihood']:.0f} us + rest "
        f"{m['chunk'] - m['decoder + likelihood']:.0f} us; "
        f"reference matmuls {m['reference']:.0f} us: fraction {m['reference'] / m['chunk']:.3f}, "
        f"ceiling with no rest {m['reference'] / m['decoder + likelihood']:.3f}"
    )


def log_px_thread_gain(rounds: int) -> str:
    """Per operator, one log p(x) chunk's self time (``torch.profiler``) at one thread and at
    two, in one process: which operators gain less than the reference matmul's ~2x."""
    from torch.profiler import ProfilerActivity, profile

    data = _data(BenchSettings(), torch.device("cpu"), "dynamic")
    torch.manual_seed(0)
    vae = build_vae(_config(128, "cpu"), data.data_shape).eval()
    x = data.test[:2]
    per_thread = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        template = _Sums()
        with torch.no_grad(), pyro.validation_enabled(False):
            _score_chunk(vae, x, {}, 1, 1, template)
            sums = template.zeroed()
            for _ in range(5):
                _score_chunk(vae, x, {}, 1000, 1000, sums)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(rounds):
                    _score_chunk(vae, x, {}, 1000, 1000, sums)
        times: dict[tuple[str, str], float] = {}
        for event in prof.key_averages(group_by_input_shape=True):
            key = (event.key, str(event.input_shapes)[:48])
            times[key] = times.get(key, 0.0) + event.self_cpu_time_total / rounds
        per_thread[threads] = times
    one, two = per_thread[1], per_thread[2]
    lines = [
        f"chunk, all operators: 1 thread {sum(one.values()):.0f} us, 2 threads "
        f"{sum(two.values()):.0f} us, gain {sum(one.values()) / sum(two.values()):.2f}",
        "| operator | input shapes | 1 thread (us) | 2 threads (us) | gain |",
        "|---|---|---|---|---|",
    ]
    for key in sorted(one, key=lambda k: -one[k])[:14]:
        if key in two:
            lines.append(f"| `{key[0]}` | {key[1]} | {one[key]:.0f} | {two[key]:.0f} | "
                         f"{one[key] / two[key]:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", choices=["python", "steps", "guard", "ceiling", "log-px", "log-px-threads"]
    )
    parser.add_argument("--steps", type=int, default=3000, help="steps, or log p(x) rounds / 75")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "python":
        print(python_overhead(args.steps))
    elif args.what == "steps":
        print(step_ratios(max(args.steps // 10, 20)))
    elif args.what == "ceiling":
        print(step_ceiling(max(args.steps // 10, 20)))
    elif args.what == "guard":
        print(guard_cost(max(args.steps // 10, 20)))
    elif args.what == "log-px-threads":
        print(log_px_thread_gain(max(args.steps // 75, 10)))
    else:
        print(log_px_ceiling(max(args.steps // 75, 10)))


if __name__ == "__main__":
    main()
