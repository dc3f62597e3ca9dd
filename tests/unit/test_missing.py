"""pyro_vae.missing: likelihoods masked per entry, the encoder's fill, MIWAE, log p(x_obs)."""

import copy
import math
import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian
from objective_grid import ALL
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from pyro_vae import Likelihood, ModelError, mlp_vae
from pyro_vae.app.build import build_vae
from pyro_vae.app.config import Config
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.app.registry import LIKELIHOODS
from pyro_vae.estimators import evaluate_vae
from pyro_vae.families.m2 import M2
from pyro_vae.likelihoods import GaussianLikelihood
from pyro_vae.missing import (
    MissingInput,
    allow_missing,
    handles_missing,
    mark_missing,
    mask_per_entry,
)

SHAPE = (6,)


def _params(lik: nn.Module, batch: int, seed: int) -> torch.Tensor:
    outputs = lik.num_outputs
    return torch.randn(batch, outputs, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_a_masked_likelihood_scores_the_observed_entries_alone(name):
    """Value and gradient equal those of the sum over observed entries; a missing entry's
    decoder outputs get exactly zero gradient, whatever the value hidden there."""
    lik = LIKELIHOODS[name].build(Config(likelihood=name), SHAPE)
    params = _params(lik, 5, seed=0).requires_grad_()
    with torch.no_grad():
        x = lik(params).sample()
    mask = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(1)) < 0.5
    mask[0] = True  # one datapoint complete, one with nothing observed
    mask[1] = False
    masked = mask_per_entry(lik(params), lik.missing_fill).log_prob(mark_missing(x, mask))
    by_hand = torch.where(mask, lik(params).base_dist.log_prob(x), 0.0).sum(-1)
    assert torch.allclose(masked, by_hand, rtol=1e-6, atol=1e-5)
    assert masked[1] == 0
    grad = torch.autograd.grad(masked.sum(), params)[0]
    grad_by_hand = torch.autograd.grad(by_hand.sum(), params)[0]
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad, grad_by_hand, rtol=1e-5, atol=1e-6)
    per_entry = grad.unflatten(-1, (-1, *SHAPE)).abs().amax(1)
    assert (per_entry[~mask] == 0).all() and (per_entry[mask] > 0).any()


def test_with_nothing_missing_the_mask_is_bit_identical_to_the_plain_likelihood():
    lik = LIKELIHOODS["bernoulli"].build(Config(), (1, 28, 28))
    params = _params(lik, 7, seed=3).requires_grad_()
    x = torch.bernoulli(torch.full((7, 1, 28, 28), 0.4))
    plain = lik(params).log_prob(x)
    masked = mask_per_entry(lik(params), 0.0).log_prob(x)
    assert torch.equal(plain, masked)
    g_plain = torch.autograd.grad(plain.sum(), params)[0]
    g_masked = torch.autograd.grad(masked.sum(), params)[0]
    assert torch.equal(g_plain, g_masked)


def _loss_and_grads(vae, spec, x, seed=0):
    objective = build_objective(spec)
    torch.manual_seed(seed)
    loss = objective(vae, vae.guide_module())(x)
    grads = torch.autograd.grad(loss, list(vae.parameters()), allow_unused=True)
    return loss.detach(), grads


@pytest.mark.parametrize("spec", ALL)
def test_miwae_equals_iwae_bit_for_bit_when_nothing_is_missing(spec):
    """allow_missing changes no loss and no gradient on complete data, for every objective
    (iwae on a masked likelihood is MIWAE)."""
    torch.manual_seed(0)
    plain = mlp_vae((1, 28, 28), latent_dim=3, hidden=[16])
    masked = allow_missing(copy.deepcopy(plain))
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    loss, grads = _loss_and_grads(plain, spec, x)
    loss_m, grads_m = _loss_and_grads(masked, spec, x)
    assert torch.equal(loss, loss_m)
    for g, g_m in zip(grads, grads_m, strict=True):
        assert (g is None and g_m is None) or torch.equal(g, g_m)


def test_the_training_loss_scores_the_observed_pixels_alone():
    """Finite loss and gradients with half the pixels missing; the loss equals the one
    whose likelihood term sums the observed pixels of the complete data by hand."""
    torch.manual_seed(0)
    vae = allow_missing(mlp_vae((1, 28, 28), latent_dim=3, hidden=[16]))
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    mask = torch.rand(x.shape) < 0.5
    holes = mark_missing(x, mask)
    loss, grads = _loss_and_grads(vae, "iwae:k=4", holes)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    torch.manual_seed(1)
    terms = vae.log_weights(holes, 4)
    p_x = vae.likelihood(vae.decoder(terms.z)).base  # the unmasked Independent
    by_hand = torch.where(mask, p_x.base_dist.log_prob(x), 0.0).flatten(2).sum(-1)
    assert torch.allclose(terms.log_lik, by_hand, atol=1e-4)


def test_classic_svi_trains_on_missing_entries():
    torch.manual_seed(0)
    vae = allow_missing(mlp_vae((1, 28, 28), latent_dim=2, hidden=[8]))
    x = mark_missing(torch.rand(4, 1, 28, 28).round(), torch.rand(4, 1, 28, 28) > 0.5)
    before = [p.detach().clone() for p in vae.parameters()]
    with pyro.validation_enabled(True):
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
        losses = [svi.step(x) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    assert all(not torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))


def test_the_encoder_sees_missing_entries_as_zero():
    torch.manual_seed(0)
    vae = allow_missing(mlp_vae((1, 28, 28), latent_dim=3, hidden=[16]))
    x = torch.rand(4, 1, 28, 28)
    mask = torch.rand(x.shape) < 0.5
    loc, scale = vae.encode(mark_missing(x, mask))
    loc0, scale0 = vae.encode(torch.where(mask, x, 0.0))
    assert torch.equal(loc, loc0) and torch.equal(scale, scale0)


def test_the_encoder_mask_option_feeds_the_mask_to_the_encoder():
    cfg = Config(latent_dim=2, hidden=[16], likelihood="continuous-bernoulli", encoder_mask=True)
    vae = allow_missing(build_vae(cfg, (1, 28, 28)))
    assert any(isinstance(m, MissingInput) for m in vae.encoder.modules())
    x = torch.rand(3, 1, 28, 28)
    mask = torch.rand(x.shape) < 0.5
    zero_filled = vae.encode(torch.where(mask, x, 0.0))[0]  # observed everywhere, some zeros
    with_holes = vae.encode(mark_missing(x, mask))[0]
    assert not torch.allclose(zero_filled, with_holes)  # the mask changes what it sees
    loss, grads = _loss_and_grads(vae, "iwae:k=3", mark_missing(x, mask))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


def test_allow_missing_is_idempotent_and_marks_the_model():
    vae = mlp_vae((4,), latent_dim=2, hidden=[8])
    assert not handles_missing(vae)
    allow_missing(allow_missing(vae))
    assert handles_missing(vae)
    assert len(vae.likelihood._forward_hooks) == 1 and len(vae.encoder._forward_pre_hooks) == 1


class _JointGaussian(nn.Module):
    """A likelihood over all entries at once: it cannot be masked per entry."""

    support = "real"

    def forward(self, params):
        return dist.MultivariateNormal(params, torch.eye(params.shape[-1]))


def test_a_likelihood_that_cannot_be_masked_is_refused_before_any_work():
    vae = mlp_vae((4,), latent_dim=2, hidden=[8], likelihood=_JointGaussian())
    with pytest.raises(ModelError, match=r"MultivariateNormal, which cannot be masked per entry"):
        allow_missing(vae)


def test_a_model_other_than_a_vae_is_refused():
    m2 = M2.__new__(M2)  # any model the masking does not know
    nn.Module.__init__(m2)
    with pytest.raises(ModelError, match="cannot take data with missing entries"):
        allow_missing(m2)


def test_evaluation_of_missing_data_needs_a_prepared_model():
    vae = mlp_vae((4,), latent_dim=2, hidden=[8])
    x = mark_missing(torch.rand(3, 4), torch.tensor([True, False, True, True]))
    with pytest.raises(ModelError, match="allow_missing"):
        evaluate_vae(vae, x, k=10)


def observed_guide(lg: LinearGaussian, seen: list[int]) -> LinearGaussian:
    """The linear-Gaussian model whose guide, fed the zero-filled x, is p(z|x_obs) with its
    correlations dropped and its scales widened 1.5x: a good importance proposal."""
    w, b = lg.W[seen], lg.b[seen]
    cov = torch.linalg.inv(torch.eye(w.shape[1]) + w.T @ w / lg.noise**2)
    gain = cov @ w.T / lg.noise**2
    weight = torch.zeros(w.shape[1], len(lg.b))
    weight[:, seen] = gain
    with torch.no_grad():
        lg.vae.encoder.loc.weight.copy_(weight)
        lg.vae.encoder.loc.bias.copy_(-gain @ b)
        lg.vae.encoder.log_scale.copy_((1.5 * cov.diagonal().sqrt()).log())
    return lg


def _observed_marginal(lg: LinearGaussian, seen: list[int]) -> dist.MultivariateNormal:
    full = lg.marginal()
    return dist.MultivariateNormal(full.loc[seen], full.covariance_matrix[seen][:, seen])


def test_log_p_x_obs_matches_the_closed_form_marginal_of_the_observed_entries():
    """IS over the observed entries estimates log N(x_obs; b_o, Sigma_oo) of a linear-Gaussian
    model, with a guide that sees the missing entries as zeros."""
    seen = [0, 2]
    lg = observed_guide(LinearGaussian(data_dim=4, latent_dim=2, noise=0.5), seen)
    allow_missing(lg.vae)
    x = lg.data(40)
    mask = torch.zeros(4, dtype=torch.bool)
    mask[seen] = True
    result = evaluate_vae(lg.vae, mark_missing(x, mask), k=20_000, seed=0)
    exact = _observed_marginal(lg, seen).log_prob(x[:, seen])
    error = result.log_px_per_datapoint - exact  # Monte Carlo error: about 0.005 per datapoint
    assert error.abs().max() < 0.03 and error.mean().abs() < 0.005
    complete = evaluate_vae(lg.vae, x, k=100, seed=0).log_px_per_datapoint
    assert (complete < result.log_px_per_datapoint).all()  # more entries, less probability
    assert result.missing_fraction == 0.0  # set by the application, which knows the data
    assert math.isfinite(result.elbo) and result.elbo < result.log_px


class _GammaLikelihood(Likelihood):
    """A custom likelihood whose support (0, inf) excludes the default missing_fill 0."""

    params_per_pixel = 2

    def forward(self, params):
        a, b = self.split(params)
        softplus = torch.nn.functional.softplus
        return self.event(dist.Gamma(softplus(a) + 1e-3, softplus(b) + 1e-3))


class _GammaFilledAtOne(_GammaLikelihood):
    missing_fill = 1.0


def test_a_missing_fill_outside_the_likelihoods_support_is_named_not_a_nan_loss():
    vae = mlp_vae((4,), latent_dim=2, hidden=[8], likelihood=_GammaLikelihood((4,)))
    with pytest.raises(ModelError, match="no finite log-density at missing_fill = 0"):
        allow_missing(vae)
    fixed = allow_missing(
        mlp_vae((4,), latent_dim=2, hidden=[8], likelihood=_GammaFilledAtOne((4,)))
    )
    x = torch.tensor([[1.0, float("nan"), 2.0, 0.5]])
    loss = Trace_ELBO().differentiable_loss(fixed.model, fixed.guide, x)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in fixed.parameters())


def test_training_on_nan_data_without_allow_missing_names_the_fix_on_every_path():
    vae = mlp_vae((4,), latent_dim=2, hidden=[8], likelihood=GaussianLikelihood((4,)))
    x = torch.randn(5, 4)
    x[0, 1] = float("nan")
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    loss_module = build_objective("elbo")(vae, vae.guide_module())
    for step in (lambda: svi.step(x), lambda: loss_module(x)):
        with pytest.raises(ModelError, match=r"call pyro_vae.missing.allow_missing\(model\)"):
            step()
    allow_missing(vae)
    assert torch.isfinite(loss_module(x))


def test_a_model_prepared_for_missing_entries_pickles_and_scores_alike():
    """Its likelihood hook was a closure: pickle.dumps, torch.save of the whole model (a run
    trained on data with NaN returns one) and worker processes failed with
    "Can't pickle local object '_masking_hook.<locals>.hook'"."""
    vae = allow_missing(mlp_vae((4,), 2, [8], likelihood=GaussianLikelihood((4,))))
    x = torch.randn(6, 4)
    x[0, 1] = x[3, 0] = math.nan
    copied = pickle.loads(pickle.dumps(vae))
    assert handles_missing(copied)
    expected = evaluate_vae(vae, x, k=5, seed=0)
    assert evaluate_vae(copied, x, k=5, seed=0).log_px == expected.log_px
    assert math.isfinite(expected.log_px)
