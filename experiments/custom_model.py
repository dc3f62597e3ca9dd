"""Your own model through the whole pipeline: a conditional VAE and a hierarchical prior.

``ConditionalVAE`` is a user's ``VAE`` subclass whose model and guide take the label y
(q(z|x, y), p(x|z, y)); ``HierarchicalNormalPrior`` gives every z one global scale tau,
sampled once outside the ``data`` plate with its own guide. Each is trained through the
public entry point ``pyro_vae.train`` into a run folder, killed with SIGKILL after its
first checkpoint, resumed, and checked bit for bit against an uninterrupted run; then
evaluated (IS log p(x|y) for the CVAE, through Pyro's traces). Offline, on mnist5k.

    python experiments/custom_model.py                # 3 epochs each, about a minute
    python experiments/custom_model.py --epochs 2     # the smoke test's budget
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from pyro.nn import pyro_method

import pyro_vae
from pyro_vae.guides import NormalGuide
from pyro_vae.likelihoods import BernoulliLikelihood
from pyro_vae.networks import MLPBody
from pyro_vae.priors import HierarchicalNormalPrior, StandardNormalPrior
from pyro_vae.vae import data_plate


class ConditionalVAE(pyro_vae.VAE):
    """p(z) p(x | z, y) with q(z | x, y): the label enters encoder and decoder as a one-hot."""

    def __init__(self, data_shape=(1, 28, 28), latent_dim=10, num_classes=10, hidden=200):
        pixels = int(torch.Size(data_shape).numel())
        encoder = NormalGuide(
            MLPBody([pixels + num_classes, hidden], event_dims=1), hidden, latent_dim
        )
        decoder = MLPBody([latent_dim + num_classes, hidden, pixels], 1, final_activation=False)
        likelihood = BernoulliLikelihood(data_shape)
        prior = StandardNormalPrior(latent_dim)
        super().__init__(encoder, decoder, prior, likelihood, data_shape=data_shape, check=False)
        self.num_classes = num_classes

    def _with_label(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(y, self.num_classes).to(h.dtype).expand(*h.shape[:-1], -1)
        return torch.cat([h, one_hot], -1)

    @pyro_method
    def model(self, x, y, num_data=None):
        with data_plate(x, num_data):
            z = pyro.sample("z", self.prior())
            p_x = self.likelihood(self.decoder(self._with_label(z, y)))
            pyro.sample("x", p_x, obs=x)

    @pyro_method
    def guide(self, x, y, num_data=None):
        with data_plate(x, num_data):
            pyro.sample("z", self.encoder(self._with_label(x.flatten(1), y)))


def hierarchical_vae() -> pyro_vae.VAE:
    return pyro_vae.mlp_vae((1, 28, 28), 10, [200], prior=HierarchicalNormalPrior(10))


MODELS = {"cvae": ConditionalVAE, "hierarchical": hierarchical_vae}


def config(out: Path, epochs: int) -> pyro_vae.Config:
    return pyro_vae.Config(dataset="mnist5k", epochs=epochs, batch_size=100, out=str(out))


def build(kind: str) -> torch.nn.Module:
    """The model, initialised from a fixed seed (train() seeds only what it builds itself)."""
    torch.manual_seed(0)
    return MODELS[kind]()


def train(kind: str, out: Path, epochs: int, resume: bool = False):
    torch.set_num_threads(1)
    return pyro_vae.train(
        None if resume else config(out, epochs),
        model=build(kind),
        resume=out if resume else None,
        progress=False,
        log=lambda _: None,
    )


def kill_after_first_checkpoint(kind: str, out: Path, epochs: int) -> None:
    """Train in a child process and SIGKILL it once its first checkpoint is on disk."""
    child = subprocess.Popen([sys.executable, __file__, "--child", kind, str(out), str(epochs)])
    checkpoint = out / "checkpoint.pt"
    while not checkpoint.exists() and child.poll() is None:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def numbers(history: list[dict]) -> list[dict]:
    """The metrics rows without their wall-clock times."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def demo(kind: str, root: Path, epochs: int) -> None:
    started = time.perf_counter()
    whole = train(kind, root / f"{kind}-whole", epochs)
    killed = root / f"{kind}-killed"
    kill_after_first_checkpoint(kind, killed, epochs)
    resumed = train(kind, killed, epochs, resume=True)
    exact = numbers(whole.history) == numbers(resumed.history) and all(
        torch.equal(a, b)
        for a, b in zip(
            whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
        )
    )
    result = pyro_vae.evaluate(killed, k=100, model=build(kind))
    print(
        f"{kind:>12}: test ELBO per epoch {[round(r['test_elbo'], 1) for r in whole.history]}; "
        f"killed and resumed: {'bit-exact' if exact else 'DIFFERENT'}; "
        f"IS log p(x{'|y' if kind == 'cvae' else ''}) {result.log_px:.1f} nats "
        f"({result.num_datapoints} test digits, K=100); {time.perf_counter() - started:.0f} s"
    )
    if kind == "hierarchical":
        tau = float(resumed.model.prior.q_loc.exp())  # the median of q(tau) = LogNormal(loc, s)
        print(f"{'':>12}  learned global scale: median of q(tau) = {tau:.3f}")
    if not exact:
        raise SystemExit(f"{kind}: the resumed run differs from the uninterrupted one")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a temporary one)")
    parser.add_argument(
        "--child", nargs=3, metavar=("KIND", "OUT", "EPOCHS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        kind, out, epochs = args.child
        train(kind, Path(out), int(epochs))
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        for kind in MODELS:
            demo(kind, root, args.epochs)


if __name__ == "__main__":
    main()
