"""pyro_vae.imputation: the conditional mean and multiple imputations against a closed form."""

import pytest
import torch
from linear_gaussian import LinearGaussian
from test_missing import observed_guide

from pyro_vae import ConfigError, DataError, ModelError, mlp_vae
from pyro_vae.families.cvae import mlp_cvae
from pyro_vae.imputation import impute
from pyro_vae.missing import mark_missing

SEEN, HIDDEN = [0, 2], [1, 3]


def conditional(lg: LinearGaussian, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[x_mis|x_obs] per row and Cov[x_mis|x_obs] of the Gaussian p(x) = N(b, W W^T + s^2 I)."""
    cov = lg.marginal().covariance_matrix
    gain = cov[HIDDEN][:, SEEN] @ torch.linalg.inv(cov[SEEN][:, SEEN])
    mean = lg.b[HIDDEN] + (x[:, SEEN] - lg.b[SEEN]) @ gain.T
    return mean, cov[HIDDEN][:, HIDDEN] - gain @ cov[SEEN][:, HIDDEN]


def _holes(x: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(x.shape[1], dtype=torch.bool)
    mask[SEEN] = True
    return mark_missing(x, mask.expand_as(x))


def test_the_single_imputation_is_the_closed_form_conditional_mean():
    lg = observed_guide(LinearGaussian(data_dim=4, latent_dim=2, noise=0.5), SEEN)
    x = lg.data(30)
    result = impute(lg.vae, _holes(x), k=20_000, seed=0)
    exact, _ = conditional(lg, x)
    error = result.mean[:, HIDDEN] - exact
    assert error.abs().max() < 0.03 and error.mean().abs() < 0.005
    naive = lg.b[HIDDEN] - exact  # the unconditional mean: what ignoring x_obs gives
    assert naive.abs().mean() > 20 * error.abs().mean()
    assert torch.equal(result.mean[:, SEEN], x[:, SEEN])  # observed entries as given
    assert result.observed[:, SEEN].all() and not result.observed[:, HIDDEN].any()


def test_multiple_imputations_draw_from_the_conditional_distribution():
    lg = observed_guide(LinearGaussian(data_dim=4, latent_dim=2, noise=0.5), SEEN)
    x = lg.data(3)
    result = impute(lg.vae, _holes(x), k=5000, draws=4000, seed=1)
    mean, cov = conditional(lg, x)
    drawn = result.draws[:, :, HIDDEN]  # [M, 3, 2]
    assert torch.allclose(drawn.mean(0), mean, atol=0.05)
    for i in range(3):
        sample_cov = torch.cov(drawn[:, i].T)
        assert torch.allclose(sample_cov, cov, atol=0.06), (sample_cov, cov)
    assert torch.equal(result.draws[:, :, SEEN], x[:, SEEN].expand(4000, 3, 2))


def test_complete_rows_come_back_as_they_are():
    lg = LinearGaussian(data_dim=4, latent_dim=2, noise=0.5)
    x = lg.data(5)
    holes = x.clone()
    holes[0, 1] = float("nan")
    result = impute(lg.vae, holes, k=50, draws=2)
    assert torch.equal(result.mean[1:], x[1:]) and torch.equal(
        result.draws[:, 1:], x[1:].expand(2, 4, 4)
    )
    assert torch.isfinite(result.mean).all() and result.mean[0, 1] != x[0, 1]


def test_bad_arguments_and_models_are_refused():
    lg = LinearGaussian(data_dim=4, latent_dim=2)
    with pytest.raises(ConfigError, match="draws must be an int >= 0, got -1"):
        impute(lg.vae, _holes(lg.data(2)), k=10, draws=-1)
    cvae = mlp_cvae((4,), num_classes=3, latent_dim=2, hidden=[8])
    with pytest.raises(ModelError, match="without labels") as caught:  # what is, what to do
        impute(cvae, _holes(lg.data(2)), k=10)
    assert "CVAE is not one: it conditions on labels y" in str(caught.value)
    assert "Impute with such a VAE trained on data with missing entries" in str(caught.value)


def test_a_stacked_model_trains_and_imputes_on_missing_entries():
    """Two stochastic layers: x depends on the bottom layer, which the imputation decodes."""
    from pyro_vae import build_objective
    from pyro_vae.app.build import build_model
    from pyro_vae.app.config import Config
    from pyro_vae.missing import allow_missing

    torch.manual_seed(0)
    cfg = Config(latent_dim=[6, 3], hidden=[16], likelihood="continuous-bernoulli")
    model = allow_missing(build_model(cfg, (1, 28, 28)))
    x = torch.rand(4, 1, 28, 28)
    holes = mark_missing(x, torch.rand(x.shape) > 0.5)
    loss = build_objective("iwae:k=3")(model, model.guide_module())(holes)
    assert torch.isfinite(loss)
    result = impute(model, holes, k=20, draws=2)
    seen = ~holes.isnan()
    assert torch.equal(result.mean[seen], x[seen]) and result.draws.shape == (2, 4, 1, 28, 28)
    assert result.mean.isfinite().all() and ((result.mean >= 0) & (result.mean <= 1)).all()


def test_observed_entries_outside_the_likelihoods_support_are_refused_in_one_line():
    """A Bernoulli VAE given grey pixels: before, Pyro's validation raised with a tensor dump."""
    vae = mlp_vae((1, 28, 28), 2, [16])
    x = torch.rand(3, 1, 28, 28)
    x[:, :, 14:] = float("nan")
    with pytest.raises(DataError, match=r"'BernoulliLikelihood' needs binary pixels but x values"):
        impute(vae, x, k=5)
    x[:, :, :14] = x[:, :, :14].round()  # binary observed entries impute
    assert impute(vae, x, k=5).mean.shape == x.shape


def test_a_numpy_array_is_imputed_as_the_same_tensor():
    """impute(vae, numpy_array) failed with TypeError from isinf()."""
    from pyro_vae.likelihoods import GaussianLikelihood

    vae = mlp_vae((4,), 2, [8], likelihood=GaussianLikelihood((4,)))
    x = torch.randn(3, 4)
    x[0, 1] = float("nan")
    expected = impute(vae, x, k=5, draws=2, seed=0)
    given = impute(vae, x.double().numpy(), k=5, draws=2, seed=0)
    assert torch.equal(given.mean, expected.mean) and torch.equal(given.draws, expected.draws)


def test_progress_hears_of_every_datapoint_chunk_by_chunk():
    """Imputing a whole file (4,500 digits at K=1000: 5 minutes on one thread) showed nothing
    until it was done; impute reports each finished chunk, as evaluate does."""
    torch.manual_seed(0)
    vae = mlp_vae((6,), latent_dim=2, hidden=[8])
    x = mark_missing(torch.bernoulli(torch.rand(40, 6)), torch.rand(40, 6) > 0.3)
    done = []
    quiet = impute(vae, x, k=20, draws=2, max_samples=200)
    heard = impute(vae, x, k=20, draws=2, max_samples=200, progress=done.append)
    assert len(done) > 1 and sum(done) == len(x)
    assert torch.equal(quiet.mean, heard.mean) and torch.equal(quiet.draws, heard.draws)
