"""Does the imputation of a missing_values.py run still move as the particles K grow?

    python experiments/imputation_particles.py \
        experiments/out/missing_values/mcar-to-bottom-half-seed0 100 1000 10000 100000

A diagnostic for issue 14. The run folder's name gives the pattern and the seed
(``<pattern>[+mask]-seed<N>``); the test mask is that pattern's, and every ``--every``-th
test digit is imputed (the test digits are scored, not used to choose anything). Printed:
the RMSE on the missing pixels of mean imputation, of the plain reconstruction and of
E[x_mis|x_obs] by self-normalized importance sampling with each K (from q(z|x_obs), as
:func:`pyro_vae.imputation.impute`), with the effective number of particles. An estimate
that keeps moving as K grows is limited by the proposal, not yet by the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from missing_values import masks  # noqa: E402

from pyro_vae.app.load import load_run  # noqa: E402
from pyro_vae.datasets import load_mnist5k  # noqa: E402
from pyro_vae.imputation import impute  # noqa: E402
from pyro_vae.missing import allow_missing, mark_missing  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder of missing_values.py (<pattern>-seed<N>)")
    parser.add_argument("k", nargs="+", type=int, help="particles per test digit")
    parser.add_argument("--every", type=int, default=5, help="impute every n-th test digit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    name, seed = Path(args.run).name.rsplit("-seed", 1)
    mnist = load_mnist5k()  # missing_values.py trains on all 4,500 training digits
    train_mask, test_mask = masks(name.removesuffix("+mask"), mnist.x_train.shape,
                                  mnist.x_test.shape, int(seed))  # fmt: skip
    truth, seen = mnist.x_test[:: args.every].float() / 255, test_mask[:: args.every]
    x = mark_missing(truth, seen)

    def rmse(filled: torch.Tensor) -> float:
        return float(((torch.where(seen, truth, filled) - truth)[~seen] ** 2).mean().sqrt())

    pixel_mean = mark_missing(mnist.x_train.float() / 255, train_mask).nanmean(0)
    vae = allow_missing(load_run(args.run).model).eval()
    print(f"mean {rmse(pixel_mean.expand_as(truth)):.4f}", flush=True)
    print(f"reconstruction {rmse(vae.reconstruct(x)):.4f}", flush=True)
    for k in args.k:
        result = impute(vae, x, k=k, seed=0)
        particles = k * float(result.ess_fraction.mean())
        print(f"K={k}: miwae {rmse(result.mean):.4f}, ESS {particles:.1f} particles", flush=True)


if __name__ == "__main__":
    main()
