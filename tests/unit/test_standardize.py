"""A fixed per-feature standardization makes gaussian/laplace training blind to the data's units."""

import math

import numpy as np
import pytest
import torch

from pyro_vae import Config, evaluate, load_run, train
from pyro_vae.app.build import build_vae
from pyro_vae.app.faults import below_baseline_warning, standardizes_itself
from pyro_vae.app.impute import impute_file
from pyro_vae.baseline import independent_gaussian_log_px
from pyro_vae.datasets import Dataset
from pyro_vae.standardize import Standardize, standardization_from_data

# per-feature units spanning 1e-3..1e3, not symmetric about 1 (sum of logs 0.34), and offsets
UNITS = torch.tensor([1e-3, 3e3 / 3, 0.05, 20.0, 1.0, 700.0, 0.2, 1e-2])
OFFSETS = torch.tensor([0.0, 5e4, -3.0, 100.0, 7.0, -2e5, 0.5, 1.0])


def _low_rank(seed=0, rows=400, features=8):
    """Two latent factors, linear, plus noise: standardized-ish columns."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, 2, generator=g)
    return z @ torch.randn(2, features, generator=g) + 0.3 * torch.randn(
        rows, features, generator=g
    )


def _config(tmp_path, name, **changes):
    cfg = Config(likelihood="gaussian", epochs=3, hidden=[32], latent_dim=2, device="cpu",
                 out=str(tmp_path / name))  # fmt: skip
    return cfg.replace(**changes)


def _fit(tmp_path, name, x, k=50, **changes):
    data = Dataset.from_tensors(x[:360], x[360:])
    run = train(_config(tmp_path, name, **changes), data=data, progress=False, log=lambda _: None)
    return run, evaluate(run.run_dir, data=data, k=k, log=lambda _: None)


def test_the_standardization_is_each_features_own_mean_and_std_and_a_constant_is_only_centred():
    x = torch.tensor([[1.0, 3e-6, 5.0, 0.0], [3.0, 5e-6, 5.0, 0.0], [math.nan, 7e-6, 5.0, 0.0]])
    mean, std = standardization_from_data(x)
    assert torch.allclose(mean, torch.tensor([2.0, 5e-6, 5.0, 0.0]))
    assert torch.allclose(std, torch.tensor([1.0, math.sqrt(8 / 3) * 1e-6, 1.0, 1.0]))
    s = Standardize((4,))
    s.set(mean, std)
    assert torch.allclose(s.undo(s(x[:2])), x[:2])
    with pytest.raises(ValueError, match="positive"):
        s.set(mean, torch.zeros(4))


@pytest.mark.parametrize("likelihood, mode", [("gaussian", "learned"), ("laplace", "per-pixel")])
def test_training_on_other_units_changes_log_px_by_exactly_the_jacobian(tmp_path, likelihood, mode):
    """x -> a x + b per feature (a from 1e-3 to 1e3) changes log p(x) by -sum log a, and
    nothing else: the encoder sees the same standardized numbers and the decoder's density
    is the same one in other units. Measured off the Jacobian by 2e-7 (gaussian) and 4e-7
    (laplace) nats: float32 rounding of the standardized inputs, carried through 30 Adam
    steps. The tolerance, 1e-3, leaves room for another machine's arithmetic and is a
    billion times below what the units cost without the standardization (2.5e6 nats,
    checked below)."""
    x = _low_rank()
    moved = x * UNITS + OFFSETS
    jacobian = float(UNITS.double().log().sum())
    changes = dict(likelihood=likelihood, likelihood_scale=mode)
    base, base_scores = _fit(tmp_path, "base", x, **changes)
    other, other_scores = _fit(tmp_path, "other", moved, **changes)
    assert other_scores.log_px == pytest.approx(base_scores.log_px - jacobian, abs=1e-3)
    for a, b in zip(base.history, other.history, strict=True):
        assert b["test_elbo"] == pytest.approx(a["test_elbo"] - jacobian, abs=1e-3)
    _, raw_base = _fit(tmp_path, "raw-base", x, standardize=False, **changes)
    _, raw_other = _fit(tmp_path, "raw-other", moved, standardize=False, **changes)
    assert abs(raw_other.log_px - (raw_base.log_px - jacobian)) > 10


def test_on_a_wide_range_table_the_default_beats_independent_gaussians(tmp_path):
    """Columns from 1e-3 to 1e3 units with offsets to 2e5: the default (30 epochs) scores
    above the baseline eval.json reports and above independent Gaussians with each feature's
    own mean and std (the baseline without its floor, itself blind to units), where the
    unstandardized model stays far below both."""
    x = _low_rank(seed=1) * UNITS + OFFSETS
    train_x, test_x = x[:360], x[360:]
    mean, std = standardization_from_data(train_x)
    own = independent_gaussian_log_px((train_x - mean) / std, (test_x - mean) / std)
    own -= float(std.double().log().sum())
    _, scores = _fit(tmp_path, "default", x, k=200, epochs=30, hidden=[64])
    assert scores.log_px > own > scores.baseline_log_px
    _, raw = _fit(tmp_path, "raw", x, k=200, epochs=30, hidden=[64], standardize=False)
    assert raw.log_px < scores.baseline_log_px - 10


def test_the_standardization_travels_in_the_checkpoint_and_samples_are_in_the_datas_units(
    tmp_path,
):
    x = _low_rank() * UNITS + OFFSETS
    run, _ = _fit(tmp_path, "run", x, epochs=1)
    mean, std = standardization_from_data(x[:360])
    model = load_run(run.run_dir).model
    parts = [m for m in model.modules() if isinstance(m, Standardize)]
    assert len(parts) == 2  # the encoder's input and the likelihood's units
    for part in parts:
        assert torch.equal(part.mean, mean) and torch.equal(part.std, std)
    drawn = model.sample(2000)
    assert (((drawn.mean(0) - mean) / std).abs() < 0.5).all()  # E[x] about the data's means


def test_images_keep_their_shared_pixel_unit_and_other_likelihoods_are_not_standardized():
    """Per pixel, a rarely inked pixel's small spread started its scale tiny (mnist5k's
    per-pixel gaussian lost 94 nats), so only tables are standardized."""
    image = build_vae(Config(likelihood="gaussian", hidden=[8], latent_dim=2), (1, 4, 4))
    table = build_vae(Config(likelihood="laplace", hidden=[8], latent_dim=2), (16,))
    counts = build_vae(Config(likelihood="poisson", hidden=[8], latent_dim=2), (16,))
    found = [
        sum(isinstance(m, Standardize) for m in model.modules()) for model in (image, table, counts)
    ]
    assert found == [0, 2, 0]


def test_the_baseline_warning_suggests_standardizing_only_to_a_model_that_does_not():
    table = build_vae(Config(likelihood="gaussian", hidden=[8], latent_dim=2), (16,))
    raw = build_vae(
        Config(likelihood="gaussian", hidden=[8], latent_dim=2, standardize=False), (16,)
    )
    said = [
        below_baseline_warning("log p(x)", -50.0, -10.0, standardizes_itself(m))
        for m in (table, raw)
    ]
    assert all(line.startswith("warning: log p(x) -50") for line in said)
    assert "--standardize" not in said[0] and "--standardize" in said[1]


def _strip_standardize(run_dir):
    """Make a run folder as the versions before the `standardize` key wrote it."""
    toml = run_dir / "config.toml"
    toml.write_text("".join(line for line in toml.read_text().splitlines(keepends=True)
                            if not line.startswith("standardize =")))  # fmt: skip
    path = run_dir / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["config"]["standardize"]
    torch.save(state, path)


def test_a_run_saved_before_the_standardize_key_loads_evaluates_and_resumes_as_it_trained(
    tmp_path,
):
    """Such a run was trained unstandardized and its checkpoint holds no standardization: a
    missing key in a saved run means false, so it rebuilds the same model, scores the same
    bit for bit and resumes as if never stopped; a new config without the key standardizes."""
    x = _low_rank() * UNITS + OFFSETS
    data = Dataset.from_tensors(x[:360], x[360:])
    straight = train(_config(tmp_path, "straight", epochs=2, standardize=False), data=data,
                     progress=False)  # fmt: skip
    old = train(_config(tmp_path, "old", epochs=1, standardize=False), data=data, progress=False)
    before = evaluate(old.run_dir, data=data, k=20, log=lambda _: None).log_px
    _strip_standardize(old.run_dir)
    assert "standardize" not in (old.run_dir / "config.toml").read_text()
    loaded = load_run(old.run_dir)
    assert loaded.config.standardize is False and loaded.note == ""
    assert not any(isinstance(m, Standardize) for m in loaded.model.modules())
    assert evaluate(old.run_dir, data=data, k=20, log=lambda _: None).log_px == before
    resumed = train(resume=old.run_dir, epochs=2, data=data, progress=False)
    assert [r["test_elbo"] for r in resumed.history] == [r["test_elbo"] for r in straight.history]
    rerun = Config.from_file(old.run_dir / "config.toml")  # `train --config` of that file
    assert rerun.standardize is False
    assert Config.from_toml_text("[model]\nlikelihood = 'gaussian'\n").standardize is True


def test_missing_entries_are_imputed_in_the_datas_units(tmp_path):
    """A quarter of the entries missing in a wide-range table: the model's conditional means
    fill them closer to the truth than each feature's mean does, feature by feature in
    standard deviations, and the observed entries come back as given."""
    x = _low_rank(seed=2, rows=600) * UNITS + OFFSETS
    g = torch.Generator().manual_seed(3)
    holes = torch.rand(x.shape, generator=g) < 0.25
    holed = x.masked_fill(holes, math.nan)
    data = Dataset.from_tensors(holed[:500], holed[500:])
    cfg = _config(tmp_path, "holes", epochs=40, hidden=[64])
    run = train(cfg, data=data, progress=False, log=lambda _: None)
    np.savez(tmp_path / "test.npz", x=holed[500:].numpy())
    filled = impute_file(
        run.run_dir, tmp_path / "test.npz", tmp_path / "filled.npz", draws=0, k=200
    )
    imputed = torch.from_numpy(np.load(filled.out)["x"])
    truth, where = x[500:], holes[500:]
    assert torch.equal(imputed[~where], truth[~where])
    mean, std = standardization_from_data(holed[:500])
    model_error = ((imputed - truth) / std).masked_fill(~where, 0).square().sum(0)
    mean_error = ((mean - truth) / std).masked_fill(~where, 0).square().sum(0)
    assert (model_error < mean_error).all()


@pytest.mark.parametrize("model", ["cvae", "m2", "stacked"])
def test_every_built_in_family_standardizes_all_it_reads(tmp_path, model):
    """cvae, m2 (whose classifier sees x too) and stacked layers get the same standardization
    in every part that reads x, and train to a finite score on a wide-range table."""
    x = _low_rank(rows=200) * UNITS + OFFSETS
    y = (x[:, 0] > x[:, 0].median()).long()
    data = Dataset.from_tensors(x[:180], x[180:], y[:180], y[180:])
    changes = {"latent_dim": [4, 2]} if model == "stacked" else {"model": model}
    cfg = _config(tmp_path, model, epochs=2, **changes)
    run = train(cfg, data=data, progress=False, log=lambda _: None)
    mean, std = standardization_from_data(x[:180])
    parts = [m for m in load_run(run.run_dir).model.modules() if isinstance(m, Standardize)]
    assert len(parts) == (3 if model == "m2" else 2)
    assert all(torch.equal(p.mean, mean) and torch.equal(p.std, std) for p in parts)
    assert math.isfinite(evaluate(run.run_dir, data=data, k=5).log_px)
