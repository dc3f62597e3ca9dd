import math

import pyro
import pyro.distributions.transforms as T
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_vae import Config, build_vae
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.app.registry import PRIORS
from pyro_vae.app.runtime import seed_everything
from pyro_vae.app.trainer import Trainer
from pyro_vae.data import prepare_data
from pyro_vae.distributions import UniformMixture
from pyro_vae.errors import ConfigError
from pyro_vae.priors import VampPrior

SMALL = (1, 4, 4)

# (id, config changes): every built-in prior, flows of both kinds, the VampPrior over both guides
CASES = {
    "standard-normal": {},
    "learned-normal": {},
    "mog": {"prior_components": 3},
    "vamp": {"prior_components": 3},
    "vamp-iaf": {"prior": "vamp", "prior_components": 3, "guide": "iaf"},
    "flow-aar": {"prior": "flow", "prior_flow": "affine-autoregressive", "prior_flow_depth": 2},
    "flow-spline": {"prior": "flow", "prior_flow": "spline-coupling", "prior_flow_depth": 2},
    "laplace": {},
    "student-t": {"prior_df": 3.0},
    "hierarchical": {},
}


def test_cases_cover_every_builtin_prior():
    assert {CASES[c].get("prior", c) for c in CASES} == set(PRIORS)


# sharp features make a density hard to integrate on a grid, and perturbed spline flows get
# very sharp ones: their parameters move less
PERTURBATION = {"flow-spline": 0.05}
HEAVY_TAILED = ("student-t", "flow-aar")


def make_prior(case, latent_dim, **changes):
    """A built prior with non-trivial parameters: every parameter of the VAE moved off its init."""
    values = {"prior": case, **CASES[case], **changes}
    torch.manual_seed(sum(map(ord, case)) + latent_dim)
    vae = build_vae(Config(latent_dim=latent_dim, hidden=[16], **values), SMALL)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(PERTURBATION.get(case, 0.3) * torch.randn_like(p))
    return vae.prior


def grid(case, latent_dim, points=None):
    """Grid points z and the volume each stands for.

    Uniform on [-8, 8] per dimension, or z = sinh(u) with u uniform on [-6, 6]
    (|z| up to 200) for heavy tails. (An IAF posterior inverted far outside its bulk
    overflows float32, so the light-tailed grid stops where their mass is negligible.)
    """
    points = points or (20001 if latent_dim == 1 else 401)
    if case in HEAVY_TAILED:
        u = torch.linspace(-6, 6, points, dtype=torch.float64)
        z1, w1 = torch.sinh(u), torch.cosh(u) * (u[1] - u[0])
    else:
        z1 = torch.linspace(-8, 8, points, dtype=torch.float64)
        w1 = torch.full_like(z1, float(z1[1] - z1[0]))
    if latent_dim == 1:
        return z1[:, None], w1
    za, zb = torch.meshgrid(z1, z1, indexing="ij")
    wa, wb = torch.meshgrid(w1, w1, indexing="ij")
    return torch.stack([za, zb], -1).reshape(-1, 2), (wa * wb).reshape(-1)


def grid_mass(prior, case, latent_dim, points=None):
    """Grid points and the probability mass exp(log_prob) dz at each."""
    z, w = grid(case, latent_dim, points)
    with torch.no_grad():
        p = torch.cat([prior().log_prob(c.float()).double().exp() for c in z.split(250_000)])
    return z, p * w


@pytest.mark.parametrize("latent_dim", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_density_integrates_to_one(case, latent_dim):
    _, mass = grid_mass(make_prior(case, latent_dim), case, latent_dim)
    assert torch.isfinite(mass).all()
    assert abs(float(mass.sum()) - 1) < 0.01


GLOBAL_TAU = 1.5  # the value of the hierarchical prior's global scale the moments test fixes


def implied_moments(prior, case):
    """Mean and variance from the prior's parameters (closed form), else from its density."""
    if case == "standard-normal":
        return torch.zeros(2), torch.ones(2)
    if case == "learned-normal":
        return prior.loc, prior.scale**2
    if case == "laplace":
        return prior.loc, 2 * prior.scale**2
    if case == "student-t":
        return prior.loc, prior.scale**2 * prior.df / (prior.df - 2)
    if case == "hierarchical":  # p(z | tau) at the global scale the test conditions on
        return torch.zeros(2), torch.full((2,), GLOBAL_TAU**2)
    if case == "mog":
        locs, scales, weights = prior.locs, prior.scales, prior.logits.softmax(0)[:, None]
    elif case == "vamp":
        q = prior.encoder(prior.pseudo_inputs).base_dist
        locs, scales, weights = q.loc, q.scale, torch.full((len(q.loc), 1), 1 / len(q.loc))
    else:  # flows, and the VampPrior over flow posteriors: moments of the density itself
        z, mass = grid_mass(prior, case, 2, points=801)  # moments need a finer grid
        mean = (z * mass[:, None]).sum(0) / mass.sum()
        var = ((z - mean) ** 2 * mass[:, None]).sum(0) / mass.sum()
        return mean.float(), var.float()
    mean = (weights * locs).sum(0)
    return mean, (weights * (scales**2 + locs**2)).sum(0) - mean**2


@pytest.mark.parametrize("case", CASES)
def test_samples_have_the_moments_the_parameters_imply(case):
    prior = make_prior(case, 2, **({"prior_df": 6.0} if case == "student-t" else {}))
    torch.manual_seed(0)
    n = 200_000
    with torch.no_grad(), pyro.poutine.condition(data={"tau": torch.tensor(GLOBAL_TAU)}):
        z = prior().sample((n,))
        mean, var = implied_moments(prior, case)
    assert z.shape == (n, 2) and torch.isfinite(z).all()
    centred = z - z.mean(0)
    se_mean = z.std(0) / math.sqrt(n)
    se_var = (centred**2).std(0) / math.sqrt(n)
    assert ((z.mean(0) - mean).abs() < 5 * se_mean + 1e-3).all(), (z.mean(0), mean)
    assert ((z.var(0) - var).abs() < 5 * se_var + 1e-3 * var).all(), (z.var(0), var)


def small_vae(case, **changes):
    values = {"prior": case, **CASES[case], **changes}
    values.setdefault("latent_dim", 2)
    return build_vae(Config(hidden=[16], **values), (1, 28, 28))


def _prior_state(vae):
    return {name: p.detach().clone() for name, p in vae.prior.named_parameters()}


LEARNABLE = ["learned-normal", "mog", "vamp", "vamp-iaf", "flow-aar", "flow-spline"]


@pytest.mark.parametrize("style", ["torch", "classic-svi"])
@pytest.mark.parametrize("case", LEARNABLE)
def test_every_prior_parameter_trains(case, style, binary_batch):
    vae = small_vae(case)
    before = _prior_state(vae)
    assert before, "a learnable prior has parameters"
    if style == "torch":
        loss_fn = build_objective("elbo")(vae, vae.guide_module())
        optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
        loss_fn(binary_batch[:16], 4500).backward()
        optim.step()
    else:
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), loss=Trace_ELBO())
        svi.step(binary_batch[:16], 4500)
    after = _prior_state(vae)
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert not unchanged, f"{case} parameters that did not train under {style}: {unchanged}"


@pytest.mark.parametrize("guide", ["normal", "iaf"])
def test_vamp_components_are_the_encoders_posteriors_at_the_pseudo_inputs(guide):
    vae = small_vae("vamp", guide=guide)
    prior = vae.prior
    assert isinstance(prior, VampPrior) and prior.encoder is vae.encoder
    p, q = prior(), vae.encoder(prior.pseudo_inputs)
    assert isinstance(p, UniformMixture) and p.components.batch_shape == (3,)
    z = torch.randn(7, 2)
    # component k, scored on its own: the encoder's posterior at pseudo-input k alone
    log_q = torch.stack(
        [vae.encoder(prior.pseudo_inputs[k : k + 1]).log_prob(z) for k in range(3)], -1
    )
    torch.testing.assert_close(p.components.log_prob(z[:, None, :].expand(7, 3, 2)), log_q)
    torch.testing.assert_close(p.log_prob(z), log_q.logsumexp(-1) - math.log(3))
    if guide == "normal":
        assert torch.equal(p.components.base_dist.loc, q.base_dist.loc)
        assert torch.equal(p.components.base_dist.scale, q.base_dist.scale)


def test_vamp_does_not_register_the_encoder_twice(binary_batch):
    vae = small_vae("vamp")
    assert list(vae.prior.state_dict()) == ["pseudo_inputs"]
    assert not any(key.startswith("prior.encoder") for key in vae.state_dict())
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), loss=Trace_ELBO())
    svi.step(binary_batch[:8], 4500)
    store = pyro.get_param_store()
    mine = [name for name in store if name.startswith(vae._pyro_name + ".")]
    assert len(mine) == len(list(vae.parameters()))


@pytest.mark.parametrize("flow, kinds", [
    ("affine-autoregressive", (torch.distributions.transforms._InverseTransform,)),
    ("spline-coupling", (T.SplineCoupling, T.Permute)),
])  # fmt: skip
def test_flow_prior_is_built_from_pyros_transforms(flow, kinds):
    vae = small_vae("flow-aar", prior_flow=flow, prior_flow_depth=3, latent_dim=4)
    transforms = vae.prior().transforms
    assert all(isinstance(t, kinds) for t in transforms)
    learnable = [t for t in transforms if not isinstance(t, T.Permute)]
    assert len(learnable) == 3
    if flow == "affine-autoregressive":
        assert all(isinstance(t.inv, T.AffineAutoregressive) for t in learnable)


@pytest.mark.slow
def test_mog_and_vamp_reach_the_standard_priors_elbo_on_mnist5k(mnist5k):
    data = prepare_data(mnist5k, "binary", "bernoulli", "dynamic", seed=0)
    final = {}
    for prior in ("standard-normal", "mog", "vamp"):
        cfg = Config(dataset="mnist5k", prior=prior, latent_dim=10, hidden=[200], epochs=3)
        seed_everything(0)
        trainer = Trainer(cfg, build_vae(cfg, (1, 28, 28)), data)
        final[prior] = [trainer.run_epoch() for _ in range(cfg.epochs)][-1]["test_elbo"]
    print(final)
    assert final["mog"] >= final["standard-normal"] - 2, final
    assert final["vamp"] >= final["standard-normal"] - 2, final


def test_a_vamp_prior_built_on_another_encoder_is_refused():
    first = small_vae("vamp")
    with pytest.raises(ConfigError, match="VampPrior holds another encoder"):
        build_vae(Config(latent_dim=2, hidden=[16]), (1, 28, 28), prior=first.prior)


def test_standard_normal_prior_is_built_once_and_again_after_a_move_or_a_validation_switch():
    from pyro_vae.priors import StandardNormalPrior

    prior = StandardNormalPrior(3)
    first = prior()
    assert prior() is first  # a fixed N(0, I): the step reuses it
    with pyro.validation_enabled(not torch.distributions.Distribution._validate_args):
        assert prior() is not first  # validation decided at construction is redone
    prior.double()
    moved = prior()
    assert moved is not first and moved.base_dist.loc.dtype == torch.float64
    z = torch.randn(4, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(moved.log_prob(z), expected)
