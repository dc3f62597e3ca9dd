"""pyro_vae.app.run_folder: `train --out` never writes into, or clears, a folder of the
user's own, and `--overwrite` replaces only the files a run owns."""

import json
from pathlib import Path

import pytest

from pyro_vae import Config, train
from pyro_vae.app.cli import main
from pyro_vae.app.run_folder import LOCK_FILE, PREVIOUS, RunFolder, owned_files
from pyro_vae.errors import RunFolderError

USERS = {"notes.txt": "the user's notes", "plots/mine.png": "the user's figure"}
OLD_RUN = {
    "config.toml": "old config",
    "run.json": json.dumps({"pyro_vae_version": "0.1.0"}),
    "checkpoint.pt": "old weights",
    "eval-mnist5k.json": "{}",
    "plots/samples.png": "old picture",
}


def _write(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _contents(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_text()
        for p in folder.rglob("*")
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_train_refuses_a_users_folder_even_with_overwrite(tmp_path, capsys, overwrite):
    folder = tmp_path / "my-project"
    _write(folder, USERS)
    # the dataset does not exist: the folder is refused before any data are read
    argv = ["train", "--dataset", "no-such-file.npz", "--out", str(folder), *overwrite]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith(f"pyro-vae: error: {folder} is not empty")
    assert "holds no pyro-vae run" in line and "choose a new or empty folder" in line
    with pytest.raises(RunFolderError, match="choose a new or empty folder"):
        RunFolder.create(folder, overwrite=True)
    assert _contents(folder) == USERS and sorted(p.name for p in folder.iterdir()) == [
        "notes.txt",
        "plots",
    ], "nothing was written, set aside or removed"


def test_the_filesystem_root_and_the_home_folder_are_refused(tmp_path, monkeypatch):
    """`--out /` or `--out ~` (the shell passes the home folder's path)."""
    home = tmp_path / "home"
    _write(home, {".bashrc": "alias ll='ls -l'\n"})
    monkeypatch.setenv("HOME", str(home))
    for folder in ("/", str(Path("~").expanduser())):
        with pytest.raises(RunFolderError, match=f"^{folder} is not empty .*choose a new or empty"):
            RunFolder.check_can_create(folder, overwrite=True)


def test_files_that_only_look_like_a_run_are_not_a_run(tmp_path):
    """A user's own run.json or metrics.csv does not make a folder pyro-vae's to clear."""
    _write(tmp_path, {"run.json": '{"epochs": 3}', "metrics.csv": "epoch\n1\n"})
    with pytest.raises(RunFolderError, match=r"\(metrics.csv, run.json\) and holds no"):
        RunFolder.check_can_create(tmp_path, overwrite=True)
    assert not RunFolder(tmp_path).holds_run()


def test_empty_folders_and_pyro_vaes_own_leftovers_are_accepted(tmp_path):
    """An empty folder, a compare cell before its run, or what a killed start left."""
    cell = tmp_path / "cell"
    _write(cell, {"config-request.toml": "epochs = 1\n", "compare.log": "$ pyro-vae train\n"})
    killed = tmp_path / "killed"
    (killed / "plots").mkdir(parents=True)
    _write(killed, {LOCK_FILE: "12345\n", ".config.toml.0badc0de.tmp": "half"})
    (tmp_path / "empty").mkdir()
    for folder in (cell, killed, tmp_path / "empty"):
        RunFolder.check_can_create(folder)
        RunFolder.create(folder).release()
    assert (cell / "config-request.toml").read_text() == "epochs = 1\n"


def test_overwrite_sets_aside_only_what_the_run_owns(tmp_path):
    _write(tmp_path, {**OLD_RUN, **USERS})
    assert owned_files(tmp_path) == [
        "config.toml",
        "run.json",
        "checkpoint.pt",
        "eval-mnist5k.json",
        "plots/samples.png",
    ]
    with pytest.raises(RunFolderError, match="already holds a run; pass --overwrite"):
        RunFolder.check_can_create(tmp_path)
    run = RunFolder.create(tmp_path, overwrite=True)
    assert _contents(tmp_path / PREVIOUS) == OLD_RUN
    assert _contents(tmp_path) == {**USERS, **{f"{PREVIOUS}/{k}": v for k, v in OLD_RUN.items()}}
    run.checkpoint_path.write_text("new weights")
    (run.plots / "samples.png").write_text("new picture")
    run.confirm_replacement()
    run.release()
    assert _contents(tmp_path) == {
        **USERS,
        "checkpoint.pt": "new weights",
        "plots/samples.png": "new picture",
    }, "the old run's scores went with it; the user's files stayed"


def test_a_failed_overwrite_puts_back_the_old_plots_beside_the_users(tmp_path):
    _write(tmp_path, {**OLD_RUN, **USERS})
    run = RunFolder.create(tmp_path, overwrite=True)
    run.write_config(Config(epochs=1))
    (run.plots / "samples.png").write_text("new picture")
    run.restore_previous()
    run.release()
    assert _contents(tmp_path) == {**OLD_RUN, **USERS}


def test_training_over_a_real_run_keeps_the_users_files(tiny_npz, tmp_path):
    cfg = Config(dataset=str(tiny_npz), epochs=1, batch_size=100, hidden=[16], latent_dim=2,
                 out=str(tmp_path / "run"))  # fmt: skip
    run = RunFolder(train(cfg, progress=False, log=lambda _: None).run_dir)
    _write(run.path, USERS)
    old = run.checkpoint_path.read_bytes()
    train(cfg.replace(seed=5), overwrite=True, progress=False, log=lambda _: None)
    assert run.checkpoint_path.read_bytes() != old and run.holds_run()
    assert all((run.path / name).read_text() == text for name, text in USERS.items())
    assert (run.plots / "losses.png").is_file() and not (run.path / PREVIOUS).exists()


@pytest.mark.parametrize(
    "argv, record",
    [
        (["evaluate", "{run}", "--out", "{run}/run.json"], "run.json"),
        (["sample", "{run}", "--out", "{run}/plots/latent.png"], "plots/latent.png"),
        (["sample", "{run}", "--out", "{run}/plots/../plots/losses.png"], "plots/losses.png"),
        (["bench", "--out", "{run}/metrics.csv"], "metrics.csv"),
    ],
)
def test_no_output_replaces_a_file_of_a_training_runs_record(tmp_path, capsys, argv, record):
    """Found by a CLI probe: `evaluate RUN --out RUN/run.json` replaced run.json with the
    scores, and the run lost its data fingerprint and range; sample could replace its plots."""
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    files = {
        "run.json": '{"pyro_vae_version": "0", "data_fingerprint": {}}',
        "metrics.csv": "epoch,train_elbo\n1,-1\n",
        "plots/latent.png": "drawn by training",
        "plots/losses.png": "drawn by training",
    }
    for name, text in files.items():
        (run / name).write_text(text)
    assert main([part.format(run=run) for part in argv]) == 2
    message = capsys.readouterr().err
    assert f"is the {record} of the run in" in message and "choose another file name" in message
    assert all((run / name).read_text() == text for name, text in files.items())
