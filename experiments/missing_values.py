"""Missing values: MIWAE on mnist5k with pixels missing, and imputation against its baselines.

    python experiments/missing_values.py                        # 3 patterns x 3 seeds
    python experiments/missing_values.py --encoder-mask         # the encoder also sees the mask
    python experiments/missing_values.py --epochs 1 --seeds 0 --train-images 300 --k 20

Grey mnist5k pixels (8-bit levels / 255, in [0, 1]) with a ``continuous-bernoulli``
likelihood (a proper density on [0, 1], so grey levels are modelled as they are). Two
patterns of missing pixels, each drawn from the seed:

- ``mcar``: each pixel of every training and test image is missing with probability 1/2,
  completely at random;
- ``bottom-half``: the bottom 14 rows are missing in a random half of the training
  images and in every test image (a block, where only learned structure can fill it);
- ``mcar-to-bottom-half``: trained on mcar's training mask (the same one, seed for seed),
  tested with every test image's bottom half missing, a pattern the encoder never saw.

A VAE is trained on the incomplete training set (``iwae:k=5``, which on masked data is
MIWAE, Mattei & Frellsen 2019), then the missing test pixels are filled five ways and
scored by their root-mean-square error against the true pixels (RMSE, [0, 1] scale):

- ``mean``: each pixel's mean over the training images where it is observed;
- ``reconstruction``: the decoder's mean at the encoder's mean, from the zero-filled input;
- ``miwae``: the single imputation E[x_mis|x_obs], self-normalized importance sampling
  with K particles (:func:`pyro_vae.imputation.impute`);
- ``one draw``: one multiple imputation (importance resampling, then x_mis ~ p(x_mis|z));
- ``draws' mean``: the mean of the M multiple imputations.

Writes ``results.json``, ``results.md`` and one figure per pattern (seed 0) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pyro_vae import Config, train
from pyro_vae.app.plots import save_image_grid
from pyro_vae.datasets import Dataset, load_mnist5k
from pyro_vae.imputation import impute
from pyro_vae.missing import mark_missing

OUT = Path(__file__).resolve().parent / "out" / "missing_values"
PATTERNS = ("mcar", "bottom-half", "mcar-to-bottom-half")
METHODS = ("mean", "reconstruction", "miwae", "one draw", "draws' mean")


def masks(pattern: str, train_shape, test_shape, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (True = observed) of the training and test images for ``pattern``.

    Example:
        >>> train_mask, test_mask = masks("mcar-to-bottom-half", (4, 1, 28, 28), (2, 1, 28, 28), 0)
        >>> torch.equal(train_mask, masks("mcar", (4, 1, 28, 28), (2, 1, 28, 28), 0)[0])
        True
        >>> bool(test_mask[..., :14, :].all()), bool(test_mask[..., 14:, :].any())
        (True, False)
    """
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(train_shape[-2]) >= train_shape[-2] // 2  # the bottom half
    block = rows.view(-1, 1).expand(train_shape[-2:])
    if pattern == "bottom-half":
        hidden = torch.rand(train_shape[0], generator=generator) < 0.5
        train_mask = ~(hidden.view(-1, 1, 1, 1) & block).expand(train_shape)
    else:  # mcar and mcar-to-bottom-half: the same training mask, drawn first
        train_mask = torch.rand(train_shape, generator=generator) >= 0.5
    if pattern == "mcar":
        test_mask = torch.rand(test_shape, generator=generator) >= 0.5
    else:
        test_mask = ~block.expand(test_shape)
    return train_mask.clone(), test_mask.clone()


def rmse(filled: torch.Tensor, truth: torch.Tensor, missing: torch.Tensor) -> float:
    return float(((filled - truth)[missing] ** 2).mean().sqrt())


def run_one(pattern: str, seed: int, args: argparse.Namespace) -> dict:
    mnist = load_mnist5k()
    x_train, y_train = mnist.x_train[: args.train_images], mnist.y_train[: args.train_images]
    mask_train, mask_test = masks(pattern, x_train.shape, mnist.x_test.shape, seed)
    data = Dataset.from_tensors(
        x_train, mnist.x_test, y_train, mnist.y_test, name=f"mnist5k-{pattern}",
        mask_train=mask_train, mask_test=mask_test,
    )  # fmt: skip
    cfg = Config(
        dataset="mnist5k", likelihood=args.likelihood, objective="iwae:k=5",
        latent_dim=20, hidden=[400], epochs=args.epochs, seed=seed, eval_k=args.k,
        encoder_mask=args.encoder_mask, out=str(args.out / f"{_name(pattern, args)}-seed{seed}"),
    )  # fmt: skip
    started = time.perf_counter()
    result = train(cfg, data=data, overwrite=True, progress=False, log=lambda _: None)
    seconds = time.perf_counter() - started
    vae = result.model.eval()
    truth = mnist.x_test.float() / 255
    missing = ~mask_test
    x = mark_missing(truth, mask_test)
    train_values = mark_missing(x_train.float() / 255, mask_train)
    pixel_mean = train_values.nanmean(0).nan_to_num(float(train_values.nanmean()))
    started = time.perf_counter()
    imputed = impute(vae, x, k=args.k, draws=args.draws, seed=seed)
    impute_seconds = time.perf_counter() - started
    filled = {
        "mean": torch.where(mask_test, truth, pixel_mean.expand_as(truth)),
        "reconstruction": torch.where(mask_test, truth, vae.reconstruct(x)),
        "miwae": imputed.mean,
        "one draw": imputed.draws[0],
        "draws' mean": imputed.draws.mean(0),
    }
    if seed == args.seeds[0] and not args.encoder_mask:
        show = torch.arange(8) * (len(x) // 8)
        rows = [x[show], truth[show], filled["reconstruction"][show], imputed.mean[show],
                imputed.draws[0][show], imputed.draws[1 % args.draws][show]]  # fmt: skip
        save_image_grid(
            torch.cat(rows), args.out / f"{pattern}.png", columns=8,
            title=f"mnist5k test, {pattern}: missing pixels in red",
            row_labels=["data", "truth", "reconstruction", "miwae E[x_mis|x_obs]",
                        "draw 1", "draw 2"],
        )  # fmt: skip
    return {
        "pattern": pattern,
        "encoder_mask": args.encoder_mask,
        "seed": seed,
        "missing_test_fraction": float(missing.float().mean()),
        "train_seconds": round(seconds, 1),
        "impute_seconds": round(impute_seconds, 1),
        "ess_fraction": float(imputed.ess_fraction.mean()),
        "test_elbo": result.history[-1]["test_elbo"],
        **{f"rmse {name}": rmse(value, truth, missing) for name, value in filled.items()},
    }


def _name(pattern: str, args: argparse.Namespace) -> str:
    return f"{pattern}+mask" if args.encoder_mask else pattern


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"RMSE on the missing test pixels ([0, 1] scale), mean +/- sd over seeds "
        f"{' '.join(map(str, args.seeds))}; {args.epochs} epochs of iwae:k=5 (MIWAE), "
        f"{args.likelihood}, K={args.k}, M={args.draws}",
        "",
        "| pattern | "
        + " | ".join(METHODS)
        + " | miwae / mean | miwae / reconstruction | ESS (% of K) |",
        "|---" * (len(METHODS) + 4) + "|",
    ]
    for pattern, mask in [(p, m) for p in PATTERNS for m in (False, True)]:
        mine = [r for r in rows if r["pattern"] == pattern and r.get("encoder_mask", False) == mask]
        if not mine:
            continue
        label = f"{pattern}, encoder sees the mask" if mask else pattern
        cells = []
        for name in METHODS:
            values = [r[f"rmse {name}"] for r in mine]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} +/- {sd:.4f}")
        ratio_mean = statistics.mean(r["rmse miwae"] / r["rmse mean"] for r in mine)
        ratio_rec = statistics.mean(r["rmse miwae"] / r["rmse reconstruction"] for r in mine)
        ess = 100 * statistics.mean(r["ess_fraction"] for r in mine)
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {ratio_mean:.3f} | {ratio_rec:.3f} | {ess:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _same(row: dict, pattern: str, seed: int, encoder_mask: bool) -> bool:
    same_run = row["pattern"] == pattern and row["seed"] == seed
    return same_run and row.get("encoder_mask", False) == encoder_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patterns", nargs="+", choices=PATTERNS, default=list(PATTERNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--train-images", type=int, default=4500)
    parser.add_argument("--k", type=int, default=1000, help="importance samples (imputation)")
    parser.add_argument("--draws", type=int, default=20, help="multiple imputations M")
    parser.add_argument("--encoder-mask", action="store_true", help="--encoder-mask runs")
    parser.add_argument("--likelihood", default="continuous-bernoulli", help="for grey pixels")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.json"
    rows = json.loads(results.read_text()) if results.exists() else []
    for pattern in args.patterns:
        for seed in args.seeds:
            if any(_same(r, pattern, seed, args.encoder_mask) for r in rows):
                continue  # done in an earlier run of this command
            rows.append(run_one(pattern, seed, args))
            results.write_text(json.dumps(rows, indent=1))
            print(json.dumps(rows[-1]), flush=True)
    rows = [r for r in rows if r["seed"] in args.seeds and r["pattern"] in args.patterns]
    table = report(rows, args)
    (args.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
