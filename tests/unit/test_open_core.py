"""The open core: its line with the application, the part contracts, and what a Pyro
modeller expects of the model (generation, Predictive, deepcopy, shapes, global latents)."""

import copy
import pickle
import pkgutil
import subprocess
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO

import pyro_vae
from pyro_vae.app.config import Config
from pyro_vae.app.imports import import_object
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.convention import convention_of, loss_modules
from pyro_vae.errors import ConfigError, ModelError
from pyro_vae.likelihoods import BernoulliLikelihood
from pyro_vae.priors import HierarchicalNormalPrior

SHAPE = (1, 28, 28)
CORE = sorted(  # every module of the core, subpackages included (not the CLI's __main__)
    m.name
    for m in pkgutil.walk_packages(pyro_vae.__path__, "pyro_vae.")
    if not m.name.startswith(("pyro_vae.app", "pyro_vae.__main__"))
)


@pytest.mark.integration
def test_the_core_loads_no_application_module():
    code = (
        "import importlib, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('pyro_vae.app')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(CORE) > 25 and done.stdout.strip() == "[]", done.stdout


@pytest.mark.integration
def test_the_application_is_loaded_on_first_use_of_its_names():
    code = "import pyro_vae, sys; pyro_vae.Config; print('pyro_vae.app.config' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


def test_registries_live_in_one_module_only():
    tables = {"PRIORS", "LIKELIHOODS", "GUIDES", "NETWORKS", "DATASETS", "OBJECTIVES", "MODELS"}
    root = Path(pyro_vae.__file__).parent
    for path in root.rglob("*.py"):
        defined = {t for t in tables if f"\n{t}: dict" in path.read_text()}
        assert not defined or path.name == "registry.py", (path, defined)


def small(**parts):
    return pyro_vae.mlp_vae(SHAPE, 2, [16], **parts)


# -- part contracts --------------------------------------------------------------------------


def test_a_decoder_of_the_wrong_width_is_named_at_build_time():
    decoder = torch.nn.Linear(2, 100)
    with pytest.raises(ModelError, match=r"the decoder \(Linear\).*784"):
        small(decoder=decoder)


def test_a_prior_that_returns_no_distribution_is_named():
    class Broken(pyro_vae.Prior):
        def forward(self):
            return torch.zeros(2)

    with pytest.raises(ModelError, match=r"the prior \(Broken\).*not a distribution"):
        small(prior=Broken())


def test_an_encoder_that_fails_is_named_with_its_input_shape():
    class Encoder(torch.nn.Module):
        def forward(self, x):
            return dist.Normal(torch.nn.functional.linear(x, torch.zeros(2, 5)), 1.0).to_event(1)

    with pytest.raises(ModelError, match=r"the encoder \(Encoder\) fails on input of shape"):
        small(encoder=Encoder())


def test_an_encoder_without_rsample_is_refused_where_the_vae_is_built():
    """A discrete q(z|x) cannot be reparameterized; before, training failed later with a bare
    NotImplementedError (elbo: the first step; graph: the first test ELBO)."""

    class PoissonEncoder(torch.nn.Module):
        def forward(self, x):
            rate = torch.nn.functional.softplus(x.flatten(1)[:, :2]) + 1
            return dist.Poisson(rate).to_event(1)

    with pytest.raises(
        ModelError,
        match=r"the encoder \(PoissonEncoder\) returns Independent\(Poisson\).*no rsample",
    ):
        small(encoder=PoissonEncoder())


def test_a_likelihood_declaring_an_unknown_support_is_refused():
    class Odd(BernoulliLikelihood):
        support = "integers"

    with pytest.raises(ModelError, match=r"support 'integers' is not one of"):
        small(likelihood=Odd(SHAPE))


def test_a_plain_module_likelihood_gets_the_documented_defaults():
    contract = pyro_vae.parts.likelihood_contract(torch.nn.Identity(), SHAPE)
    assert (contract.support, contract.scale, contract.num_outputs) == ("real", "continuous", None)


# -- the model as a Pyro modeller expects it ---------------------------------------------------


def test_a_flat_batch_scores_like_the_shaped_one_and_a_wrong_one_is_named():
    vae = small()
    x = torch.bernoulli(torch.full((6, *SHAPE), 0.3))
    losses = []
    for batch in (x, x.flatten(1)):
        pyro.set_rng_seed(3)
        losses.append(Trace_ELBO().loss(vae.model, vae.guide, batch))
    assert losses[0] == losses[1]
    with pytest.raises(ModelError, match=r"shape \(6, 100\).*\(1, 28, 28\)"):
        vae.model(torch.zeros(6, 100))


def test_the_model_generates_without_data():
    vae = small()
    drawn = vae.model(None, batch_size=5)
    assert drawn.shape == (5, *SHAPE) and set(drawn.unique().tolist()) <= {0.0, 1.0}
    prior_predictive = Predictive(vae.model, num_samples=3)(None, batch_size=4)["x"]
    assert prior_predictive.shape == (3, 4, *SHAPE)


def test_posterior_predictive_draws_differ_from_the_data():
    vae = small()
    x = torch.bernoulli(torch.full((4, *SHAPE), 0.3))
    observed = Predictive(vae.model, guide=vae.guide, num_samples=2)(x)["x"]
    fresh = Predictive(vae.model, guide=vae.guide, num_samples=2)(x, observe=False)["x"]
    assert torch.equal(observed[0], x)  # an observed site returns the data, as in Pyro
    assert fresh.shape == (2, 4, *SHAPE) and not torch.equal(fresh[0], x)


def test_a_deep_copy_trains_apart_under_classic_svi():
    pyro.clear_param_store()
    vae = small()
    twin = copy.deepcopy(vae)
    assert twin._pyro_name != vae._pyro_name
    before = [p.detach().clone() for p in vae.parameters()]
    x = torch.bernoulli(torch.full((8, *SHAPE), 0.3))
    svi = SVI(twin.model, twin.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(3):
        svi.step(x)
    pairs = zip(vae.parameters(), twin.parameters(), strict=True)
    assert all(not torch.equal(a, b) for a, b in pairs)
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))


class _PyroPrior(pyro.nn.PyroModule):  # a Pyro modeller's prior: PyroParams, not nn.Parameters
    def __init__(self, latent_dim):
        super().__init__()
        self.loc = pyro.nn.PyroParam(torch.zeros(latent_dim))
        self.scale = pyro.nn.PyroParam(torch.ones(latent_dim), constraint=dist.constraints.positive)

    def forward(self):
        return dist.Normal(self.loc, self.scale).to_event(1)


@pytest.mark.parametrize(
    "duplicate",
    [copy.deepcopy, lambda vae: pickle.loads(pickle.dumps(vae))],
    ids=["deepcopy", "pickle"],
)
def test_a_copy_trains_every_part_apart_from_its_original(duplicate):
    """A pickled VAE (torch.save of a whole model, a worker process) and any PyroModule part
    named after the original used to keep the original's store names: the copy's steps
    then moved the original's prior, and left some of the copy's own weights unchanged."""
    pyro.clear_param_store()
    vae = small(prior=_PyroPrior(2))
    x = torch.bernoulli(torch.full((8, *SHAPE), 0.3))
    SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO()).step(x)
    twin = duplicate(vae)
    assert twin._pyro_name != vae._pyro_name
    assert twin.prior._pyro_name == f"{twin._pyro_name}.prior"
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    twin_before = {k: v.clone() for k, v in twin.state_dict().items()}
    svi = SVI(twin.model, twin.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(3):
        svi.step(x)
    assert all(torch.equal(v, before[k]) for k, v in vae.state_dict().items())
    assert all(not torch.equal(v, twin_before[k]) for k, v in twin.state_dict().items())


# -- a prior with a global latent ---------------------------------------------------------------


def test_the_global_scale_is_drawn_once_outside_the_data_plate():
    vae = small(prior=HierarchicalNormalPrior(2))
    x = torch.bernoulli(torch.full((64, *SHAPE), 0.3))
    trace = pyro.poutine.trace(vae.model).get_trace(x)
    assert trace.nodes["tau"]["value"].shape == () and trace.nodes["z"]["value"].shape == (64, 2)
    assert not any(f.name == "data" for f in trace.nodes["tau"]["cond_indep_stack"])


def test_the_hierarchical_prior_trains_with_svi_and_the_trainer_loss():
    pyro.clear_param_store()
    vae = small(prior=HierarchicalNormalPrior(2))
    x = torch.bernoulli(torch.full((32, *SHAPE), 0.3))
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(5):
        svi.step(x, 1000)
    assert vae.prior.q_loc.item() != 0.0
    loss = build_objective("elbo")(*loss_modules(vae))(x, 1000)
    (grad,) = torch.autograd.grad(loss, [vae.prior.q_loc])
    assert torch.isfinite(grad) and float(grad) != 0.0


def test_scores_and_samples_use_the_trained_global_scale():
    vae = small(prior=HierarchicalNormalPrior(2))
    with torch.no_grad():  # q(tau) concentrated at 3: p(z) used for scoring is N(0, 3^2)
        vae.prior.q_loc.fill_(torch.tensor(3.0).log())
        vae.prior.q_raw_scale.fill_(-30.0)
    terms = vae.log_weights(torch.zeros(5, *SHAPE), 4)
    expected = dist.Normal(0.0, 3.0).log_prob(terms.z).sum(-1)
    torch.testing.assert_close(terms.log_prior, expected, rtol=1e-4, atol=1e-4)


def test_particle_objectives_refuse_a_global_latent_by_name():
    vae = small(prior=HierarchicalNormalPrior(2))
    loss = build_objective("iwae:k=3")(*loss_modules(vae))
    with pytest.raises(ModelError, match="tau"):
        loss(torch.zeros(4, *SHAPE), 100)


# -- the convention and import paths --------------------------------------------------------------


def test_model_and_guide_must_take_the_same_arguments():
    class Mismatched(torch.nn.Module):
        def model(self, x, y):
            pass

        def guide(self, x):
            pass

    with pytest.raises(ModelError, match="only one of them takes 'y'"):
        convention_of(Mismatched())


def test_user_parts_are_named_by_import_path_in_the_config():
    cfg = Config(prior="collections:OrderedDict", prior_args={"scale": 2.0, "kinds": [1, 2]})
    assert Config.from_toml_text(cfg.to_toml()) == cfg
    with pytest.raises(ConfigError, match="is not an import path"):
        Config(prior="bad path:")
    with pytest.raises(ConfigError, match=r"prior: cannot import module 'nowhere_xyz.priors'"):
        import_object("nowhere_xyz.priors:Prior", "prior")
    with pytest.raises(ConfigError, match="has no attribute 'Missing'"):
        import_object("collections:Missing", "prior")


def test_the_config_of_a_python_model_run_is_refused_by_train_config(tiny_npz, tmp_path, capsys):
    """Its [model] keys were not read (here latent_dim=7 and the mog prior, set in the Config
    but not the model's), and the header says so: a rerun would train another model."""
    from pyro_vae.app.cli import main
    from pyro_vae.priors import LearnedNormalPrior

    vae = small(prior=LearnedNormalPrior(2))
    cfg = Config(dataset=str(tiny_npz), epochs=1, batch_size=100, device="cpu",
                 out=str(tmp_path / "run"), latent_dim=7, prior="mog")  # fmt: skip
    pyro_vae.train(cfg, model=vae, progress=False, log=lambda _: None)
    text = (tmp_path / "run" / "config.toml").read_text()
    assert text.startswith("# pyro-vae run configuration of a model passed from Python (")
    assert "the [model] keys were not read" in text and "latent_dim = 7" in text
    assert main(["train", "--config", str(tmp_path / "run" / "config.toml")]) == 2
    assert "was passed from Python" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "run"
    ]


def test_the_config_of_a_python_data_run_is_refused_by_train_config(tmp_path, capsys):
    """Its dataset key is the default (mnist), not the tensors: a rerun would train on MNIST."""
    from pyro_vae.app.cli import main
    from pyro_vae.datasets import Dataset

    data = Dataset.from_tensors(torch.rand(40, 6), torch.rand(10, 6))
    cfg = Config(likelihood="gaussian", epochs=1, batch_size=20, hidden=[8], latent_dim=2,
                 device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    pyro_vae.train(cfg, data=data, progress=False, log=lambda _: None)
    assert main(["train", "--config", str(tmp_path / "run" / "config.toml")]) == 2
    assert "trained on data passed from Python" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


class _PlainBernoulliVAE(torch.nn.Module):
    """Pyro's VAE example written as a plain module: a Bernoulli likelihood of its own."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec = torch.nn.Linear(784, 4), torch.nn.Linear(2, 784)

    def model(self, x, num_data=None):
        pyro.module("plain", self)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=x.flatten(1))

    def guide(self, x, num_data=None):
        pyro.module("plain", self)
        with pyro.plate("data", len(x)):
            loc, log_scale = self.enc(x.flatten(1)).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def test_a_model_whose_likelihood_refuses_its_prepared_data_is_named_with_support(
    tiny_npz, tmp_path
):
    """Undeclared, a model gets the support 'real': 8-bit images are divided by 255, which
    its own Bernoulli refused in Pyro's validation (a ValueError deep in the trace). Training
    now names the class attribute that fixes it, and with it the same model trains."""
    cfg = Config(dataset=str(tiny_npz), epochs=1, batch_size=100, out=str(tmp_path / "run"))
    with pytest.raises(pyro_vae.DataError, match="support = 'binary'") as error:
        pyro_vae.train(cfg, model=_PlainBernoulliVAE(), progress=False, log=lambda _: None)
    assert "at site 'x'" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()

    class Declared(_PlainBernoulliVAE):
        support = "binary"

    done = pyro_vae.train(cfg, model=Declared(), progress=False, log=lambda _: None)
    assert done.history[-1]["test_elbo"] < 0
