"""Training on data with missing entries, then `pyro-vae impute` and `evaluate` on them."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro.distributions as dist
import pytest
import torch

from pyro_vae import Config, ModelError, mlp_vae, train
from pyro_vae.app.checkpoint import load_checkpoint
from pyro_vae.app.impute import impute_file

TINY = dict(epochs=1, batch_size=50, hidden=[16], latent_dim=2, eval_k=20, seed=1)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "pyro_vae", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def holes(tmp_path_factory, mnist5k):
    """200 grey digits (floats in [0, 1]), 40% of their pixels NaN, and a run trained on them."""
    folder = tmp_path_factory.mktemp("holes")
    x = mnist5k.x_train[:200, 0].numpy() / np.float32(255)
    x[np.random.default_rng(0).random(x.shape) < 0.4] = np.nan
    np.savez(folder / "holes.npz", x=x)
    cfg = Config(dataset=str(folder / "holes.npz"), likelihood="continuous-bernoulli",
                 objective="iwae:k=3", out=str(folder / "run"), **TINY)  # fmt: skip
    train(cfg, progress=False, log=lambda _: None)
    return folder


def test_impute_fills_the_missing_entries_and_keeps_the_observed_ones(holes, tmp_path):
    out = tmp_path / "filled.npz"
    done = run_cli("impute", holes / "run", "--data", holes / "holes.npz", "--out", out,
                   "--draws", "3", "--k", "20")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "imputed 40.0% of the entries of 200 datapoints" in done.stdout
    given = np.load(holes / "holes.npz")["x"]
    filled = np.load(out)
    assert filled["x"].shape == given.shape and filled["draws"].shape == (3, *given.shape)
    seen = ~np.isnan(given)
    assert np.array_equal(filled["mask"], seen)
    assert np.array_equal(filled["x"][seen], given[seen])
    assert np.isfinite(filled["x"]).all() and np.isfinite(filled["draws"]).all()
    assert ((filled["x"] >= 0) & (filled["x"] <= 1)).all()
    assert (filled["ess_fraction"] > 0).all() and (filled["ess_fraction"] <= 1).all()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    again = run_cli("impute", holes / "run", "--data", holes / "holes.npz", "--out", out)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "exists; choose another path" in again.stderr


def test_evaluate_reports_log_p_of_the_observed_entries(holes):
    done = run_cli("evaluate", holes / "run", "--data", holes / "holes.npz", "--k", "10",
                   "--out", holes / "eval-holes.json", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "log p(x_obs)" in done.stdout and "40.0% of entries missing" in done.stdout


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"mask": np.ones((4, 28, 28), np.uint8)}, "'mask' has dtype uint8 but must be boolean"),
        ({"mask": np.ones((4, 28), bool)}, r"'mask' has shape \(4, 28\) but 'x' has shape"),
        ({}, "x has no missing entry"),
    ],
)
def test_bad_inputs_to_impute_are_one_line(holes, tmp_path, arrays, message):
    data = tmp_path / "bad.npz"
    np.savez(data, x=np.full((4, 28, 28), 0.5, np.float32), **arrays)
    done = run_cli("impute", holes / "run", "--data", data, "--out", tmp_path / "o.npz")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert re.search(message, done.stderr)
    assert not (tmp_path / "o.npz").exists()


class _JointGaussian(torch.nn.Module):
    """A likelihood over all entries at once: it cannot be masked per entry."""

    support = "real"

    def forward(self, params):
        return dist.MultivariateNormal(params, torch.eye(params.shape[-1]))


def test_a_run_whose_likelihood_cannot_be_masked_is_refused(tmp_path, mnist5k):
    def joint():
        return mlp_vae((784,), latent_dim=2, hidden=[8], likelihood=_JointGaussian())

    x = mnist5k.x_train[:100].reshape(100, 784).float() / 255
    np.savez(tmp_path / "rows.npz", x=x.numpy())
    cfg = Config(dataset=str(tmp_path / "rows.npz"), likelihood="gaussian",
                 out=str(tmp_path / "run"), **TINY)  # fmt: skip
    train(cfg, model=joint(), progress=False, log=lambda _: None)
    x[:, :10] = float("nan")
    np.savez(tmp_path / "holes.npz", x=x.numpy())
    with pytest.raises(ModelError, match="cannot be masked per entry"):
        impute_file(tmp_path / "run", tmp_path / "holes.npz", tmp_path / "o.npz", model=joint())
    assert not (tmp_path / "o.npz").exists()


def test_training_with_an_all_observed_mask_is_training_without_one(tmp_path, mnist5k):
    x = mnist5k.x_train[:150, 0].numpy()
    np.savez(tmp_path / "plain.npz", x=x)
    np.savez(tmp_path / "masked.npz", x=x, mask=np.ones(x.shape, bool))
    states = []
    for name in ("plain", "masked"):
        cfg = Config(dataset=str(tmp_path / f"{name}.npz"), objective="iwae:k=2",
                     out=str(tmp_path / f"run-{name}"), **TINY)  # fmt: skip
        train(cfg, progress=False, log=lambda _: None)
        states.append(load_checkpoint(tmp_path / f"run-{name}" / "checkpoint.pt", "cpu")["model"])
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_the_readme_example_runs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
                if "impute(vae, holes" in b]  # fmt: skip
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    filled, holes = namespace["filled"], namespace["holes"]
    assert filled.mean.shape == (8, 1, 28, 28) and filled.draws.shape == (5, 8, 1, 28, 28)
    imputed = holes[::63]  # a strided subset: mnist5k's splits are sorted by class
    seen = ~imputed.isnan()
    assert torch.equal(filled.mean[seen], imputed[seen]) and filled.mean.isfinite().all()


def test_the_missing_values_experiment_runs_on_a_tiny_budget(tmp_path):
    script = Path(__file__).resolve().parents[2] / "experiments" / "missing_values.py"
    done = subprocess.run(
        [sys.executable, str(script), "--epochs", "1", "--seeds", "0", "--train-images", "200",
         "--k", "10", "--draws", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "results.md").read_text()
    assert "| mcar |" in table and "| bottom-half |" in table
    assert "| mcar-to-bottom-half |" in table
    assert (tmp_path / "mcar.png").read_bytes()[:4] == b"\x89PNG"
    done = subprocess.run(  # the particles diagnostic on the run it names
        [sys.executable, str(script.with_name("imputation_particles.py")),
         str(tmp_path / "mcar-to-bottom-half-seed0"), "3", "30", "--every", "50"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["mean", "reconstruction", "K=3:", "K=30:"]
    for line, k in zip(lines[2:], (3, 30), strict=True):  # 1 <= ESS <= K, RMSE in [0, 1]
        assert 0 < float(line.split()[2].rstrip(",")) < 1
        assert 1 <= float(line.split()[4]) <= k


def test_mcar_to_bottom_half_trains_on_mcars_mask_and_tests_on_bottom_halves():
    script = Path(__file__).resolve().parents[2] / "experiments" / "missing_values.py"
    masks = runpy.run_path(str(script), run_name="masks")["masks"]
    train_shape, test_shape = (4500, 1, 28, 28), (500, 1, 28, 28)
    for seed in (0, 1):
        train_mask, test_mask = masks("mcar-to-bottom-half", train_shape, test_shape, seed)
        mcar_train, mcar_test = masks("mcar", train_shape, test_shape, seed)
        assert torch.equal(train_mask, mcar_train)  # the same model as mcar's, seed for seed
        per_pixel = (~train_mask).float().mean(0)  # missing at random: about 1/2 everywhere
        assert float(per_pixel.min()) > 0.45 and float(per_pixel.max()) < 0.55
        assert test_mask.shape == test_shape and not torch.equal(test_mask, mcar_test)
        assert test_mask[..., :14, :].all() and not test_mask[..., 14:, :].any()
    other = masks("mcar-to-bottom-half", train_shape, test_shape, 1)[0]
    assert not torch.equal(masks("mcar-to-bottom-half", train_shape, test_shape, 0)[0], other)


def test_bits_per_dim_of_missing_8bit_data_count_the_observed_dimensions(tmp_path, mnist5k):
    from pyro_vae import evaluate

    x = mnist5k.x_train[:150, 0].numpy()
    mask = np.random.default_rng(1).random(x.shape) >= 0.25
    np.savez(tmp_path / "levels.npz", x=x, mask=mask)
    cfg = Config(dataset=str(tmp_path / "levels.npz"), likelihood="discretized-logistic",
                 out=str(tmp_path / "run"), **TINY)  # fmt: skip
    train(cfg, progress=False, log=lambda _: None)
    result = evaluate(tmp_path / "run", data=str(tmp_path / "levels.npz"), k=5)
    observed = 784 * (1 - result.missing_fraction)
    assert abs(result.missing_fraction - 0.25) < 0.01
    assert result.bits_per_dim == pytest.approx(-result.log_px / (observed * np.log(2)))
    assert "log p(x_obs)" in result.table()
