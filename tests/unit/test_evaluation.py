import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from linear_gaussian import LinearGaussian
from pyro.infer import config_enumerate

from pyro_vae import Config, build_vae, mlp_vae
from pyro_vae.app.build import build_likelihood
from pyro_vae.app.cli import main
from pyro_vae.app.evaluate import evaluate
from pyro_vae.app.registry import LIKELIHOODS
from pyro_vae.app.train import train
from pyro_vae.errors import ConfigError, DataError
from pyro_vae.estimators import MAX_DECODED_VALUES, elbo_per_datapoint, evaluate_vae
from pyro_vae.likelihoods import BernoulliLikelihood


@pytest.fixture(scope="module")
def model():
    model = LinearGaussian()
    model.perturb_guide(0.1, seed=0)  # a good but imperfect guide: ELBO < log p(x)
    return model


def test_estimate_matches_the_closed_form_marginal_likelihood(model):
    x = model.data(100)
    exact = float(model.marginal().log_prob(x).mean())
    result = evaluate_vae(model.vae, x, k=2000)
    print(f"log p(x): estimate {result.log_px:.4f}, exact {exact:.4f}, MC s.e. "
          f"{result.log_px_mc_se:.4f}, ELBO {result.elbo:.4f}")  # fmt: skip
    assert abs(result.log_px - exact) < 3 * result.log_px_mc_se
    assert exact - result.elbo > 20 * result.log_px_mc_se, "the test must be able to fail"


def test_log_px_estimate_is_above_an_independent_elbo_estimate(model, binary_batch):
    x = model.data(200)
    torch.manual_seed(0)
    assert evaluate_vae(model.vae, x, k=100).log_px > elbo_per_datapoint(model.vae, x, 200, 20)
    torch.manual_seed(0)
    vae = build_vae(Config(latent_dim=3, hidden=[32]), (1, 28, 28))
    result = evaluate_vae(vae, binary_batch, k=50)
    assert result.log_px > elbo_per_datapoint(vae, binary_batch, num_particles=20)
    assert abs(result.elbo - (result.reconstruction - result.kl)) < 1e-6


def test_iwae_bound_is_non_decreasing_in_k(model):
    x = model.data(200)
    bounds = [evaluate_vae(model.vae, x, k=k, seed=k).log_px_per_datapoint.double()
              for k in (1, 3, 10, 30, 100, 300)]  # fmt: skip
    for low, high in zip(bounds, bounds[1:], strict=False):
        difference = high - low  # paired per datapoint: the data's spread cancels
        assert difference.mean() > -3 * difference.std() / math.sqrt(len(x))
    assert (bounds[-1] - bounds[0]).mean() > 0.2


def test_memory_stays_bounded_whatever_k(model, monkeypatch):
    x = model.data(37)
    sizes = []
    original = type(model.vae).log_weights

    def spy(self, chunk, num_particles=1, path_derivative=False):
        sizes.append(num_particles * len(chunk))
        return original(self, chunk, num_particles, path_derivative)

    monkeypatch.setattr(type(model.vae), "log_weights", spy)
    small = evaluate_vae(model.vae, x, k=5000, max_samples=700)
    setup, *chunks = sizes  # one draw for one datapoint sets up the sums' shapes
    assert setup == 1 and max(chunks) <= 700 and sum(chunks) == 5000 * 37
    large = evaluate_vae(model.vae, x, k=5000, max_samples=100_000)
    se = math.hypot(small.log_px_mc_se, large.log_px_mc_se)
    assert abs(small.log_px - large.log_px) < 4 * se


def test_chunks_are_bounded_by_decoded_values_where_a_sample_decodes_to_many(monkeypatch):
    """categorical-256 decodes 784 x 256 logits per sample: chunks shrink to fit."""
    cfg = Config(likelihood="categorical-256", hidden=[16], latent_dim=2, binarize="none")
    torch.manual_seed(0)
    vae = build_vae(cfg, (1, 28, 28))
    x = torch.randint(0, 256, (3, 1, 28, 28)).float()
    sizes = []
    original = type(vae).log_weights

    def spy(self, chunk, num_particles=1, path_derivative=False):
        sizes.append(num_particles * len(chunk))
        return original(self, chunk, num_particles, path_derivative)

    monkeypatch.setattr(type(vae), "log_weights", spy)
    result = evaluate_vae(vae, x, k=100)
    decoded_per_sample = 784 * 256
    assert max(sizes) * decoded_per_sample <= MAX_DECODED_VALUES
    assert sum(sizes[1:]) == 100 * 3 and math.isfinite(result.log_px)
    sizes.clear()
    x = torch.randint(0, 256, (100, 1, 28, 28)).float()
    assert math.isfinite(elbo_per_datapoint(vae, x, batch_size=1000, seed=0))
    assert max(sizes) * decoded_per_sample <= MAX_DECODED_VALUES and sum(sizes) == 100


def test_kl_per_dimension_and_active_units(model):
    x = model.data(300)
    result = evaluate_vae(model.vae, x, k=500)
    assert result.kl_per_dim_method == "analytic" and len(result.kl_per_dim) == 2
    assert abs(sum(result.kl_per_dim) - result.kl) < 0.05
    assert result.active_units == 2
    collapsed = LinearGaussian()
    with torch.no_grad():
        collapsed.vae.encoder.loc.weight[1] = 0.0  # unit 1's mean no longer depends on x
    assert evaluate_vae(collapsed.vae, x, k=10).active_units == 1


@pytest.mark.parametrize(
    "prior, method",
    [
        (lambda: dist.Laplace(torch.zeros(3), 1.0).to_event(1), "analytic"),
        (lambda: dist.StudentT(3.0, torch.zeros(3), 1.0).to_event(1), "monte-carlo"),
        (
            lambda: dist.MixtureSameFamily(
                dist.Categorical(torch.ones(2)),
                dist.Normal(torch.tensor([[-1.0] * 3, [1.0] * 3]), 1.0).to_event(1),
            ),
            "none",
        ),
    ],
)
def test_kl_per_dimension_says_how_it_was_computed(prior, method, binary_batch):
    class Prior(torch.nn.Module):
        def forward(self):
            return prior()

    vae = build_vae(Config(latent_dim=3, hidden=[16]), (1, 28, 28), prior=Prior())
    result = evaluate_vae(vae, binary_batch[:20], k=200)
    assert result.kl_per_dim_method == method
    if method == "none":
        assert result.kl_per_dim is None
        assert "the prior p(z) (MixtureSameFamily) does not factorize" in result.kl_per_dim_note
    else:
        assert abs(sum(result.kl_per_dim) - result.kl) < 0.1 + 0.05 * abs(result.kl)


def test_bits_per_dim_for_8bit_likelihoods_only(binary_batch):
    class EightBit(BernoulliLikelihood):
        scale = "8-bit"

    vae = build_vae(Config(latent_dim=2, hidden=[16]), (1, 28, 28))
    assert evaluate_vae(vae, binary_batch[:5], k=5).bits_per_dim is None
    vae.likelihood = EightBit((1, 28, 28))
    result = evaluate_vae(vae, binary_batch[:5], k=5)
    assert result.bits_per_dim == pytest.approx(-result.log_px / (784 * math.log(2)))
    assert result.elbo_bits_per_dim == pytest.approx(-result.elbo / (784 * math.log(2)))


def test_evaluation_has_its_own_seeded_random_stream(model):
    x = model.data(20)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = evaluate_vae(model.vae, x, k=50, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert evaluate_vae(model.vae, x, k=50, seed=4).log_px == first.log_px
    assert evaluate_vae(model.vae, x, k=50, seed=5).log_px != first.log_px


@pytest.fixture(scope="module")
def trained_run(tiny_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    cfg = Config(dataset=str(tiny_npz), epochs=1, batch_size=50, hidden=[32], latent_dim=2,
                 out=str(out), eval_k=30)  # fmt: skip
    train(cfg, progress=False, log=lambda _: None)
    return out


def run_cli(*args):
    command = [sys.executable, "-m", "pyro_vae", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_evaluate_cli_writes_eval_json_and_prints_a_table(trained_run):
    done = run_cli("evaluate", trained_run, "--k", "20")
    assert done.returncode == 0, done.stderr
    assert "log p(x)" in done.stdout and "active units" in done.stdout
    values = json.loads((trained_run / "eval.json").read_text())
    assert values["k"] == 20 and values["num_datapoints"] == 100 and values["split"] == "test"
    assert values["log_px"] >= values["elbo"] and values["units"] == "nats"
    assert values["scale"] == "binary" and values["bits_per_dim"] is None


def test_evaluate_defaults_to_the_runs_eval_k_and_takes_another_dataset(trained_run, tmp_path):
    result = evaluate(trained_run, data="mnist5k", out=tmp_path / "other.json")
    assert result.k == 30 and result.num_datapoints == 500
    assert json.loads((tmp_path / "other.json").read_text())["dataset"] == "mnist5k"


def test_scoring_other_data_or_the_training_split_never_replaces_the_runs_own_score(
    trained_run,
):
    evaluate(trained_run, k=3)
    own = (trained_run / "eval.json").read_bytes()
    evaluate(trained_run, data="mnist5k", k=3)
    evaluate(trained_run, split="train", k=3)
    assert (trained_run / "eval.json").read_bytes() == own
    assert json.loads((trained_run / "eval-mnist5k.json").read_text())["dataset"] == "mnist5k"
    train_scores = next(trained_run.glob("eval-*-train.json"))
    assert json.loads(train_scores.read_text())["split"] == "train"


def test_non_finite_scores_are_warned_about_and_named_in_eval_json(
    trained_run, tmp_path, monkeypatch
):
    module = sys.modules[evaluate.__module__]
    fine = evaluate(trained_run, k=5, out=tmp_path / "fine.json", log=pytest.fail)
    values = json.loads((tmp_path / "fine.json").read_text())
    assert values["not_finite"] == [] and values["warning"] == ""
    assert values["log_px"] == fine.log_px

    def poisoned(*args, **kwargs):  # scores as a diverged model's or unscorable data's
        result = evaluate_vae(*args, **kwargs)
        result.log_px, result.elbo = float("nan"), float("-inf")
        return result

    monkeypatch.setattr(module, "evaluate_vae", poisoned)
    messages = []
    evaluate(trained_run, k=5, out=tmp_path / "eval.json", log=messages.append)
    (warning,) = messages
    assert warning.startswith("warning: log_px nan, elbo -inf are not finite: ")
    assert "diverged" in warning and "float32" in warning and "\n" not in warning
    text = (tmp_path / "eval.json").read_text()
    values = json.loads(text)  # NaN and -Infinity, as json.dumps writes them
    assert math.isnan(values["log_px"]) and values["elbo"] == -math.inf
    assert values["not_finite"] == ["log_px", "elbo"]
    assert values["warning"] == warning.removeprefix("warning: ")
    with pytest.warns(RuntimeWarning, match="log_px nan, elbo -inf are not finite"):
        evaluate(trained_run, k=5, out=tmp_path / "again.json")


def _never(*args, **kwargs):
    pytest.fail("the data were read or scored before the output path was checked")


@pytest.fixture
def copied_run(trained_run, tmp_path, monkeypatch):
    """A copy of the trained run, and an evaluate that fails if it reads or scores data."""
    module = sys.modules[evaluate.__module__]
    monkeypatch.setattr(module, "load_dataset", _never)
    monkeypatch.setattr(module, "evaluate_vae", _never)
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def test_an_unwritable_output_is_refused_before_any_scoring(copied_run, tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"--out .*eval.json: folder .*a-file is a file, not a"):
        evaluate(copied_run, out=tmp_path / "a-file" / "eval.json")
    default = copied_run / "eval-mnist5k.json"  # where the scores of mnist5k go by default
    default.unlink(missing_ok=True)
    default.mkdir()
    with pytest.raises(
        ConfigError, match=r"by default in RUN_DIR\) .*eval-mnist5k.json is a folder"
    ):
        evaluate(copied_run, data="mnist5k")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_run_folder_is_refused_before_any_scoring(copied_run):
    copied_run.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=f"folder {copied_run} is not writable"):
            evaluate(copied_run)
    finally:
        copied_run.chmod(0o755)


@pytest.mark.skipif(
    os.access("/proc/self", os.W_OK), reason="no folder here that even root may not write to"
)
def test_a_folder_not_even_root_may_write_to_is_refused_before_any_scoring(copied_run):
    with pytest.raises(ConfigError, match="folder /proc/self is not writable; choose another"):
        evaluate(copied_run, out="/proc/self/eval.json")


def test_the_cli_names_the_file_evaluate_wrote(trained_run, tmp_path, capsys):
    """Named from the checkpoint's config, even where config.toml was edited to differ."""
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    edited = Config.from_file(run / "config.toml").replace(dataset="mnist5k")
    (run / "config.toml").write_text(edited.to_toml())
    assert main(["evaluate", str(run), "--dataset", "mnist5k", "--k", "2", "--no-progress"]) == 0
    written = Path(capsys.readouterr().out.split("written to ")[1].strip())
    assert written == run / "eval-mnist5k.json"
    assert json.loads(written.read_text())["k"] == 2


@pytest.mark.integration
def test_evaluating_data_of_another_shape_is_a_clear_error(trained_run, tmp_path):
    path = tmp_path / "small.npz"
    np.savez(path, x=np.zeros((20, 14, 14), dtype=np.uint8))
    with pytest.raises(DataError, match=r"shape \(1, 14, 14\) but the run .* \(1, 28, 28\)"):
        evaluate(trained_run, data=str(path), k=5)
    done = run_cli("evaluate", trained_run, "--data", path, "--k", "5")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "models shape (1, 28, 28)" in done.stderr


@pytest.mark.parametrize("labels", [False, True])
def test_progress_counts_every_datapoint_once(labels):
    from pyro_vae.convention import ModelCall

    vae = build_vae(Config(latent_dim=2, hidden=[8]), (1, 28, 28))
    x = torch.bernoulli(torch.full((23, 1, 28, 28), 0.5))
    model = vae
    if labels:  # a model outside the fast path: scored through Pyro's traces

        class Traced(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.vae = vae

            def model(self, x, y):
                return self.vae.model(x)

            def guide(self, x, y):
                return self.vae.guide(x)

        model = Traced()
        assert ModelCall(model).convention.takes_labels
    done = []
    evaluate_vae(model, x, k=7, max_samples=40, y=torch.zeros(23).long(), progress=done.append)
    assert sum(done) == 23 and len(done) > 1


def test_the_table_says_a_density_may_be_positive():
    vae = build_vae(Config(latent_dim=2, hidden=[8], likelihood="gaussian"), (1, 28, 28))
    table = evaluate_vae(vae, torch.rand(4, 1, 28, 28), k=3).table()
    assert "log-densities: may be positive" in table
    rows = dict(line.split(None, 1) for line in table.splitlines() if line.startswith("  KL"))
    assert rows["KL"].endswith(" nats")  # a KL is a difference of log-densities, not one
    assert "nats (density)" in next(line for line in table.splitlines() if line.startswith("log p"))


# -- the run's own data, checked against its record ----------------------------------------------

GAUSSIAN = dict(likelihood="gaussian", epochs=1, batch_size=50, hidden=[16], latent_dim=2,
                eval_k=5, device="cpu", threads=1)  # fmt: skip


@pytest.fixture
def gaussian_run(tmp_path):
    """A run trained on a file of 200x20 real values without x_test (its test split is
    carved from x), and the file."""
    path = tmp_path / "ovf.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(200, 20)).astype(np.float32))
    out = tmp_path / "run"
    train(Config(dataset=str(path), out=str(out), **GAUSSIAN), progress=False, log=print)
    return out, path


def test_the_runs_own_data_file_changed_since_training_is_refused(gaussian_run, capsys):
    """Shuffled rows moved training rows into the carved test split and raised log p(x),
    silently; now refused naming the file, the change and both fixes."""
    run, path = gaussian_run
    x = np.load(path)["x"]
    np.savez(path, x=x[np.random.default_rng(1).permutation(len(x))])
    with pytest.raises(DataError) as refused:
        evaluate(run, k=2)
    message = str(refused.value)
    assert message.startswith(f"{path}: not the data {run} was trained on (same shapes, other")
    assert "restore the data it was trained on" in message.lower()
    assert f"--data {path} (scores written to eval-ovf.json)" in message
    assert main(["evaluate", str(run), "--k", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not list(run.glob("eval*.json"))  # nothing written
    other = evaluate(run, data=str(path), k=2)  # deliberately, as other data: scored whole
    assert other.path == run / "eval-ovf.json" and other.num_datapoints == 200
    assert not (run / "eval.json").exists()


def test_a_run_recorded_without_a_fingerprint_is_evaluated_with_a_note(gaussian_run):
    run, path = gaussian_run
    info = json.loads((run / "run.json").read_text())
    del info["data_fingerprint"]  # as an older pyro-vae wrote it
    (run / "run.json").write_text(json.dumps(info))
    said = []
    assert evaluate(run, k=2, log=said.append).path == run / "eval.json"
    assert any("holds no fingerprint of the training data" in line for line in said)


def test_a_whole_file_of_one_datapoint_is_scored_with_no_spread_over_datapoints(
    gaussian_run, capsys
):
    """One datapoint was refused (no test set to split off), though a file given to --data
    is scored whole; its standard error over datapoints is undefined, not 0."""
    run, path = gaussian_run
    one = path.with_name("one.npz")
    np.savez(one, x=np.load(path)["x"][:1])
    assert main(["evaluate", str(run), "--data", str(one), "--k", "3", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "(+/- n/a over datapoints, +/- " in table and "(+/- n/a)" in table
    values = json.loads((run / "eval-one.json").read_text())
    assert values["num_datapoints"] == 1 and values["split"] == "whole file"
    assert values["log_px_se"] is None and values["elbo_se"] is None
    assert values["not_finite"] == [] and math.isfinite(values["log_px_mc_se"])


def test_standard_errors_over_datapoints_need_two_of_them(model):
    one, two = (evaluate_vae(model.vae, model.data(n), k=5) for n in (1, 2))
    assert one.log_px_se is None and one.elbo_se is None
    assert two.log_px_se > 0 and two.elbo_se > 0


def test_scores_of_a_run_being_trained_say_which_checkpoint_they_are_of(trained_run, tmp_path):
    """Found by a probe: evaluate during a resume scored a mid-epoch checkpoint silently."""

    run = shutil.copytree(trained_run, tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pyro_vae.app.run_folder import RunFolder; "
         "RunFolder(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        said: list[str] = []
        evaluate(run, k=2, log=said.append)
        assert any(f"is being trained (pid {holder.pid})" in line for line in said)
    finally:
        holder.kill()
        holder.wait()
    said.clear()
    evaluate(run, k=2, log=said.append)
    assert not any("being trained" in line for line in said)


class _Mixture(torch.nn.Module):
    """x ~ N(mu_c, 1) with a discrete c ~ Cat(K), its guide q(c|x) enumerable, as a Pyro
    modeller writes it (config_enumerate on the guide): log p(x) has a closed form."""

    def __init__(self):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.tensor([-2.0, 0.0, 3.0]))
        self.logits = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))

    def model(self, x, num_data=None):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Categorical(logits=torch.zeros(len(x), 3)))
            pyro.sample("x", dist.Normal(self.mu[c], 1.0), obs=x)

    @config_enumerate
    def guide(self, x, num_data=None):
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Categorical(logits=self.logits.expand(len(x), 3)))

    def exact_log_px(self, x):
        log_joint = dist.Normal(self.mu, 1.0).log_prob(x[:, None]) - math.log(3)
        return torch.logsumexp(log_joint, -1)


class _PlainMixture(_Mixture):
    def guide(self, x, num_data=None):
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Categorical(logits=self.logits.expand(len(x), 3)))


@pytest.mark.parametrize("mixture", [_Mixture, _PlainMixture])
def test_a_discrete_latent_is_scored_against_its_exact_log_px(mixture):
    """The guide's config_enumerate hid its num_data from the convention ('only one of them
    takes num_data'), and importance sampling refused the discrete site as if it needed a
    reparameterized gradient."""
    from pyro_vae.convention import convention_of

    mixture = mixture()
    assert convention_of(mixture).takes_num_data
    x = torch.tensor([-2.5, 0.4, 2.0, 5.0])
    scores = evaluate_vae(mixture, x, k=4000, seed=0)
    exact = float(mixture.exact_log_px(x).mean().detach())
    assert abs(scores.log_px - exact) < 4 * scores.log_px_mc_se + 1e-3
    assert scores.elbo < scores.log_px


def test_evaluate_vae_takes_numpy_data_and_names_bad_arguments_whole():
    """numpy arrays failed with TypeError from isnan(); a wrong shape was named by the shape
    of one evaluation chunk, (1, 6) for data of shape (3, 6); k=2.5 by a TypeError."""
    from pyro_vae import mlp_vae
    from pyro_vae.errors import ModelError

    vae = mlp_vae((5,), 2, [4])
    x = torch.bernoulli(torch.full((3, 5), 0.4))
    expected = evaluate_vae(vae, x, k=2, seed=0).log_px
    assert evaluate_vae(vae, x.numpy(), k=2, seed=0).log_px == expected
    assert evaluate_vae(vae, x.tolist(), k=2, seed=0).log_px == expected
    with pytest.raises(ModelError, match=r"a batch of shape \(3, 6\) does not fit"):
        evaluate_vae(vae, torch.zeros(3, 6), k=2)
    with pytest.raises(ConfigError, match=r"k must be an int >= 1, got 2\.5"):
        evaluate_vae(vae, x, k=2.5)


# one observed value outside each support: a boundary a Beta scores as NaN, grey levels, ...
OUTSIDE = {"binary": 0.5, "unit": 1.5, "open-unit": 0.0, "levels": 0.5, "counts": 2.5,
           "real": math.inf}  # fmt: skip


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_data_outside_the_likelihoods_support_are_refused_in_one_line(name):
    """evaluate_vae and elbo_per_datapoint name the data and the support, rather than fail
    deep in torch's validation or return NaN, whatever the likelihood."""
    likelihood = build_likelihood(Config(likelihood=name), (1, 2, 3))
    vae = mlp_vae((1, 2, 3), 2, [4], likelihood=likelihood)
    x = torch.ones(2, 1, 2, 3) * (0.5 if likelihood.support in ("unit", "open-unit") else 1.0)
    x[1, 0, 1, 2] = OUTSIDE[likelihood.support]
    assert math.isfinite(evaluate_vae(vae, x[:1], k=2).log_px)
    for score in (lambda: evaluate_vae(vae, x, k=2), lambda: elbo_per_datapoint(vae, x)):
        with pytest.raises(DataError) as error:
            score()
        assert "\n" not in str(error.value)
        if likelihood.support == "real":
            assert str(error.value).startswith("x holds infinite values")
        else:
            assert f"likelihood '{type(likelihood).__name__}' needs" in str(error.value)


def test_app_functions_refuse_arguments_of_the_wrong_kind_before_any_work(
    trained_run, tiny_npz, tmp_path
):
    """k=0 used to mean "the run's eval_k" (a falsy default), so evaluate(k=0) scored with
    K=30 unasked; a dict config, an int of seeds or a str seed failed deep (AttributeError,
    TypeError, torch's manual_seed). Each is now one ConfigError naming the argument."""
    import pyro_vae

    out = tmp_path / "e.json"
    calls = {
        "k must be an int >= 1": lambda: evaluate(trained_run, k=0, out=out),
        "seed must be an int": lambda: evaluate(trained_run, k=2, seed="1", out=out),
        "train\\(\\): the config must be a pyro_vae.Config": lambda: train({"epochs": 1}),
        "compare: the config must be a pyro_vae.Config": lambda: pyro_vae.compare(
            {"epochs": 1}, {"latent_dim": [2]}, [0], tmp_path / "c1"
        ),
        "compare: seeds must be a list of ints": lambda: pyro_vae.compare(
            Config(dataset=str(tiny_npz)), {"latent_dim": [2]}, 0, tmp_path / "c2"
        ),
        "compare: k must be an int >= 1": lambda: pyro_vae.compare(
            Config(dataset=str(tiny_npz)), {"latent_dim": [2]}, [0], tmp_path / "c3", k=0
        ),
    }
    for named, call in calls.items():
        with pytest.raises(ConfigError, match=named):
            call()
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
