"""How much the built-in CVAE's fast path saves against Pyro's traces, per training epoch.

Three conditional VAEs of the same sizes (MLP 784-400-10, labels one-hot) train one
mnist5k epoch at a time (36 steps of 128, Adam), in alternating rounds so that all see
the same machine load (each model goes first in turn):

- ``built-in``: ``--model cvae``, scored from its parts (``CVAE.log_weights``);
- ``traced twin``: the same modules in a subclass that overrides ``model``, so every
  objective goes through Pyro's traces (same numbers, tested in tests/test_cvae.py);
- ``hand-written``: the user's ``ConditionalVAE`` of ``experiments/custom_model.py``
  (the README's "Your own model"), traced too.

    python experiments/cvae_speed.py                   # elbo and iwae:k=5, 5 rounds: ~2 min
    python experiments/cvae_speed.py --rounds 1 --steps 3            # smoke
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

import pyro_vae
from pyro_vae.app.build import build_model
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.app.registry import load_dataset
from pyro_vae.convention import loss_modules
from pyro_vae.families import CVAE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from custom_model import ConditionalVAE  # noqa: E402

SHAPE = (1, 28, 28)


class TracedTwin(CVAE):
    """The built-in CVAE's modules with ``model`` overridden: Pyro's traced path."""

    def model(self, x, num_data=None, kl_scale=1.0, y=None, *, observe=True):
        return CVAE.model(self, x, num_data, kl_scale, y, observe=observe)


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    built_in = build_model(pyro_vae.Config(model="cvae"), SHAPE, num_classes=10)
    parts = (built_in.encoder, built_in.decoder, built_in.prior, built_in.likelihood)
    twin = TracedTwin(*copy.deepcopy(parts), 10, data_shape=SHAPE)  # the same start, apart
    return {
        "built-in": built_in,
        "traced twin": twin,
        "hand-written": ConditionalVAE(SHAPE, latent_dim=10, num_classes=10, hidden=400),
    }


def epoch_seconds(model, spec: str, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    loss_fn = build_objective(spec)(*loss_modules(model))
    optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)
    batches = torch.randperm(len(x)).split(128)[:steps]
    loss_fn(x[:2], len(x), 1.0, y[:2])  # the traced path guesses the plate nesting once
    started = time.perf_counter()
    for batch in batches:
        optim.zero_grad()
        loss_fn(x[batch], len(x), 1.0, y[batch]).backward()
        optim.step()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", default=["elbo", "iwae:k=5"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=36, help="steps per epoch (36 = mnist5k)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("mnist5k")
    x = torch.bernoulli(data.x_train.float() / 255, generator=torch.Generator().manual_seed(0))
    y = data.y_train
    print(f"seconds per epoch of {args.steps} steps, median of {args.rounds} alternating rounds")
    print("| objective | built-in (fast path) | traced twin | hand-written (traced) |")
    print("|---|---|---|---|")
    for spec in args.objectives:
        times: dict[str, list[float]] = {}
        for round in range(args.rounds):
            built = list(models().items())
            for name, model in built[round % 3 :] + built[: round % 3]:  # each goes first too
                times.setdefault(name, []).append(epoch_seconds(model, spec, x, y, args.steps))
        median = {name: statistics.median(t) for name, t in times.items()}
        fast = median["built-in"]
        cells = [f"{fast:.3f} s"] + [
            f"{median[n]:.3f} s ({median[n] / fast:.2f}x)" for n in ("traced twin", "hand-written")
        ]
        print(f"| {spec} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
