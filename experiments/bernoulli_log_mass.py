"""The Bernoulli log-mass of a batch of images, three ways, at the logit sizes training meets.

A decoder's logits start near 0 and grow as it learns (|l| about 3 after 5 epochs of
mnist5k, 10-20 on a well-fitted background). torch's ``softplus`` (and
``-binary_cross_entropy_with_logits``) call a scalar ``log1p`` per pixel whose cost grows
with |l|; :class:`pyro_vae.distributions.BernoulliPixels` needs one ``log`` per block of
pixels. Timed by thread CPU time (robust under load), forward alone and forward plus
backward, for a training batch (1024 images) and an evaluation chunk (1,000 particles x 2
images, the data broadcast), medians of ``--repeats``:

    OMP_NUM_THREADS=1 python experiments/bernoulli_log_mass.py

- ``torch``: ``-binary_cross_entropy_with_logits(l, x, reduction="none")`` summed per image
  (what a hand-written PyTorch VAE writes; ``pyro.distributions.Bernoulli`` computes this);
- ``softplus``: x l - softplus(l) summed, with the same backward (pyro-vae's until
  2026-12-02, copied here as ``SoftplusLogMass``);
- ``pyro-vae``: ``BernoulliPixels.log_prob``, the formula in use.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro.distributions as dist
import torch
import torch.nn.functional as F

from pyro_vae.distributions import BernoulliPixels

SHAPES = {
    "training batch 1024": ((1024, 784), (1024, 784)),
    "evaluation chunk": ((1000, 2, 784), (2, 784)),
}


class SoftplusLogMass(torch.autograd.Function):
    """The previous forward, x l - softplus(l) summed over the last dimension."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, value)
        return F.softplus(logits).addcmul_(value, logits, value=-1).sum(-1).neg_()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, value = ctx.saved_tensors
        return torch.sigmoid(logits).sub_(value).mul_(-grad.unsqueeze(-1)), None


def _formulas(x: torch.Tensor):
    def torch_bce(logits):
        target = x.expand_as(logits)
        return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)

    def softplus(logits):
        return SoftplusLogMass.apply(logits, x.expand_as(logits))

    def pyro_vae(logits):
        bernoulli = dist.Bernoulli(logits=logits, validate_args=False)
        return BernoulliPixels(bernoulli, 1).log_prob(x)

    return {"torch": torch_bce, "softplus": softplus, "pyro-vae": pyro_vae}


def _cpu_us(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        started = time.thread_time()
        fn()
        times.append(time.thread_time() - started)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.2, 3.0, 15.0])
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    print("| shape | logit scale | pass | torch (us) | softplus (us) | pyro-vae (us) | ratios |")
    print("|---|---|---|---|---|---|---|")
    for name, (l_shape, x_shape) in SHAPES.items():
        torch.manual_seed(0)
        x = torch.bernoulli(torch.full(x_shape, 0.2))
        for scale in args.scales:
            logits = (scale * torch.randn(l_shape)).requires_grad_()
            for kind in ("forward", "forward + backward"):
                row = {}
                for label, formula in _formulas(x).items():
                    if kind == "forward":
                        with torch.no_grad():
                            row[label] = _cpu_us(lambda f=formula, v=logits: f(v), args.repeats)
                    else:
                        row[label] = _cpu_us(
                            lambda f=formula, v=logits: f(v).sum().backward(), args.repeats
                        )
                print(
                    f"| {name} | {scale:g} | {kind} | {row['torch']:.0f} | {row['softplus']:.0f} "
                    f"| {row['pyro-vae']:.0f} | {row['pyro-vae'] / row['torch']:.2f} of torch, "
                    f"{row['pyro-vae'] / row['softplus']:.2f} of softplus |"
                )


if __name__ == "__main__":
    main()
