"""The stacked VAE (z2 -> z1 -> x): exact importance weights on a linear-Gaussian stack, the
bounds' ordering, its fast path against Pyro's traces and against hand-written DReG/STL
gradients, classic SVI, and its config, build, evaluation and figures."""

import math
import re
from pathlib import Path

import pyro
import pytest
import torch
from linear_gaussian_stack import LinearGaussianStack
from objective_grid import ALL
from pyro.infer import SVI, Trace_ELBO
from torch.func import functional_call

from pyro_vae import evaluate_vae
from pyro_vae.app.build import build_model
from pyro_vae.app.cli import main
from pyro_vae.app.compare import parse_vary
from pyro_vae.app.config import Config
from pyro_vae.app.load import load_run
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.app.plots import save_run_plots
from pyro_vae.app.train import train
from pyro_vae.errors import ConfigError, ModelError
from pyro_vae.families.stacked import StackedVAE, mlp_stacked_vae
from pyro_vae.objectives import (
    IWAE_ELBO,
    STL_ELBO,
    AnalyticKL_ELBO,
    DReG_ELBO,
    FastTrace_ELBO,
    Renyi_ELBO,
    TailAdaptive_ELBO,
)
from pyro_vae.objectives.structured import structured_vae
from pyro_vae.objectives.traces import traced_log_weights
from pyro_vae.priors import VampPrior


@pytest.fixture
def stack():
    return LinearGaussianStack()


def test_importance_weights_are_exactly_log_px_at_the_exact_guide(stack):
    x = stack.data(40)
    exact = stack.marginal().log_prob(x)
    log_w = stack.vae.log_weights(x, 7).log_w
    assert torch.allclose(log_w, exact.expand(7, -1), atol=1e-4)
    result = evaluate_vae(stack.vae, x, k=20, seed=1)
    assert torch.allclose(result.log_px_per_datapoint, exact, atol=1e-4)
    assert result.log_px_mc_se < 1e-4


def test_is_estimate_converges_to_the_closed_form_marginal(stack):
    x = stack.data(50)
    exact = float(stack.marginal().log_prob(x).mean())
    stack.perturb_guide(0.05)
    result = evaluate_vae(stack.vae, x, k=5000, seed=0)
    assert abs(result.log_px - exact) < 4 * result.log_px_mc_se + 1e-3
    assert result.elbo < exact - 0.2  # an imperfect guide: the ELBO is strictly below


def test_bounds_are_ordered_elbo_renyi_iwae5_iwae50_log_px(stack):
    x = stack.data(50)
    exact = float(stack.marginal().log_prob(x).mean())
    stack.perturb_guide(0.05)
    guide = stack.vae.guide_module()
    objectives = [
        FastTrace_ELBO(num_particles=2000),
        Renyi_ELBO(alpha=0.5, k=5, num_particles=400),
        IWAE_ELBO(k=5, num_particles=400),
        IWAE_ELBO(k=50, num_particles=40),
    ]
    torch.manual_seed(0)
    with torch.no_grad():
        bounds = [-float(objective(stack.vae, guide)(x)) / len(x) for objective in objectives]
    assert bounds == sorted(bounds) and bounds[-1] < exact, (bounds, exact)


def test_fast_path_weights_equal_pyros_traces_of_model_and_guide(stack):
    x = stack.data(6)
    stack.perturb_guide(0.1)
    torch.manual_seed(3)
    fast = stack.vae.log_weights(x, 4).log_w
    torch.manual_seed(3)
    elbo = Trace_ELBO(max_plate_nesting=1)  # no guessing run, which would draw
    traced = traced_log_weights(elbo, stack.vae.model, stack.vae.guide, (x,), {}, 4, "t")
    assert torch.allclose(fast, traced.log_w, atol=1e-5)


class TracedStack(StackedVAE):
    """The same model, but a subclass: the objectives must take Pyro's traced path."""

    def model(self, x, num_data=None, kl_scale=1.0):
        return StackedVAE.model(self, x, num_data, kl_scale)


def _loss_and_grads(model, spec, x):
    loss_fn = build_objective(spec)(model, model.guide_module())
    loss_fn(x, 1000)  # the traced path guesses the plate nesting once, using random draws
    torch.manual_seed(5)
    loss = loss_fn(x, 1000)
    return loss, torch.autograd.grad(loss, list(model.parameters()))


BIASED_ON_TRACES = ("stl", "dreg", "analytic-kl", "beta:b=2,of=stl", "beta:b=0.5,of=analytic-kl")


def _twins():
    torch.manual_seed(0)
    vae = mlp_stacked_vae((1, 28, 28), (6, 3), hidden=[16], latent_hidden=[8])
    twin = TracedStack(*list(vae.children())[:4], list(vae.guide_layers), list(vae.prior_layers))
    assert structured_vae(vae, vae.guide_module()) is vae
    assert structured_vae(twin, twin.guide_module()) is None
    return vae, twin, torch.bernoulli(torch.full((16, 1, 28, 28), 0.3))


@pytest.mark.parametrize("spec", [s for s in ALL if not s.startswith(BIASED_ON_TRACES)])
def test_fast_path_equals_pyros_traced_path_for_every_objective(spec):
    """Values and gradients of every objective that a trace can compute without bias."""
    vae, twin, x = _twins()
    fast, fast_grads = _loss_and_grads(vae, spec, x)
    slow, slow_grads = _loss_and_grads(twin, spec, x)
    assert torch.isfinite(fast) and torch.allclose(fast, slow, rtol=1e-5)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        assert (a - b).abs().max() <= 1e-4 * a.abs().max() + 1e-4


@pytest.mark.filterwarnings("ignore:Failed to verify mean field")  # Pyro's, on the order
@pytest.mark.parametrize("spec", [s for s in ALL if s.startswith(BIASED_ON_TRACES)])
def test_traced_path_refuses_what_it_would_bias_for_a_guide_that_is_not_mean_field(spec):
    """Through Pyro's traces a path derivative holds q(z2|z1)'s inputs fixed too (dropping the
    path through z1), and TraceMeanField_ELBO takes KL(q(z1|x) || p(z1|z2)) at the guide's z2,
    drawn from z1: the traced twin names the dependent sites; the built-in fast path runs."""
    vae, twin, x = _twins()
    assert torch.isfinite(_loss_and_grads(vae, spec, x)[0])
    with pytest.raises(ModelError, match=r"guide site 'z2' is computed from the guide's 'z1'"):
        _loss_and_grads(twin, spec, x)


@pytest.mark.parametrize("objective", [STL_ELBO(), AnalyticKL_ELBO(), TailAdaptive_ELBO(k=1)])
def test_elbo_type_objectives_have_the_elbos_value(stack, objective):
    x = stack.data(6)
    stack.perturb_guide(0.1)
    guide = stack.vae.guide_module()
    torch.manual_seed(0)
    reference = FastTrace_ELBO()(stack.vae, guide)(x)
    torch.manual_seed(0)
    assert torch.allclose(objective(stack.vae, guide)(x), reference)


def _path_weights(stack, x, n):
    """Hand-written log w with every guide parameter held fixed in log q (not in the draws)."""
    vae = stack.vae
    q = vae.encoder(x)
    z1 = q.rsample((n,))
    z2 = vae.guide_layers[0](z1).rsample()
    frozen_encoder = {k: v.detach() for k, v in vae.encoder.named_parameters()}
    frozen_up = {k: v.detach() for k, v in vae.guide_layers[0].named_parameters()}
    log_q = functional_call(vae.encoder, frozen_encoder, (x,)).log_prob(z1)
    log_q = log_q + functional_call(vae.guide_layers[0], frozen_up, (z1,)).log_prob(z2)
    log_p = vae.prior().log_prob(z2) + vae.prior_layers[0](z2).log_prob(z1)
    return vae.likelihood(vae.decoder(z1)).log_prob(x) + log_p - log_q


def _grads(loss, params, keep=False):
    return torch.autograd.grad(loss, params, retain_graph=keep)


def test_dreg_gradients_weigh_every_path_through_both_layers_once_more(stack):
    """DReG: guide gradient -sum_i w~_i^2 d log w_i (path), model gradient IWAE's."""
    x, k = stack.data(5), 6
    stack.perturb_guide(0.2)
    guide_params, model_params = stack.guide_parameters(), stack.model_parameters()
    torch.manual_seed(4)
    loss = DReG_ELBO(k=k)(stack.vae, stack.vae.guide_module())(x)
    got_guide = _grads(loss, guide_params)
    torch.manual_seed(4)
    loss = DReG_ELBO(k=k)(stack.vae, stack.vae.guide_module())(x)
    got_model = _grads(loss, model_params)
    torch.manual_seed(4)
    log_w = _path_weights(stack, x, k)
    weights = torch.softmax(log_w.detach(), 0)
    want_guide = _grads(-(weights**2 * log_w).sum(), guide_params, keep=True)
    want_model = _grads(-(weights * log_w).sum(), model_params)
    for got, want in zip([*got_guide, *got_model], [*want_guide, *want_model], strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_stl_gradient_is_the_path_derivative_through_both_layers(stack):
    x, n = stack.data(5), 3
    stack.perturb_guide(0.2)
    params = stack.guide_parameters()
    torch.manual_seed(5)
    got = _grads(STL_ELBO(num_particles=n)(stack.vae, stack.vae.guide_module())(x), params)
    torch.manual_seed(5)
    want = _grads(-_path_weights(stack, x, n).mean(0).sum(), params)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_classic_svi_trains_every_layer_of_a_stack_built_from_parts(mnist5k):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = mlp_stacked_vae((1, 28, 28), (8, 4), hidden=[64], latent_hidden=[16])
    x = torch.bernoulli(mnist5k.x_train[:256].float() / 255)
    before = {k: v.detach().clone() for k, v in vae.named_parameters()}
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 3e-3}), loss=IWAE_ELBO(k=3))
    losses = [svi.step(x[i % 4 * 64 : i % 4 * 64 + 64]) for i in range(40)]
    assert sum(losses[-4:]) < 0.9 * sum(losses[:4])
    unchanged = [k for k, v in vae.named_parameters() if torch.equal(v, before[k])]
    assert unchanged == []


def test_every_particle_objective_trains_the_stack_on_its_fast_path():
    vae = mlp_stacked_vae((1, 28, 28), (6, 3), hidden=[16], latent_hidden=[8])
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    for objective in (IWAE_ELBO(k=3), DReG_ELBO(k=3), Renyi_ELBO(k=3), TailAdaptive_ELBO(k=3)):
        vae.zero_grad()
        objective(vae, vae.guide_module())(x).backward()
        layers = [*vae.guide_layers.parameters(), *vae.prior_layers.parameters()]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layers)


def test_evaluation_reports_active_units_per_layer(stack):
    x = stack.data(200)
    result = evaluate_vae(stack.vae, x, k=10)
    assert result.latent_dims == [3, 2] and result.latent_dim == 5
    assert sum(result.active_units_per_layer) == result.active_units
    assert result.kl_per_dim is None and "stacked" in result.kl_per_dim_note
    assert "per layer" in result.table() and "z2: " in result.table()


def test_a_layer_that_ignores_the_one_below_has_no_active_units_despite_its_spread(stack):
    """E[z2|x] is averaged from E[z2|z1], not from draws of z2 (whose noise would count)."""
    with torch.no_grad():
        stack.vae.guide_layers[0].loc.weight.zero_()
        stack.vae.guide_layers[0].log_scale.zero_()  # q(z2|z1) = N(b, I) whatever z1
    result = evaluate_vae(stack.vae, stack.data(300), k=10)
    assert result.active_units_per_layer == [3, 0]


def test_config_takes_a_list_of_layers_and_round_trips_through_toml():
    cfg = Config(latent_dim=[100, 50], latent_hidden=[64])
    assert cfg.latent_dims == (100, 50)
    assert Config.from_toml_text(cfg.to_toml()) == cfg
    assert "latent_dim = [100, 50]" in cfg.to_toml()
    assert Config(latent_dim=[10]) == Config(latent_dim=10)  # one layer is the plain VAE


@pytest.mark.parametrize(
    "values, message",
    [
        ({"latent_dim": [100, 0]}, "latent_dim: must be >= 1"),
        ({"latent_dim": []}, "latent_dim: expected an integer or a list of integers"),
        ({"latent_dim": "100 50"}, "latent_dim: expected an integer or a list of integers"),
        ({"latent_dim": [100, 2.5]}, "latent_dim: expected an integer or a list of integers"),
        ({"latent_dim": [100, 50], "model": "cvae"}, "which model 'cvae' does not have"),
        ({"latent_hidden": []}, r"latent_hidden: expected list\[int\]"),
    ],
)
def test_a_bad_layer_spec_is_one_clear_error(values, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(values)


def test_compare_varies_one_layer_against_a_stack():
    assert parse_vary("latent-dim=150,[100,50]") == ("latent_dim", [150, [100, 50]])
    with pytest.raises(ConfigError, match=r"'\[100,x\]' is not an integer or a bracketed list"):
        parse_vary("latent_dim=150,[100,x]")


def test_a_bad_latent_dim_flag_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--latent-dim", "100", "fifty"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "--latent-dim" in err and len(err.splitlines()) == 1


def test_build_model_stacks_burdas_layers_with_any_prior_on_top():
    cfg = Config(latent_dim=[6, 4, 2], hidden=[32], latent_hidden=[8], prior="mog")
    vae = build_model(cfg, (1, 28, 28))
    assert isinstance(vae, StackedVAE) and vae.latent_dims == (6, 4, 2)
    assert vae.prior().event_shape == (2,)
    assert vae.log_weights(torch.zeros(3, 1, 28, 28), 2).log_w.shape == (2, 3)


def test_a_vamp_prior_on_the_top_layer_mixes_the_guides_top_posteriors():
    vae = build_model(Config(latent_dim=[6, 2], hidden=[16], latent_hidden=[8], prior="vamp"),
                      (1, 28, 28))  # fmt: skip
    assert isinstance(vae.prior, VampPrior)
    p = vae.prior()
    assert p.event_shape == (2,)
    top = vae.top_guide()(vae.prior.pseudo_inputs)
    assert torch.allclose(p.log_prob(torch.zeros(2)), top.log_prob(torch.zeros(2)).logsumexp(0)
                          - math.log(len(vae.prior.pseudo_inputs)))  # fmt: skip
    assert len(list(vae.parameters())) == len({id(p) for p in vae.parameters()})


def test_layers_that_do_not_fit_are_named():
    vae = mlp_stacked_vae((1, 28, 28), (6, 3), hidden=[16], latent_hidden=[8])
    parts = (vae.encoder, vae.decoder, vae.prior, vae.likelihood)
    with pytest.raises(ModelError, match="guide layer 0"):
        StackedVAE(*parts, [torch.nn.Linear(6, 3)], list(vae.prior_layers), data_shape=(1, 28, 28))
    with pytest.raises(ModelError, match="L - 1 >= 1 guide layers"):
        StackedVAE(*parts, [], [])


def stacked_config(data, out, **changes):
    values = dict(dataset=str(data), epochs=1, batch_size=100, hidden=[16], latent_dim=[6, 2],
                  latent_hidden=[8], objective="iwae:k=3", device="cpu", out=str(out))  # fmt: skip
    return Config(**{**values, **changes})


def test_resume_of_a_stacked_run_is_bit_exact_and_load_run_rebuilds_it(tiny_npz, tmp_path):
    quiet = dict(progress=False, log=lambda _: None)
    whole = train(stacked_config(tiny_npz, tmp_path / "whole", epochs=2), **quiet)
    train(stacked_config(tiny_npz, tmp_path / "stopped"), **quiet)
    resumed = train(resume=tmp_path / "stopped", epochs=2, **quiet)
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    loaded = load_run(tmp_path / "stopped").model
    assert isinstance(loaded, StackedVAE) and loaded.latent_dims == (6, 2)
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_a_stacked_run_draws_samples_reconstructions_and_its_top_layers_manifold(tmp_path):
    vae = mlp_stacked_vae((1, 28, 28), (6, 2), hidden=[16], latent_hidden=[8])
    x = torch.bernoulli(torch.full((20, 1, 28, 28), 0.3))
    written = {p.name for p in save_run_plots(vae, [], x, torch.arange(20) % 10, tmp_path)}
    assert {"samples.png", "reconstructions.png", "latent.png", "manifold.png"} <= written
    assert vae.decode(torch.zeros(3, 2)).shape == (3, 1, 28, 28)  # from top-layer codes


@pytest.mark.integration
def test_cli_trains_evaluates_and_samples_a_two_layer_model(tiny_npz, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--dataset", str(tiny_npz), "--epochs", "1", "--batch-size", "100", "--hidden", "16",
            "--latent-dim", "6", "3", "--latent-hidden", "8", "--objective", "dreg:k=3",
            "--device", "cpu", "--out", str(run), "--no-progress"]  # fmt: skip
    assert main(["train", *args]) == 0
    assert Config.from_file(run / "config.toml").latent_dim == [6, 3]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "20"]) == 0
    assert re.search(r"per layer +z1: \d+ / 6, z2: \d+ / 3", capsys.readouterr().out)
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_readme_stacked_example_runs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (block,) = [b for b in blocks if "mlp_stacked_vae((1, 28, 28)" in b]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["two_layer_samples"].shape == (16, 1, 28, 28)
    assert isinstance(namespace["vae"], StackedVAE) and namespace["vae"].latent_dims == (100, 50)


@pytest.mark.parametrize(
    "activation, unit, other",
    [("tanh", torch.nn.Tanh, torch.nn.ReLU), ("relu", torch.nn.ReLU, torch.nn.Tanh)],
)
def test_latent_activation_sets_the_units_between_layers_only(activation, unit, other):
    vae = build_model(Config(latent_dim=[6, 3], hidden=[16], latent_hidden=[8, 8],
                             latent_activation=activation), (1, 28, 28))  # fmt: skip
    for layer in [*vae.guide_layers, *vae.prior_layers]:
        kinds = [type(m) for m in layer.modules()]
        assert kinds.count(unit) == 2 and other not in kinds
    x_side = [type(m) for m in [*vae.encoder.modules(), *vae.decoder.modules()]]
    assert torch.nn.Tanh not in x_side  # the networks next to x keep ReLU
    with pytest.raises(ConfigError, match="latent_activation: unknown name 'sigmoid'"):
        Config(latent_activation="sigmoid")


@pytest.mark.parametrize("objective", ["stl", "dreg", "analytic-kl", "iwae:k=3"])
def test_a_refused_objective_fails_before_the_run_folder_is_made(tiny_npz, tmp_path, objective):
    """A global-latent prior sends the stack through Pyro's traces, where these refuse; the
    refusal comes from the loss check, so no half-made run folder is left to block a rerun."""
    cfg = stacked_config(tiny_npz, tmp_path / "run", prior="hierarchical", objective=objective)
    with pytest.raises(ModelError, match="outside the vectorized|computed from the guide's"):
        train(cfg, progress=False, log=lambda _: None)
    assert not (tmp_path / "run").exists()
