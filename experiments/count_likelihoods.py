"""Count likelihoods: dispersions recovered from simulated counts; the likelihoods ranked on digits.

    python experiments/count_likelihoods.py dispersion   # simulated NB counts, about 70 s
    python experiments/count_likelihoods.py digits       # 4 likelihoods x 3 seeds, about 8.5 min
    python experiments/count_likelihoods.py dispersion --n 2000 --epochs 2   # a smoke budget

``dispersion``: counts drawn from a known model, z ~ N(0, I_2), mu = softplus(W z + b),
x_d ~ NB(mu_d, theta_d) with theta_d log-uniform on [0.5, 5] (variance mu + mu^2/theta),
then a VAE with the ``negative-binomial`` likelihood is trained on them (a linear decoder,
the truth's own family, and an MLP one) and its learned concentrations are compared with
the true theta (relative error |theta_hat - theta| / theta, median and max over features).
The same fit with the true means known (theta alone by maximum likelihood) gives the
sampling error floor for this many datapoints.

``digits``: ``pyro-vae compare`` over poisson, negative-binomial and zinb on scikit-learn's
digits (counts 0..16), and :class:`Binomial16` as a reference that is not built in (16
trials per pixel: each pixel counts the set cells of a 4x4 block). All score on the
``counts`` scale, so the report ranks them by the importance-sampled log p(x). Then, per
run, the median learned concentration, the mean zinb gate, and the residual dispersion on
the test digits: sum (x - E[x|z])^2 / sum E[x|z] at z = E_q[z|x], over pixels whose mean is
at least 1 (1 for Poisson counts, above 1 overdispersed, below 1 underdispersed, which
neither the negative binomial nor zero inflation can express). Any ``pyro-vae compare``
flag after ``digits`` overrides a default; rerunning resumes.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

import pyro_vae
from pyro_vae.count_likelihoods import MIN_MEAN, CountLikelihood, NegativeBinomialLikelihood
from pyro_vae.objectives.elbo import FastTrace_ELBO

OUT = Path(__file__).resolve().parent / "out" / "count_likelihoods"
GRID = ["poisson", "negative-binomial", "zinb", "experiments.count_likelihoods:Binomial16"]
DIGITS = [
    "--dataset", "digits", "--epochs", "400", "--lr", "3e-3", "--latent-dim", "10",
    "--seeds", "0", "1", "2", "--eval-k", "1000", "--out", str(OUT / "digits"),
]  # fmt: skip


# -- dispersion: a known negative binomial model -------------------------------------------------


def simulate(n: int, features: int, latent: int, seed: int) -> dict[str, torch.Tensor]:
    """Counts from z ~ N(0, I), mu = softplus(W z + b), x ~ NB(mu, theta) = GammaPoisson."""
    torch.manual_seed(seed)
    weight = torch.randn(features, latent)
    bias = 1.0 + 3.0 * torch.rand(features)
    theta = torch.exp(math.log(0.5) + math.log(10) * torch.rand(features))
    mu = F.softplus(torch.randn(n, latent) @ weight.T + bias)
    return {"x": dist.GammaPoisson(theta, theta / mu).sample(), "mu": mu, "theta": theta}


def relative_errors(fitted: torch.Tensor, truth: torch.Tensor) -> str:
    """Median and max over features of |fitted - truth| / truth, for theta and for 1 / theta."""
    shown = []
    for name, errors in (
        ("theta", (fitted - truth).abs() / truth),
        ("1/theta", (1 / fitted - 1 / truth).abs() * truth),
    ):
        errors = errors.tolist()
        shown.append(f"{name} median {statistics.median(errors):.1%}, max {max(errors):.1%}")
    return "; ".join(shown)


def fit_theta_given_means(x: torch.Tensor, mu: torch.Tensor, steps: int) -> torch.Tensor:
    """theta by maximum likelihood with the true means known: the sampling error floor."""
    likelihood = NegativeBinomialLikelihood((x.shape[1],))
    raw_mean = torch.log(torch.expm1((mu - MIN_MEAN).clamp_min(1e-12)))
    optim = torch.optim.Adam(likelihood.parameters(), lr=0.05)
    for _ in range(steps):
        optim.zero_grad()
        (-likelihood(raw_mean).log_prob(x).mean()).backward()
        optim.step()
    return likelihood.concentration.detach()


def train_vae(x: torch.Tensor, decoder: str, args: argparse.Namespace) -> tuple[nn.Module, float]:
    """A negative-binomial VAE trained on ``x`` with the ELBO; returns it and its seconds."""
    torch.manual_seed(args.seed)
    features = x.shape[1]
    likelihood = NegativeBinomialLikelihood((features,))
    linear = nn.Linear(args.latent, features) if decoder == "linear" else None
    vae = pyro_vae.mlp_vae(
        (features,), args.latent, [args.hidden], likelihood=likelihood, decoder=linear
    )
    loss_fn = FastTrace_ELBO()(vae, vae.guide_module())
    optim = torch.optim.Adam(loss_fn.parameters(), lr=args.lr)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for batch in order[: len(x) // args.batch * args.batch].view(-1, args.batch):
            optim.zero_grad()
            loss_fn(x[batch], len(x)).backward()
            optim.step()
    return vae, time.perf_counter() - start


def dispersion(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="count_likelihoods.py dispersion")
    parser.add_argument("--n", type=int, default=20_000, help="datapoints simulated")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--latent", type=int, default=2, help="the truth's and the VAE's z")
    parser.add_argument("--hidden", type=int, default=64, help="the encoder's (and MLP's) width")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sim = simulate(args.n, args.features, args.latent, args.seed)
    x, theta = sim["x"], sim["theta"]
    print(
        f"simulated {args.n} x {args.features} counts (mean {x.mean():.2f}, max {x.max():.0f}, "
        f"zeros {(x == 0).float().mean():.1%}), theta in [{theta.min():.2f}, {theta.max():.2f}]"
    )
    floor = fit_theta_given_means(x, sim["mu"], steps=500)
    print(f"{'true means known':<22} rel. error: {relative_errors(floor, theta)}")
    for decoder in ("linear", "mlp"):
        vae, seconds = train_vae(x, decoder, args)
        errors = relative_errors(vae.likelihood.concentration.detach(), theta)
        elbo = pyro_vae.elbo_per_datapoint(vae, x[:2000], seed=0)
        print(
            f"{'VAE, ' + decoder + ' decoder':<22} rel. error: {errors}  (ELBO {elbo:.2f} nats "
            f"on 2,000 training points; {args.epochs} epochs in {seconds:.0f} s)"
        )
    return 0


# -- digits: the three ranked by log p(x) ---------------------------------------------------------


class Binomial16(CountLikelihood):
    """Binomial(16, sigmoid(a)) per pixel: bounded counts 0..16, variance below the mean.

    Example:
        >>> Binomial16((2,))(torch.zeros(1, 2)).mean
        tensor([[8., 8.]])
    """

    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        (logits,) = self.split(params)
        return self.event(dist.Binomial(total_count=16, logits=logits))


def residual_dispersion(model: nn.Module, x: torch.Tensor) -> tuple[float, dist.Distribution]:
    """sum (x - E[x|z])^2 / sum E[x|z] at z = E_q[z|x], over pixels with E[x|z] >= 1; p(x|z)."""
    with torch.no_grad():
        p_x = model.likelihood(model.decoder(model.encoder(x).mean))
    mean = p_x.mean
    kept = mean >= 1
    return float(((x - mean)[kept] ** 2).sum() / mean[kept].sum()), p_x


def digits(argv: Sequence[str]) -> int:
    from pyro_vae.app.cli import main as pyro_vae_cli
    from pyro_vae.app.registry import load_dataset

    grid = [] if "--likelihoods" in argv else ["--likelihoods", *GRID]
    code = pyro_vae_cli(["compare", *DIGITS, *grid, *argv])
    if code != 0:
        return code
    out = Path(DIGITS[DIGITS.index("--out") + 1])
    if "--out" in argv:
        out = Path(argv[list(argv).index("--out") + 1])
    test = load_dataset("digits").x_test
    print(f"digits test pixels: {(test == 0).float().mean():.1%} zeros, "
          f"{(test == 16).float().mean():.1%} at the maximum 16")  # fmt: skip
    for folder in sorted((out / "runs").glob("*/seed*")):
        model = pyro_vae.load_run(folder).model
        ratio, p_x = residual_dispersion(model, test)
        notes = [f"residual var/mean {ratio:.2f}"]
        if hasattr(model.likelihood, "concentration"):
            theta = model.likelihood.concentration.detach().flatten()
            notes.append(f"theta median {theta.median():.0f} (range {theta.min():.2f}-"
                         f"{theta.max():.0f})")  # fmt: skip
        if hasattr(p_x.base_dist, "gate"):
            gate = p_x.base_dist.gate
            notes.append(f"mean gate {gate.mean():.2f} (on zeros {gate[test == 0].mean():.2f})")
        print(f"{folder.parent.name}/{folder.name}: {'; '.join(notes)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"dispersion": dispersion, "digits": digits}
    if not argv or argv[0] not in commands:
        print(f"usage: count_likelihoods.py {{{','.join(commands)}}} [options]", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
