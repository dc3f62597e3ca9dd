import pytest
import torch
from PIL import Image

import pyro_vae
from pyro_vae import Config
from pyro_vae.app.run_folder import RunFolder
from pyro_vae.app.train import train
from pyro_vae.errors import DataError, RunFolderError


def tiny_config(tiny_npz, out, **changes):
    values = dict(
        dataset=str(tiny_npz), epochs=2, batch_size=50, hidden=[32], latent_dim=2, out=str(out)
    )
    return Config(**{**values, **changes})


def _without_time(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_run_folder_holds_every_file_and_valid_images(tiny_npz, tmp_path):
    result = train(tiny_config(tiny_npz, tmp_path / "run"), progress=False, log=lambda _: None)
    run = RunFolder(result.run_dir)
    for path in (run.config_path, run.metrics_path, run.checkpoint_path, run.info_path):
        assert path.is_file() and path.stat().st_size > 0
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) == {"epoch", "train_elbo", "test_elbo", "seconds"}
    names = {p.name for p in run.plots.iterdir()}
    assert names == {
        "losses.png",
        "reconstructions.png",
        "samples.png",
        "latent.png",
        "manifold.png",
    }
    for png in run.plots.iterdir():
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 50


def test_same_seed_same_metrics_and_config_file_reproduces_the_run(tiny_npz, tmp_path):
    first = train(tiny_config(tiny_npz, tmp_path / "a"), progress=False, log=lambda _: None)
    rerun_cfg = Config.from_file(first.run_dir / "config.toml").replace(out=str(tmp_path / "b"))
    second = train(rerun_cfg, progress=False, log=lambda _: None)
    assert _without_time(first.history) == _without_time(second.history)
    other_seed = train(
        tiny_config(tiny_npz, tmp_path / "c", seed=1), progress=False, log=lambda _: None
    )
    assert _without_time(other_seed.history) != _without_time(first.history)


def test_fallback_dataset_is_recorded_in_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path / "no-data"))
    messages = []
    result = train(
        Config(dataset="mnist", epochs=1, hidden=[16], latent_dim=2, out=str(tmp_path / "run")),
        progress=False,
        log=messages.append,
    )
    assert any("training on mnist5k" in m for m in messages)
    run = RunFolder(result.run_dir)
    assert run.read_config().dataset == "mnist5k"
    info = run.read_info()
    assert info["dataset_requested"] == "mnist" and info["dataset_used"] == "mnist5k"


def test_existing_run_is_not_overwritten_without_permission(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz, tmp_path / "run", epochs=1)
    train(cfg, progress=False, log=lambda _: None)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run.*--overwrite"):
        train(cfg, progress=False, log=lambda _: None)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    train(cfg.replace(seed=5), overwrite=True, progress=False, log=lambda _: None)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() != before


def test_unwritable_output_fails_before_loading_data(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = Config(dataset="no-such-file.npz", out=str(blocker / "run"))
    with pytest.raises(RunFolderError, match="cannot write to run folder"):
        train(cfg, progress=False, log=lambda _: None)


class FailingGuide(torch.nn.Module):
    """Wraps a VAE; its guide raises on the chosen training call (a fault inside fit)."""

    support = "binary"  # what a model without a likelihood part declares of its data

    def __init__(self, vae, fail_at, error: BaseException | None = None):
        super().__init__()
        self.vae, self.fail_at, self.calls = vae, fail_at, 0
        self.error = error or RuntimeError("a user's guide failed")

    def model(self, x, num_data=None):
        return self.vae.model(x, num_data)

    def guide(self, x, num_data=None):
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error
        return self.vae.guide(x, num_data)


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_failed_overwrite_leaves_the_old_run_as_it_was(tiny_npz, tmp_path):
    train(tiny_config(tiny_npz, tmp_path / "run", epochs=1), progress=False, log=lambda _: None)
    before = _files(tmp_path / "run")
    bad_path = tiny_config(tiny_npz, tmp_path / "run", dataset=str(tmp_path / "typo.npz"))
    with pytest.raises(DataError):
        train(bad_path, overwrite=True, progress=False, log=lambda _: None)
    assert _files(tmp_path / "run") == before
    failing = FailingGuide(pyro_vae.mlp_vae((1, 28, 28), 2, [32]), fail_at=2)
    with pytest.raises(RuntimeError, match="a user's guide failed"):
        train(tiny_config(tiny_npz, tmp_path / "run"), model=failing, overwrite=True,
              progress=False, log=lambda _: None)  # fmt: skip
    assert _files(tmp_path / "run") == before


def test_a_run_stopped_before_its_first_checkpoint_resumes_afresh(tiny_npz, tmp_path):
    """Stopped (Ctrl-C) in its first epoch, a run stays and resumes afresh; one that failed
    there with an error is removed, so that the same command can run again."""
    vae = pyro_vae.mlp_vae((1, 28, 28), 2, [32])
    cfg = tiny_config(tiny_npz, tmp_path / "run", epochs=1)
    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError):
        train(cfg.replace(out=str(failed)), model=FailingGuide(vae, fail_at=2), progress=False,
              log=lambda _: None)  # fmt: skip
    assert not failed.exists()
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        interrupted = FailingGuide(vae, fail_at=2, error=KeyboardInterrupt())
        train(cfg.replace(out=str(stopped)), model=interrupted, progress=False, log=lambda _: None)
    assert (stopped / "config.toml").is_file() and not (stopped / "checkpoint.pt").exists()
    said = []
    result = train(resume=stopped, progress=False, log=said.append)
    assert any("starting it afresh" in line for line in said)
    assert [row["epoch"] for row in result.history] == [1]
    assert (stopped / "checkpoint.pt").is_file()


def _correlated_table(path, rows=150, seed=0):
    """Four features driven by one factor, offset and scaled apart: a model with a latent
    beats independent per-feature Gaussians by nats."""
    import numpy as np

    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(rows, 1))
    x = factor * np.array([1.0, 2.0, -0.5, 1.0]) + 0.1 * rng.normal(size=(rows, 4))
    np.savez(path, x=x + np.array([5.0, -3.0, 1.0, 0.0]))
    return path


def test_a_small_table_trains_with_the_default_batch_and_beats_the_per_feature_baseline(tmp_path):
    """Found by a CLI probe: the default batch of 128 refused a 100-row table and gave a
    150-row one a single step per epoch, so 30 default epochs left iris below what
    independent per-feature Gaussians score. batch_size 0 (the default) is now a tenth of
    the training rows below 1,280, recorded in config.toml, and an explicit size is kept."""
    table = _correlated_table(tmp_path / "table.npz")
    said = []
    cfg = Config(dataset=str(table), likelihood="gaussian", likelihood_scale="per-pixel")
    cfg = cfg.replace(out=str(tmp_path / "run"))
    result = train(cfg, progress=False, log=said.append)
    assert result.config.batch_size == 13  # a tenth of the 135 training rows
    assert RunFolder(result.run_dir).read_config().batch_size == 13
    assert any("batch size 13, a tenth of the 135 training datapoints" in line for line in said)
    scores = pyro_vae.evaluate(result.run_dir, k=200)
    assert scores.log_px > scores.baseline_log_px + 1.0
    with pytest.raises(pyro_vae.ConfigError, match="larger than the 135 training datapoints"):
        train(cfg.replace(batch_size=200, out=str(tmp_path / "big")), progress=False)
