import math

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO, TraceGraph_ELBO

from pyro_vae import Config, ConfigError, mlp_vae
from pyro_vae.app.build import build_likelihood, build_model, build_vae, start_likelihood_from_data
from pyro_vae.app.registry import LIKELIHOODS
from pyro_vae.data import SUPPORTS, prepare_data
from pyro_vae.datasets import Dataset
from pyro_vae.likelihoods import (
    GaussianLikelihood,
    LaplaceLikelihood,
    bits_per_dim,
    scale_from_data,
)
from pyro_vae.priors import MixtureOfGaussiansPrior
from pyro_vae.standardize import standardization_from_data

SHAPE = (1, 3, 4)  # not square, so a wrong reshape shows
PIXELS = 12
MIN_SCALE = 1e-3  # the documented lower bound of every pixel scale


def softplus64(raw):
    return F.softplus(raw.double()) + MIN_SCALE


def random_data(name, n):
    torch.manual_seed(1)
    if name == "bernoulli":
        return torch.bernoulli(torch.full((n, *SHAPE), 0.5))
    if name in ("continuous-bernoulli",):
        return torch.rand(n, *SHAPE)
    if name == "beta":
        return torch.rand(n, *SHAPE).clamp(0.01, 0.99)
    if name in ("gaussian", "laplace"):
        return 0.5 + 0.5 * torch.randn(n, *SHAPE)
    levels = torch.randint(0, 256, (n, *SHAPE)).float()
    levels[0, 0, 0, :2] = torch.tensor([0.0, 255.0])  # both edge levels
    return levels


def _log_diff(log_a, log_b):
    """log(a - b) for a > b > 0 given their logs."""
    return log_a + torch.log1p(-torch.exp(log_b - log_a))


def reference_log_prob(name, params, x, lik):
    """log p(x|params) summed over pixels, written out directly in float64."""
    x = x.double().flatten(1)
    maps = params.double().unflatten(-1, (-1, PIXELS))  # [n, params_per_pixel, pixels]
    if name == "bernoulli":
        logits = maps[:, 0]
        out = x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)
    elif name == "continuous-bernoulli":
        p = torch.sigmoid(maps[:, 0])
        log_c = torch.log(2 * torch.atanh(1 - 2 * p) / (1 - 2 * p))
        out = x * torch.log(p) + (1 - x) * torch.log1p(-p) + log_c
    elif name in ("gaussian", "laplace"):
        loc, scale = maps[:, 0], softplus64(lik.raw_scale.detach()).flatten().expand(PIXELS)
        if name == "gaussian":
            out = -0.5 * ((x - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)
        else:
            out = -(x - loc).abs() / scale - torch.log(2 * scale)
    elif name == "beta":
        a, b = softplus64(maps[:, 0]), softplus64(maps[:, 1])
        log_beta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
        out = (a - 1) * torch.log(x) + (b - 1) * torch.log1p(-x) - log_beta
    elif name == "discretized-logistic":
        loc, scale = 127.5 * (1 + maps[:, 0]), 127.5 * softplus64(maps[:, 1])
        hi = torch.where(x >= 255, torch.inf, x + 0.5)
        lo = torch.where(x <= 0, -torch.inf, x - 0.5)
        # log(F(hi) - F(lo)) with F the logistic CDF, via whichever tail keeps it accurate
        below = _log_diff(F.logsigmoid((hi - loc) / scale), F.logsigmoid((lo - loc) / scale))
        above = _log_diff(F.logsigmoid((loc - lo) / scale), F.logsigmoid((loc - hi) / scale))
        out = torch.where(x > loc, above, below)
    else:  # categorical-256: logits[:, level, pixel]
        out = maps.log_softmax(1).gather(1, x.long()[:, None]).squeeze(1)
    return out.sum(-1)


CASES = [
    ("bernoulli", {}),
    ("continuous-bernoulli", {}),
    ("gaussian", {"likelihood_scale": "fixed", "likelihood_scale_value": 0.3}),
    ("gaussian", {"likelihood_scale": "learned"}),
    ("gaussian", {"likelihood_scale": "per-pixel"}),
    ("laplace", {"likelihood_scale": "learned"}),
    ("laplace", {"likelihood_scale": "per-pixel"}),
    ("beta", {}),
    ("discretized-logistic", {}),
    ("categorical-256", {}),
]


COUNTS = {"poisson", "negative-binomial", "zinb"}  # tested in test_count_likelihoods.py


def test_cases_cover_every_builtin_likelihood():
    assert {name for name, _ in CASES} | COUNTS == set(LIKELIHOODS)


def make(name, **changes):
    lik = build_likelihood(Config(likelihood=name, **changes), SHAPE)
    if hasattr(lik, "raw_scale") and isinstance(lik.raw_scale, torch.nn.Parameter):
        with torch.no_grad():  # a learned scale somewhere other than its start, per pixel if so
            lik.raw_scale.copy_(torch.randn_like(lik.raw_scale) - 1)
    return lik


@pytest.mark.parametrize("name, changes", CASES)
def test_log_prob_matches_a_direct_formula(name, changes):
    lik = make(name, **changes)
    torch.manual_seed(0)
    params = 2 * torch.randn(64, lik.num_outputs)
    if name == "discretized-logistic":  # scales from a fraction of a level to hundreds
        params[:, PIXELS:] = 3 * torch.randn(64, PIXELS) - 3
    x = random_data(name, 64)
    with pyro.validation_enabled(True):
        log_p = lik(params).log_prob(x)
    assert log_p.shape == (64,) and torch.isfinite(log_p).all()
    expected = reference_log_prob(name, params, x, lik)
    torch.testing.assert_close(log_p.double(), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["discretized-logistic", "categorical-256"])
def test_discretized_likelihoods_sum_to_one_over_the_256_levels(name):
    lik = make(name)
    torch.manual_seed(0)
    params = 3 * torch.randn(5, lik.num_outputs)
    pixel = lik(params).base_dist  # one distribution per pixel
    levels = torch.arange(256.0).view(256, 1, 1, 1, 1).expand(256, 5, *SHAPE)
    log_p = pixel.log_prob(levels)
    torch.testing.assert_close(log_p.logsumexp(0), torch.zeros(5, *SHAPE), atol=1e-5, rtol=0)
    mean = (log_p.exp() * levels).sum(0)
    torch.testing.assert_close(lik(params).mean, mean, atol=1e-2, rtol=1e-4)


@pytest.mark.parametrize("name, changes", CASES)
def test_mean_images_lie_in_the_data_range(name, changes):
    lik = make(name, **changes)
    torch.manual_seed(0)
    mean = lik(3 * torch.randn(7, lik.num_outputs)).mean
    assert mean.shape == (7, *SHAPE) and torch.isfinite(mean).all()
    if lik.support == "levels":
        assert mean.min() >= 0 and mean.max() <= 255
    elif lik.support != "real":
        assert mean.min() >= 0 and mean.max() <= 1


def test_declared_support_scale_and_units():
    for name in LIKELIHOODS:
        lik = make(name)
        assert lik.support in SUPPORTS and lik.units
        expected = {"binary": "binary", "levels": "8-bit", "counts": "counts"}
        assert lik.scale == expected.get(lik.support, "continuous")
        assert lik.num_outputs == lik.params_per_pixel * PIXELS


@pytest.mark.parametrize("mode, parameters", [("fixed", 0), ("learned", 1), ("per-pixel", 12)])
@pytest.mark.parametrize("name", ["gaussian", "laplace"])
def test_scale_modes(name, mode, parameters):
    lik = build_likelihood(
        Config(likelihood=name, likelihood_scale=mode, likelihood_scale_value=0.25), SHAPE
    )
    assert sum(p.numel() for p in lik.parameters()) == parameters
    assert torch.allclose(lik.pixel_scale, torch.tensor(0.25))  # fixed value, or where it starts
    assert torch.allclose(lik(torch.zeros(2, PIXELS)).base_dist.stddev.flatten(1)[:, 0], (
        torch.tensor(0.25) * (math.sqrt(2) if name == "laplace" else 1.0)
    ).expand(2))  # fmt: skip


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_prepared_mnist_passes_pyros_validation(name, mnist5k):
    tiny = Dataset("tiny", mnist5k.x_train[:20], None, mnist5k.x_test[:8], None)
    lik = build_likelihood(Config(likelihood=name), (1, 28, 28))
    data = prepare_data(tiny, lik.support, name, "auto", seed=0)
    params = torch.randn(8, lik.num_outputs)
    with pyro.validation_enabled(True):
        log_p = lik(params).log_prob(data.epoch_train(0)[:8])
    assert torch.isfinite(log_p).all()


def test_discretized_logistic_gradients_stay_finite_at_extremes():
    lik = make("discretized-logistic")
    params = torch.tensor([[-30.0] * PIXELS + [-30.0] * PIXELS, [30.0] * PIXELS + [30.0] * PIXELS])
    params.requires_grad_(True)
    x = torch.tensor([0.0, 255.0, 128.0]).repeat(4)[:PIXELS].view(1, *SHAPE).expand(2, *SHAPE)
    log_p = lik(params).log_prob(x)
    log_p.sum().backward()
    assert torch.isfinite(log_p).all() and torch.isfinite(params.grad).all()


def test_bits_per_dim():
    assert bits_per_dim(-784 * math.log(2) * 3.5, (1, 28, 28)) == pytest.approx(3.5)


def test_bernoulli_pixels_score_as_torchs_bernoulli():
    """The same log-mass as torch's Bernoulli to float rounding (and to float64, extreme
    logits included), the same gradient bit for bit, with particles broadcast against the
    batch; validation and the rest of the interface stay torch's."""
    torch.manual_seed(0)
    logits = 4 * torch.randn(4, 5, *SHAPE)  # [particles, batch, *SHAPE]
    logits[0, 0, 0, 0] = torch.tensor([-100.0, -30.0, 30.0, 100.0])
    logits.requires_grad_()
    x = random_data("bernoulli", 5)
    ours = make("bernoulli")(logits.flatten(2))
    theirs = pyro.distributions.Bernoulli(logits=logits).to_event(len(SHAPE))
    weights = torch.randn(4, 5)  # any gradient reaching the log-probabilities
    (grad_ours,) = torch.autograd.grad((ours.log_prob(x) * weights).sum(), logits)
    (grad_theirs,) = torch.autograd.grad((theirs.log_prob(x) * weights).sum(), logits)
    assert torch.equal(grad_ours, grad_theirs)
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x), rtol=1e-6, atol=1e-5)
    exact = pyro.distributions.Bernoulli(logits=logits.double()).to_event(3).log_prob(x.double())
    torch.testing.assert_close(ours.log_prob(x).double(), exact, rtol=1e-6, atol=1e-5)
    full_x = x.expand_as(logits).contiguous()  # no broadcasting: the other branch of the sum
    torch.testing.assert_close(ours.log_prob(full_x).double(), exact, rtol=1e-6, atol=1e-5)
    assert ours.batch_shape == (4, 5) and ours.event_shape == SHAPE
    assert torch.equal(ours.mean, theirs.mean) and ours.sample((2,)).shape == (2, 4, 5, *SHAPE)
    assert type(ours.expand((3, 4, 5))) is type(ours)
    with pyro.validation_enabled(True), pytest.raises(ValueError, match="support"):
        ours.log_prob(torch.full_like(x, 0.5))


# -- where the scale starts -------------------------------------------------------------------


def _table_with_holes():
    """[N, 3] data of spreads 2, 5 and 0 (a constant column), with missing entries."""
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([2, 5, 0])
    x[::7, 0] = math.nan
    x[::3, 1] = math.nan
    return x


def test_scale_from_data_is_the_std_of_the_observed_entries_overall_or_per_feature():
    x = _table_with_holes()
    columns = [x[:, j][~torch.isnan(x[:, j])].double() for j in range(3)]
    observed = torch.cat(columns)
    overall = math.sqrt(float(((observed - observed.mean()) ** 2).mean()))
    variances = [float(((c - c.mean()) ** 2).mean()) for c in columns]
    pooled = math.sqrt(sum(variances) / 3)  # about each feature's own mean
    assert math.isclose(float(scale_from_data(x)), pooled, rel_tol=1e-5)
    per_feature = scale_from_data(x, per_pixel=True)
    for j in (0, 1):  # the NaN entries ignored, population std
        expected = math.sqrt(float(((columns[j] - columns[j].mean()) ** 2).mean()))
        assert math.isclose(float(per_feature[j]), expected, rel_tol=1e-5)
    assert math.isclose(float(per_feature[2]), 0.1 * overall, rel_tol=1e-5)  # constant: floor
    assert scale_from_data(x.unflatten(1, (1, 3)), per_pixel=True).shape == (1, 3)
    never = torch.cat([x, torch.full((500, 1), math.nan)], 1)  # a feature never observed
    assert math.isclose(float(scale_from_data(never, per_pixel=True)[3]), overall, rel_tol=1e-5)
    assert float(scale_from_data(torch.ones(10, 4))) == pytest.approx(0.01)  # all constant


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("mode", ["fixed", "learned", "per-pixel"])
@pytest.mark.parametrize("name", ["gaussian", "laplace"])
def test_training_starts_an_unset_scale_at_the_datas_std_and_a_set_one_where_set(
    name, mode, standardize
):
    """Standardized, the scale starts at the spread of the standardized data (in units of
    each feature's std), whose location starts at 0."""
    x = _table_with_holes()
    cfg = Config(likelihood=name, likelihood_scale=mode, latent_dim=2, hidden=[8])
    cfg = cfg.replace(standardize=standardize)
    assert cfg.likelihood_scale_value == 0  # the default: from the data
    model = build_vae(cfg, (3,))
    resolved = start_likelihood_from_data(cfg, model, x)
    mean, std = standardization_from_data(x)
    seen = (x - mean) / std if standardize else x
    expected = scale_from_data(seen, per_pixel=mode == "per-pixel")
    bias = model.decoder.layers[-1].bias.detach()
    assert torch.allclose(bias, seen.nanmean(0).nan_to_num(0.0), atol=1e-6)
    assert torch.allclose(model.likelihood.pixel_scale.detach(), expected, rtol=1e-5)
    if mode == "fixed":  # not in the checkpoint: the run's config names it, and rebuilds it
        assert resolved.likelihood_scale_value == pytest.approx(float(expected))
        rebuilt = build_vae(resolved, (3,)).likelihood.pixel_scale
        assert torch.equal(rebuilt, model.likelihood.pixel_scale)
    else:
        assert resolved == cfg
    old = cfg.replace(likelihood_scale_value=0.1)  # an older run's config.toml says 0.1
    model = build_vae(old, (3,))
    assert start_likelihood_from_data(old, model, x) == old
    raw = torch.full(model.likelihood.raw_scale.shape, math.log(math.expm1(0.1 - MIN_SCALE)))
    assert torch.equal(model.likelihood.raw_scale, raw)  # bit for bit as before


def test_a_likelihood_takes_a_start_scale_as_a_number_or_a_tensor():
    assert torch.allclose(GaussianLikelihood((10,)).pixel_scale, torch.tensor(0.1))  # as documented
    start = torch.tensor([0.5, 2.0, 3e3])
    lik = GaussianLikelihood((3,), "per-pixel", scale_value=start)
    assert torch.allclose(lik.pixel_scale.detach(), start)
    assert torch.allclose(LaplaceLikelihood((3,), scale_value=1e5).pixel_scale, torch.tensor(1e5))
    with pytest.raises(ValueError, match="does not fit"):
        GaussianLikelihood((3,), "learned", scale_value=start)
    with pytest.raises(ValueError, match="must be finite and exceed"):
        GaussianLikelihood((3,), "per-pixel", scale_value=torch.tensor([0.5, math.nan, 1.0]))


def test_the_scale_value_is_zero_for_the_data_or_above_the_smallest_scale():
    assert Config(likelihood_scale_value=0).likelihood_scale_value == 0.0
    with pytest.raises(ConfigError, match=r"> 0.001 \(or 0: from the training data\)"):
        Config(likelihood_scale_value=0.0005)
    with pytest.raises(ConfigError, match="must be >= 0"):
        Config(likelihood_scale_value=-1.0)


@pytest.mark.parametrize("mode", ["per-pixel", "learned", "fixed"])
def test_all_constant_data_start_every_scale_at_a_usable_floor(mode):
    """Found by a probe: per-pixel scales of all-zero data came out at 0.001, which the
    likelihood refuses, and training ended in a traceback."""
    start = scale_from_data(torch.zeros(50, 3), per_pixel=mode == "per-pixel")
    assert float(start.min()) == pytest.approx(0.01)
    cfg = Config(likelihood="gaussian", likelihood_scale=mode, latent_dim=2, hidden=[8])
    start_likelihood_from_data(cfg, build_vae(cfg, (3,)), torch.zeros(50, 3))  # no ValueError


@pytest.mark.parametrize("model", ["vae", "cvae", "m2"])
@pytest.mark.parametrize("name", ["gaussian", "laplace"])
def test_training_starts_the_location_at_the_feature_means_so_an_offset_table_starts_near_baseline(
    name, model
):
    """Found by a CLI probe: on raw tables (iris's centimetres, a constant column at 3) the
    decoder's location started near 0 and 30 default epochs left log p(x) nats below
    independent per-feature Gaussians. Before any training step the model must now score such
    data within a nat per feature of that baseline (it scored tens of nats below it)."""
    torch.manual_seed(0)
    offsets = torch.tensor([50.0, -20.0, 3.0, 0.0])
    x = offsets + torch.randn(400, 4)
    cfg = Config(likelihood=name, likelihood_scale="per-pixel", latent_dim=2, hidden=[16])
    cfg = cfg.replace(model=model)
    labels = torch.arange(400) % 2
    vae = build_model(cfg, (4,), num_classes=2)
    start_likelihood_from_data(cfg, vae, x)
    with torch.no_grad():
        z = torch.randn(400, 2)
        one_hot = F.one_hot(labels, 2).float()  # the cvae's decoder takes it one-hot
        params = {"vae": (z,), "cvae": (z, one_hot), "m2": (z, labels)}[model]
        params = vae.decoder(*params)
        log_lik = vae.likelihood(params).log_prob(x).mean()
    baseline = torch.distributions.Normal(x.mean(0), x.std(0)).log_prob(x).sum(1).mean()
    assert float(log_lik) > float(baseline) - 4.0


def test_the_location_is_left_alone_where_the_decoder_is_not_a_built_in_mlp():
    cfg = Config(likelihood="bernoulli", latent_dim=2, hidden=[8])
    vae = build_vae(cfg, (3,))
    before = vae.decoder.layers[-1].bias.clone()
    start_likelihood_from_data(cfg, vae, torch.rand(20, 3).round())
    assert torch.equal(vae.decoder.layers[-1].bias, before)  # not a location-scale likelihood


def test_one_shared_scale_starts_at_the_spread_about_each_features_mean_whatever_the_offsets():
    """Found by a CLI probe: one learned scale started at the spread of all entries pooled,
    which offsets between features inflate (a table at 5, -3, 1, 0 started it at 3.2 where
    the features spread about 1.2) and it ended 3 nats below the same table centred."""
    x = _table_with_holes()
    shifted = x + torch.tensor([100.0, -40.0, 7.0])
    assert torch.allclose(scale_from_data(shifted), scale_from_data(x), rtol=1e-4)
    assert float(scale_from_data(shifted)) < 0.2 * float(shifted[~torch.isnan(shifted)].std())
    assert float(scale_from_data(torch.full((5, 3), math.nan))) == pytest.approx(1.0)  # no data


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_tracegraph_elbo_gets_trace_elbos_gradient_below_a_latent_without_rsample(name):
    """TraceGraph_ELBO wraps each model value drawn from a distribution without ``rsample``
    (z under a mixture prior, M2's label) in Pyro's ProvenanceTensor; every likelihood must
    still pass its gradient back to the decoder and, through z, to the encoder, as under
    Trace_ELBO (same draws), rather than silently train the encoder on the KL alone."""
    likelihood = make(name)
    vae = mlp_vae(SHAPE, 2, [8], likelihood=likelihood, prior=MixtureOfGaussiansPrior(2, 3))
    x = random_data(name, 4)
    grads = []
    for elbo in (Trace_ELBO(), TraceGraph_ELBO()):
        vae.zero_grad()
        pyro.set_rng_seed(0)
        elbo.loss_and_grads(vae.model, vae.guide, x)
        grads.append({n: p.grad.clone() for n, p in vae.named_parameters() if p.grad is not None})
    assert grads[1].keys() == grads[0].keys()
    assert any(n.startswith("decoder") for n in grads[0])
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], msg=f"{name}: gradient of {n}")
