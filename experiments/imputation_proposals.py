"""Does another importance proposal make the bottom-half imputation beat the reconstruction?

    python experiments/imputation_proposals.py experiments/out/missing_values/bottom-half-seed0 \
        q inflate:0.5 inflate:0.7 inflate:1.5 inflate:2 t:3 mix:0.2 recentre:2:0.5 recentre:3:0.3

A diagnostic for issue 14, on a run trained by ``missing_values.py --patterns bottom-half``.
Validation split: the first 300 training digits of the run's seed whose bottom half was
hidden in training (the model never saw those pixels; the test digits stay untouched).
Each proposal r(z|x_obs) gives exact importance weights p(x_obs|z) p(z) / r(z|x_obs) and the
self-normalized E[x_mis|x_obs] with K particles; printed: RMSE on the hidden pixels and the
effective sample size as a percentage of K, beside the plain reconstruction.

- ``q``: the encoder's q(z|x_obs) (what :func:`pyro_vae.imputation.impute` draws from);
- ``inflate:S``: Normal with q's mean and S times its scale;
- ``t:DF``: Student-t with q's location and scale, DF degrees of freedom;
- ``mix:A``: defensive mixture (1 - A) q + A p(z);
- ``recentre:R:S``: R rounds of 200 pilot particles move the mean to the weighted mean
  (scale S times q's), then 0.9 of that Normal + 0.1 q (adaptive importance sampling).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pyro.distributions as dist
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from missing_values import masks  # noqa: E402

from pyro_vae.app.load import load_run  # noqa: E402
from pyro_vae.datasets import load_mnist5k  # noqa: E402
from pyro_vae.missing import allow_missing, mark_missing  # noqa: E402


def draw(vae, x, k: int, spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Particles z ``[k, n, d]`` from the proposal named ``spec`` and their log r(z|x_obs)."""
    base = vae.encoder(x).base_dist
    q = dist.Normal(base.loc, base.scale).to_event(1)
    prior = vae.prior_given_globals()
    kind, *args = spec.split(":")
    if kind == "q":
        r = q
    elif kind == "inflate":
        r = dist.Normal(base.loc, float(args[0]) * base.scale).to_event(1)
    elif kind == "t":
        r = dist.StudentT(float(args[0]), base.loc, base.scale).to_event(1)
    elif kind in ("mix", "recentre"):
        if kind == "mix":  # (1 - share) q + share p(z)
            share, main, other = float(args[0]), q, prior
            z_other = prior.sample((k, len(x)))
        else:  # 0.9 N(weighted mean, S * q's scale) + 0.1 q
            loc, scale = base.loc, float(args[1]) * base.scale
            for _ in range(int(args[0])):
                pilot = dist.Normal(loc, scale).to_event(1)
                z = pilot.sample((200,))
                w = torch.softmax(log_w(vae, x, z, pilot.log_prob(z))[0], 0)
                loc = (w.unsqueeze(-1) * z).sum(0)
            share, main, other = 0.1, dist.Normal(loc, scale).to_event(1), q
            z_other = q.sample((k,))
        pick = (torch.rand(k, len(x)) < share).unsqueeze(-1)
        z = torch.where(pick, z_other, main.sample((k,)))
        log_r = torch.logaddexp(
            math.log1p(-share) + main.log_prob(z), math.log(share) + other.log_prob(z)
        )
        return z, log_r
    else:
        raise SystemExit(f"unknown proposal {spec!r}")
    z = r.sample((k,))
    return z, r.log_prob(z)


def log_w(vae, x, z, log_r) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x_obs|z) + log p(z) - log r(z), and E[x|z]."""
    likelihood = vae.likelihood(vae.decoder(z))
    return likelihood.log_prob(x) + vae.prior_given_globals().log_prob(z) - log_r, likelihood.mean


@torch.no_grad()
def conditional_mean(vae, x, k: int, spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-normalized E[x|x_obs] and the ESS fraction, 50 datapoints at a time."""
    means, ess = [], []
    for start in range(0, len(x), 50):
        chunk = x[start : start + 50]
        z, log_r = draw(vae, chunk, k, spec)
        lw, decoded = log_w(vae, chunk, z, log_r)
        w = torch.softmax(lw.double(), 0)
        means.append((w.view(*w.shape, 1, 1, 1) * decoded.double()).sum(0).float())
        ess.append(1 / (w**2).sum(0) / k)
    return torch.cat(means), torch.cat(ess)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a bottom-half run folder of missing_values.py (…-seedN)")
    parser.add_argument("proposals", nargs="+")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seed = int(args.run.rstrip("/").rsplit("seed", 1)[1])
    mnist = load_mnist5k()
    train_mask, _ = masks("bottom-half", mnist.x_train.shape, mnist.x_test.shape, seed)
    hidden = (~train_mask).flatten(1).any(1).nonzero().squeeze(1)[: args.images]
    truth = mnist.x_train[hidden].float() / 255
    seen = train_mask[hidden]
    vae = allow_missing(load_run(args.run).model).eval()
    x = vae.shaped(mark_missing(truth, seen))

    def rmse(filled: torch.Tensor) -> float:
        return float(((torch.where(seen, truth, filled) - truth)[~seen] ** 2).mean().sqrt())

    print(f"reconstruction rmse {rmse(vae.reconstruct(x)):.4f}", flush=True)
    for spec in args.proposals:
        torch.manual_seed(0)
        started = time.perf_counter()
        mean, ess = conditional_mean(vae, x, args.k, spec)
        print(
            f"{spec:>14} rmse {rmse(mean):.4f} ess {100 * float(ess.mean()):.2f}% "
            f"({time.perf_counter() - started:.0f} s)", flush=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
