"""The conditional VAE: its fast path against Pyro's traces, labels, its prior, and the app."""

import json
import math
import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
import torch.multiprocessing as mp
from objective_grid import ALL
from PIL import Image
from pyro.infer import Trace_ELBO

from pyro_vae import Config, mlp_vae
from pyro_vae.app.build import build_model
from pyro_vae.app.cli import main
from pyro_vae.app.distributed import exit_rank, init_distributed
from pyro_vae.app.load import load_run
from pyro_vae.app.objective_specs import build_objective
from pyro_vae.app.plots import plot_class_samples
from pyro_vae.app.registry import GUIDES, LIKELIHOODS, NETWORKS, PRIORS, load_dataset
from pyro_vae.app.train import train
from pyro_vae.app.trainer import Trainer
from pyro_vae.convention import GuideCall, ModelCall, loss_modules
from pyro_vae.data import prepare_data
from pyro_vae.datasets import Dataset
from pyro_vae.errors import ConfigError, DataError, ModelError
from pyro_vae.estimators import evaluate_vae
from pyro_vae.families import CVAE, ConditionalNormalPrior, mlp_cvae
from pyro_vae.objectives.structured import structured_vae
from pyro_vae.objectives.traces import traced_log_weights

SHAPE = (1, 28, 28)


def small_vae():
    torch.manual_seed(0)
    return mlp_vae(SHAPE, 3, [32])


def small_cvae(conditional_prior=False, seed=0, classes=10):
    torch.manual_seed(seed)
    return mlp_cvae(SHAPE, classes, 3, [32], conditional_prior=conditional_prior)


class TracedCVAE(CVAE):
    """The same model, but a subclass: the objectives must take Pyro's traced path."""

    def model(self, x, num_data=None, kl_scale=1.0, y=None, *, observe=True):
        return CVAE.model(self, x, num_data, kl_scale, y, observe=observe)


def traced_twin(cvae):
    parts = (cvae.encoder, cvae.decoder, cvae.prior, cvae.likelihood)
    return TracedCVAE(*parts, cvae.num_classes, data_shape=SHAPE)


@pytest.fixture
def labelled_batch(mnist5k):
    """32 real digits binarized with a fixed seed, and their labels."""
    pick = torch.linspace(0, len(mnist5k.x_test) - 1, 32).long()  # the test set is sorted
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(mnist5k.x_test[pick].float() / 255, generator=generator)
    return x, mnist5k.y_test[pick]


def loss_and_grads(model, spec, x, y, num_data, seed):
    loss_fn = build_objective(spec)(*loss_modules(model))
    loss_fn(x, num_data, 1.0, y)  # the traced path guesses the plate nesting once
    torch.manual_seed(seed)
    loss = loss_fn(x, num_data, 1.0, y)
    return loss, torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("conditional_prior", [False, True], ids=["p(z)", "p(z|y)"])
@pytest.mark.parametrize("spec", ALL)
def test_fast_path_equals_pyro_traced_path_with_labels(spec, conditional_prior, labelled_batch):
    cvae = small_cvae(conditional_prior)
    traced = traced_twin(cvae)
    assert structured_vae(cvae, cvae.guide_module()) is cvae
    assert structured_vae(cvae.model, cvae.guide) is cvae
    assert structured_vae(traced, traced.guide_module()) is None
    x, y = labelled_batch
    fast, fast_grads = loss_and_grads(cvae, spec, x, y, 1000, seed=5)
    slow, slow_grads = loss_and_grads(traced, spec, x, y, 1000, seed=5)
    assert torch.isfinite(fast) and torch.allclose(fast, slow, rtol=1e-5)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
    assert any(bool(g.abs().sum() > 0) for g in fast_grads)


def test_the_fast_path_depends_on_the_labels(labelled_batch):
    cvae, (x, y) = small_cvae(True), labelled_batch
    torch.manual_seed(1)
    right = cvae.log_weights(x, 4, y=y).log_w
    torch.manual_seed(1)
    wrong = cvae.log_weights(x, 4, y=(y + 1) % 10).log_w
    assert not torch.allclose(right, wrong)


@pytest.mark.parametrize("conditional_prior", [False, True], ids=["p(z)", "p(z|y)"])
def test_log_weights_equal_pyro_traced_log_weights(conditional_prior, labelled_batch):
    cvae, (x, y) = small_cvae(conditional_prior), labelled_batch
    traced = traced_twin(cvae)
    torch.manual_seed(2)
    fast = cvae.log_weights(x, 6, y=y).log_w
    torch.manual_seed(2)
    model, guide = ModelCall(traced), GuideCall(traced)
    args = (x, None, 1.0, y)
    slow = traced_log_weights(Trace_ELBO(max_plate_nesting=1), model, guide, args, {}, 6, "test")
    assert fast.shape == (6, 32) and torch.allclose(fast, slow.log_w, rtol=1e-5)


def test_evaluation_of_a_cvae_is_conditional_on_both_paths(labelled_batch):
    cvae, (x, y) = small_cvae(True), labelled_batch
    fast = evaluate_vae(cvae, x[:10], k=12, y=y[:10])
    slow = evaluate_vae(traced_twin(cvae), x[:10], k=12, y=y[:10])
    assert fast.conditional and slow.conditional
    assert fast.log_px > fast.elbo and fast.active_units is not None
    assert fast.log_px == pytest.approx(slow.log_px, abs=1.0)  # other draws: close, not equal
    table = fast.table()
    assert "log p(x|y)" in table and "conditional ELBO" in table and "log p(x) " not in table
    assert fast.to_dict()["conditional"] is True
    assert not evaluate_vae(small_vae(), x[:4], k=2).conditional


def test_decoder_outputs_differ_between_labels_for_the_same_z():
    cvae = small_cvae()
    z = torch.randn(5, 3)
    means = [cvae.decode(z, torch.full((5,), label)) for label in range(3)]
    assert not torch.allclose(means[0], means[1]) and not torch.allclose(means[1], means[2])


def test_a_labelled_model_refuses_missing_wrong_and_positional_labels(labelled_batch):
    cvae, (x, y) = small_cvae(), labelled_batch
    with pytest.raises(ModelError, match="pass y="):
        cvae.log_weights(x)
    with pyro.validation_enabled(True), pytest.raises(ModelError, match="run from 0 to 10"):
        cvae.log_weights(x[:2], y=torch.tensor([0, 10]))
    with pyro.validation_enabled(True), pytest.raises(ModelError, match="class indices"):
        cvae.sample(torch.tensor([0.0, 1.0]))
    with pytest.raises(ModelError, match="pass the labels by name"):
        cvae.model(x, y)
    with pytest.raises(ModelError, match="32 datapoints but 3 labels"):
        cvae.guide(x, y=y[:3])
    with pytest.raises(ModelError, match="pass y"):
        evaluate_vae(cvae, x, k=2)


def test_parts_that_do_not_fit_are_named():
    good = small_cvae()
    wide = torch.nn.Linear(3 + 10, 5)  # a decoder of 5 outputs where the likelihood needs 784

    class Decoder(torch.nn.Module):
        def forward(self, z, label):
            return wide(torch.cat([z, label.expand(*z.shape[:-1], -1)], -1))

    with pytest.raises(ModelError, match=r"decoder \(Decoder\) outputs \(2, 5\).*\[2, 784\]"):
        CVAE(good.encoder, Decoder(), good.prior, good.likelihood, 10, data_shape=SHAPE)
    with pytest.raises(
        ModelError, match="prior.*fails on input of shape no input.*takes_labels = True"
    ):
        unflagged = ConditionalNormalPrior(10, 3)
        unflagged.takes_labels = False  # a conditional prior that does not say so is called p()
        CVAE(good.encoder, good.decoder, unflagged, good.likelihood, 10, data_shape=SHAPE)


def test_generation_draws_one_datapoint_per_label():
    cvae = small_cvae(True)
    x = cvae.model(None, y=torch.tensor([1, 2, 3]))
    assert x.shape == (3, *SHAPE) and set(x.unique().tolist()) <= {0.0, 1.0}
    predictive = pyro.infer.Predictive(cvae.model, num_samples=2)(None, y=torch.tensor([4, 5]))
    assert predictive["x"].shape == (2, 2, *SHAPE) and predictive["z"].shape == (2, 2, 3)


def test_the_learned_conditional_prior_trains(labelled_batch):
    cvae, (x, y) = small_cvae(True), labelled_batch
    loss_fn = build_objective("elbo")(*loss_modules(cvae))
    optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in cvae.prior.named_parameters()}
    for step in range(20):
        optim.zero_grad()
        loss_fn(x, 1000, 1.0, y).backward()
        if step == 0:
            for name, p in cvae.prior.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        optim.step()
    for name, p in cvae.prior.named_parameters():
        assert not torch.equal(before[name], p), name
    locs = cvae.prior(cvae.one_hot(torch.arange(10))).mean
    assert (locs[0] - locs[1]).abs().max() > 1e-3  # different classes, different p(z|y)


@pytest.mark.slow
def test_a_tiny_cvae_on_two_classes_generates_class_typical_means(mnist5k):
    pick = (mnist5k.y_train == 0) | (mnist5k.y_train == 1)
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(mnist5k.x_train[pick].float() / 255, generator=generator)
    y = mnist5k.y_train[pick]
    cvae = small_cvae(classes=2)
    loss_fn = build_objective("elbo")(*loss_modules(cvae))
    optim = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(5):
        for batch in torch.randperm(len(x)).split(64):
            optim.zero_grad()
            loss_fn(x[batch], len(x), 1.0, y[batch]).backward()
            optim.step()
    class_means = torch.stack([x[y == c].mean(0) for c in (0, 1)])
    for label in (0, 1):
        generated = cvae.sample(torch.full((200,), label)).mean(0)
        distances = ((class_means - generated) ** 2).flatten(1).sum(1)
        assert distances[label] < distances[1 - label], (label, distances)  # nearer its own class


# -- the application: config, build, train, resume, evaluate, sample, plots --------------------


def cvae_config(tiny_npz, out, **changes):
    values = dict(model="cvae", dataset=str(tiny_npz), epochs=1, batch_size=50, latent_dim=3,
                  hidden=[32], eval_k=20, out=str(out), threads=1)  # fmt: skip
    return Config(**{**values, **changes})


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(conditional_prior=True), "only the cvae model has a prior p\\(z\\|y\\)"),
        (dict(model="cvae", conditional_prior=True, prior="mog"), "prior 'mog' would be ignored"),
        (dict(model="cvae", prior="vamp"), "vamp mixes the encoder's q\\(z\\|u\\)"),
    ],
)
def test_settings_that_cannot_mean_anything_are_refused_at_once(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


COMPOSED = [
    *[dict(prior=p) for p in sorted(PRIORS) if p != "vamp"],
    dict(conditional_prior=True),
    *[dict(guide=g, network=n) for g in sorted(GUIDES) for n in sorted(NETWORKS)],
    *[dict(likelihood=name) for name in ("continuous-bernoulli", "gaussian", "categorical-256")],
]


@pytest.mark.parametrize("changes", COMPOSED, ids=lambda c: ",".join(map(str, c.values())))
def test_the_built_in_cvae_composes_with_every_part(changes, mnist5k, tmp_path):
    cfg = cvae_config("mnist5k", tmp_path, prior_components=2, **changes)
    torch.manual_seed(0)
    cvae = build_model(cfg, SHAPE, num_classes=10)
    assert isinstance(cvae, CVAE) and cvae.conditional_prior == cfg.conditional_prior
    tiny = Dataset("tiny", mnist5k.x_train[::450], mnist5k.y_train[::450], mnist5k.x_test[::50],
                   mnist5k.y_test[::50])  # fmt: skip
    likelihood = LIKELIHOODS[cfg.likelihood].build(cfg, SHAPE)
    data = prepare_data(tiny, likelihood.support, cfg.likelihood, "auto", seed=0)
    trainer = Trainer(cfg.replace(batch_size=10), cvae, data)
    before = {k: v.detach().clone() for k, v in cvae.named_parameters()}
    loss = trainer.train_step(data.epoch_train(0), 1.0, trainer.y_train)
    assert math.isfinite(float(loss))
    for part in ("encoder", "decoder", "prior"):
        names = [k for k in before if k.startswith(part + ".")]
        assert all(not torch.equal(before[k], cvae.get_parameter(k)) for k in names), part
    fast = structured_vae(cvae, cvae.guide_module()) is cvae
    assert fast == (changes.get("prior") != "hierarchical")  # global latents: Pyro's traces


@pytest.mark.integration
def test_data_without_labels_are_refused_in_one_line_before_any_file(tmp_path, mnist5k):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=mnist5k.x_train[:100, 0].numpy())
    out = tmp_path / "run"
    args = ["train", "--model", "cvae", "--dataset", str(path), "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "pyro_vae", *args], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "model cvae conditions on labels y, but the dataset has none" in done.stderr
    assert not out.exists()
    half = tmp_path / "no-test-labels.npz"
    np.savez(half, x=mnist5k.x_train[:100, 0].numpy(), y=mnist5k.y_train[:100].numpy(),
             x_test=mnist5k.x_test[:20, 0].numpy())  # fmt: skip
    with pytest.raises(DataError, match="CVAE takes labels y but .* has none for its test data"):
        train(cvae_config(half, out), progress=False, log=lambda _: None)
    assert not out.exists()


@pytest.mark.integration
def test_a_cvae_run_trains_plots_evaluates_and_samples_by_label(tiny_npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(write_config(cvae_config(tiny_npz, out), tmp_path)),
                 "--no-progress"]) == 0  # fmt: skip
    assert {p.name for p in (out / "plots").iterdir()} == {
        "losses.png",
        "reconstructions.png",
        "samples.png",
        "latent.png",
    }
    assert png_title(out / "plots" / "samples.png").startswith("samples E[x|z, y], z ~ p(z)")
    assert json.loads((out / "run.json").read_text())["num_classes"] == 10

    assert main(["evaluate", str(out), "--k", "10"]) == 0
    table = capsys.readouterr().out
    assert "log p(x|y)" in table and "conditional ELBO" in table
    scores = json.loads((out / "eval.json").read_text())
    assert scores["conditional"] is True and scores["log_px"] > scores["elbo"]

    assert main(["sample", str(out), "--label", "3", "--n", "16"]) == 0
    one = out / "plots" / "samples-label3-seed0-n16.png"
    assert capsys.readouterr().out.strip() == str(one)
    assert "16 samples of label 3 (E[x|z, y=3], z ~ p(z))" in png_title(one)
    assert main(["sample", str(out), "--label", "all", "--n", "4"]) == 0
    every = out / "plots" / "samples-label-all-seed0-n4-each.png"
    assert "4 samples per label, one row per label" in png_title(every)
    with Image.open(every) as image:  # 10 rows of 4: taller than wide
        assert image.height > image.width
    assert main(["sample", str(out), "--label", "10"]) == 2
    assert (
        "--label: expected a class 0..9 of this run or 'all', got '10'" in capsys.readouterr().err
    )


@pytest.mark.integration
def test_label_is_refused_for_a_run_without_labels(tiny_npz, tmp_path, capsys):
    out = tmp_path / "vae"
    train(cvae_config(tiny_npz, out, model="vae"), progress=False, log=lambda _: None)
    assert main(["sample", str(out), "--label", "3"]) == 2
    assert (
        "--label draws class-conditional samples from a cvae or m2 run" in capsys.readouterr().err
    )


def test_class_conditional_samples_use_the_label_on_the_same_draws(tmp_path):
    cvae = small_cvae()
    torch.manual_seed(0)
    first = cvae.sample(torch.zeros(4, dtype=torch.long))
    torch.manual_seed(0)
    second = cvae.sample(torch.ones(4, dtype=torch.long))
    assert not torch.allclose(first, second)
    assert plot_class_samples(cvae, tmp_path / "s.png", per_class=3, labels=[2, 5])
    assert png_title(tmp_path / "s.png") == "samples E[x|z, y], z ~ p(z): one row per label"


def test_resume_of_a_built_in_cvae_run_is_bit_exact(tiny_npz, tmp_path):
    quiet = dict(progress=False, log=lambda _: None)
    whole = train(cvae_config(tiny_npz, tmp_path / "whole", epochs=2, conditional_prior=True),
                  **quiet)  # fmt: skip
    cfg = cvae_config(tiny_npz, tmp_path / "stopped", epochs=1, conditional_prior=True)
    train(cfg, **quiet)
    resumed = train(resume=tmp_path / "stopped", epochs=2, **quiet)
    times = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in times} for r in whole.history] == [
        {k: v for k, v in r.items() if k not in times} for r in resumed.history
    ]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    loaded = load_run(tmp_path / "stopped").model
    assert isinstance(loaded, CVAE) and loaded.conditional_prior


def write_config(cfg, folder):
    path = folder / "request.toml"
    path.write_text(cfg.to_toml())
    return path


def png_title(path):
    with Image.open(path) as image:
        return image.text.get("Title", "")


def _ddp_worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    ctx, _ = init_distributed("cpu", timeout_seconds=60)
    cfg = Config(model="cvae", conditional_prior=True, hidden=[16], latent_dim=2, batch_size=64)
    data = prepare_data(load_dataset("mnist5k"), "binary", "bernoulli", "dynamic", seed=0)
    torch.manual_seed(0)
    trainer = Trainer(cfg, build_model(cfg, SHAPE, 10), data, ctx)
    before = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    x = data.epoch_train(0)
    for batch in data.batch_indices(0, 64, ctx.rank, ctx.world_size)[:2]:
        trainer.train_step(x[batch], 1.0, trainer.y_train[batch])
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    torch.save({"before": before, "after": after}, f"{out}/rank{rank}.pt")
    exit_rank(0)  # the deterministic ending torchrun ranks get from the CLI


@pytest.mark.integration
@pytest.mark.slow
def test_a_cvae_trains_data_parallel(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert torch.isfinite(ranks[0]["after"]).all()
    assert torch.equal(ranks[0]["after"], ranks[1]["after"]), "ranks diverged"
    assert not torch.equal(ranks[0]["after"], ranks[0]["before"]), "nothing trained"


EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.integration
@pytest.mark.slow
def test_the_cvae_experiments_run_with_a_tiny_budget(tmp_path, capsys):
    def run(name, *args):
        runpy.run_path(str(EXPERIMENTS / f"{name}.py"))["main"](list(args))
        return capsys.readouterr().out

    small = ["--epochs", "1", "--seeds", "0", "--k", "5", "--per-class", "3",
             "--classifier-epochs", "1", "--out", str(tmp_path)]  # fmt: skip
    report = run("cvae_mnist5k", *small)
    assert "| cvae, p(z\\|y) | log p(x\\|y) " in report and "| vae | log p(x) " in report
    assert (tmp_path / "summary.md").read_text().strip() in report
    speed = run("cvae_speed", "--rounds", "1", "--steps", "2", "--objectives", "elbo")
    assert speed.count("| elbo |") == 1


@pytest.mark.integration
def test_the_readmes_cvae_commands_do_what_it_says(tmp_path, monkeypatch, capsys):
    readme = (EXPERIMENTS.parent / "README.md").read_text()
    block = readme.split("## Conditional VAE\n", 1)[1].split("```bash\n", 1)[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    for line in block.splitlines():
        words = shlex.split(line.split("#")[0])[1:]  # a tiny budget: one epoch, K = 5
        words += {"train": ["--epochs", "1"], "evaluate": ["--k", "5"]}.get(words[0], [])
        assert main(words) == 0, line
        if words[0] == "evaluate":
            assert "log p(x|y)" in capsys.readouterr().out
    for name in re.findall(r"plots/(\S+\.png)", block):
        assert (tmp_path / "runs" / "cvae" / "plots" / name).is_file(), name


def labelled(y_train: torch.Tensor, y_test: torch.Tensor) -> Dataset:
    x = torch.bernoulli(torch.full((len(y_train) + len(y_test), 1, 28, 28), 0.3))
    return Dataset("labels", x[: len(y_train)], y_train, x[len(y_train) :], y_test)


@pytest.mark.parametrize(
    ("y_train", "y_test", "message"),
    [
        (torch.arange(40) % 2, torch.arange(20) % 3, r"2 classes \(0, 1\) but.*\(2\) have"),
        (torch.arange(40) % 3 * 5, torch.arange(20) % 3 * 5, r"is 10.*8 of them \(1, 2, 3, 4"),
        (torch.arange(40) % 3 - 2, torch.arange(20) % 2, r"include -2; classes are numbers 0..C-1"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("model", ["cvae", "m2"])
def test_labels_a_conditional_model_cannot_learn_are_refused_before_training(
    tmp_path, y_train, y_test, message, model
):
    """A test label no training datapoint has, labels with gaps, negative labels: each was
    a failure after the first epoch (or classes quietly wasted); now one line, no folder."""
    cfg = Config(model=model, labels="all", epochs=1, batch_size=20, hidden=[16], latent_dim=2,
                 device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    with pytest.raises(DataError, match=message):
        train(cfg, data=labelled(y_train, y_test), progress=False, log=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_unused_classes_asked_for_with_num_classes_are_kept(tmp_path):
    cfg = Config(model="cvae", num_classes=4, epochs=1, batch_size=20, hidden=[16],
                 latent_dim=2, device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    data = labelled(torch.arange(40) % 2, torch.arange(20) % 3)
    result = train(cfg, data=data, progress=False, log=lambda _: None)
    assert result.model.num_classes == 4
    assert math.isfinite(result.history[-1]["test_elbo"])
