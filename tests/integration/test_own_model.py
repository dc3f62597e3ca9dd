"""A user's own parts and models through the whole pipeline: from Python and, by import
path, from the command line in new processes (train, evaluate, sample, resume)."""

import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import pyro_vae
from pyro_vae.datasets import Dataset, load_mnist5k
from pyro_vae.errors import CheckpointError, DataError

pytestmark = pytest.mark.slow

USER_PACKAGE = {
    "__init__.py": "",
    "parts.py": """
        import pyro.distributions as dist
        import torch

        import pyro_vae


        class WidePrior(pyro_vae.Prior):
            def __init__(self, latent_dim, scale=1.0):
                super().__init__()
                self.latent_dim, self.scale = latent_dim, scale

            def forward(self):
                return dist.Normal(torch.zeros(self.latent_dim), self.scale).to_event(1)
    """,
    "models.py": """
        import pyro
        import torch
        import torch.nn.functional as F
        from pyro.nn import pyro_method

        import pyro_vae
        from pyro_vae.guides import NormalGuide
        from pyro_vae.likelihoods import BernoulliLikelihood
        from pyro_vae.networks import MLPBody
        from pyro_vae.priors import StandardNormalPrior
        from pyro_vae.vae import data_plate


        class CVAE(pyro_vae.VAE):
            def __init__(self, data_shape, latent_dim, num_classes, hidden=32):
                pixels = int(torch.Size(data_shape).numel())
                body = MLPBody([pixels + num_classes, hidden], 1)
                encoder = NormalGuide(body, hidden, latent_dim)
                decoder = MLPBody([latent_dim + num_classes, hidden, pixels], 1, False)
                super().__init__(encoder, decoder, StandardNormalPrior(latent_dim),
                                 BernoulliLikelihood(data_shape), check=False)
                self.num_classes = num_classes

            def _join(self, h, y):
                one_hot = F.one_hot(y, self.num_classes).to(h.dtype)
                return torch.cat([h, one_hot.expand(*h.shape[:-1], -1)], -1)

            @pyro_method
            def model(self, x, y, num_data=None):
                with data_plate(x, num_data):
                    z = pyro.sample("z", self.prior())
                    logits = self.decoder(self._join(z, y))
                    pyro.sample("x", self.likelihood(logits), obs=x)

            @pyro_method
            def guide(self, x, y, num_data=None):
                with data_plate(x, num_data):
                    pyro.sample("z", self.encoder(self._join(x.flatten(1), y)))


        def make_cvae(data_shape, latent_dim, num_classes, hidden=32):
            return CVAE(data_shape, latent_dim, num_classes, hidden)
    """,
}
TINY = ["--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--batch-size", "500"]


@pytest.fixture
def user_package(tmp_path):
    package = tmp_path / "userpkg"
    package.mkdir()
    for name, text in USER_PACKAGE.items():
        (package / name).write_text(textwrap.dedent(text))
    return tmp_path


def cli(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    command = [sys.executable, "-m", "pyro_vae", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def together(*calls: tuple[tuple, Path]) -> list[subprocess.CompletedProcess]:
    """Run ``cli(*args, cwd=cwd)`` for each ``(args, cwd)`` at once, two cores being there
    and no call reading what another writes; their results in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: cli(*call[0], cwd=call[1]), calls))


def test_a_prior_by_import_path_trains_evaluates_samples_and_resumes(user_package):
    prior = ["--prior", "userpkg.parts:WidePrior", "--prior-args", '{"scale": 2.0}']
    done = cli("train", "--dataset", "mnist5k", *prior, *TINY, "--out", "run", cwd=user_package)
    assert done.returncode == 0, done.stderr
    config = (user_package / "run" / "config.toml").read_text()
    assert 'prior = "userpkg.parts:WidePrior"' in config and "scale = 2.0" in config
    elsewhere = user_package / "elsewhere"
    elsewhere.mkdir()
    evaluated, sampled, failed = together(
        (("evaluate", "run", "--k", "5"), user_package),
        (("sample", "run", "--n", "4"), user_package),
        (("evaluate", "../run", "--k", "5"), elsewhere),
    )
    assert evaluated.returncode == 0 and sampled.returncode == 0
    assert cli("train", "--resume", "run", "--epochs", "2", cwd=user_package).returncode == 0
    lines = (user_package / "run" / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3  # header and two epochs
    assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1
    assert "cannot import module 'userpkg.parts'" in failed.stderr


def test_a_model_by_import_path_gets_labels_and_a_conditional_evaluation(user_package):
    model = ["--model", "userpkg.models:make_cvae", "--model-args", '{"hidden": 24}']
    done = cli("train", "--dataset", "mnist5k", *model, *TINY, "--out", "run", cwd=user_package)
    assert done.returncode == 0, done.stderr
    assert json.loads((user_package / "run" / "run.json").read_text())["num_classes"] == 10
    evaluated, refused = together((("evaluate", "run", "--k", "5"), user_package),
                                  (("sample", "run"), user_package))  # fmt: skip
    assert evaluated.returncode == 0
    scores = json.loads((user_package / "run" / "eval.json").read_text())
    assert scores["log_px"] >= scores["elbo"] and scores["num_datapoints"] == 500
    assert refused.returncode == 2 and "Predictive" in refused.stderr
    assert sorted(p.name for p in (user_package / "run" / "plots").iterdir()) == ["losses.png"]


def test_a_standardized_table_trains_with_a_gaussian_and_evaluates_from_anywhere(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((400, 6)).astype(np.float32) * 3 - 1  # far outside [0, 1]
    np.savez(tmp_path / "table.npz", x=table[:300], x_test=table[300:])
    args = ["--dataset", "table.npz", "--likelihood", "gaussian", *TINY, "--batch-size", "50"]
    done = cli("train", *args, "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (tmp_path / "elsewhere").mkdir()
    bernoulli = ("train", *args[:2], *TINY, "--out", "run2")
    evaluated, refused = together((("evaluate", "../run", "--k", "5"), tmp_path / "elsewhere"),
                                  (bernoulli, tmp_path))  # fmt: skip
    assert evaluated.returncode == 0
    assert refused.returncode == 2 and not (tmp_path / "run2").exists()


@pytest.fixture
def python_user(user_package, monkeypatch):
    monkeypatch.syspath_prepend(str(user_package))
    for name in [m for m in sys.modules if m.startswith("userpkg")]:
        del sys.modules[name]
    from userpkg.models import CVAE

    def build():
        torch.manual_seed(0)
        return CVAE((1, 28, 28), 2, 10, hidden=16)

    return build


def test_a_model_from_python_needs_itself_again_to_load(python_user, tmp_path):
    cfg = pyro_vae.Config(dataset="mnist5k", epochs=1, batch_size=500, out=str(tmp_path / "r"))
    trained = pyro_vae.train(cfg, model=python_user(), progress=False, log=lambda _: None)
    with pytest.raises(CheckpointError, match=r"passed from Python \(userpkg.models:CVAE\)"):
        pyro_vae.load_run(tmp_path / "r")
    loaded = pyro_vae.load_run(tmp_path / "r", model=python_user()).model
    for key, value in trained.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_labelled_model_on_data_without_labels_fails_before_any_file(python_user, tmp_path):
    mnist = load_mnist5k()
    unlabelled = Dataset.from_tensors(mnist.x_train, mnist.x_test)
    cfg = pyro_vae.Config(epochs=1, batch_size=500, out=str(tmp_path / "r"))
    with pytest.raises(DataError, match="takes labels y but tensors has none"):
        pyro_vae.train(cfg, model=python_user(), data=unlabelled, progress=False)
    assert not (tmp_path / "r").exists()


def test_the_readmes_own_model_example_runs_as_written(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (block,) = [b for b in blocks if "class ConditionalVAE" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    scores, result = namespace["scores"], namespace["result"]
    assert (tmp_path / "runs" / "cvae" / "checkpoint.pt").is_file()
    assert scores.log_px >= scores.elbo and scores.num_datapoints == 500
    assert result.history[-1]["test_elbo"] > -550  # one epoch learns beyond 784 log(1/2)


def test_an_objective_instance_trains_as_its_name_does(python_user, tmp_path):
    from pyro_vae.objectives import IWAE_ELBO

    def run(name, spec, **given):
        cfg = pyro_vae.Config(
            dataset="mnist5k", epochs=1, batch_size=500, objective=spec, out=str(tmp_path / name)
        )
        result = pyro_vae.train(
            cfg, model=python_user(), progress=False, log=lambda _: None, **given
        )
        return [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]

    by_instance = run("instance", "elbo", objective=IWAE_ELBO(k=2))  # the instance wins
    assert by_instance == run("name", "iwae:k=2") and by_instance != run("elbo", "elbo")
    info = json.loads((tmp_path / "instance" / "run.json").read_text())
    assert info["objective_class"] == "IWAE_ELBO" and info["model_source"] == "python"
