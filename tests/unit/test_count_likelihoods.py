"""Count likelihoods (poisson, negative-binomial, zinb), the digits dataset, the counts' path."""

import math
import runpy
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from pyro_vae import Config, build_vae, evaluate_vae
from pyro_vae.app.build import build_likelihood, build_model, start_likelihood_from_data
from pyro_vae.app.comparison_report import ranking_refusal
from pyro_vae.app.registry import LIKELIHOODS, load_dataset
from pyro_vae.app.trainer import Trainer
from pyro_vae.count_likelihoods import (
    CountLikelihood,
    NegativeBinomialLikelihood,
    ZeroInflatedNegativeBinomialLikelihood,
    concentration_from_data,
)
from pyro_vae.data import prepare_data
from pyro_vae.datasets import Dataset
from pyro_vae.errors import ConfigError, DataError
from pyro_vae.networks import SignedLog1p

COUNTS = ["poisson", "negative-binomial", "zinb"]
ZINB_PATH = "pyro_vae.count_likelihoods:ZeroInflatedNegativeBinomialLikelihood"
SHAPE = (1, 2, 3)  # not square, so a wrong reshape shows
ROOT = Path(__file__).resolve().parents[2]
D = 6


def make(name, **args):
    """A count likelihood in float64, its learned parameters moved off their start per feature."""
    if name == "zinb-feature":
        cfg = Config(likelihood=ZINB_PATH, likelihood_args={"gate": "feature", **args})
    else:
        cfg = Config(likelihood=name)
    lik = build_likelihood(cfg, SHAPE).double()
    torch.manual_seed(3)
    with torch.no_grad():
        for param in lik.parameters():
            param.add_(torch.randn_like(param))
    return lik


KINDS = [*COUNTS, "zinb-feature"]


def per_feature(lik, params):
    """(mean, theta, gate) per datapoint and feature, from the documented parameterization."""
    maps = params.unflatten(-1, (lik.params_per_pixel, D))
    mu = torch.nn.functional.softplus(maps[:, 0]) + 1e-6
    theta = lik.concentration.flatten().expand_as(mu) if hasattr(lik, "concentration") else None
    gate = None
    if isinstance(lik, ZeroInflatedNegativeBinomialLikelihood):
        logits = maps[:, 1] if lik.gate == "datapoint" else lik.gate_logits.flatten().expand_as(mu)
        gate = torch.sigmoid(logits)
    return mu.detach().numpy(), *(None if t is None else t.detach().numpy() for t in (theta, gate))


def scipy_log_prob(lik, params, x):
    """log p(x) from scipy.stats, summed over features: an independent reference."""
    mu, theta, gate = per_feature(lik, params)
    x = x.flatten(1).numpy()
    if theta is None:
        return stats.poisson.logpmf(x, mu).sum(-1)
    nb = stats.nbinom.logpmf(x, theta, theta / (theta + mu))
    if gate is None:
        return nb.sum(-1)
    zinb = np.where(x == 0, np.log(gate + (1 - gate) * np.exp(nb)), np.log1p(-gate) + nb)
    return zinb.sum(-1)


def test_the_count_likelihoods_are_registered_on_the_counts_scale():
    for name in COUNTS:
        lik = build_likelihood(Config(likelihood=name), SHAPE)
        assert (lik.support, lik.scale, lik.units) == ("counts", "counts", "nats (counts)")
    assert set(COUNTS) <= set(LIKELIHOODS)


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_matches_scipy_and_pyro(kind):
    lik = make(kind)
    torch.manual_seed(0)
    params = 3 * torch.randn(50, lik.num_outputs, dtype=torch.float64)
    x = torch.poisson(torch.full((50, *SHAPE), 4.0, dtype=torch.float64))
    x[:, 0, 0, 0] = 0.0  # zeros, where zero inflation acts
    with pyro.validation_enabled(True):
        log_p = lik(params).log_prob(x)
    np.testing.assert_allclose(log_p.detach().numpy(), scipy_log_prob(lik, params, x), rtol=1e-9)
    if kind == "negative-binomial":  # the same law as Pyro's GammaPoisson(theta, theta / mu)
        mu, theta = per_feature(lik, params)[:2]
        gamma_poisson = dist.GammaPoisson(torch.tensor(theta), torch.tensor(theta / mu))
        expected = gamma_poisson.log_prob(x.flatten(1)).sum(-1)
        torch.testing.assert_close(log_p.detach(), expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raw_mean", [-8.0, 0.0, 3.0, 40.0])  # means 3e-4 .. 40
def test_each_feature_sums_to_one_over_the_counts(kind, raw_mean):
    lik = make(kind)
    params = torch.full((1, lik.num_outputs), raw_mean, dtype=torch.float64)
    if lik.params_per_pixel == 2:  # gates from the decoder: from nearly none to nearly all
        params[0, D:] = torch.linspace(-6, 6, D, dtype=torch.float64)
    pixel = lik(params).base_dist  # one distribution per feature
    counts = torch.arange(3000.0, dtype=torch.float64).view(-1, 1, 1, 1, 1).expand(-1, 1, *SHAPE)
    total = pixel.log_prob(counts).logsumexp(0)
    torch.testing.assert_close(total, torch.zeros_like(total), atol=1e-9, rtol=0)
    mean = (pixel.log_prob(counts).exp() * counts).sum(0)
    torch.testing.assert_close(lik(params).mean.detach(), mean.detach(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", ["negative-binomial", "zinb", "zinb-feature"])
def test_learned_dispersions_and_gates_receive_gradients(kind):
    lik = make(kind).float()
    x = torch.poisson(torch.full((32, *SHAPE), 3.0))
    loss = -lik(torch.randn(32, lik.num_outputs)).log_prob(x).sum()
    loss.backward()
    learned = dict(lik.named_parameters())
    assert set(learned) == {"log_concentration"} | (
        {"gate_logits"} if kind == "zinb-feature" else set()
    )
    for name, param in learned.items():
        assert param.shape == SHAPE and torch.isfinite(param.grad).all(), name
        assert (param.grad != 0).all(), f"{name}: some feature gets no gradient"


def test_a_dispersion_fitted_by_gradient_descent_finds_the_truth():
    """The NB's concentration is identifiable: fitted to draws with known means it lands on
    the theta that made them (within 10% on 20,000 draws per feature)."""
    torch.manual_seed(0)
    theta = torch.tensor([0.5, 1.0, 2.0, 5.0])
    mu = torch.tensor([3.0, 10.0, 1.0, 20.0])
    x = dist.GammaPoisson(theta, theta / mu).sample((20_000,))
    lik = NegativeBinomialLikelihood((4,))
    raw_mean = torch.log(torch.expm1(mu - 1e-6)).expand(20_000, 4)  # the means, decoded
    optim = torch.optim.Adam(lik.parameters(), lr=0.05)
    for _ in range(300):
        optim.zero_grad()
        (-lik(raw_mean).log_prob(x).mean()).backward()
        optim.step()
    torch.testing.assert_close(lik.concentration.detach(), theta, rtol=0.1, atol=0)


def test_a_moment_start_of_the_concentration_lands_near_the_theta_that_drew_the_counts():
    """Without a z to explain them, counts drawn from NB(mu, theta) have variance mu +
    mu^2/theta, so the moment estimate finds theta; Poisson draws and constant or missing
    features (variance <= mean, but for sampling noise) start as a Poisson."""
    torch.manual_seed(0)
    theta = torch.tensor([0.3, 1.0, 4.0])
    mu = torch.tensor([5.0, 2.0, 30.0])
    nb = dist.GammaPoisson(theta, theta / mu).sample((40_000,))
    poisson = dist.Poisson(torch.tensor([3.0, 0.2])).sample((40_000,))
    constant = torch.full((40_000, 1), 7.0)
    never = torch.full((40_000, 1), math.nan)
    start = concentration_from_data(torch.cat([nb, poisson, constant, never], 1))
    torch.testing.assert_close(start[:3], theta, rtol=0.15, atol=0)
    extra = torch.tensor([3.0, 0.2, 7.0, 1.0]) / start[3:]  # mu^2/theta over the Poisson's mu
    assert extra.max() < 0.01, start  # as spread as a Poisson (or less): a Poisson within 1 %


def test_the_raw_output_for_a_mean_is_the_inverse_of_the_decoded_mean():
    mean = torch.tensor([1e-3, 0.05, 1.0, 16.0, 1e4, 1e6])
    raw = CountLikelihood.raw_for_mean(mean)
    assert torch.isfinite(raw).all()
    torch.testing.assert_close(CountLikelihood.mean_of(raw), mean, rtol=1e-4, atol=0)
    assert CountLikelihood.mean_of(CountLikelihood.raw_for_mean(torch.zeros(1))) > 0


@pytest.mark.parametrize("model", ["vae", "cvae", "m2"])
@pytest.mark.parametrize("name", COUNTS)
def test_training_starts_a_count_model_near_independent_per_feature_counts(name, model):
    """Found by a CLI probe: on Poisson(3) counts a default negative-binomial run scored 1.4
    nats below independent per-feature Poissons after 30 epochs (and zinb ranked below the
    poisson it nests): the decoded means started near softplus(0) = 0.69 and theta at 1,
    variance 12 where the data have 3. Before any step the model must now score such data
    (and overdispersed counts) within a tenth of a nat per feature of independent per-feature
    counts of its own family (Poissons at the means; NBs at the moments)."""
    torch.manual_seed(0)
    mu = torch.tensor([3.0, 0.1, 40.0, 1.0])
    theta = torch.tensor([1e4, 1e4, 2.0, 0.5])  # two Poisson-like, two overdispersed
    x = dist.GammaPoisson(theta, theta / mu).sample((2_000,))
    cfg = Config(likelihood=name, latent_dim=2, hidden=[16]).replace(model=model)
    vae = build_model(cfg, (4,), num_classes=2)
    start_likelihood_from_data(cfg, vae, x)
    labels = torch.arange(2_000) % 2
    with torch.no_grad():
        z = torch.randn(2_000, 2)
        one_hot = torch.nn.functional.one_hot(labels, 2).float()
        inputs = {"vae": (z,), "cvae": (z, one_hot), "m2": (z, labels)}[model]
        log_lik = vae.likelihood(vae.decoder(*inputs)).log_prob(x).mean()
    m, v = x.mean(0), x.var(0)
    moments = torch.where(v > m, m**2 / (v - m), torch.tensor(1e4))
    independent = dist.Poisson(m) if name == "poisson" else dist.GammaPoisson(moments, moments / m)
    baseline = independent.log_prob(x).sum(1).mean()
    assert float(log_lik) > float(baseline) - 0.1 * 4, (float(log_lik), float(baseline))


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("values, found", [
    ([0.0, 2.5, 7.0], "[0, 7]"),
    ([-1.0, 2.0, 3.0], "[-1, 3]"),
])  # fmt: skip
def test_data_that_are_not_counts_are_refused_in_one_line(name, values, found):
    x = torch.tensor(values).repeat(4, 1)
    data = Dataset.from_tensors(x, torch.ones(2, 3), name="mine")
    with pytest.raises(DataError) as info:
        prepare_data(data, "counts", name, "auto", seed=0)
    message = str(info.value)
    assert "\n" not in message and f"'{name}'" in message and found in message, message
    assert "non-negative integers" in message and "mine train" in message


def test_counts_are_never_binarized():
    x = torch.tensor([[0.0, 3.0, 16.0]])
    data = Dataset.from_tensors(x, x, name="mine")
    with pytest.raises(DataError, match=r"'poisson'.*\[0, 16\].*--binarize none"):
        prepare_data(data, "counts", "poisson", "dynamic", seed=0)


def test_zinb_gate_option_and_bad_arguments():
    per_datapoint = build_likelihood(Config(likelihood="zinb"), SHAPE)
    per_feature = build_likelihood(
        Config(likelihood=ZINB_PATH, likelihood_args={"gate": "feature"}), SHAPE
    )
    assert (per_datapoint.num_outputs, per_feature.num_outputs) == (2 * D, D)
    assert not hasattr(per_datapoint, "gate_logits") and per_feature.gate_logits.shape == SHAPE
    with pytest.raises(ConfigError, match="gate 'cell' is not one of datapoint, feature"):
        ZeroInflatedNegativeBinomialLikelihood(SHAPE, gate="cell")
    with pytest.raises(ConfigError, match="concentration must be positive"):
        NegativeBinomialLikelihood(SHAPE, concentration=0.0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_are_counts_with_a_fixed_stratified_split(digits):
    assert digits.name == "digits" and not digits.is_8bit
    assert tuple(digits.x_train.shape) == (1437, 1, 8, 8) and len(digits.x_test) == 360
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0 and x.max() == 16 and torch.equal(x, x.round())
    assert torch.bincount(digits.y_test).tolist() == [36] * 10 and len(digits.y_train) == 1437
    again = load_dataset("digits")
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_train, digits.y_train)
    counts = prepare_data(digits, "counts", "poisson", "auto", seed=0)
    assert torch.equal(counts.test, digits.x_test) and not counts.dynamic  # kept as they are
    real = prepare_data(digits, "real", "gaussian", "auto", seed=0)
    assert real.train.max() == 16  # never taken for 8-bit levels and divided by 255
    with pytest.raises(DataError, match=r"needs 8-bit integer levels.*\[0, 16\]"):
        prepare_data(digits, "levels", "categorical-256", "none", seed=0)


@pytest.mark.parametrize("name", COUNTS)
def test_a_tiny_vae_trains_a_step_on_digits(name, digits):
    cfg = Config(dataset="digits", likelihood=name, latent_dim=2, hidden=[16], batch_size=32)
    torch.manual_seed(0)
    vae = build_vae(cfg, (1, 8, 8))
    data = prepare_data(digits, "counts", name, "auto", seed=0)
    before = {k: v.detach().clone() for k, v in vae.named_parameters()}
    loss = Trainer(cfg, vae, data).train_step(data.train[:32])  # with Pyro's validation on
    assert math.isfinite(float(loss))
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], vae.get_parameter(k))}
    assert moved == {"encoder", "decoder"} | ({"likelihood"} if name != "poisson" else set())
    scores = evaluate_vae(vae, data.test[:20], k=8)
    assert (scores.scale, scores.units, scores.bits_per_dim) == ("counts", "nats (counts)", None)
    assert math.isfinite(scores.log_px) and scores.log_px < 0


def test_the_encoder_sees_counts_as_log1p():
    vae = build_vae(Config(likelihood="poisson", latent_dim=2, hidden=[16]), (1, 8, 8))
    first, body = vae.encoder.body[0], vae.encoder.body[1]
    assert isinstance(first, SignedLog1p)
    x = torch.poisson(torch.full((5, 1, 8, 8), 6.0))
    torch.testing.assert_close(vae.encoder.body(x), body(torch.log1p(x)))
    # free inputs (VampPrior pseudo-inputs) stay finite below zero
    assert torch.isfinite(first(torch.tensor([-3.0, -0.5]))).all()


def test_count_likelihoods_rank_among_themselves_but_not_against_densities():
    rows = [{"likelihood": name, "scale": "counts"} for name in COUNTS]
    assert ranking_refusal(rows, ["likelihood"]) == ""
    mixed = [*rows, {"likelihood": "gaussian", "scale": "continuous"}]
    assert "poisson: counts, nats of a probability mass on counts" in ranking_refusal(
        mixed, ["likelihood"]
    )


@pytest.mark.integration
def test_the_dispersion_experiment_runs_on_a_smoke_budget(capsys):
    experiment = runpy.run_path(str(ROOT / "experiments" / "count_likelihoods.py"), run_name="x")
    assert experiment["main"](["dispersion", "--n", "300", "--features", "4", "--epochs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("theta median" in line for line in lines[1:]), lines


@pytest.mark.integration
@pytest.mark.slow
def test_the_digits_experiment_runs_on_a_smoke_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the Binomial16 reference is named by import path from here
    experiment = runpy.run_path(str(ROOT / "experiments" / "count_likelihoods.py"), run_name="x")
    two = ["zinb", "experiments.count_likelihoods:Binomial16"]
    tiny = ["--epochs", "1", "--eval-k", "4", "--seeds", "0", "--hidden", "16", "--jobs", "2",
            "--no-progress", "--out", str(tmp_path), "--likelihoods", *two]  # fmt: skip
    assert experiment["main"](["digits", *tiny]) == 0
    out = capsys.readouterr().out
    assert "ranked by log p(x)" in out and "mean gate" in out and out.count("residual") == 2
