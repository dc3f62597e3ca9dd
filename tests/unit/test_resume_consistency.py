"""``train --resume`` continues only what belongs to the run: it refuses another config, other
data, a lost checkpoint, fewer epochs than are done, or another model, before it writes
anything (every file of the run folder is left byte for byte as it was)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pyro.infer import (
    JitTrace_ELBO,
    JitTraceMeanField_ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceGraph_ELBO,
)

from pyro_vae import Config, build_vae
from pyro_vae.app.checkpoint import load_checkpoint, save_checkpoint
from pyro_vae.app.cli import main
from pyro_vae.app.evaluate import evaluate
from pyro_vae.app.resume import RESUMABLE, check_epochs, data_fingerprint
from pyro_vae.app.run_folder import RunFolder
from pyro_vae.app.train import train
from pyro_vae.app.trainer import Trainer
from pyro_vae.datasets import Dataset
from pyro_vae.errors import CheckpointError, ConfigError, DataError, ModelError

QUIET = dict(progress=False, log=lambda _: None)


def tiny(data, out, **changes) -> Config:
    return Config(dataset=str(data), epochs=1, batch_size=100, hidden=[16], latent_dim=2,
                  device="cpu", out=str(out)).replace(**changes)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_npz, tmp_path_factory):
    """A finished one-epoch run; tests resume copies of it."""
    return train(tiny(tiny_npz, tmp_path_factory.mktemp("resume") / "run"), **QUIET).run_dir


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def files(folder):
    """Every file under ``folder`` with its bytes: what a refused resume must leave alone."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def edit_config(run, old, new):
    path = run / "config.toml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize(
    "old, new, named",
    [
        ("lr = 0.001", "lr = 0.01", "lr = 0.01 in config.toml but 0.001 in checkpoint.pt"),
        (
            "hidden = [16]",
            "hidden = [32]",
            "hidden = [32] in config.toml but [16] in checkpoint.pt",
        ),
        ("seed = 0", "seed = 3", "seed = 3 in config.toml but 0 in checkpoint.pt"),
    ],
)
def test_a_hand_edited_setting_is_refused_naming_both_values(run, capsys, old, new, named):
    edit_config(run, old, new)
    before = files(run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("pyro-vae: error: ") and error.count("\n") == 1
    assert named in error and "restore config.toml" in error and "--out NEW_DIR" in error
    assert files(run) == before


def test_every_differing_setting_is_named(run):
    edit_config(run, "lr = 0.001", "lr = 0.002")
    edit_config(run, "batch_size = 100", "batch_size = 50")
    with pytest.raises(ConfigError) as refused:
        train(resume=run, epochs=2, **QUIET)
    assert "batch_size = 50 in config.toml but 100" in str(refused.value)
    assert "lr = 0.002 in config.toml but 0.001" in str(refused.value)


def test_a_checkpoint_copied_from_another_run_is_refused(tiny_npz, run, tmp_path):
    other = train(tiny(tiny_npz, tmp_path / "other", seed=7), **QUIET).run_dir
    shutil.copy(other / "checkpoint.pt", run / "checkpoint.pt")
    before = files(run)
    with pytest.raises(ConfigError, match="seed = 0 in config.toml but 7 in checkpoint.pt"):
        train(resume=run, epochs=2, **QUIET)
    assert files(run) == before


def test_settings_of_where_and_how_fast_may_change(run, tmp_path):
    """A moved folder (out), threads, checkpoint_every, eval_k: the run continues."""
    edit_config(run, "checkpoint_every = 0", "checkpoint_every = 2")
    edit_config(run, "eval_k = 1000", "eval_k = 10")
    result = train(resume=run, epochs=2, **QUIET)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert Config.from_file(run / "config.toml").eval_k == 10


def test_a_config_passed_with_resume_is_refused(run):
    with pytest.raises(ConfigError, match="its own config.toml; pass epochs=N"):
        train(Config(epochs=2), resume=run, **QUIET)


# -- data -----------------------------------------------------------------------------------------


@pytest.fixture
def own_data(tiny_npz, tmp_path):
    """A run trained from a data file of its own (the test may change it), and the file."""
    path = tmp_path / "data.npz"
    shutil.copy(tiny_npz, path)
    return train(tiny(path, tmp_path / "own"), **QUIET).run_dir, path


def rewrite(path, change):
    arrays = dict(np.load(path))
    change(arrays)
    np.savez(path, **arrays)


def drop_rows(arrays):
    arrays["x"], arrays["y"] = arrays["x"][:-20], arrays["y"][:-20]


def flip_a_pixel(arrays):
    arrays["x"][0, 10, 10] = 255 - arrays["x"][0, 10, 10]


@pytest.mark.parametrize(
    "change, named",
    [
        (drop_rows, "the training split is 280x1x28x28, was 300x1x28x28"),
        (flip_a_pixel, "same shapes, other values"),
    ],
)
def test_changed_data_are_refused_naming_the_file_and_the_change(own_data, change, named):
    out, path = own_data
    rewrite(path, change)
    before = files(out)
    with pytest.raises(DataError) as refused:
        train(resume=out, epochs=2, **QUIET)
    message = str(refused.value)
    assert message.startswith(f"{path}: not the data {out} was trained on") and named in message
    assert "restore the data" in message
    assert files(out) == before


def test_the_same_data_saved_again_resume(own_data):
    """The fingerprint is of the arrays, not the file's bytes: a compressed copy is the same."""
    out, path = own_data
    arrays = dict(np.load(path))
    np.savez_compressed(path, **arrays)
    assert len(train(resume=out, epochs=2, **QUIET).history) == 2


def without_record(run):
    """The run as an older pyro-vae wrote it: no record in its checkpoint."""
    state = load_checkpoint(run / "checkpoint.pt")
    del state["record"]
    save_checkpoint(run / "checkpoint.pt", state)


def test_a_run_recorded_without_a_fingerprint_resumes_with_a_note(run):
    info = json.loads((run / "run.json").read_text())
    del info["data_fingerprint"]  # as an older pyro-vae wrote it
    (run / "run.json").write_text(json.dumps(info))
    without_record(run)
    said = []
    train(resume=run, epochs=2, progress=False, log=said.append)
    assert any("holds a fingerprint of the training data" in line for line in said)
    assert "sha256" in RunFolder(run).read_info()["data_fingerprint"]
    assert "sha256" in load_checkpoint(run / "checkpoint.pt")["record"]["data_fingerprint"]


@pytest.mark.parametrize("damage", [b"", b'{"pyro_vae_version": "0.1.0", "data_f', None])
def test_other_data_are_refused_when_run_json_is_damaged_or_gone(own_data, damage):
    """Found by a hostile probe: a truncated or deleted run.json made a resume take other data
    with a note that an older pyro-vae had written the run; the checkpoint keeps the record."""
    out, path = own_data
    info = out / "run.json"
    info.unlink() if damage is None else info.write_bytes(damage)
    rewrite(path, flip_a_pixel)
    before = files(out)
    with pytest.raises(DataError, match="same shapes, other values"):
        train(resume=out, epochs=2, **QUIET)
    assert files(out) == before
    rewrite(path, flip_a_pixel)  # the data it was trained on again: it resumes
    assert len(train(resume=out, epochs=2, **QUIET).history) == 2
    assert RunFolder(out).read_info()["data_fingerprint"]["sha256"]


def test_the_fingerprint_tells_values_labels_and_dtypes_apart():
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    base = data_fingerprint(Dataset.from_tensors(x, x[:2], y, y[:2]))
    assert base == data_fingerprint(Dataset.from_tensors(x.clone(), x[:2], y, y[:2]))
    others = [
        Dataset.from_tensors(x + 1e-6, x[:2], y, y[:2]),
        Dataset.from_tensors(x, x[:2], y + 1, y[:2]),
        Dataset.from_tensors(x.to(torch.uint8), x[:2].to(torch.uint8), y, y[:2]),
        Dataset.from_tensors(x, x[:2]),
    ]
    assert len({base["sha256"], *(data_fingerprint(d)["sha256"] for d in others)}) == 5


# -- the record: checkpoint and epochs ------------------------------------------------------------


def test_a_finished_run_whose_checkpoint_is_gone_is_not_restarted(run):
    (run / "checkpoint.pt").unlink()
    before = files(run)
    with pytest.raises(CheckpointError) as refused:
        train(resume=run, **QUIET)
    message = str(refused.value)
    assert "checkpoint.pt is missing" in message and "1 epoch(s) done" in message
    assert "restore checkpoint.pt" in message and "--overwrite" in message
    assert files(run) == before


def test_fewer_epochs_than_done_are_refused(tiny_npz, tmp_path):
    out = train(tiny(tiny_npz, tmp_path / "two", epochs=2), **QUIET).run_dir
    before = files(out)
    with pytest.raises(ConfigError, match="has done 2 epochs, more than the 1 asked for .*M > 2"):
        train(resume=out, epochs=1, **QUIET)
    assert files(out) == before


def test_a_checkpoint_part_way_through_an_epoch_counts_it(tmp_path):
    with pytest.raises(ConfigError, match="2 epochs and 5 steps of epoch 3, more than the 2"):
        check_epochs(RunFolder(tmp_path), 2, {"epoch": 2, "step": 5}, "--epochs")
    check_epochs(RunFolder(tmp_path), 3, {"epoch": 2, "step": 5}, "--epochs")


@pytest.mark.parametrize("epochs", [None, 1])
def test_a_complete_run_says_so_and_changes_nothing(run, epochs):
    before = files(run)
    said = []
    result = train(resume=run, epochs=epochs, progress=False, log=said.append)
    assert said == [f"{run} is already complete (1 epochs done); nothing to do: --epochs M "
                    "with M > 1 trains further"]  # fmt: skip
    assert [row["epoch"] for row in result.history] == [1]
    assert files(run) == before


def test_an_extension_is_recorded_as_unfinished_until_it_ends(run, monkeypatch):
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(resume=run, epochs=2, **QUIET)
    assert RunFolder(run).read_info()["finished"] is False


# -- damaged files and other models ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, damage, error",
    [
        ("config.toml", b"lr = [", ConfigError),
        ("config.toml", b"\xff\xfe", ConfigError),
        ("checkpoint.pt", None, CheckpointError),
    ],
)
def test_a_damaged_file_is_refused_and_the_folder_left_as_it_was(run, name, damage, error):
    path = run / name
    path.write_bytes(damage if damage is not None else path.read_bytes()[:1000])
    before = files(run)
    with pytest.raises(error, match=name):
        train(resume=run, epochs=2, **QUIET)
    assert files(run) == before


def test_a_model_or_objective_from_python_must_be_passed_again(tiny_npz, tmp_path, run):
    cfg = tiny(tiny_npz, tmp_path / "python")
    out = train(cfg, model=build_vae(cfg, (1, 28, 28)), **QUIET).run_dir
    before = files(out)
    with pytest.raises(
        ModelError, match="VAE passed from Python and .*, but this resume has the config's model"
    ):
        train(resume=out, epochs=2, **QUIET)  # as `pyro-vae train --resume` would
    assert files(out) == before
    before = files(run)
    with pytest.raises(ModelError, match="has the config's model and objective Trace_ELBO"):
        train(resume=run, epochs=2, objective=Trace_ELBO(), **QUIET)
    assert files(run) == before
    (out / "run.json").write_text("")  # the checkpoint keeps the record
    with pytest.raises(ModelError, match="VAE passed from Python"):
        train(resume=out, epochs=2, **QUIET)


def test_the_readme_names_every_setting_a_resume_may_change():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    sentence = readme[readme.index("It continues only what belongs to the") :][:700]
    assert all(f"`{key}`" in sentence for key in RESUMABLE)


def test_scores_of_weights_a_resume_trained_past_are_named_stale(run):
    from pyro_vae import evaluate

    evaluate(run, k=2, progress=False)
    assert json.loads((run / "eval.json").read_text())["trained_epochs"] == 1
    said = []
    train(resume=run, epochs=2, progress=False, log=said.append)
    assert any(line.startswith("eval.json scored this run's weights before") for line in said)
    steps = torch.load(run / "checkpoint.pt", weights_only=False)["position"]["global_step"]
    assert RunFolder(run).stale_evaluations(steps) == ["eval.json"]
    evaluate(run, k=2, progress=False)
    assert json.loads((run / "eval.json").read_text())["trained_epochs"] == 2
    assert RunFolder(run).stale_evaluations(steps) == []


def test_a_data_file_named_by_a_relative_path_has_not_moved_on_resume(
    tiny_npz, tmp_path, monkeypatch
):
    """`train --dataset my.npz` kept 'my.npz' in run.json and the absolute path in
    config.toml; resuming read the latter and recorded a move that never happened."""
    shutil.copy(tiny_npz, tmp_path / "my.npz")
    monkeypatch.chdir(tmp_path)
    out = train(tiny("my.npz", tmp_path / "run"), **QUIET).run_dir
    train(resume=out, epochs=2, **QUIET)
    info = json.loads((out / "run.json").read_text())
    assert "dataset_moved_from" not in info and info["dataset_used"] == "my.npz"


def test_a_moved_data_file_may_be_renamed_in_config_toml_but_not_replaced(own_data, tmp_path):
    out, path = own_data
    moved = tmp_path / "moved.npz"
    shutil.move(path, moved)
    edit_config(out, f'dataset = "{path}"', f'dataset = "{moved}"')
    assert len(train(resume=out, epochs=2, **QUIET).history) == 2
    info = json.loads((out / "run.json").read_text())
    assert (info["dataset_used"], info["dataset_moved_from"]) == (str(moved), str(path))
    rewrite(moved, flip_a_pixel)  # the same path, other data: still refused
    with pytest.raises(DataError, match="same shapes, other values"):
        train(resume=out, epochs=3, **QUIET)


@pytest.mark.parametrize("recorded_by", ["data_source", "an older pyro-vae"])
def test_a_run_trained_on_data_from_python_needs_them_passed_again(tmp_path, recorded_by):
    """Its config names the default dataset (mnist), which evaluate tried to download and a
    resume replaced by mnist5k; both refuse in one line, the same data passed again work."""
    from pyro_vae import evaluate

    x = torch.randn(120, 20)
    data = Dataset.from_tensors(x[:100], x[100:])
    cfg = Config(likelihood="gaussian", epochs=1, batch_size=50, hidden=[16], latent_dim=2,
                 eval_k=5, device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    out = train(cfg, data=data, **QUIET).run_dir
    info = json.loads((out / "run.json").read_text())
    assert info["data_source"] == "python" and cfg.dataset == "mnist"
    if recorded_by != "data_source":
        del info["data_source"]  # Dataset.from_tensors' source still says where they came from
        (out / "run.json").write_text(json.dumps(info))
    before = files(out)
    said = re.escape(
        f"{out}: this run was trained on data passed from Python (100 training and 20 test "
        "datapoints of shape (20,)), which its config's dataset does not name; pass the same "
    )
    with pytest.raises(DataError, match=said + r"data: pyro_vae\.evaluate\(run, data=Dataset"):
        evaluate(out, k=2)
    with pytest.raises(DataError, match=said + r"data: train\(resume=run, data=Dataset"):
        train(resume=out, epochs=2, **QUIET)
    assert files(out) == before
    assert evaluate(out, data=data, k=2).num_datapoints == 20
    assert len(train(resume=out, epochs=2, data=data, **QUIET).history) == 2


def test_a_data_file_gone_is_named_with_where_the_run_looks_for_it(own_data, tmp_path):
    from pyro_vae import evaluate

    out, path = own_data
    shutil.move(path, tmp_path / "elsewhere.npz")
    before = files(out)
    for attempt in (lambda: evaluate(out, k=2), lambda: train(resume=out, epochs=2, **QUIET)):
        with pytest.raises(DataError, match=rf"{path} \(its config.toml's dataset\), is gone"):
            attempt()
    assert files(out) == before


def test_an_objective_named_from_python_is_the_runs_own_and_resumes_with_it(tiny_npz, tmp_path):
    """train(objective="iwae:k=2"), which the README documents, failed with TypeError
    ('str' object is not callable); now the name stands in cfg.objective."""
    named = train(tiny(tiny_npz, tmp_path / "named"), objective="iwae:k=2", **QUIET)
    configured = train(tiny(tiny_npz, tmp_path / "cfg", objective="iwae:k=2"), **QUIET)
    assert named.config.objective == "iwae:k=2"
    assert named.history[0]["train_elbo"] == configured.history[0]["train_elbo"]
    assert "iwae:k=2" in (named.run_dir / "config.toml").read_text()
    before = files(named.run_dir)
    with pytest.raises(ConfigError, match="trained with the objective 'iwae:k=2', not 'elbo'"):
        train(resume=named.run_dir, epochs=2, objective="elbo", **QUIET)
    assert files(named.run_dir) == before
    resumed = train(resume=named.run_dir, epochs=2, objective="iwae:k=2", **QUIET)
    assert len(resumed.history) == 2


@pytest.mark.parametrize("data", ["tuple", "tensor", "array"])
def test_data_that_are_not_a_dataset_are_refused_naming_the_wrapper(
    tiny_npz, tmp_path, trained, data
):
    """Tensors or arrays passed as data= failed deep in the trainer (AttributeError x_train)."""
    x = torch.zeros(6, 1, 2, 2)
    given = {"tuple": (x, x), "tensor": x, "array": x.numpy()}[data]
    with pytest.raises(ConfigError, match=r"train\(\): data must be .*Dataset.from_tensors"):
        train(tiny(tiny_npz, tmp_path / "run"), data=given, **QUIET)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"evaluate\(\): data must be .*Dataset.from_tensors"):
        evaluate(trained, data=given, k=2)
    out = tmp_path / "eval.json"  # a path to a data file is a name, as its str is
    assert evaluate(trained, data=Path(tiny_npz), k=2, out=out).num_datapoints == 100


@pytest.mark.parametrize(
    "objective, named",
    [
        ("iwae:q=2", "objective"),
        (RenyiELBO(alpha=0.5), "RenyiELBO has no differentiable_loss.*'renyi:alpha=A,k=K'"),
        (TraceGraph_ELBO(), "TraceGraph_ELBO has no differentiable_loss.*pass 'graph'"),
        (JitTrace_ELBO(), "JitTrace_ELBO compiles.*num_data and kl_scale as numbers.*Trace_ELBO"),
        (JitTraceMeanField_ELBO(), "JitTraceMeanField_ELBO compiles.*'analytic-kl'"),
        (Trace_ELBO, "a pyro.infer.ELBO instance or a name.*not ABCMeta"),
    ],
)
def test_an_objective_training_cannot_use_is_refused_before_any_file(
    tiny_npz, tmp_path, objective, named
):
    with pytest.raises(ConfigError, match=named):
        train(tiny(tiny_npz, tmp_path / "run"), objective=objective, **QUIET)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_training_inside_a_callers_no_grad_trains_as_outside(tiny_npz, tmp_path, context):
    """Inside torch.no_grad() train() failed with 'element 0 of tensors does not require
    grad' after its run folder checks."""
    outside = train(tiny(tiny_npz, tmp_path / "outside"), **QUIET).history
    with context():
        inside = train(tiny(tiny_npz, tmp_path / "inside"), **QUIET).history
    drop = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert drop(inside) == drop(outside)
