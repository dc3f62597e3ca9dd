"""Notes that training prints before it starts, where a setting would otherwise surprise."""

import json
import math

import numpy as np
import pytest
import torch

from pyro_vae import Config, evaluate, load_run, train
from pyro_vae.baseline import independent_gaussian_log_px
from pyro_vae.datasets import Dataset
from pyro_vae.errors import DataError


def test_a_model_whose_checkpoints_run_to_gigabytes_is_announced(tmp_path, monkeypatch):
    """categorical-256 with the MLP on 32x32 colour images has 317 million parameters and a
    3.5 GiB checkpoint; the note says so before training (threshold lowered here)."""
    monkeypatch.setattr("pyro_vae.app.train.LARGE_MODEL", 1_000)
    data = Dataset.from_tensors(torch.rand(50, 20), torch.rand(10, 20))
    cfg = Config(likelihood="gaussian", epochs=1, batch_size=25, hidden=[200], latent_dim=2,
                 device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    said: list[str] = []
    train(cfg, data=data, progress=False, log=said.append)
    assert any(line.startswith("note: the model has ") and "GiB" in line for line in said)


def _gaussian(tmp_path, name):
    return Config(likelihood="gaussian", epochs=1, batch_size=25, hidden=[16], latent_dim=2,
                  device="cpu", out=str(tmp_path / name))  # fmt: skip


def test_real_valued_data_far_from_unit_scale_get_a_note_unless_standardized(tmp_path):
    """Unstandardized (--no-standardize) prices get the note; the default standardizes them
    itself and unit-scale data need nothing, so neither gets one."""
    unscaled = torch.randn(60, 5) * 1e5 + 3e5  # prices, say
    said: list[str] = []
    data = Dataset.from_tensors(unscaled[:50], unscaled[50:])
    raw = _gaussian(tmp_path, "prices").replace(standardize=False)
    train(raw, data=data, progress=False, log=said.append)
    assert any("reach |x| = " in line and "standardize each feature" in line for line in said)
    said.clear()
    train(_gaussian(tmp_path, "standardized"), data=data, progress=False, log=said.append)
    assert not any("reach |x| = " in line for line in said)
    said.clear()
    scaled = (unscaled - unscaled.mean(0)) / unscaled.std(0)
    data = Dataset.from_tensors(scaled[:50], scaled[50:])
    train(_gaussian(tmp_path, "scaled"), data=data, progress=False, log=said.append)
    assert not any("standardize" in line for line in said)


def test_data_whose_first_loss_overflows_are_refused_before_the_folder(tmp_path):
    huge = torch.full((60, 5), 1e30)  # squares overflow float32 (unstandardized)
    data = Dataset.from_tensors(huge[:50], huge[50:])
    raw = _gaussian(tmp_path, "huge").replace(standardize=False)
    with pytest.raises(DataError, match=r"loss at the initial weights is inf .* 1e\+30"):
        train(raw, data=data, progress=False, log=lambda _: None)
    assert not (tmp_path / "huge").exists()


# -- real-valued data: where the scale starts, and the baseline it must beat ------------------


def _tab(seed=0):
    """The outside tester's table: 2-D linear structure plus noise, standardized, N=400, D=10."""
    r = np.random.default_rng(seed)
    x = r.normal(size=(400, 2)) @ r.normal(size=(2, 10)) + 0.3 * r.normal(size=(400, 10))
    x = torch.tensor((x - x.mean(0)) / x.std(0), dtype=torch.float32)
    return x[:360], x[360:]


def _by_hand(train, test):
    """Independent Gaussians per feature, closed form in float64: each feature's observed
    training mean and (population) std, at least 0.1 of the overall std; log N summed over
    each test row's observed entries, averaged over rows."""
    train, test = train.double().numpy(), test.double().numpy()
    mean, std = np.nanmean(train, 0), np.nanstd(train, 0)
    std = np.maximum(std, 0.1 * np.nanstd(train))
    log_n = -0.5 * ((test - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)
    return float(np.nansum(log_n, 1).mean())


def test_the_baseline_is_the_closed_form_independent_gaussian_over_observed_entries():
    train, test = _tab()
    train, test = train * torch.linspace(0.5, 20, 10), test * torch.linspace(0.5, 20, 10)
    train[::5, 3], test[::4, 7], train[:, 9] = math.nan, math.nan, 1.5  # holes; a constant
    assert independent_gaussian_log_px(train, test) == pytest.approx(_by_hand(train, test), 1e-6)


def _tab_config(tmp_path, name, **changes):
    cfg = Config(likelihood="gaussian", epochs=20, batch_size=40, hidden=[64], latent_dim=2,
                 device="cpu", out=str(tmp_path / name))  # fmt: skip
    return cfg.replace(**changes)


def test_on_a_standardized_table_the_data_start_beats_the_baseline_and_a_start_at_0_1_is_warned(
    tmp_path,
):
    """20 epochs of 9 steps. Measured on 4 such tables (seeds 0-3): the default is never more
    than a nat per datapoint below the baseline and ends 2.0-3.1 above it; a start at 0.1
    ends 18-59 below (at 30 default epochs of the CLI: -12.3 against -52.4)."""
    train_x, test_x = _tab()
    data = Dataset.from_tensors(train_x, test_x)
    baseline = _by_hand(train_x, test_x)
    said: list[str] = []
    good = train(_tab_config(tmp_path, "good"), data=data, progress=False, log=said.append)
    assert good.history[-1]["test_elbo"] > baseline + 1
    assert not any("warning" in line for line in said)
    scores = evaluate(good.run_dir, data=data, k=20)
    assert scores.log_px > baseline and scores.baseline_log_px == pytest.approx(baseline, 1e-6)
    written = json.loads(scores.path.read_text())
    assert written["baseline_log_px"] == scores.baseline_log_px and written["warning"] == ""
    said.clear()
    cfg = _tab_config(tmp_path, "small", likelihood_scale_value=0.1)
    small = train(cfg, data=data, progress=False, log=said.append)
    assert small.history[-1]["test_elbo"] < baseline - 10
    warned = [line for line in said if line.startswith("warning: test ELBO")]
    assert len(warned) == 2  # at epoch 5, and again at the last
    assert f"{small.history[-1]['test_elbo']:.4g}" in warned[-1] and f"{baseline:.4g}" in warned[-1]
    assert "--likelihood-scale-value" in warned[-1] and "\n" not in warned[-1]
    messages: list[str] = []
    evaluate(small.run_dir, data=data, k=20, log=messages.append)
    assert messages and messages[0].startswith("warning: log p(x) ")


def test_binary_data_have_no_real_valued_baseline(tmp_path):
    x = torch.bernoulli(torch.full((60, 6), 0.3))
    cfg = Config(likelihood="bernoulli", epochs=1, batch_size=25, hidden=[8], latent_dim=2,
                 device="cpu", out=str(tmp_path / "binary"))  # fmt: skip
    data = Dataset.from_tensors(x[:50], x[50:])
    run = train(cfg, data=data, progress=False, log=print)
    scores = evaluate(run.run_dir, data=data, k=2)
    assert scores.baseline_log_px is None
    assert "baseline_log_px" not in json.loads(scores.path.read_text())


@pytest.mark.parametrize("mode, value", [("per-pixel", 0.0), ("fixed", 0.0), ("learned", 0.1)])
def test_a_scale_started_from_the_data_or_set_as_before_resumes_exactly(tmp_path, mode, value):
    """Two epochs straight equal one and a resumed one (an older run's config names 0.1)."""
    train_x, test_x = _tab()
    data = Dataset.from_tensors(train_x, test_x)
    changes = dict(epochs=2, likelihood_scale=mode, likelihood_scale_value=value)
    straight = train(_tab_config(tmp_path, "straight", **changes), data=data, progress=False)
    cfg = _tab_config(tmp_path, "resumed", **{**changes, "epochs": 1})
    train(cfg, data=data, progress=False)
    resumed = train(resume=tmp_path / "resumed", epochs=2, data=data, progress=False)
    assert [row["test_elbo"] for row in resumed.history] == [
        row["test_elbo"] for row in straight.history
    ]
    saved = Config.from_file(tmp_path / "resumed" / "config.toml", saved=True)
    assert (saved.likelihood_scale_value > 0.5) == (mode == "fixed")  # a fixed one is recorded
    weights = resumed.model.state_dict()
    assert all(torch.equal(w, weights[k]) for k, w in straight.model.state_dict().items())
    loaded = load_run(tmp_path / "resumed").model.likelihood.pixel_scale
    assert torch.equal(loaded, resumed.model.likelihood.pixel_scale)


def test_the_baseline_is_of_the_runs_own_data_only(tmp_path):
    """Fitted to the training split: for other data it would be fitted to their own file."""
    train_x, test_x = _tab()
    own = Dataset.from_tensors(train_x, test_x)
    run = train(_tab_config(tmp_path, "run", epochs=1), data=own, progress=False, log=print)
    scores = evaluate(run.run_dir, data=own, k=2)  # the arrays it trained on: its own
    assert scores.path.name == "eval.json" and scores.baseline_log_px is not None
    other = Dataset.from_tensors(train_x * 2.5, test_x * 2.5)
    scored = evaluate(run.run_dir, data=other, k=2)
    assert scored.path.name != "eval.json" and scored.baseline_log_px is None
    assert "baseline_log_px" not in json.loads(scored.path.read_text())
    third = evaluate(run.run_dir, data=Dataset.from_tensors(train_x * 2, test_x * 2), k=2)
    assert third.path != scored.path  # other tensors, another file: no score replaced
