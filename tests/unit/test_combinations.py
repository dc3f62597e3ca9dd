"""Every prior x likelihood x guide x network builds and trains; plots, CLI and config name them."""

import itertools
import math

import numpy as np
import pyro
import pytest
import torch
from PIL import Image

from pyro_vae import Config, build_vae
from pyro_vae.app.cli import main
from pyro_vae.app.plots import _as_images, save_run_plots, white_of
from pyro_vae.app.registry import GUIDES, LIKELIHOODS, NETWORKS, PRIORS
from pyro_vae.app.run_folder import RunFolder
from pyro_vae.app.train import train
from pyro_vae.app.trainer import Trainer
from pyro_vae.data import prepare_data
from pyro_vae.datasets import Dataset
from pyro_vae.errors import DataError

GRID = list(
    itertools.product(sorted(PRIORS), sorted(LIKELIHOODS), sorted(GUIDES), sorted(NETWORKS))
)
PLOTS = {"losses.png", "reconstructions.png", "samples.png", "latent.png", "manifold.png"}


@pytest.fixture(scope="module")
def prepared(mnist5k):
    """Eight real digits prepared for each likelihood, the way training prepares them."""
    tiny = Dataset("tiny", mnist5k.x_train[:8], mnist5k.y_train[:8], mnist5k.x_test[:8],
                   mnist5k.y_test[:8])  # fmt: skip
    support = {name: LIKELIHOODS[name].build(Config(), (1, 28, 28)).support for name in LIKELIHOODS}
    return {name: prepare_data(tiny, support[name], name, "auto", seed=0) for name in LIKELIHOODS}


def grid_config(prior, likelihood, guide, network):
    return Config(
        dataset="mnist5k", prior=prior, likelihood=likelihood, guide=guide, network=network,
        latent_dim=2, hidden=[8], batch_size=4, prior_components=2,
    )  # fmt: skip


def test_grid_is_the_whole_product():
    assert len(GRID) == len(PRIORS) * len(LIKELIHOODS) * 2 * 2 and len(PRIORS) == 8


@pytest.mark.parametrize("prior, likelihood, guide, network", GRID)
def test_every_combination_trains_a_step(prior, likelihood, guide, network, prepared):
    cfg = grid_config(prior, likelihood, guide, network)
    torch.manual_seed(0)
    vae = build_vae(cfg, (1, 28, 28))
    data = prepared[likelihood]
    trainer = Trainer(cfg, vae, data)
    before = {k: v.detach().clone() for k, v in vae.named_parameters()}
    x = data.epoch_train(0)
    loss = trainer.train_step(x[:4])  # the first step runs with Pyro's and torch's validation
    assert math.isfinite(float(loss))
    for part in ("encoder", "decoder", "prior", "likelihood"):
        names = [k for k in before if k.startswith(part + ".")]
        if names:
            changed = [k for k in names if not torch.equal(before[k], vae.get_parameter(k))]
            assert changed, f"no parameter of the {part} trained"


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
def test_run_plots_show_mean_images_for_every_likelihood(likelihood, prepared, tmp_path):
    cfg = grid_config("standard-normal", likelihood, "normal", "mlp").replace(hidden=[16])
    torch.manual_seed(0)
    vae = build_vae(cfg, (1, 28, 28))
    data = prepared[likelihood]
    white = white_of(vae.likelihood.support, float(data.train.max()))
    rows = [{"epoch": 1, "train_elbo": -1.0, "test_elbo": -1.0}]
    written = save_run_plots(vae, rows, data.test, data.y_test, tmp_path, "nats", white)
    assert {p.name for p in written} == PLOTS
    for path in written:
        with Image.open(path) as image:
            image.verify()
    shown = _as_images(vae.sample(4), white)
    assert shown.shape == (4, 28, 28)
    # levels are divided by 255 for display, so an untrained decoder's mid-grey means show
    # as grey, not clipped to white
    assert float((shown >= 1).float().mean()) < 0.5


@pytest.mark.integration
def test_cli_flags_choose_every_part_and_the_run_records_them(tiny_npz, tmp_path):
    out = tmp_path / "run"
    code = main([
        "train", "--dataset", str(tiny_npz), "--epochs", "1", "--batch-size", "50",
        "--hidden", "16", "--latent-dim", "2", "--prior", "mog", "--prior-components", "10",
        "--likelihood", "continuous-bernoulli", "--guide", "iaf", "--guide-flow-depth", "3",
        "--network", "conv", "--out", str(out), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    run = RunFolder(out)
    cfg = run.read_config()
    assert (cfg.prior, cfg.prior_components, cfg.likelihood, cfg.guide, cfg.network) == (
        "mog",
        10,
        "continuous-bernoulli",
        "iaf",
        "conv",
    )
    assert cfg.guide_flow_depth == 3
    assert math.isfinite(run.read_metrics()[-1]["test_elbo"])
    assert {p.name for p in run.plots.iterdir()} == PLOTS


@pytest.mark.integration
def test_config_file_chooses_every_part(tiny_npz, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        f'[data]\ndataset = "{tiny_npz}"\n'
        '[model]\nprior = "flow"\nprior_flow = "spline-coupling"\nprior_flow_depth = 3\n'
        'likelihood = "discretized-logistic"\nguide = "normal"\nnetwork = "mlp"\n'
        "hidden = [16]\nlatent_dim = 2\n"
        "[training]\nepochs = 1\nbatch_size = 50\n"
    )
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    cfg = RunFolder(out).read_config()
    assert (cfg.prior, cfg.prior_flow, cfg.prior_flow_depth, cfg.likelihood) == (
        "flow",
        "spline-coupling",
        3,
        "discretized-logistic",
    )
    # 8-bit data scored in nats over 256 levels: metrics.csv carries the test ELBO in
    # bits per dimension too, finite, positive and at most 8 (the uniform distribution)
    row = RunFolder(out).read_metrics()[-1]
    assert row["test_bits_per_dim"] == pytest.approx(-row["test_elbo"] / (784 * math.log(2)))
    assert 0 < row["test_bits_per_dim"] <= 8


@pytest.fixture
def float_npz(tmp_path, mnist5k):
    path = tmp_path / "floats.npz"
    np.savez(path, x=mnist5k.x_train[:60, 0].numpy().astype(np.float32) / 255)
    return path


@pytest.mark.parametrize("likelihood, binarize, found, flag", [
    ("bernoulli", "none", "[0, 1]", "--binarize dynamic"),
    ("categorical-256", "static", "[0, 255]", "--binarize none"),
    ("beta", "dynamic", "[0, 1]", "--binarize none"),
    ("discretized-logistic", "auto", "[0, 1]", "--likelihood continuous-bernoulli"),
])  # fmt: skip
def test_data_likelihood_mismatch_fails_before_training(
    likelihood, binarize, found, flag, tiny_npz, float_npz, tmp_path
):
    dataset = float_npz if likelihood == "discretized-logistic" else tiny_npz
    cfg = Config(dataset=str(dataset), likelihood=likelihood, binarize=binarize, hidden=[8],
                 latent_dim=2, epochs=1, out=str(tmp_path / "run"))  # fmt: skip
    with pytest.raises(DataError) as info:
        train(cfg, progress=False, log=lambda _: None)
    message = str(info.value)
    assert f"'{likelihood}'" in message and found in message and flag in message, message
    assert not (tmp_path / "run" / "metrics.csv").exists()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("changes", [
    {"prior": "vamp", "guide": "iaf", "likelihood": "gaussian", "likelihood_scale": "per-pixel"},
    {"prior": "flow", "prior_flow": "spline-coupling", "likelihood": "discretized-logistic",
     "network": "conv"},
])  # fmt: skip
def test_a_trained_run_loads_back_with_every_learned_part(changes, tiny_npz, tmp_path):
    from pyro_vae.app.load import load_run

    cfg = Config(dataset=str(tiny_npz), epochs=1, batch_size=50, hidden=[16], latent_dim=2,
                 out=str(tmp_path / "run"), **changes)  # fmt: skip
    trained = train(cfg, progress=False, log=lambda _: None).model.eval()
    loaded = load_run(tmp_path / "run").model
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    z = torch.randn(5, 2)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded.prior().log_prob(z), trained.prior().log_prob(z))
        torch.testing.assert_close(loaded.decoder(z), trained.decoder(z))
        torch.testing.assert_close(
            loaded.encoder(x).log_prob(z[:3]), trained.encoder(x).log_prob(z[:3])
        )


@pytest.mark.parametrize(
    "prior, likelihood, guide",
    [
        *[("standard-normal", name, "normal") for name in sorted(LIKELIHOODS)],
        *[(name, "bernoulli", "iaf") for name in sorted(PRIORS) if name != "hierarchical"],
    ],
)  # fmt: skip  (a prior with a global latent has no fast path: it is always traced)
def test_fast_path_equals_pyros_traced_trace_elbo(prior, likelihood, guide, prepared):
    from pyro.infer import Trace_ELBO

    from pyro_vae.app.objective_specs import build_objective

    cfg = grid_config(prior, likelihood, guide, "mlp")
    torch.manual_seed(0)
    vae = build_vae(cfg, (1, 28, 28))
    x = prepared[likelihood].epoch_train(0)[:4]
    torch.manual_seed(1)
    fast = build_objective("elbo")(vae, vae.guide_module())(x, 4500)
    torch.manual_seed(1)
    with pyro.validation_enabled(True):
        traced = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, 4500)
    torch.testing.assert_close(fast, traced, rtol=1e-5, atol=1e-3)
