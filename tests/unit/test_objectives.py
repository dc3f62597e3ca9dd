import logging
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian
from objective_grid import ALL
from pyro import poutine
from pyro.infer import SVI
from torch.func import functional_call

from pyro_vae import VAE, Config, build_vae
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.app.registry import OBJECTIVES
from pyro_vae.errors import ConfigError, ModelError
from pyro_vae.objectives import IWAE_ELBO, kl_warmup_scale
from pyro_vae.objectives.structured import structured_vae
from pyro_vae.vae import path_log_prob

SHAPE = (1, 28, 28)


def small_vae(seed=0):
    torch.manual_seed(seed)
    return build_vae(Config(latent_dim=3, hidden=[32]), SHAPE)


class TracedVAE(VAE):
    """The same model, but a subclass: the objectives must take Pyro's traced path."""

    def model(self, x, num_data=None, kl_scale=1.0):
        return VAE.model(self, x, num_data, kl_scale)


def loss_and_grads(vae, spec, x, num_data, seed):
    loss_fn = build_objective(spec)(vae, vae.guide_module())
    loss_fn(x, num_data)  # the traced path guesses the plate nesting once, using random draws
    torch.manual_seed(seed)
    loss = loss_fn(x, num_data)
    return loss, torch.autograd.grad(loss, list(vae.parameters()))


def test_every_objective_is_listed_and_covered():
    assert {spec.partition(":")[0] for spec in ALL} == set(OBJECTIVES)


@pytest.mark.parametrize("spec", ALL)
def test_fast_path_equals_pyro_traced_path(spec, binary_batch):
    vae = small_vae()
    traced = TracedVAE(vae.encoder, vae.decoder, vae.prior, vae.likelihood)
    assert structured_vae(vae, vae.guide_module()) is vae
    assert structured_vae(traced, traced.guide_module()) is None
    x = binary_batch[:16]
    fast, fast_grads = loss_and_grads(vae, spec, x, 1000, seed=5)
    slow, slow_grads = loss_and_grads(traced, spec, x, 1000, seed=5)
    assert torch.isfinite(fast) and torch.allclose(fast, slow, rtol=1e-5)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def hand_written_iwae(vae, x, k):
    q = vae.encoder(x)
    z = q.rsample((k,))
    log_w = vae.likelihood(vae.decoder(z)).log_prob(x) + vae.prior().log_prob(z) - q.log_prob(z)
    per_datapoint = torch.stack(
        [torch.logsumexp(log_w[:, i], 0) - math.log(k) for i in range(x.shape[0])]
    )
    return -per_datapoint.sum()


def test_iwae_loss_equals_a_hand_written_per_datapoint_bound(binary_batch):
    vae, x = small_vae(), binary_batch[:10]
    loss_fn = build_objective("iwae:k=7")(vae, vae.guide_module())
    torch.manual_seed(3)
    loss = loss_fn(x, 500)
    torch.manual_seed(3)
    expected = hand_written_iwae(vae, x, 7) * 500 / 10
    assert torch.allclose(loss, expected, rtol=1e-6)


def global_site_model(x):
    c = pyro.sample("c", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0], dim=-1):
        z = pyro.sample("z", dist.Normal(c, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def global_site_guide(x):
    loc = pyro.param("c_loc", torch.tensor(0.1))
    pyro.sample("c", dist.Normal(loc, 1.0))
    with pyro.plate("data", x.shape[0], dim=-1):
        pyro.sample("z", dist.Normal(x / 2, 0.8))


@pytest.mark.parametrize("spec", ["iwae:k=4", "dreg:k=4", "renyi:k=4", "tail-adaptive:k=4"])
def test_a_site_outside_the_data_plate_is_refused_not_made_a_whole_batch_bound(spec):
    pyro.clear_param_store()
    x = torch.randn(6)
    with pytest.raises(ModelError, match=r"site 'c' is outside .*whole batch"):
        build_objective(spec).differentiable_loss(global_site_model, global_site_guide, x)


def test_a_scale_inside_the_logsumexp_is_refused(binary_batch):
    vae = small_vae()
    traced = TracedVAE(vae.encoder, vae.decoder, vae.prior, vae.likelihood)
    scaled_model = poutine.scale(traced.model, scale=0.5)
    with pytest.raises(ModelError, match="has scale 0.5.*logsumexp"):
        build_objective("iwae").differentiable_loss(scaled_model, traced.guide, binary_batch)
    with pytest.raises(ConfigError, match="kl_scale=0.5.*logsumexp"):
        build_objective("dreg")(vae, vae.guide_module())(binary_batch, None, 0.5)


def test_generic_models_with_nested_plates_get_per_datapoint_weights():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("pixels", x.shape[1], dim=-1):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(x.mean(-1, keepdim=True) * 0.5, 0.9))

    x = torch.randn(5, 3)
    torch.manual_seed(0)
    loss = IWAE_ELBO(k=6, max_plate_nesting=2).differentiable_loss(model, guide, x)
    torch.manual_seed(0)  # the same draws by hand
    z = dist.Normal(x.mean(-1, keepdim=True) * 0.5, 0.9).expand((6, 5, 1)).rsample()
    log_w = (
        dist.Normal(z, 1.0).log_prob(x).sum(-1)
        + dist.Normal(0.0, 1.0).log_prob(z)[..., 0]
        - dist.Normal(x.mean(-1, keepdim=True) * 0.5, 0.9).log_prob(z)[..., 0]
    )
    expected = -(torch.logsumexp(log_w, 0) - math.log(6)).sum()
    assert torch.allclose(loss, expected, rtol=1e-5)


def _two_latents(dependent: bool):
    """A user's model with latents a and b per datapoint; the guide's b uses a if ``dependent``."""
    weight = torch.tensor(0.5, requires_grad=True)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", dist.Normal(0.0, 1.0))
            b = pyro.sample("b", dist.Normal(a, 1.0))
            pyro.sample("x", dist.Normal(b, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", dist.Normal(weight * x, 1.0))
            pyro.sample("b", dist.Normal(weight * (a if dependent else x), 1.0))

    return model, guide, weight


@pytest.mark.filterwarnings("ignore:Failed to verify mean field")  # Pyro's, on the order
@pytest.mark.parametrize("spec", ["stl", "dreg:k=3", "analytic-kl"])
def test_a_guide_that_is_not_mean_field_is_refused_where_traces_would_bias_it(spec):
    x = torch.randn(4)
    model, guide, weight = _two_latents(dependent=False)
    loss = build_objective(spec).differentiable_loss(model, guide, x)
    assert torch.autograd.grad(loss, weight)[0].isfinite()
    model, guide, _ = _two_latents(dependent=True)
    with pytest.raises(ModelError, match=r"guide site 'b' is computed from the guide's 'a'.*elbo"):
        build_objective(spec).differentiable_loss(model, guide, x)
    for unbiased in ("elbo", "iwae:k=3"):  # the objectives the message suggests run
        assert build_objective(unbiased).differentiable_loss(model, guide, x).isfinite()


def test_stl_is_the_path_derivative_of_a_guide_with_detached_parameters(binary_batch):
    """Reference: log q evaluated by the encoder run with detached parameters."""
    vae, x = small_vae(), binary_batch[:8]
    torch.manual_seed(1)
    loss = build_objective("stl:num_particles=3")(vae, vae.guide_module())(x)
    torch.manual_seed(1)
    q = vae.encoder(x)
    z = q.rsample((3,))
    detached = {k: v.detach() for k, v in vae.encoder.named_parameters()}
    q_fixed = functional_call(vae.encoder, detached, (x,))
    elbo = (
        vae.likelihood(vae.decoder(z)).log_prob(x) + vae.prior().log_prob(z) - q_fixed.log_prob(z)
    )
    reference = -elbo.mean(0).sum()
    assert torch.allclose(loss, reference, rtol=1e-6)
    params = list(vae.parameters())
    expected = torch.autograd.grad(reference, params)
    for a, b in zip(torch.autograd.grad(loss, params), expected, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_dreg_equals_its_two_pass_definition(binary_batch):
    """Reference (Tucker et al. eq. 7): the decoder's IWAE gradient plus the guide's
    sum_i w~_i^2 d log w_i/d z_i d z_i/d phi, computed in two separate passes."""
    vae, x, k = small_vae(), binary_batch[:8], 5
    torch.manual_seed(2)
    loss = build_objective(f"dreg:k={k}")(vae, vae.guide_module())(x)
    dreg = torch.autograd.grad(loss, list(vae.parameters()))
    torch.manual_seed(2)
    q = vae.encoder(x)
    z = q.rsample((k,))
    detached = {n: v.detach() for n, v in vae.encoder.named_parameters()}
    q_fixed = functional_call(vae.encoder, detached, (x,))
    log_p = vae.likelihood(vae.decoder(z.detach())).log_prob(x) + vae.prior().log_prob(z.detach())
    iwae_decoder = -(torch.logsumexp(log_p - q.log_prob(z).detach(), 0)).sum()
    dec = list(vae.decoder.parameters())
    expected_decoder = torch.autograd.grad(iwae_decoder, dec)
    decoder_frozen = {n: v.detach() for n, v in vae.decoder.named_parameters()}
    logits = functional_call(vae.decoder, decoder_frozen, (z,))
    log_w = vae.likelihood(logits).log_prob(x) + vae.prior().log_prob(z) - q_fixed.log_prob(z)
    w_tilde = torch.softmax(log_w.detach(), 0)
    enc = list(vae.encoder.parameters())
    expected_encoder = torch.autograd.grad(-(w_tilde**2 * log_w).sum(), enc)
    names = [n for n, _ in vae.named_parameters()]
    got = dict(zip(names, dreg, strict=True))
    for (name, _), g in zip(vae.decoder.named_parameters(), expected_decoder, strict=True):
        assert torch.allclose(got[f"decoder.{name}"], g, rtol=1e-4, atol=1e-5)
    for (name, _), g in zip(vae.encoder.named_parameters(), expected_encoder, strict=True):
        diff = (got[f"encoder.{name}"] - g).abs().max() / g.abs().max()
        assert diff < 1e-4, (name, diff)


def gradient_draws(model: LinearGaussian, spec, x, n, seed):
    loss_fn = build_objective(spec)(model.vae, model.vae.guide_module())
    params = model.encoder_parameters() + model.decoder_parameters()
    torch.manual_seed(seed)
    rows = []
    for _ in range(n):
        grads = torch.autograd.grad(loss_fn(x), params)
        rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("standard, low_variance", [("elbo", "stl"), ("iwae:k=5", "dreg:k=5")])
def test_path_derivative_gradients_agree_in_expectation_with_lower_variance(standard, low_variance):
    model = LinearGaussian()
    model.perturb_guide(0.3)  # near, not at, the exact posterior: the expected gradient is not 0
    x = model.data(8)
    a = gradient_draws(model, standard, x, 1000, seed=0)
    b = gradient_draws(model, low_variance, x, 1000, seed=1)
    z_scores = (a.mean(0) - b.mean(0)) / (a.var(0) / len(a) + b.var(0) / len(b)).sqrt()
    n_enc = sum(p.numel() for p in model.encoder_parameters())
    significant = a.mean(0).abs() / (a.var(0) / len(a)).sqrt() > 4
    assert significant[:n_enc].sum() >= n_enc // 2, "the test must see a non-zero gradient"
    assert z_scores.abs().max() < 4.5, z_scores  # encoder and decoder, in expectation
    ratio = float(a[:, :n_enc].var(0).sum() / b[:, :n_enc].var(0).sum())
    print(f"encoder-gradient variance {standard} / {low_variance}: {ratio:.1f}")
    assert ratio > 2


@pytest.mark.parametrize("standard, low_variance", [("elbo", "stl"), ("iwae:k=5", "dreg:k=5")])
def test_path_derivative_leaves_the_decoder_gradient_unchanged(standard, low_variance):
    model = LinearGaussian()
    model.perturb_guide(0.3)
    x = model.data(8)
    a = gradient_draws(model, standard, x, 3, seed=4)
    b = gradient_draws(model, low_variance, x, 3, seed=4)
    n_enc = sum(p.numel() for p in model.encoder_parameters())
    assert torch.allclose(a[:, n_enc:], b[:, n_enc:], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(a[:, :n_enc], b[:, :n_enc], rtol=1e-3)


def test_analytic_kl_and_elbo_agree_in_expectation(binary_batch):
    vae, x = small_vae(), binary_batch[:16]
    values = {}
    for spec in ("elbo:num_particles=50", "analytic-kl:num_particles=50"):
        loss_fn = build_objective(spec)(vae, vae.guide_module())
        torch.manual_seed(0)
        values[spec] = torch.stack([loss_fn(x).detach() for _ in range(40)])
    a, b = values.values()
    se = math.sqrt(float(a.var() / len(a) + b.var() / len(b)))
    assert abs(float(a.mean() - b.mean())) < 4 * se


def test_analytic_kl_says_when_it_falls_back_to_monte_carlo(binary_batch, caplog):
    class MixturePrior(torch.nn.Module):
        def forward(self):
            mix = dist.Categorical(torch.ones(2))
            comp = dist.Normal(torch.tensor([[-1.0] * 3, [1.0] * 3]), 1.0).to_event(1)
            return dist.MixtureSameFamily(mix, comp)

    vae = build_vae(Config(latent_dim=3, hidden=[16]), SHAPE, prior=MixturePrior())
    objective = build_objective("analytic-kl")
    loss_fn = objective(vae, vae.guide_module())
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        loss_fn(binary_batch[:4])
        loss_fn(binary_batch[:4])
    assert objective.kl_method == "monte-carlo"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "no closed-form KL" in messages[0]
    assert "MixtureSameFamily" in messages[0]
    standard = build_objective("analytic-kl")
    standard(small_vae(), small_vae().guide_module())(binary_batch[:4])
    assert standard.kl_method == "analytic"


def test_beta_of_one_equals_elbo_and_beta_scales_model_and_guide(binary_batch):
    vae, x = small_vae(), binary_batch[:8]
    elbo, elbo_grads = loss_and_grads(vae, "elbo", x, 100, seed=0)
    beta, beta_grads = loss_and_grads(vae, "beta:b=1", x, 100, seed=0)
    assert torch.equal(elbo, beta)
    assert all(torch.equal(a, b) for a, b in zip(elbo_grads, beta_grads, strict=True))
    torch.manual_seed(0)
    terms = vae.log_weights(x, 1)
    expected = -(terms.log_lik + 3.0 * (terms.log_prior - terms.log_q)).sum() * 100 / 8
    beta3, _ = loss_and_grads(vae, "beta:b=3", x, 100, seed=0)
    assert torch.allclose(beta3, expected, rtol=1e-6)


def test_warmup_at_epoch_zero_removes_the_kl_term(binary_batch):
    assert kl_warmup_scale(0, 10) == 0.0 and kl_warmup_scale(5, 10) == 0.5
    assert kl_warmup_scale(12, 10) == 1.0 and kl_warmup_scale(0, 0) == 1.0
    vae, x = small_vae(), binary_batch[:8]
    for spec in ("elbo", "analytic-kl", "stl", "graph", "beta:b=4"):
        loss_fn = build_objective(spec)(vae, vae.guide_module())
        loss_fn(x, None, 0.0)
        torch.manual_seed(0)
        warm = loss_fn(x, None, 0.0)
        torch.manual_seed(0)
        reconstruction = vae.log_weights(x, 1).log_lik.sum()
        assert torch.allclose(warm, -reconstruction, rtol=1e-5), spec


def test_trainer_passes_the_warmup_weight_of_each_epoch(mnist5k):
    from pyro_vae.app.trainer import Trainer
    from pyro_vae.data import prepare_data

    cfg = Config(dataset="mnist5k", latent_dim=2, hidden=[16], kl_warmup=2, batch_size=1500)
    data = prepare_data(mnist5k, "binary", "bernoulli", "dynamic", seed=0)
    trainer = Trainer(cfg, build_vae(cfg, SHAPE), data)
    seen = []
    step = trainer.train_step
    trainer.train_step = lambda x, kl_scale, y=None: seen.append(kl_scale) or step(x, kl_scale, y)
    for _ in range(3):
        trainer.run_epoch()
    assert seen == [0.0] * 3 + [0.5] * 3 + [1.0] * 3


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"objective": "iwae", "kl_warmup": 5}, r"kl_warmup: objective 'iwae' .*logsumexp"),
        ({"objective": "beta:b=2,of=dreg"}, r"of=dreg cannot carry a beta: .*logsumexp"),
        ({"objective": "beta:of=wake-sleep"}, r"unknown objective of='wake-sleep'"),
        ({"objective": "renyi:alpha=1"}, r"alpha=1 is the ELBO"),
        ({"objective": "iwae:k=0"}, r"option k must be >= 1"),
        ({"objective": "iwae:k=5,k=6"}, r"option 'k' is given twice"),
        ({"objective": "beta:b=inf"}, r"option b must be a finite number"),
    ],
)
def test_nonsense_combinations_are_refused_at_configuration(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


def test_warmup_combines_with_elbo_type_objectives():
    for spec in ("elbo", "analytic-kl", "graph", "stl", "beta:b=2,of=stl"):
        assert Config(objective=spec, kl_warmup=3).kl_warmup == 3


def test_tail_adaptive_with_flat_weights_is_the_elbo_gradient(binary_batch):
    vae, x = small_vae(), binary_batch[:8]
    flat, flat_grads = loss_and_grads(vae, "tail-adaptive:k=4,tail_beta=0", x, None, seed=0)
    torch.manual_seed(0)
    elbo = build_objective("elbo:num_particles=4")(vae, vae.guide_module())(x)
    assert torch.allclose(flat, elbo, rtol=1e-6)
    for a, b in zip(flat_grads, torch.autograd.grad(elbo, list(vae.parameters())), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _changed(vae, before):
    return {k for k, v in vae.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("spec", ALL)
def test_each_objective_trains_with_svi_and_with_torch_optim(spec, binary_batch):
    for style in ("svi", "torch"):
        vae = small_vae()
        before = {k: v.clone() for k, v in vae.state_dict().items()}
        if style == "svi":
            svi = SVI(
                vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), loss=build_objective(spec)
            )
            loss = svi.step(binary_batch, 4500)
        else:
            loss_fn = build_objective(spec)(vae, vae.guide_module())
            optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
            value = loss_fn(binary_batch, 4500)
            value.backward()
            optim.step()
            loss = float(value.detach())
        assert math.isfinite(loss) and loss > 0, (style, loss)
        assert _changed(vae, before) == set(before), f"{style}: every parameter trains"


def test_path_log_prob_of_a_cached_flow_is_the_path_derivative():
    """A flow answers log q(z) of its own sample from its cache; the path must survive."""
    loc = torch.tensor([0.3], requires_grad=True)
    scale = torch.tensor([1.7], requires_grad=True)
    affine = dist.transforms.AffineTransform(loc, scale, cache_size=1)
    flow = dist.TransformedDistribution(dist.Normal(0.0, 1.0).expand([1]), [affine])
    z = flow.rsample()
    params = (loc, scale)
    path = torch.autograd.grad(path_log_prob(flow, z).sum(), params, retain_graph=True)
    expected = torch.autograd.grad(
        path_log_prob(dist.Normal(loc, scale), z).sum(), params, retain_graph=True
    )
    total = torch.autograd.grad(flow.log_prob(z).sum(), params)
    for a, b, c in zip(path, expected, total, strict=True):
        assert torch.allclose(a, b) and bool(a.abs() > 0) and not torch.allclose(a, c)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((torch.zeros(2, 784),), {}),
        ((torch.zeros(2, 784), 100), {}),
        ((torch.zeros(2, 784), 100, 0.5), {}),
        ((torch.zeros(2, 784),), {"kl_scale": 0.3, "num_data": 10}),
    ],
)
def test_vae_arguments_by_position_equal_signature_binding(args, kwargs):
    import inspect

    from pyro_vae.objectives.structured import vae_arguments

    vae = build_vae(Config(hidden=[8], latent_dim=2), (1, 28, 28))
    bound = inspect.signature(type(vae).model).bind(vae, *args, **kwargs)
    bound.apply_defaults()
    got = vae_arguments(vae, *args, **kwargs)
    assert got.x is args[0]
    assert (got.num_data, got.kl_scale, got.labels) == (
        bound.arguments["num_data"],
        bound.arguments["kl_scale"],
        {},
    )


def test_vae_arguments_refuse_too_many_or_missing_arguments():
    from pyro_vae.objectives.structured import vae_arguments

    vae = build_vae(Config(hidden=[8], latent_dim=2), (1, 28, 28))
    with pytest.raises(ModelError, match="cannot take these arguments"):
        vae_arguments(vae, torch.zeros(2, 784), 10, 1.0, "extra")
    with pytest.raises(ModelError, match="cannot take these arguments"):
        vae_arguments(vae)


class _NaiveGlobalScale(torch.nn.Module):
    """A global scale tau written as a first draft is: right for one particle, but its
    p(z) does not broadcast over a leading particle dimension."""

    has_globals = True

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.q_loc = torch.nn.Parameter(torch.zeros(()))

    def forward(self):
        tau = pyro.sample("tau", dist.LogNormal(0.0, 1.0))
        return dist.Normal(
            torch.zeros(self.latent_dim), tau * torch.ones(self.latent_dim)
        ).to_event(1)

    def guide(self):
        pyro.sample("tau", dist.LogNormal(self.q_loc, 0.1))


@pytest.mark.parametrize(
    "spec", ["iwae:k=3", "dreg:k=3", "renyi:alpha=0.5,k=3", "tail-adaptive:k=3"]
)
def test_a_global_latent_that_fails_vectorized_is_refused_as_outside_the_data_plate(
    spec, binary_batch
):
    """Such a prior used to fail with Pyro's 'Shape mismatch inside plate' before the
    refusal of its site outside the data plate could be reached."""
    vae = build_vae(Config(latent_dim=3, hidden=[8]), SHAPE, prior=_NaiveGlobalScale(3))
    loss = build_objective(spec)(vae, vae.guide_module())
    with pytest.raises(
        ModelError, match=r"site 'tau' is outside the vectorized pyro.plate\('data'"
    ):
        loss(binary_batch)
    assert torch.isfinite(build_objective("elbo")(vae, vae.guide_module())(binary_batch))


def test_an_elbo_of_vectorized_particles_names_the_broadcasting_it_needs(binary_batch):
    vae = build_vae(Config(latent_dim=3, hidden=[8]), SHAPE, prior=_NaiveGlobalScale(3))
    loss = build_objective("stl:num_particles=3")(vae, vae.guide_module())
    with pytest.raises(ModelError, match=r"stl: .* 3 particles vectorized .*must broadcast"):
        loss(binary_batch)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_a_loss_module_that_would_hold_no_parameters_or_no_guide_is_refused(name):
    """objective(vae.model, vae.guide) built a loss module with none of the VAE's parameters
    (torch.optim then has nothing to train) and objective(vae, vae) a loss of 0; a bound
    guide beside the module that holds its parameters stays allowed."""
    vae = build_vae(Config(hidden=[8], latent_dim=2), (1, 4, 4))
    objective = build_objective(name if name != "beta" else "beta:b=2")
    with pytest.raises(ModelError, match="bound method VAE.model.*pass modules"):
        objective(vae.model, vae.guide)
    with pytest.raises(ModelError, match="the guide is the model itself"):
        objective(vae, vae)
    assert {id(p) for p in objective(vae, vae.guide).parameters()} == {
        id(p) for p in vae.parameters()
    }


def test_an_objective_built_from_its_class_checks_its_options_as_its_name_does():
    """IWAE_ELBO(k=0) failed only when called, Renyi_ELBO(alpha=-1) was taken, and a
    negative or NaN beta returned a loss with the KL negated, or NaN."""
    from pyro_vae import objectives as o

    refused = {
        "option k must be an int >= 1, got 0": [
            lambda: o.IWAE_ELBO(k=0), lambda: o.DReG_ELBO(k=0), lambda: o.TailAdaptive_ELBO(k=0),
        ],
        "option k must be an int, got 2.5": [lambda: o.Renyi_ELBO(k=2.5)],
        "option num_particles must be an int >= 1, got 0": [
            lambda: o.FastTrace_ELBO(num_particles=0), lambda: o.STL_ELBO(num_particles=0),
            lambda: o.Graph_ELBO(num_particles=0), lambda: o.AnalyticKL_ELBO(num_particles=0),
            lambda: o.IWAE_ELBO(num_particles=0),
        ],
        "option beta must be a finite number >= 0, got -1": [
            lambda: o.FastTrace_ELBO(beta=-1), lambda: o.Graph_ELBO(beta=-1),
            lambda: o.AnalyticKL_ELBO(beta=-1), lambda: o.STL_ELBO(beta=-1),
        ],
        "option beta must be a finite number, got nan": [lambda: o.FastTrace_ELBO(beta=math.nan)],
        "option alpha must be a finite number >= 0, got -1": [lambda: o.Renyi_ELBO(alpha=-1)],
        "option tail_beta must be a finite number, got inf": [
            lambda: o.TailAdaptive_ELBO(tail_beta=math.inf)
        ],
    }  # fmt: skip
    for named, builds in refused.items():
        for build in builds:
            with pytest.raises(ConfigError, match=named):
                build()
    assert o.IWAE_ELBO(k=3).k == 3 and o.FastTrace_ELBO(beta=0).beta == 0
