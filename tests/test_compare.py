import csv
import json

import pyro.distributions as dist
import pytest

import pyro_vae.app.train
from pyro_vae import Config
from pyro_vae.app.compare import cell_folder, compare
from pyro_vae.app.comparison_report import ranking_refusal
from pyro_vae.app.registry import LIKELIHOODS, LikelihoodSpec
from pyro_vae.app.run_folder import RunFolder
from pyro_vae.errors import ConfigError
from pyro_vae.likelihoods import Likelihood


def base_config(tiny_npz, **changes):
    values = dict(dataset=str(tiny_npz), epochs=1, batch_size=50, hidden=[16], latent_dim=2,
                  eval_k=5, device="cpu")  # fmt: skip
    return Config(**{**values, **changes})


@pytest.fixture
def count_training(monkeypatch):
    calls = []
    real = pyro_vae.app.train.train

    def counting(*args, **kwargs):
        calls.append(kwargs.get("resume") or args[0].seed)
        return real(*args, **kwargs)

    monkeypatch.setattr(pyro_vae.app.train, "train", counting)
    return calls


def read_rows(out):
    with (out / "comparison.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_compare_writes_its_files_and_resumes_without_rerunning(tiny_npz, tmp_path, count_training):
    out = tmp_path / "cmp"
    base = base_config(tiny_npz)
    first = compare(base, "objective", ["elbo", "iwae:k=2"], [0], out, log=lambda _: None)
    assert len(count_training) == 2 and len(read_rows(out)) == 2
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "| rank | objective |" in first.markdown and "± 0.00" in first.markdown
    done = cell_folder(out, "iwae:k=2", 0)
    stamps = {name: (done / name).stat().st_mtime_ns for name in ("checkpoint.pt", "eval.json")}

    info = RunFolder(cell_folder(out, "elbo", 0)).read_info()  # simulate an interrupted run
    RunFolder(cell_folder(out, "elbo", 0)).write_info({**info, "finished": False})
    count_training.clear()
    second = compare(base, "objective", ["elbo", "iwae:k=2"], [0, 1], out, log=lambda _: None)
    assert count_training == [cell_folder(out, "elbo", 0), 1, 1]  # resumed, then seed 1 twice
    assert {name: (done / name).stat().st_mtime_ns for name in stamps} == stamps
    rows = read_rows(out)
    assert [(r["objective"], r["seed"]) for r in rows] == [
        ("elbo", "0"), ("elbo", "1"), ("iwae:k=2", "0"), ("iwae:k=2", "1")
    ]  # fmt: skip
    assert {r["k"] for r in rows} == {"5"} and all(float(r["log_px"]) < 0 for r in rows)
    summary = {e["objective"]: e for e in second.report.summary}
    values = [float(r["log_px"]) for r in rows if r["objective"] == "elbo"]
    assert summary["elbo"]["log_px"][0] == pytest.approx(sum(values) / 2)
    assert sorted(second.report.ranking) == ["elbo", "iwae:k=2"]


def test_a_changed_setting_is_not_mixed_into_an_existing_comparison(tiny_npz, tmp_path):
    out = tmp_path / "cmp"
    compare(base_config(tiny_npz), "objective", ["elbo"], [0], out, log=lambda _: None)
    with pytest.raises(ConfigError, match=r"other settings \(latent_dim: 2 there, 3 now\)"):
        compare(base_config(tiny_npz, latent_dim=3), "objective", ["elbo"], [0], out)


def test_evaluation_with_another_k_is_redone_but_training_is_not(
    tiny_npz, tmp_path, count_training
):
    out = tmp_path / "cmp"
    compare(base_config(tiny_npz), "prior", ["standard-normal"], [0], out, log=lambda _: None)
    count_training.clear()
    compare(base_config(tiny_npz), "prior", ["standard-normal"], [0], out, k=7, log=print)
    assert count_training == []
    values = json.loads((cell_folder(out, "standard-normal", 0) / "eval.json").read_text())
    assert values["k"] == 7


class ContinuousBernoulli(Likelihood):
    """A likelihood on another scale (a density), registered only for this test."""

    support = "unit"
    scale = "continuous"
    units = "nats (density)"

    def forward(self, params):
        (logits,) = self.split(params)
        return self.event(dist.ContinuousBernoulli(logits=logits))


def test_likelihoods_on_different_scales_are_not_ranked(tiny_npz, tmp_path, monkeypatch):
    spec = LikelihoodSpec(lambda cfg, shape: ContinuousBernoulli(shape), "test density")
    monkeypatch.setitem(LIKELIHOODS, "test-density", spec)
    out = tmp_path / "cmp"
    result = compare(
        base_config(tiny_npz), "likelihood", ["bernoulli", "test-density"], [0], out,
        log=lambda _: None,
    )  # fmt: skip
    assert result.report.ranking == []
    assert "Not ranked: the numbers live on different scales" in result.markdown
    assert "bernoulli: binary" in result.markdown and "test-density: continuous" in result.markdown
    assert "| rank |" not in result.markdown
    assert {r["scale"] for r in read_rows(out)} == {"binary", "continuous"}


def test_ranking_refusal_names_each_scale():
    same = [{"prior": "a", "scale": "binary"}, {"prior": "b", "scale": "binary"}]
    assert ranking_refusal(same, "prior") == ""
    mixed = [{"likelihood": "a", "scale": "binary"}, {"likelihood": "c", "scale": "8-bit"}]
    reason = ranking_refusal(mixed, "likelihood")
    assert "a: binary" in reason and "c: 8-bit" in reason and "bits per dimension" in reason


@pytest.mark.parametrize(
    "axis, values, seeds, message",
    [
        ("network", ["mlp"], [0], "unknown axis 'network'"),
        ("objective", ["elbo", "elbo"], [0], "must be non-empty and distinct"),
        ("objective", ["elbo"], [], "seeds must be non-empty"),
        ("prior", ["mog-that-does-not-exist"], [0], "prior: unknown name"),
    ],
)
def test_bad_grids_are_refused_before_training(tiny_npz, tmp_path, axis, values, seeds, message):
    with pytest.raises(ConfigError, match=message):
        compare(base_config(tiny_npz), axis, values, seeds, tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()
